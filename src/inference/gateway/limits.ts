// Limits kept in memory (one map lookup and a few additions per request): requests and tokens per
// minute in fixed one-minute windows, and token budgets per UTC day. A request reserves its worst
// case before it runs and settles to what it used after; the durable record is the usage table.

/** A fixed window: `used` counts within [start, start + seconds). */
export class Window {
  used = 0;
  start = 0;
  constructor(
    public limit: number,
    readonly seconds: number,
  ) {}

  /** Rolls the window over when `now` left it. */
  roll(now: number): this {
    const start = Math.floor(now / this.seconds) * this.seconds;
    if (start !== this.start) {
      this.start = start;
      this.used = 0;
    }
    return this;
  }

  remaining(now: number): number {
    return Math.max(0, this.limit - this.roll(now).used);
  }

  /** Seconds until the window resets. */
  reset(now: number): number {
    return this.start + this.seconds - now;
  }
}

/** The counters of a member or of a key; a null limit is no limit. */
export class Limits {
  readonly requests: Window;
  readonly tokens: Window;
  readonly day: Window;
  constructor(requestsPerMinute: number | null, tokensPerMinute: number | null, tokensPerDay: number | null) {
    this.requests = new Window(requestsPerMinute ?? Infinity, 60);
    this.tokens = new Window(tokensPerMinute ?? Infinity, 60);
    this.day = new Window(tokensPerDay ?? Infinity, 86_400);
  }
}

/** `1s`, `6m0s`, `2h3m`: how OpenAI writes x-ratelimit-reset-*. */
export function resetText(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.ceil(s * 1000) / 1000}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${Math.ceil(s - m * 60)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

// Limits kept in memory (one map lookup and a few additions per request): requests and tokens per
// minute in fixed one-minute windows, and token budgets per UTC day and per UTC calendar month. A
// request reserves its worst case before it runs and settles to what it used after; the durable
// record is the usage table.

/** A minute and a day are fixed lengths of seconds; a month is the UTC calendar month. */
export type Period = 60 | 86_400 | 'month';

/** [start, end) of the period that holds `now` (seconds). */
export function periodOf(period: Period, now: number): readonly [number, number] {
  if (period !== 'month') {
    const start = Math.floor(now / period) * period;
    return [start, start + period];
  }
  const d = new Date(now * 1000);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  return [Date.UTC(y, m, 1) / 1000, Date.UTC(y, m + 1, 1) / 1000];
}

/** A fixed window: `used` counts within [start, end). */
export class Window {
  used = 0;
  start = 0;
  end = 0;
  constructor(
    public limit: number,
    readonly period: Period,
  ) {}

  /** Rolls the window over when `now` left it (the period is computed only then: a month needs a Date). */
  roll(now: number): this {
    if (now >= this.end || now < this.start) {
      const [start, end] = periodOf(this.period, now);
      if (start !== this.start) this.used = 0;
      this.start = start;
      this.end = end;
    }
    return this;
  }

  remaining(now: number): number {
    return Math.max(0, this.limit - this.roll(now).used);
  }

  /** Seconds until the window resets. */
  reset(now: number): number {
    return this.roll(now).end - now;
  }
}

/** A member's or a key's own limits; null is no limit. */
export interface LimitSettings {
  readonly requestsPerMinute: number | null;
  readonly tokensPerMinute: number | null;
  readonly tokensPerDay: number | null;
  readonly tokensPerMonth: number | null;
}

/** The counters of a member or of a key. */
export class Limits {
  readonly requests: Window;
  readonly tokens: Window;
  readonly day: Window;
  readonly month: Window;
  constructor(s: LimitSettings) {
    this.requests = new Window(s.requestsPerMinute ?? Infinity, 60);
    this.tokens = new Window(s.tokensPerMinute ?? Infinity, 60);
    this.day = new Window(s.tokensPerDay ?? Infinity, 86_400);
    this.month = new Window(s.tokensPerMonth ?? Infinity, 'month');
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

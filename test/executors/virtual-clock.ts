// Virtual time for the simulated executor's tests: timers fire when the test advances the clock,
// in the order of their due times, with the clock set to each one's due time as it fires.
import type { Scheduler } from '../../src/executors/common.js';

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

export class VirtualClock {
  private seconds: number;
  private seq = 0;
  private timers: Timer[] = [];

  constructor(startSeconds = 1_700_000_000) {
    this.seconds = startSeconds;
  }

  readonly now = (): number => this.seconds;

  readonly schedule: Scheduler = (fn, ms) => {
    const timer: Timer = { at: this.seconds + ms / 1000, seq: ++this.seq, fn, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  };

  /** Timers not yet fired nor cancelled. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves the clock `seconds` on, firing the timers that fall due (also those they schedule). */
  async advance(seconds: number): Promise<void> {
    const target = this.seconds + seconds;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const next = this.timers.reduce<Timer | null>(
        (a, t) => (t.at > target ? a : !a || t.at < a.at || (t.at === a.at && t.seq < a.seq) ? t : a),
        null,
      );
      if (!next) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.seconds = Math.max(this.seconds, next.at);
      next.fn();
      // Lets promise continuations of the fired timer run before the next one fires.
      await Promise.resolve();
    }
    this.seconds = target;
    await Promise.resolve();
  }
}

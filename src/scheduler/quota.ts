// Entitlements as Kueue-style nominal quotas in one cohort. A member's work within its
// entitlement is guaranteed; idle entitlement is lent to others within each owner's lending
// limit; what is borrowed is what gets reclaimed, never the other way round.
import type { Consortium } from '../core/consortium.js';

/** Graded: a job either fits its member's entitlement, may borrow idle GPUs, or must wait. */
export enum QuotaFit {
  Exhausted = 0,
  Borrowing = 1,
  Guaranteed = 2,
}

export class QuotaBook {
  readonly nominal: Float64Array;
  readonly lendingLimit: Float64Array;
  readonly borrowingLimit: Float64Array;
  /** GPUs held per member: running, or started this cycle; not those already being stopped. */
  readonly used: Float64Array;
  /**
   * Quota promised to reserved jobs from a future time on. A job that ends before a claim
   * starts may still use that quota (backfill within an entitlement), like GPUs.
   */
  private readonly claims: { member: number; start: number; end: number; gpus: number; soft: boolean }[] = [];
  private readonly claimedGpus: Float64Array;
  /** GPUs of the machine that no member is entitled to: anyone may borrow them. */
  readonly unassigned: number;
  /**
   * Whether quota that owners claimed for their reserved jobs may still be lent until those jobs
   * start (reclaim gives it back). Off, a borrower's job that would outlive any claim waits.
   */
  lendClaimed = false;

  /**
   * @param releasedBy GPUs of the member's running work that will have ended by time t: a
   *   claim starting at t only competes with what is still running then.
   */
  constructor(
    consortium: Consortium,
    capacity: number,
    private readonly releasedBy: (member: number, t: number) => number = () => 0,
  ) {
    const n = consortium.members.length;
    this.nominal = new Float64Array(n);
    this.lendingLimit = new Float64Array(n);
    this.borrowingLimit = new Float64Array(n);
    this.used = new Float64Array(n);
    let entitled = 0;
    consortium.members.forEach((m, i) => {
      this.nominal[i] = m.entitlementGpus;
      this.lendingLimit[i] = m.lendingLimitGpus ?? m.entitlementGpus;
      this.borrowingLimit[i] = m.borrowingLimitGpus ?? Infinity;
      entitled += m.entitlementGpus;
    });
    this.unassigned = Math.max(0, capacity - entitled);
    this.peaks = new Array(n).fill(null);
    this.firmPeaks = new Array(n).fill(null);
    this.claimedGpus = new Float64Array(n);
  }

  /** Memo of `peak`: per member, claim starts in order with the prefix maximum of usage. */
  private peaks: ({ starts: number[]; maxUpTo: number[] } | null)[];
  private firmPeaks: ({ starts: number[]; maxUpTo: number[] } | null)[];

  add(member: number, gpus: number): void {
    this.used[member] += gpus;
    // Usage now also shifts usage at every claim start; timeline changes come with it.
    this.peaks.fill(null);
    this.firmPeaks.fill(null);
  }

  /**
   * `soft`: the claim of a job beyond its member's entitlement that has not reached its promotion
   * time: the member's other work within its entitlement does not wait for it (see `fit`).
   */
  claim(member: number, start: number, end: number, gpus: number, soft = false): void {
    this.claims.push({ member, start, end, gpus, soft });
    this.claimedGpus[member] += gpus;
    this.peaks[member] = null;
    this.firmPeaks[member] = null;
  }

  /** All GPUs the member has claimed for reserved jobs. */
  claimed(member: number): number {
    return this.claimedGpus[member];
  }

  /** GPUs the member has claimed for reserved jobs that start before `t`. */
  private claimedBefore(member: number, t: number): number {
    if (this.claimedGpus[member] === 0) return 0;
    let g = 0;
    for (const c of this.claims) if (c.member === member && c.start < t) g += c.gpus;
    return g;
  }

  /** The member's claims, as (end, GPUs) pairs: when each reserved job would give its quota back. */
  claimEnds(member: number): { end: number; gpus: number }[] {
    return this.claims.filter((c) => c.member === member).map((c) => ({ end: c.end, gpus: c.gpus }));
  }

  /** The most GPUs the member holds or has claimed (`firm`: its firm claims only) at any moment before `end`. */
  peak(member: number, end: number, firm = false): number {
    const memos = firm ? this.firmPeaks : this.peaks;
    let memo = memos[member];
    if (!memo) {
      const mine = this.claims.filter((c) => c.member === member && !(firm && c.soft)).sort((a, b) => a.start - b.start);
      const starts: number[] = [];
      const maxUpTo: number[] = [];
      let max = this.used[member];
      for (const c of mine) {
        let claimed = 0;
        for (const o of mine) if (o.start <= c.start && o.end > c.start) claimed += o.gpus;
        max = Math.max(max, this.used[member] - this.releasedBy(member, c.start) + claimed);
        starts.push(c.start);
        maxUpTo.push(max);
      }
      memo = { starts, maxUpTo };
      memos[member] = memo;
    }
    // The last claim that starts before `end` carries the maximum over all earlier ones.
    let lo = 0;
    let hi = memo.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (memo.starts[mid] < end) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? this.used[member] : memo.maxUpTo[lo - 1];
  }

  /** Can the member run `gpus` more until `end`, within its entitlement or by borrowing? */
  fit(member: number, gpus: number, end = Infinity): QuotaFit {
    // Within the entitlement, soft claims aside: a member's job beyond its entitlement, not yet
    // promoted, does not keep the member's work within it from reclaiming lent GPUs. (Counting
    // them, a member whose own 144-GPU gang waited to borrow sat at a third of its entitlement
    // for hours, its small jobs unable to reclaim and its gang unable to start.)
    if (this.peak(member, end, true) + gpus <= this.nominal[member]) return QuotaFit.Guaranteed;
    const after = this.peak(member, end) + gpus;
    // `after` counts the member's own claims that start before `end`: a job that would still run
    // when the member's reserved job starts borrows on top of that job's share, never out of it.
    // (Forbidding such jobs outright, as an earlier rule did, idled lendable GPUs and cost 0.2–0.5
    // points of utilization on the Philly replay, with more work lost to preemption.)
    if (after - this.nominal[member] > this.borrowingLimit[member]) return QuotaFit.Exhausted;
    // Borrowing is allowed while everything borrowed fits in what owners lend: what they do not
    // use now, nor have claimed for reserved jobs that start before this one would end.
    let lendable = this.unassigned;
    let borrowed = 0;
    for (let k = 0; k < this.used.length; k++) {
      const u = k === member ? after : this.used[k] + (this.lendClaimed ? 0 : this.claimedBefore(k, end));
      const idle = this.nominal[k] - u;
      if (idle > 0) lendable += Math.min(idle, this.lendingLimit[k]);
      else borrowed -= idle;
    }
    return borrowed <= lendable ? QuotaFit.Borrowing : QuotaFit.Exhausted;
  }

  /** Is the member above its entitlement, i.e. running on GPUs lent by others? */
  borrowing(member: number): boolean {
    return this.used[member] > this.nominal[member];
  }
}

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
  /** GPUs held or claimed per member: running, preempting, started or nominated this cycle. */
  readonly used: Float64Array;
  /** GPUs of the machine that no member is entitled to: anyone may borrow them. */
  readonly unassigned: number;

  constructor(consortium: Consortium, capacity: number) {
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
  }

  fit(member: number, gpus: number): QuotaFit {
    const after = this.used[member] + gpus;
    if (after <= this.nominal[member]) return QuotaFit.Guaranteed;
    if (after - this.nominal[member] > this.borrowingLimit[member]) return QuotaFit.Exhausted;
    // Borrowing is allowed while everything borrowed fits in what owners lend.
    let lendable = this.unassigned;
    let borrowed = 0;
    for (let k = 0; k < this.used.length; k++) {
      const u = k === member ? after : this.used[k];
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

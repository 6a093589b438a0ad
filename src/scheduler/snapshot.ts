// The mutable picture of the machine one cycle works on. Every mutation returns its undo,
// so a gang is tried whole and then kept or rolled back (KAI-Scheduler's statements).
//
// Invariants kept here (and checked by the property tests):
// - 0 ≤ free[n] ≤ gpus[n]: no GPU is allocated twice and no node is over-committed;
// - a domain that hosts isolation-required work of member m hosts no other member's work.
import type { Allocation } from '../core/job.js';
import { isSchedulable, type Site } from '../core/site.js';

export type Undo = () => void;

/** Free GPUs a placement may use, per node, with per-domain sums. */
export interface Availability {
  readonly avail: Int32Array;
  readonly domainAvail: Int32Array;
  readonly total: number;
}

/** A GPU set held for a blocked job from `start` on. */
export interface Reservation {
  readonly job: string;
  readonly member: number;
  readonly start: number;
  /** When the reserved job would end (start + walltime): its GPUs are free again after that. */
  readonly end: number;
  readonly allocation: readonly Allocation[];
  /** Held for work beyond its member's entitlement: other members' work within theirs may take these GPUs. */
  readonly yields?: boolean;
}

export class Snapshot {
  readonly members: number;
  readonly free: Int32Array;
  readonly schedulable: Uint8Array;
  /** GPUs on schedulable nodes that are free now, ignoring reservations. */
  readonly now: Availability & { total: number };
  /** GPUs allocated per (domain, member), flattened as domain * members + member. */
  readonly domainUsedBy: Int32Array;
  readonly domainUsed: Int32Array;
  /** Member holding isolation-required work on the domain, or -1. */
  readonly domainIsolatedBy: Int32Array;
  readonly domainIsolatedGpus: Int32Array;
  readonly reservations: Reservation[] = [];
  /** GPUs of the largest NVLink domain: a gang up to this size can live in one. */
  readonly maxDomainGpus: number;
  /**
   * Bumped by every change: caches of "did not fit" are valid for one version only. A caller
   * that undoes all it did may set it back; `epoch` never goes back (it keys the views).
   */
  version = 0;
  private epoch = 0;
  private readonly views = new Map<number, Availability>();
  private viewsEpoch = -1;

  constructor(
    readonly site: Site,
    memberCount: number,
  ) {
    const nodes = site.nodes.length;
    const domains = site.domains.length;
    this.members = memberCount;
    this.free = new Int32Array(nodes);
    this.schedulable = new Uint8Array(nodes);
    this.now = { avail: new Int32Array(nodes), domainAvail: new Int32Array(domains), total: 0 };
    this.domainUsedBy = new Int32Array(domains * memberCount);
    this.domainUsed = new Int32Array(domains);
    this.domainIsolatedBy = new Int32Array(domains).fill(-1);
    this.domainIsolatedGpus = new Int32Array(domains);
    this.maxDomainGpus = site.domains.reduce((max, d) => Math.max(max, d.gpus), 0);
    site.nodes.forEach((node, n) => {
      this.free[n] = node.gpus;
      if (isSchedulable(node)) {
        this.schedulable[n] = 1;
        this.now.avail[n] = node.gpus;
        this.now.domainAvail[node.domain] += node.gpus;
        this.now.total += node.gpus;
      }
    });
  }

  /** Takes GPUs for good (running jobs, starts): no undo to keep. */
  occupy(member: number, isolated: boolean, allocation: readonly Allocation[]): void {
    this.apply(member, isolated, allocation, -1);
  }

  /** Takes GPUs for a job of `member`; `isolated` marks its domains as the member's alone. */
  allocate(member: number, isolated: boolean, allocation: readonly Allocation[]): Undo {
    this.apply(member, isolated, allocation, -1);
    return () => this.apply(member, isolated, allocation, +1);
  }

  release(member: number, isolated: boolean, allocation: readonly Allocation[]): Undo {
    this.apply(member, isolated, allocation, +1);
    return () => this.apply(member, isolated, allocation, -1);
  }

  private apply(member: number, isolated: boolean, allocation: readonly Allocation[], sign: 1 | -1): void {
    const nodes = this.site.nodes;
    for (const { node: n, gpus } of allocation) {
      const d = nodes[n].domain;
      this.free[n] += sign * gpus;
      if (this.schedulable[n]) {
        this.now.avail[n] += sign * gpus;
        this.now.domainAvail[d] += sign * gpus;
        this.now.total += sign * gpus;
      }
      this.domainUsedBy[d * this.members + member] -= sign * gpus;
      this.domainUsed[d] -= sign * gpus;
      if (isolated) {
        this.domainIsolatedGpus[d] -= sign * gpus;
        this.domainIsolatedBy[d] = this.domainIsolatedGpus[d] > 0 ? member : -1;
      }
    }
    this.version++;
    this.epoch++;
  }

  reserve(reservation: Reservation): void {
    this.reservations.push(reservation);
    this.version++;
    this.epoch++;
  }

  /**
   * What a job that would run until `end` may use now: free GPUs, less those held by
   * reservations that start before it would finish (backfill may use reserved GPUs only
   * if it is gone in time). `guaranteed`: the job (of `member`) is within its member's
   * entitlement, and other members' reservations that yield to such work do not hold it off.
   */
  availableUntil(end: number, guaranteed = false, member = -1): Availability {
    const blocking = this.blockingReservations(end, guaranteed, member);
    if (blocking === 0) return this.now;
    if (this.viewsEpoch !== this.epoch) {
      this.views.clear();
      this.viewsEpoch = this.epoch;
    }
    // The reservations that block are those starting before `end`, all of them or all but other
    // members' yielding ones: their count names the set, the sign and the member the kind.
    const key = guaranteed ? -blocking - (member + 1) * 1e7 : blocking;
    let view = this.views.get(key);
    if (!view) {
      view = this.subtractReservations(this.now, (r) => blocks(r, end, guaranteed, member));
      this.views.set(key, view);
    }
    return view;
  }

  /** How many reservations would a job running until `end` collide with (a cache key). */
  blockingReservations(end: number, guaranteed = false, member = -1): number {
    let count = 0;
    for (const r of this.reservations) if (blocks(r, end, guaranteed, member)) count++;
    return count;
  }

  /** A copy of `base` with the GPUs of the matching reservations taken out. */
  subtractReservations(base: Availability, which: (r: Reservation) => boolean, clamp = true): Availability {
    const avail = base.avail.slice();
    const domainAvail = base.domainAvail.slice();
    let total = base.total;
    for (const r of this.reservations) {
      if (!which(r)) continue;
      for (const { node: n, gpus } of r.allocation) {
        if (!this.schedulable[n]) continue;
        // Clamped: only what is free now can be withheld now. Unclamped (for the future):
        // reserved GPUs still busy stay owed, so their later release does not count twice.
        const taken = clamp ? Math.min(gpus, Math.max(0, avail[n])) : gpus;
        avail[n] -= taken;
        domainAvail[this.site.nodes[n].domain] -= taken;
        total -= taken;
      }
    }
    return { avail, domainAvail, total };
  }

  /** GPUs per node held by reservations that start before `end` (for `guaranteed` work: see `availableUntil`). */
  reservedBefore(end: number, guaranteed = false, member = -1): Int32Array {
    const reserved = new Int32Array(this.free.length);
    for (const r of this.reservations) {
      if (!blocks(r, end, guaranteed, member)) continue;
      for (const { node, gpus } of r.allocation) reserved[node] += gpus;
    }
    return reserved;
  }

  /** Can member m place work on domain d, given isolation (its own, or another member's)? */
  domainOpenTo(d: number, member: number, exclusive: boolean): boolean {
    const iso = this.domainIsolatedBy[d];
    if (iso !== -1 && iso !== member) return false;
    if (exclusive && this.domainUsed[d] - this.domainUsedBy[d * this.members + member] > 0) return false;
    return true;
  }
}

/** Does the reservation keep a job that would run until `end` off its GPUs now? */
function blocks(r: Reservation, end: number, guaranteed: boolean, member: number): boolean {
  return r.start < end && !(guaranteed && r.yields === true && r.member !== member);
}

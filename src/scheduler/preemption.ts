// Which running jobs to stop so that a blocked job can start. Only two kinds of victim exist:
// borrowed work of another member (reclaim), and lower-class work of the job's own member
// (priority). A victim must have run its minimum runtime. Among the sets that make the gang
// fit, the one that loses the fewest GPU-hours since the victims' last checkpoints wins, then
// the one with the fewest jobs; a set is never larger than needed (each victim is necessary).
import { gangGpusOf as gpusOfJob, PRIORITY_RANK, workAtRisk, type Allocation, type PriorityClass, type RunningJob } from '../core/job.js';
import { place, type PlacementRequest } from './placement.js';
import type { QuotaBook } from './quota.js';
import type { Snapshot, Undo } from './snapshot.js';
import type { PreemptionReason } from './types.js';

export interface Victim {
  readonly job: RunningJob;
  readonly member: number;
  readonly isolated: boolean;
  readonly reason: PreemptionReason;
  readonly lostGpuHours: number;
  /** Taking it would push its member below its entitlement: a last resort. */
  readonly overshoot: boolean;
}

export interface PreemptionPlan {
  readonly victims: readonly Victim[];
  /** Where the preemptor goes once the victims are gone. */
  readonly allocation: Allocation[];
  readonly lostGpuHours: number;
  /** When the last victim's grace period ends. */
  readonly readyAt: number;
}

export interface Preemptor {
  readonly request: PlacementRequest;
  readonly priorityClass: PriorityClass;
  /** When it would end if started now: it must not run over other jobs' reservations. */
  readonly end: number;
  /** May it take back lent GPUs (it is within its entitlement), or only its member's lower classes? */
  readonly reclaim: boolean;
  /** GPUs of its own member's lower-class work that must stop for it to fit its entitlement. */
  readonly ownToFree: number;
}

/** The small port the cycle asks; it does not know how victims are chosen. */
export interface PreemptionOracle {
  plan(preemptor: Preemptor): PreemptionPlan | null;
}

export interface RunningEntry {
  readonly job: RunningJob;
  readonly member: number;
  readonly isolated: boolean;
  /** Already told to stop (earlier, or by this cycle): not a candidate again. */
  stopping: boolean;
  /** Started by this cycle: never preempted in the cycle that started it. */
  readonly fresh: boolean;
}

export class LeastLostWork implements PreemptionOracle {
  constructor(
    private readonly snap: Snapshot,
    private readonly quota: QuotaBook,
    private readonly running: readonly RunningEntry[],
    private readonly now: number,
  ) {}

  plan(preemptor: Preemptor): PreemptionPlan | null {
    const candidates = this.candidates(preemptor);
    if (candidates.length === 0) return null;
    const { request } = preemptor;
    // A gang that fits in one domain is tried domain by domain, so victims in other domains
    // are never taken in vain; larger gangs search the whole machine at once.
    const maxDomain = Math.max(...this.snap.site.domains.map((d) => d.gpus));
    let best: PreemptionPlan | null = null;
    if (request.gpus <= maxDomain) {
      for (let d = 0; d < this.snap.site.domains.length; d++) {
        if (request.domains && !request.domains[d]) continue;
        const inDomain = candidates.filter((v) => v.job.allocation.some((a) => this.snap.site.nodes[a.node].domain === d));
        if (inDomain.length === 0) continue;
        const plan = this.greedy(preemptor, inDomain, d);
        if (plan && better(plan, best)) best = plan;
      }
    }
    if (!best && (request.gpus > maxDomain || request.topology !== 'required')) {
      best = this.greedy(preemptor, candidates, undefined);
    }
    return best;
  }

  private candidates(preemptor: Preemptor): Victim[] {
    const m = preemptor.request.member;
    const rank = PRIORITY_RANK[preemptor.priorityClass];
    const out: Victim[] = [];
    for (const e of this.running) {
      if (e.stopping || e.fresh) continue;
      if (this.now - e.job.startedAt < e.job.minRuntimeSeconds) continue;
      let reason: PreemptionReason | null = null;
      if (e.member !== m && preemptor.reclaim && this.quota.borrowing(e.member)) reason = 'Reclaim';
      else if (e.member === m && PRIORITY_RANK[e.job.priorityClass] < rank) reason = 'Priority';
      if (!reason) continue;
      // Purely borrowed work (its member stays at or above its entitlement without it) goes first.
      const overshoot = reason === 'Reclaim' && this.quota.used[e.member] - gpusOfJob(e.job) < this.quota.nominal[e.member];
      out.push({ job: e.job, member: e.member, isolated: e.isolated, reason, lostGpuHours: workAtRisk(e.job, this.now), overshoot });
    }
    // Cheapest work first; for equal loss, bigger jobs first (fewer victims), then the newest.
    out.sort(
      (a, b) =>
        Number(a.overshoot) - Number(b.overshoot) ||
        a.lostGpuHours - b.lostGpuHours ||
        gpusOf(b) - gpusOf(a) ||
        b.job.startedAt - a.job.startedAt ||
        (a.job.id < b.job.id ? -1 : 1),
    );
    return out;
  }

  /** Take victims cheapest first until the gang fits, then give back every one not needed. */
  private greedy(preemptor: Preemptor, candidates: readonly Victim[], domain: number | undefined): PreemptionPlan | null {
    const { snap, quota } = this;
    const { request, end } = preemptor;
    const opts = domain === undefined ? {} : { onlyDomain: domain };
    let ownFreed = 0;
    const fits = () => ownFreed >= preemptor.ownToFree && place(snap, snap.availableUntil(end), request, opts);
    const undos: Undo[] = [];
    const chosen: Victim[] = [];
    const stillBorrowing = (v: Victim) => v.reason === 'Priority' || quota.borrowing(v.member);
    const remove = (v: Victim) => {
      const u = snap.release(v.member, v.isolated, v.job.allocation);
      const g = gpusOf(v);
      quota.used[v.member] -= g;
      if (v.member === request.member) ownFreed += g;
      undos.push(() => {
        u();
        quota.used[v.member] += g;
        if (v.member === request.member) ownFreed -= g;
      });
    };
    const restore = (v: Victim) => {
      const u = snap.allocate(v.member, v.isolated, v.job.allocation);
      const g = gpusOf(v);
      quota.used[v.member] += g;
      if (v.member === request.member) ownFreed -= g;
      undos.push(() => {
        u();
        quota.used[v.member] -= g;
        if (v.member === request.member) ownFreed += g;
      });
    };
    const version = snap.version;
    let allocation: Allocation[] | false | null = null;
    for (const v of candidates) {
      // Reclaim stops as soon as the lender is no longer borrowing: a member at or under its
      // entitlement is never preempted for someone else.
      if (!stillBorrowing(v)) continue;
      remove(v);
      chosen.push(v);
      allocation = fits();
      if (allocation) break;
    }
    let plan: PreemptionPlan | null = null;
    if (allocation) {
      // Minimal set: try to keep each victim, most expensive first.
      for (let i = chosen.length - 1; i >= 0; i--) {
        const v = chosen[i];
        restore(v);
        const without = fits();
        if (without) {
          allocation = without;
          chosen.splice(i, 1);
        } else {
          remove(v);
        }
      }
      let lost = 0;
      let readyAt = this.now;
      for (const v of chosen) {
        lost += v.lostGpuHours;
        readyAt = Math.max(readyAt, this.now + v.job.gracePeriodSeconds);
      }
      plan = { victims: chosen, allocation, lostGpuHours: lost, readyAt };
    }
    for (let u = undos.length - 1; u >= 0; u--) undos[u]();
    snap.version = version;
    return plan;
  }
}

function gpusOf(v: Victim): number {
  return gpusOfJob(v.job);
}

function better(a: PreemptionPlan, b: PreemptionPlan | null): boolean {
  if (!b) return true;
  const over = (p: PreemptionPlan) => p.victims.filter((v) => v.overshoot).length;
  if (over(a) !== over(b)) return over(a) < over(b);
  if (a.lostGpuHours !== b.lostGpuHours) return a.lostGpuHours < b.lostGpuHours;
  return a.victims.length < b.victims.length;
}

// Slurm-like: the multifactor priority plugin (age + Fair Tree-style fair share) with EASY
// backfill (the top blocked job holds a reservation; others run only if they cannot delay it),
// configured for the consortium as a Slurm site would: each member's account capped at what it
// may hold (GrpTRES=gres/gpu), and GPUs a member does not lend out of bounds for others (a
// partition with AllowAccounts). No guaranteed share: nothing lent is ever reclaimed.
import { CycleBase } from '../../scheduler/base.js';
import { place } from '../../scheduler/placement.js';
import type { ClusterState, CycleOptions, CycleResult } from '../../scheduler/types.js';
import type { Policy } from '../policy.js';

/** Slurm's usual weights: fair share dominates, age breaks ties over days (PriorityMaxAge 7 days). */
const WEIGHT_FAIRSHARE = 10_000;
const WEIGHT_AGE = 1_000;
const MAX_AGE_SECONDS = 7 * 24 * 3600;

class SlurmCycle extends CycleBase {
  run(): CycleResult {
    this.loadRunning();
    const fairShare = this.fairTreeFactors();
    const priority = new Map<string, number>();
    for (const job of this.state.pending) {
      const age = Math.min(1, Math.max(0, this.now - job.submittedAt) / MAX_AGE_SECONDS);
      priority.set(job.id, WEIGHT_FAIRSHARE * fairShare[this.member(job.member, job.id)] + WEIGHT_AGE * age);
    }
    const queue = [...this.state.pending].sort(
      (a, b) => priority.get(b.id)! - priority.get(a.id)! || a.submittedAt - b.submittedAt || (a.id < b.id ? -1 : 1),
    );
    let reserved = false;
    for (const job of queue) {
      if (!this.withinDepth(job, this.member(job.member, job.id))) continue;
      const admissible = this.admissible(job);
      if (!admissible) continue;
      const { m, req, shape } = admissible;
      const end = this.now + job.walltimeSeconds;
      if (!this.withinLimits(job, m, req.gpus, end)) continue;
      const allocation = this.placeNow(req, shape, end);
      if (allocation) {
        this.start(job, m, req, end, allocation, false);
        continue;
      }
      if (!reserved) {
        // EASY: only the highest-priority blocked job holds a reservation.
        const r = this.timeline.earliestStart(this.snap, req, this.now);
        if (r) {
          this.snap.reserve({
            job: job.id,
            member: m,
            start: r.start,
            end: r.start + job.walltimeSeconds,
            allocation: r.allocation,
          });
          reserved = true;
          this.wait(job, 'WaitingForResources', req.gpus, r.start);
          continue;
        }
      }
      const behind = this.explain && reserved && place(this.snap, this.snap.now, req) !== null;
      this.wait(job, behind ? 'BehindReservation' : 'Priority', req.gpus, null);
    }
    return this.result();
  }

  /**
   * Fair Tree on a flat tree of members: rank members by decayed usage over shares (lowest
   * first); the factor falls linearly with the rank, 1 for the least served.
   */
  private fairTreeFactors(): number[] {
    const members = this.state.consortium.members;
    const totalShares = members.reduce((s, m) => s + m.entitlementGpus, 0) || 1;
    const totalUsage = members.reduce((s, m) => s + (this.state.usageGpuHours[m.id] ?? 0), 0) || 1;
    const level = members.map((m) => {
      const usage = (this.state.usageGpuHours[m.id] ?? 0) / totalUsage;
      const share = m.entitlementGpus / totalShares;
      return share > 0 ? usage / share : Infinity;
    });
    const ranked = members.map((_, i) => i).sort((a, b) => level[a] - level[b] || a - b);
    const factor = new Array<number>(members.length);
    ranked.forEach((i, rank) => (factor[i] = (members.length - rank) / members.length));
    return factor;
  }
}

export const slurm = {
  type: 'policy/slurm',
  name: 'slurm',
  description:
    'Slurm-like: multifactor priority (age, Fair Tree-style fair share) with EASY backfill; no guaranteed share, no reclaim.',
  cycle: (state: ClusterState, now: number, options?: CycleOptions) => new SlurmCycle(state, now, options).run(),
} satisfies Policy;

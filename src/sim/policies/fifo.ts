// First come, first served: gangs start in submission order; the first one that does not fit
// blocks everyone behind it (no backfill). The baseline every paper starts from. Members'
// limits hold as in the Slurm-like policy; a job held by its member's limit blocks no one.
import { CycleBase } from '../../scheduler/base.js';
import type { ClusterState, CycleOptions, CycleResult } from '../../scheduler/types.js';
import type { Policy } from '../policy.js';

class FifoCycle extends CycleBase {
  run(): CycleResult {
    this.loadRunning();
    const queue = [...this.state.pending].sort((a, b) => a.submittedAt - b.submittedAt || (a.id < b.id ? -1 : 1));
    let blocked = false;
    for (const job of queue) {
      // Behind a blocked head nothing starts: unless asked to explain, stop looking.
      if (blocked && !this.explain) break;
      // A member's jobs past the queue depth are not looked at, and FIFO cannot skip them.
      if (!this.withinDepth(job, this.member(job.member, job.id))) {
        blocked = true;
        continue;
      }
      const admissible = this.admissible(job);
      if (!admissible) continue;
      const { m, req, shape } = admissible;
      if (!this.withinLimits(job, m, req.gpus, this.now + job.walltimeSeconds)) continue;
      if (blocked) {
        this.wait(job, 'Priority', req.gpus, null);
        continue;
      }
      const allocation = this.placeNow(req, shape, this.now + job.walltimeSeconds);
      if (allocation) {
        this.start(job, m, req, this.now + job.walltimeSeconds, allocation, false);
        continue;
      }
      blocked = true;
      const next = this.timeline.earliestStart(this.snap, req, this.now);
      this.wait(job, 'WaitingForResources', req.gpus, next?.start ?? null);
    }
    return this.result();
  }
}

export const fifo = {
  type: 'policy/fifo',
  name: 'fifo',
  description: 'First come, first served: gangs in submission order, the first blocked gang blocks the queue (no backfill).',
  cycle: (state: ClusterState, now: number, options?: CycleOptions) => new FifoCycle(state, now, options).run(),
} satisfies Policy;

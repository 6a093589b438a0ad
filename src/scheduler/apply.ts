// What a cycle's decisions do to the jobs they name: the one place these transitions are defined.
// Pure: the server persists the records it returns, the event simulator and the stepped twin keep
// them in their own structures, and all three agree because none of them builds a record itself.
import { requeued, type PendingJob, type RunningJob } from '../core/job.js';
import type { Decision } from './types.js';

/** The jobs a cycle decided about: the pending and running records it was given. */
export interface AppliedState {
  readonly pending: readonly PendingJob[];
  readonly running: readonly RunningJob[];
}

/** The new records, one per job that changed, in decision order. */
export interface Applied {
  /** Jobs that start now, as running jobs on the GPUs chosen. */
  readonly started: readonly RunningJob[];
  /** Running jobs told to stop for another: they keep their GPUs until `preempting.graceEndsAt`. */
  readonly preempting: readonly RunningJob[];
  /**
   * Running jobs whose gang touched a failed node: the pending records they queue again as
   * (whole, from their last checkpoint). What is left of them is stopped at once.
   */
  readonly requeued: readonly PendingJob[];
  /**
   * Pending jobs whose hold changed: `holdSince` set for one that gained a reservation, cleared
   * for one that held a reservation and got none this cycle (it goes back in line).
   */
  readonly holds: readonly PendingJob[];
  /** The start of each reservation the cycle made, by job. */
  readonly reservedStart: ReadonlyMap<string, number>;
}

/** A decision about a job the state does not hold: the caller and the cycle saw different jobs. */
export class UnknownDecisionJobError extends Error {
  override readonly name = 'UnknownDecisionJobError';
  constructor(
    readonly kind: Decision['kind'],
    readonly job: string,
  ) {
    super(
      `a '${kind}' decision names job ${job}, which is not among the ${kind === 'start' || kind === 'reserve' ? 'pending' : 'running'} jobs given`,
    );
  }
}

/**
 * The records `decisions` make of the jobs in `state` at `now`. A job that starts loses its hold;
 * a job keeps its hold (and its `holdSince`) only while each cycle renews its reservation.
 */
export function applyDecisions(state: AppliedState, decisions: readonly Decision[], now: number): Applied {
  const pendingById = new Map<string, PendingJob>();
  for (const p of state.pending) pendingById.set(p.id, p);
  const runningById = new Map<string, RunningJob>();
  for (const r of state.running) runningById.set(r.id, r);
  const started: RunningJob[] = [];
  const preempting: RunningJob[] = [];
  const requeuedJobs: PendingJob[] = [];
  const reservedStart = new Map<string, number>();
  const startedIds = new Set<string>();
  for (const d of decisions) {
    switch (d.kind) {
      case 'start': {
        const job = pendingById.get(d.job);
        if (!job) throw new UnknownDecisionJobError(d.kind, d.job);
        const { holdSince: _h, ...spec } = job;
        started.push({ ...spec, startedAt: now, allocation: d.allocation, lastCheckpointAt: null, preempting: null });
        startedIds.add(d.job);
        break;
      }
      case 'preempt': {
        const job = runningById.get(d.job);
        if (!job) throw new UnknownDecisionJobError(d.kind, d.job);
        preempting.push({ ...job, preempting: { since: now, graceEndsAt: now + d.graceSeconds, by: d.for, reason: d.reason } });
        break;
      }
      case 'requeue': {
        const job = runningById.get(d.job);
        if (!job) throw new UnknownDecisionJobError(d.kind, d.job);
        requeuedJobs.push(requeued(job));
        break;
      }
      case 'reserve':
        if (!pendingById.has(d.job)) throw new UnknownDecisionJobError(d.kind, d.job);
        reservedStart.set(d.job, d.start);
        break;
    }
  }
  const holds: PendingJob[] = [];
  for (const p of state.pending) {
    if (startedIds.has(p.id)) continue;
    const reserved = reservedStart.has(p.id);
    if (reserved && p.holdSince == null) holds.push({ ...p, holdSince: now });
    else if (!reserved && p.holdSince != null) holds.push({ ...p, holdSince: null });
  }
  return { started, preempting, requeued: requeuedJobs, holds, reservedStart };
}

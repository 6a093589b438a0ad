// What a job asks for, and the shapes the scheduler turns that into.

/** Highest first: production inference > training > batch/preemptible > lab/scavenger. */
export type PriorityClass = 'inference' | 'training' | 'batch' | 'lab';
export const PRIORITY_CLASSES: readonly PriorityClass[] = ['inference', 'training', 'batch', 'lab'];
export const PRIORITY_RANK: Readonly<Record<PriorityClass, number>> = { inference: 3, training: 2, batch: 1, lab: 0 };

/** `required`: a gang that fits in one NVLink domain must land in one; larger gangs take the fewest domains. */
export type Topology = 'required' | 'preferred' | 'none';

/** Either an explicit gang (nodes × GPUs per node) or a GPU count the scheduler shapes. */
export type GangRequest = { readonly nodes: number; readonly gpusPerNode: number } | { readonly gpus: number };

export interface JobIsolation {
  /** The NVLink domains it uses host no other member's work. */
  readonly exclusive: boolean;
  /** Zone it must run in (null: any the member may use). */
  readonly zone: string | null;
}

export interface JobSpec {
  readonly id: string;
  readonly member: string;
  readonly project: string;
  readonly priorityClass: PriorityClass;
  readonly gang: GangRequest;
  readonly topology: Topology;
  readonly isolation: JobIsolation;
  /** The user's estimate; the executor enforces it as the time limit. Seconds. */
  readonly walltimeSeconds: number;
  /** Not preempted before it has run this long (Slurm's PreemptExemptTime). Seconds. */
  readonly minRuntimeSeconds: number;
  /** The job checkpoints every this many seconds (null: unknown, assume never). */
  readonly checkpointIntervalSeconds: number | null;
  /** Seconds between the checkpoint signal and the kill on preemption. */
  readonly gracePeriodSeconds: number;
  /** Submission time, seconds. */
  readonly submittedAt: number;
  /**
   * Jobs that preempted this one earlier (kept across requeues): it never preempts them in
   * turn, so there are no preemption loops.
   */
  readonly preemptedBy?: readonly string[];
  /**
   * Seconds of its work already done and kept by earlier runs (up to the last checkpoint; all of
   * it where preempted jobs resume): its attained service, which orders it among its member's
   * jobs (least attained first, as Tiresias's LAS) and shortens what is left to run.
   */
  readonly attainedSeconds?: number;
  /** The advance reservation it runs in (its member's); null or absent: none. */
  readonly reservation?: string | null;
  /**
   * It was stopped through no choice of its member's order (another member reclaimed its GPUs, a
   * higher class of its member needed them, or a node failed): it waits again ahead of every job
   * of its member and class submitted after it. A job that yielded to shorter work of its own
   * class (service) goes back by its remaining work instead, as Tiresias's LAS.
   */
  readonly keepsPlace?: boolean;
}

export interface PendingJob extends JobSpec {
  /**
   * Set by the caller when a previous cycle gave this job a reservation or preempted for it:
   * a job that was promised capacity keeps first claim on it, which is what bounds its wait.
   */
  readonly holdSince?: number | null;
}

/** The job as it queues again after a preemption for `by`: whole, and remembering who took its GPUs. */
export function requeued(job: RunningJob): PendingJob {
  const { startedAt: _s, allocation: _a, lastCheckpointAt: _l, preempting, ...spec } = job;
  const by = preempting?.by;
  return {
    ...spec,
    holdSince: null,
    preemptedBy: by ? [...(spec.preemptedBy ?? []), by] : spec.preemptedBy,
    keepsPlace: preempting?.reason !== 'Service',
  };
}

/** GPUs a job holds on one node. */
export interface Allocation {
  readonly node: number;
  readonly gpus: number;
}

export interface RunningJob extends JobSpec {
  readonly startedAt: number;
  readonly allocation: readonly Allocation[];
  /** Time of the last checkpoint the job reported (null: use the interval, or its start). */
  readonly lastCheckpointAt: number | null;
  /** Set once it was told to stop: it keeps its GPUs until the grace period ends. */
  readonly preempting: {
    readonly since: number;
    readonly graceEndsAt: number;
    readonly by: string;
    readonly reason?: string;
  } | null;
}

export function gangGpus(gang: GangRequest): number {
  return 'gpus' in gang ? gang.gpus : gang.nodes * gang.gpusPerNode;
}

/**
 * The GPUs the gang needs on each of its nodes, largest first. A bare GPU count takes as few
 * nodes as possible: whole nodes, then one partial node for the remainder.
 */
export function gangTasks(gang: GangRequest, maxGpusPerNode: number): number[] {
  if (!('gpus' in gang)) return new Array<number>(gang.nodes).fill(gang.gpusPerNode);
  const full = Math.floor(gang.gpus / maxGpusPerNode);
  const rest = gang.gpus - full * maxGpusPerNode;
  const tasks = new Array<number>(full).fill(maxGpusPerNode);
  if (rest > 0) tasks.push(rest);
  return tasks;
}

/** When the work a preemption would destroy started: the last checkpoint, or the start. */
export function lastCheckpoint(job: RunningJob, now: number): number {
  return checkpointAt(job.lastCheckpointAt, job.startedAt, job.checkpointIntervalSeconds, now);
}

/**
 * `lastCheckpoint` on a running job's fields: the last checkpoint it reported (if taken in this
 * run), else the last multiple of its interval since its start, else its start; never after `t`.
 */
export function checkpointAt(reportedAt: number | null, startedAt: number, every: number | null, t: number): number {
  if (reportedAt !== null && reportedAt >= startedAt) return Math.min(reportedAt, t);
  if (every && every > 0) return startedAt + Math.floor((t - startedAt) / every) * every;
  return startedAt;
}

export function gangGpusOf(job: { readonly allocation: readonly Allocation[] }): number {
  let g = 0;
  for (const a of job.allocation) g += a.gpus;
  return g;
}

/**
 * The time limit of the job's next (or current) run: its walltime less the service it kept from
 * earlier runs. A job that resumes from its checkpoint has only that much left to do.
 */
export function remainingWalltime(job: JobSpec): number {
  return Math.max(0, job.walltimeSeconds - (job.attainedSeconds ?? 0));
}

/** When a running job is expected to release its GPUs. */
export function expectedEnd(job: RunningJob, now: number): number {
  if (job.preempting) return Math.max(now, job.preempting.graceEndsAt);
  return Math.max(now, job.startedAt + remainingWalltime(job));
}

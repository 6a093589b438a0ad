// What a simulation run produces: per policy, the summary figures, the same figures per member
// and per job-size class, time series and distributions. The CLI prints the summary as JSON;
// the report draws the rest.
import type { PendingReason } from '../scheduler/types.js';

/** Job-size classes used in every breakdown. */
export const SIZE_CLASSES = ['1', '2-8', '9-72', '>72'] as const;
export type SizeClass = (typeof SIZE_CLASSES)[number];

export function sizeClass(gpus: number): SizeClass {
  return gpus <= 1 ? '1' : gpus <= 8 ? '2-8' : gpus <= 72 ? '9-72' : '>72';
}

/** Completion time and queueing delay of a set of jobs, seconds. */
export interface TimeStats {
  readonly jobs: number;
  readonly avg_jct_s: number;
  readonly median_jct_s: number;
  readonly p99_jct_s: number;
  readonly avg_wait_s: number;
  readonly median_wait_s: number;
  readonly p99_wait_s: number;
}

export interface MemberStats extends TimeStats {
  /** Fraction of all GPU-hours delivered that went to this member. */
  readonly share: number;
  /** Its entitlement as a fraction of the machine, capped by its demand (what it could have used). */
  readonly fair_share: number;
  readonly gpu_hours: number;
}

/** The summary line (the keys tools read are fixed: see the issue that asked for them). */
export interface PolicySummary extends TimeStats {
  /** Busy GPUs over up GPUs, averaged from the first to the last submission (the drain is left out). */
  readonly utilization: number;
  /** Jain's index over share / fair_share of the members with demand. */
  readonly jain: number;
  readonly max_large_gang_wait_s: number;
  readonly gpu_hours_lost: number;
  readonly stranded_gpu_hours: number;
  readonly preemptions: number;
  readonly makespan_s: number;
  /** Longest time from a member's demand returning to its share being restored (null: never needed). */
  readonly max_reclaim_latency_s: number | null;
  /** That stretch, attributed (null: never needed). */
  readonly longest_reclaim: LongestReclaim | null;
  /**
   * Per size class, the p99 wait of all its jobs (a job that never started waits until the run's
   * end), or the longest where the class has fewer than 100 jobs; null: no job of that size.
   */
  readonly p99_wait_by_size_s: Readonly<Record<SizeClass, number | null>>;
  /** Longest wait of any job, a job that never started counting until the run's end. */
  readonly max_wait_s: number;
  /**
   * (wait + run) / max(run, 10 s) per job, at least 1; run is the job's runtime in the trace, so
   * work lost to preemption counts as wait. p99 (the max under 100 jobs) and max; null: no job.
   */
  readonly p99_bounded_slowdown: number | null;
  readonly max_bounded_slowdown: number | null;
  /** GPU-hours GPUs were held by jobs: work that finished, work lost, restart overhead. */
  readonly gpu_hours_busy: number;
}

export interface PolicyResult {
  readonly summary: PolicySummary;
  readonly byMember: Readonly<Record<string, MemberStats>>;
  readonly bySize: Readonly<Record<SizeClass, TimeStats>>;
  /** Sampled at a fixed interval of simulated time. */
  readonly series: {
    readonly t: readonly number[];
    readonly utilization: readonly number[];
    readonly queueLength: readonly number[];
    /** Per member: fraction of the machine's GPUs it holds at each sample. */
    readonly memberShare: Readonly<Record<string, readonly number[]>>;
  };
  /** Cumulative distributions as [seconds, fraction of jobs ≤ seconds] points (a few hundred at most). */
  readonly cdf: { readonly jct: readonly (readonly [number, number])[]; readonly wait: readonly (readonly [number, number])[] };
}

export interface SimResults {
  readonly trace: string;
  readonly jobs: number;
  readonly site: string;
  readonly gpus: number;
  readonly load: number;
  /** The offered work over the GPUs its members can use (see run.ts `usableLoad`): above 1, the queue grows for the whole replay. */
  readonly usableLoad: number;
  readonly seed: number;
  /** The scheduling round of the replay, seconds. */
  readonly cycleSeconds: number;
  /**
   * What Fabrik promises a gang of a whole NVLink domain or more, within its member's
   * entitlement: it starts within its promotion delay (`gangAgingSeconds` at most), the longest
   * walltime of the jobs in its way and two rounds.
   */
  readonly largeGangBoundSeconds: number;
  /** Bad trace rows, by reason. */
  readonly rejected: Readonly<Record<string, number>>;
  /** Member id → entitlement as a fraction of the machine. */
  readonly entitlements: Readonly<Record<string, number>>;
  readonly policies: Readonly<Record<string, PolicyResult>>;
}

/**
 * The longest reclaim, attributed: the member, when its stretch began (seconds from the run's
 * start) and how long it lasted, and what its queue waited for, seen once the stretch had
 * lasted an hour (`RECLAIM_SEEN_AFTER_SECONDS` in engine.ts; null for a shorter one).
 */
export interface LongestReclaim {
  readonly member: string;
  readonly from: number;
  readonly seconds: number;
  readonly seen: ReclaimSnapshot | null;
}

/** A member in deficit at one moment, as the policy explained its queue then. */
export interface ReclaimSnapshot {
  /** Seconds from the run's start. */
  readonly at: number;
  readonly heldGpus: number;
  readonly entitlementGpus: number;
  /** GPUs the other members held beyond their entitlements, anywhere. */
  readonly borrowedGpus: number;
  /** The member's first waiting job in the policy's order. */
  readonly head: WaitingJob | null;
  /** Its first waiting job that fits what the member is owed: the one a reclaim would start. */
  readonly owed: WaitingJob | null;
}

export interface WaitingJob {
  readonly job: string;
  readonly gpus: number;
  readonly reason: PendingReason;
  /** Seconds from the run's start; null: the policy gives none. */
  readonly estimatedStart: number | null;
  /** It holds a reservation (a claim on GPUs and on its member's quota). */
  readonly holding: boolean;
}

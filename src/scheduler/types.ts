// The scheduler's contract: what a cycle reads, what it decides, and how it explains a wait.
import type { Consortium } from '../core/consortium.js';
import type { Allocation, PendingJob, RunningJob } from '../core/job.js';
import type { AdvanceReservation } from '../core/reservation.js';
import type { Site } from '../core/site.js';

/** Everything one cycle looks at. Plain data: the server builds it from its store, the simulator from its trace. */
export interface ClusterState {
  readonly site: Site;
  readonly consortium: Consortium;
  readonly running: readonly RunningJob[];
  readonly pending: readonly PendingJob[];
  /** Decayed GPU-hours per member id (see core/usage.ts); a missing member has none. */
  readonly usageGpuHours: Readonly<Record<string, number>>;
  /** Advance reservations booked now or later (capability runs); none when absent. */
  readonly reservations?: readonly AdvanceReservation[];
}

/** How much of the work a cycle does: what the caller needs back, and how deep it looks. */
export interface CycleOptions {
  /** Explain every waiting job (reason, position, estimated start); the simulator turns it off. */
  readonly explain?: boolean;
  /**
   * How many of each member's waiting jobs, in that member's own order, a cycle looks at (Slurm's
   * bf_max_job_user; Kueue looks only at each queue's head). Jobs behind them wait with reason
   * Priority until they move up; jobs holding a reservation are always looked at. This bounds a
   * cycle's work when one member queues tens of thousands of jobs. Absent: all; DEFAULT_CONFIG's
   * value is the one the server, the event simulator and the stepped twin use.
   */
  readonly queueDepth?: number;
  /**
   * What a preempted job loses: `checkpoint`, the work since its last checkpoint; `resume`, only
   * `restartOverheadSeconds` (it checkpoints when signalled and resumes where it stopped).
   * Preemption pays for itself under either: the cycle weighs the work a preemption destroys.
   */
  readonly preemption?: 'checkpoint' | 'resume';
  readonly restartOverheadSeconds?: number;
}

export interface SchedulerConfig extends CycleOptions {
  /**
   * How many blocked jobs hold a reservation (GPUs and quota from their earliest start), counting
   * those that keep one from an earlier cycle (they always do): EASY backfill's one, as Slurm's
   * default. Every reservation more keeps backfill off GPUs; one per member cost the 2–8-GPU jobs
   * 3–8× their p99 wait on the generated workloads.
   */
  readonly reservationDepth: number;
  /**
   * How many of a member's jobs may displace its own work (a lower class, or longer work of the
   * same class) in one cycle. Reclaim is not bounded by it: a member whose demand returns takes
   * back its whole deficit in one cycle.
   */
  readonly preemptorsPerMember: number;
  /**
   * How many of a member's blocked jobs may search for victims in vain in one cycle: a bound on
   * the cycle's work (Kueue searches only each queue's head); the next cycle tries the next ones.
   * Searches to displace the member's own work count against `preemptionAttemptsPerMember`,
   * searches to reclaim lent GPUs against `reclaimAttemptsPerMember`: a member's borrowing jobs
   * at the head of its queue, whose searches fail, no longer use up the tries of its jobs within
   * its entitlement behind them.
   */
  readonly preemptionAttemptsPerMember: number;
  readonly reclaimAttemptsPerMember: number;
  /**
   * Within a member and class, jobs go by their promotion time: submission plus the least of
   * (expected remaining work ÷ `agingGpus`), `slowdownBound` × remaining walltime, and
   * `maxAgingSeconds`; for a gang of a whole NVLink domain or more, also `gangAgingSeconds`.
   * Short work goes first; once a job's promotion time has passed, no job submitted later goes
   * ahead of it, so no job waits behind fresh work for longer than `maxAgingSeconds`, nor longer
   * than `slowdownBound` times its walltime (a large gang: `gangAgingSeconds`).
   */
  readonly agingGpus: number;
  readonly slowdownBound: number;
  readonly maxAgingSeconds: number;
  readonly gangAgingSeconds: number;
  /**
   * A running job yields to shorter work of its own member and class only within this many
   * seconds after a checkpoint (it loses at most that much work), and only when the time the
   * shorter job saves exceeds the work destroyed.
   */
  readonly checkpointSlackSeconds: number;
  /** ... and only when it has at least this many times the shorter job's remaining work left. */
  readonly serviceMargin: number;
  /**
   * Reclaim happens when it pays, or when the member would otherwise wait longer than this for
   * GPUs within its entitlement: its share comes back within this, the victims' grace and a round.
   * "Otherwise" counts the whole member: the jobs ending within this time must free enough GPUs
   * for this job and for every job of the member within its entitlement already left waiting
   * this cycle, not only for this one.
   */
  readonly reclaimWithinSeconds: number;
  /**
   * Lend quota that owners claimed for their reserved jobs until those jobs start, as Kueue lends
   * any unused nominal quota; reclaim gives it back. Off, a borrower's job that would outlive any
   * claim waits, which on long jobs means it never borrows.
   */
  readonly lendClaimedQuota: boolean;
}

export const DEFAULT_CONFIG: SchedulerConfig = {
  // Deep enough that backfill finds the small jobs behind a member's blocked ones; a member's
  // 1,001st job still gets an honest estimate (estimate.ts). Measured on the Philly two-week
  // window at load 0.9: 1000 and 128 gave the same average and p99 wait within 4 %.
  queueDepth: 1000,
  reservationDepth: 1,
  // 16 rather than 4: on the single-tenant study it took fabrik's average JCT from 9,476 s to
  // 9,341 s, and over Philly and the generated shapes at seeds 1–3 it cut the issue-18 figures
  // missed from 92 to 88 (measured before the soft claims; 8 gives the same count with them).
  // See docs/simulation.md.
  preemptorsPerMember: 16,
  preemptionAttemptsPerMember: 4,
  reclaimAttemptsPerMember: 16,
  agingGpus: 1,
  // Tuned on Philly and every generated shape at seeds 1 and 2 together (docs/scheduling.md):
  // 4 rather than 24 keeps 9–72-GPU jobs from waiting days behind a stream of small ones.
  slowdownBound: 4,
  maxAgingSeconds: 30 * 24 * 3600,
  gangAgingSeconds: 48 * 3600,
  checkpointSlackSeconds: 300,
  serviceMargin: 2,
  reclaimWithinSeconds: 1800,
  lendClaimedQuota: true,
};

/**
 * Reclaim: borrowed work of another member, for work within its entitlement. Priority: a lower
 * class of the preemptor's own member. Service: longer work of the same member and class, right
 * after its checkpoint (least remaining work first, as shortest-remaining-time-first).
 */
export type PreemptionReason = 'Reclaim' | 'Priority' | 'Service';

export type Decision =
  /** Start the gang now on exactly these GPUs. `borrowing`: it runs on GPUs lent by other members. */
  | { readonly kind: 'start'; readonly job: string; readonly allocation: readonly Allocation[]; readonly borrowing: boolean }
  /** Signal the job to checkpoint, and stop it after its grace period; it is requeued whole. */
  | {
      readonly kind: 'preempt';
      readonly job: string;
      readonly for: string;
      readonly reason: PreemptionReason;
      readonly graceSeconds: number;
      readonly lostGpuHours: number;
    }
  /** The gang touched a failed node: stop what is left of it and queue it again. */
  | { readonly kind: 'requeue'; readonly job: string; readonly reason: 'NodeFailure'; readonly nodes: readonly number[] }
  /** These GPUs are held for the job from `start`: the caller records `holdSince` on the job. */
  | { readonly kind: 'reserve'; readonly job: string; readonly start: number; readonly allocation: readonly Allocation[] };

/**
 * Why a job is not running, in the words users of Slurm and Kueue look for.
 * - QuotaExhausted: its member is at its entitlement and nothing idle can be borrowed.
 * - WaitingForReclaim: running jobs are being stopped for it (borrowed work taken back, or its
 *   member's own lower-class or longer work); they stop after their grace.
 * - WaitingForResources: it holds a reservation and starts when running jobs release its GPUs.
 * - BehindReservation: it would fit now, but would delay a job that holds a reservation.
 * - WaitingForReservation: GPUs booked for an advance reservation (a capability run) keep it off, or
 *   it runs in one that has not started yet (or can never run in it: no estimate).
 * - NoTopologyFit: enough GPUs are free, but not in the NVLink-domain shape it needs.
 * - IsolationRequired: enough GPUs are free, but only on domains shared with another member.
 * - NodesUnavailable: it cannot fit even on an empty machine with today's up nodes and zones.
 * - ExceedsMemberLimit: it asks for more GPUs than its member may ever hold (entitlement plus
 *   borrowing limit, its zone): it never starts unless the consortium's limits change.
 * - Priority: jobs ahead of it in the queue come first.
 */
export type PendingReason =
  | 'QuotaExhausted'
  | 'WaitingForReclaim'
  | 'WaitingForResources'
  | 'BehindReservation'
  | 'WaitingForReservation'
  | 'NoTopologyFit'
  | 'IsolationRequired'
  | 'NodesUnavailable'
  | 'ExceedsMemberLimit'
  | 'Priority';

export interface Explanation {
  readonly job: string;
  readonly reason: PendingReason;
  /** 1-based place in the queue among the jobs still waiting. */
  readonly position: number;
  /** Seconds; null when it cannot start with the machine as it is. */
  readonly estimatedStart: number | null;
}

export interface CycleResult {
  readonly decisions: readonly Decision[];
  /** One entry per pending job that did not start, in queue order. */
  readonly pending: readonly Explanation[];
}

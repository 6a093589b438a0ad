// One simulation study: a trace mapped onto a site and consortium, replayed through each policy
// on the same jobs, summarized side by side.
import { Worker } from 'node:worker_threads';
import type { Consortium } from '../core/consortium.js';
import { gangGpus } from '../core/job.js';
import type { Site } from '../core/site.js';
import { simulate, type NodeEvent, type PreemptionMode, type SimJob } from './engine.js';
import { summarize } from './metrics.js';
import type { AdvanceReservation } from '../core/reservation.js';
import { assignToReservations } from './reservations.js';
import { POLICIES } from './policies/index.js';
import type { LongestReclaim, PolicyResult, SimResults, WaitingJob } from './results.js';
import { traceWorkload, type ParsedTrace } from './trace.js';
import { DEFAULT_CONFIG } from '../scheduler/types.js';

export interface StudyOptions {
  readonly site: Site;
  readonly consortium: Consortium;
  readonly trace: ParsedTrace;
  readonly policies: readonly string[];
  readonly seed: number;
  /** Offered load to scale submissions to (default 0.9); null keeps the trace's own submission times. */
  readonly load?: number | null;
  readonly maxJobSeconds?: number | null;
  /**
   * What a preempted job loses: `checkpoint` (default) the work since its last checkpoint;
   * `resume` nothing, it resumes where it stopped after `restartOverheadSeconds` (the peer
   * simulators' assumption).
   */
  readonly preemption?: PreemptionMode;
  /** Default: 30 s with `resume` (RESUME_OVERHEAD_SECONDS), 0 with `checkpoint` (see SimOptions). */
  readonly restartOverheadSeconds?: number;
  readonly nodeEvents?: readonly NodeEvent[];
  /** Capability runs booked for the replay (sim/reservations.ts): the jobs they take run only there. */
  readonly reservations?: readonly AdvanceReservation[];
  /** The scheduling round: a cycle runs at most this often (default ${DEFAULT_ROUND_SECONDS} s). */
  readonly cycleSeconds?: number;
  readonly onProgress?: (policy: string, finished: number, total: number) => void;
}

/**
 * A replay's scheduling round, seconds: the literature's simulators decide in rounds of a few
 * minutes (Gavel 6, Themis 10); 5 minutes keeps the 82k-job Philly trace under a minute for
 * three policies. The server decides on every event.
 */
export const DEFAULT_ROUND_SECONDS = 300;

export class UnknownPolicyError extends Error {
  override readonly name = 'UnknownPolicyError';
  constructor(readonly policy: string) {
    super(`unknown policy '${policy}' (known: ${Object.keys(POLICIES).join(', ')})`);
  }
}

/** What one policy's replay needs: plain data, so it can go to a worker thread. */
export interface PolicyTask {
  readonly site: Site;
  readonly consortium: Consortium;
  readonly jobs: readonly SimJob[];
  readonly policy: string;
  readonly nodeEvents?: readonly NodeEvent[];
  readonly reservations?: readonly AdvanceReservation[];
  readonly cycleSeconds: number;
  readonly preemption?: PreemptionMode;
  readonly restartOverheadSeconds?: number;
}

/** Replays the policies one after the other, in this thread (tests, small studies). */
export function runStudy(o: StudyOptions): SimResults {
  const workload = prepare(o);
  const policies: Record<string, PolicyResult> = {};
  for (const name of o.policies) {
    const run = simulate({
      site: o.site,
      consortium: o.consortium,
      jobs: workload.jobs,
      policy: POLICIES[name],
      nodeEvents: o.nodeEvents,
      reservations: o.reservations,
      cycleSeconds: o.cycleSeconds ?? DEFAULT_ROUND_SECONDS,
      preemption: o.preemption,
      restartOverheadSeconds: o.restartOverheadSeconds,
      onProgress: o.onProgress && ((done, total) => o.onProgress!(name, done, total)),
    });
    policies[name] = summarize(run, o.consortium, o.site);
  }
  return results(o, workload, policies);
}

/** Replays each policy in its own worker thread, side by side (the CLI and the benchmark). */
export async function runStudyInParallel(o: StudyOptions): Promise<SimResults> {
  const workload = prepare(o);
  const entries = await Promise.all(
    o.policies.map(
      (policy) =>
        new Promise<[string, PolicyResult]>((resolve, reject) => {
          const task: PolicyTask = {
            site: o.site,
            consortium: o.consortium,
            jobs: workload.jobs,
            policy,
            nodeEvents: o.nodeEvents,
            reservations: o.reservations,
            cycleSeconds: o.cycleSeconds ?? DEFAULT_ROUND_SECONDS,
            preemption: o.preemption,
            restartOverheadSeconds: o.restartOverheadSeconds,
          };
          // From the TypeScript sources, a small boot file registers the loader in the worker first.
          const entry = import.meta.url.endsWith('.ts') ? './worker-boot.mjs' : './worker.js';
          const worker = new Worker(new URL(entry, import.meta.url), { workerData: task });
          worker.on(
            'message',
            (m: { kind: 'progress'; done: number; total: number } | { kind: 'result'; result: PolicyResult }) => {
              if (m.kind === 'progress') o.onProgress?.(policy, m.done, m.total);
              else resolve([policy, m.result]);
            },
          );
          worker.on('error', reject);
          worker.on('exit', (code) => code !== 0 && reject(new Error(`policy ${policy}: worker exited with ${code}`)));
        }),
    ),
  );
  return results(o, workload, Object.fromEntries(entries));
}

function prepare(o: StudyOptions) {
  for (const p of o.policies) if (!POLICIES[p]) throw new UnknownPolicyError(p);
  const workload = traceWorkload(o.trace, o.site, o.consortium, { load: o.load, maxJobSeconds: o.maxJobSeconds, seed: o.seed });
  if (!o.reservations?.length) return workload;
  return { ...workload, jobs: assignToReservations(workload.jobs, o.reservations, o.consortium) };
}

function results(o: StudyOptions, workload: ReturnType<typeof prepare>, policies: Record<string, PolicyResult>): SimResults {
  const entitled = o.site.totalGpus;
  const round = o.cycleSeconds ?? DEFAULT_ROUND_SECONDS;
  let longest = 0;
  for (const j of workload.jobs) longest = Math.max(longest, j.job.walltimeSeconds);
  return {
    trace: o.trace.name,
    jobs: workload.jobs.length,
    site: o.site.name,
    gpus: o.site.totalGpus,
    // With the trace's own times, the load it offers this site.
    load: o.load === null ? workload.offeredLoad : (o.load ?? 0.9),
    usableLoad: usableLoad(workload.jobs, o.site, o.consortium),
    seed: o.seed,
    cycleSeconds: round,
    // Promoted by gangAgingSeconds at the latest, then at most the longest walltime in its way.
    largeGangBoundSeconds: DEFAULT_CONFIG.gangAgingSeconds + longest + 2 * round,
    rejected: workload.rejected,
    entitlements: Object.fromEntries(o.consortium.members.map((m) => [m.id, m.entitlementGpus / entitled])),
    policies,
  };
}

/**
 * The work offered over what the members can use between the first and the last submission: GPUs
 * an owner never lends (a sovereign zone, a lending limit) and leaves idle count for no one. At
 * a load of 0.9 of the site this is above 1 when such an owner has little work: then no policy
 * keeps the queue from growing for the whole replay.
 */
export function usableLoad(jobs: readonly SimJob[], site: Site, consortium: Consortium): number {
  let first = Infinity;
  let last = -Infinity;
  let work = 0;
  const byMember = new Map<string, number>();
  for (const { job, runtimeSeconds } of jobs) {
    first = Math.min(first, job.submittedAt);
    last = Math.max(last, job.submittedAt);
    const w = gangGpus(job.gang) * runtimeSeconds;
    work += w;
    byMember.set(job.member, (byMember.get(job.member) ?? 0) + w);
  }
  if (!(last > first)) return Infinity;
  let unusable = 0;
  for (const m of consortium.members) {
    const kept = m.entitlementGpus - Math.min(m.entitlementGpus, m.lendingLimitGpus ?? m.entitlementGpus);
    unusable += Math.max(0, kept - (byMember.get(m.id) ?? 0) / (last - first));
  }
  return work / ((last - first) * (site.totalGpus - unusable));
}

/** The summary line tools read: `{"trace","jobs","policies":{name:{avg_jct_s,…}}}`. */
export function summaryLine(r: SimResults, extra: Record<string, unknown> = {}): string {
  // Null says "no such job" or "never needed"; tools must not read it as zero.
  const roundOrNull = (x: number | null, digits = 0): number | null => (x === null ? null : round(x, digits));
  const policies = Object.fromEntries(
    Object.entries(r.policies).map(([name, p]) => {
      const s = p.summary;
      return [
        name,
        {
          avg_jct_s: round(s.avg_jct_s),
          p99_jct_s: round(s.p99_jct_s),
          avg_wait_s: round(s.avg_wait_s),
          p99_wait_s: round(s.p99_wait_s),
          utilization: round(s.utilization, 4),
          jain: round(s.jain, 4),
          max_large_gang_wait_s: round(s.max_large_gang_wait_s),
          gpu_hours_lost: round(s.gpu_hours_lost, 1),
          stranded_gpu_hours: round(s.stranded_gpu_hours, 1),
          p99_wait_by_size_s: Object.fromEntries(Object.entries(s.p99_wait_by_size_s).map(([size, w]) => [size, roundOrNull(w)])),
          max_wait_s: round(s.max_wait_s),
          p99_bounded_slowdown: roundOrNull(s.p99_bounded_slowdown, 2),
          max_bounded_slowdown: roundOrNull(s.max_bounded_slowdown, 2),
          max_reclaim_latency_s: roundOrNull(s.max_reclaim_latency_s),
          longest_reclaim: s.longest_reclaim && reclaimJson(s.longest_reclaim),
          gpu_hours_busy: round(s.gpu_hours_busy, 1),
        },
      ];
    }),
  );
  return JSON.stringify({ trace: r.trace, jobs: r.jobs, policies, ...extra });
}

/** The attributed longest reclaim in the JSON line's words: seconds, snake case, whole numbers. */
function reclaimJson(r: LongestReclaim): Record<string, unknown> {
  const job = (w: WaitingJob | null) =>
    w && {
      job: w.job,
      gpus: w.gpus,
      reason: w.reason,
      estimated_start_s: w.estimatedStart === null ? null : round(w.estimatedStart),
      holding: w.holding,
    };
  const seen = r.seen && {
    at_s: round(r.seen.at),
    held_gpus: r.seen.heldGpus,
    entitlement_gpus: r.seen.entitlementGpus,
    borrowed_gpus: r.seen.borrowedGpus,
    head: job(r.seen.head),
    owed: job(r.seen.owed),
  };
  return { member: r.member, from_s: round(r.from), seconds: round(r.seconds), seen };
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

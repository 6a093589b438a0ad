// From what happened in a run to the figures a board reads (docs/simulation.md defines each).
import type { Consortium } from '../core/consortium.js';
import type { Site } from '../core/site.js';
import { mostGpus } from './trace.js';
import type { JobOutcome, SimRun } from './engine.js';
import { SIZE_CLASSES, sizeClass, type MemberStats, type PolicyResult, type SizeClass, type TimeStats } from './results.js';

const CDF_POINTS = 200;

/**
 * Bounded slowdown's floor on the run time, seconds (Feitelson's "interactive threshold"): a job
 * of a few seconds that waited a minute would otherwise read as a slowdown of 30.
 */
export const SLOWDOWN_FLOOR_SECONDS = 10;

/** With fewer samples than this, a tail figure is the max: a p99 of a few dozen jobs is one job's luck. */
export const TAIL_MIN_SAMPLES = 100;

export function summarize(run: SimRun, consortium: Consortium, site: Site): PolicyResult {
  const totalGpus = site.totalGpus;
  const done = run.outcomes.filter((o) => o.finishedAt !== null);
  const { got, fair } = sharesOverTime(run, consortium, site);
  const gotAll = got.reduce((s, g) => s + g, 0);
  const fairAll = fair.reduce((s, g) => s + g, 0);
  const byMember: Record<string, MemberStats> = {};
  consortium.members.forEach((m, i) => {
    byMember[m.id] = {
      ...timeStats(done.filter((o) => o.member === m.id)),
      share: gotAll > 0 ? got[i] / gotAll : 0,
      fair_share: fairAll > 0 ? fair[i] / fairAll : 0,
      gpu_hours: run.memberGpuSeconds[i] / 3600,
    };
  });
  const bySize = Object.fromEntries(
    SIZE_CLASSES.map((c) => [c, timeStats(done.filter((o) => sizeClass(o.gpus) === c))]),
  ) as Record<SizeClass, TimeStats>;
  let stranded = 0;
  for (const s of run.samples) stranded += s.strandedGpus;
  const large = run.outcomes.filter((o) => o.gpus > 72);
  const waits = run.outcomes.map((o) => waitOf(o, run.end));
  const slowdowns = run.outcomes.map((o) => boundedSlowdown(o, run.end)).sort((a, b) => a - b);
  const waitsBySize = Object.fromEntries(SIZE_CLASSES.map((c) => [c, [] as number[]])) as Record<SizeClass, number[]>;
  run.outcomes.forEach((o, i) => waitsBySize[sizeClass(o.gpus)].push(waits[i]));
  const p99WaitBySize = Object.fromEntries(SIZE_CLASSES.map((c) => [c, tail(waitsBySize[c].sort((x, y) => x - y))])) as Record<
    SizeClass,
    number | null
  >;
  return {
    summary: {
      ...timeStats(done),
      utilization: utilization(run),
      jain: jain(consortium.members.map((_, i) => [got[i], fair[i]])),
      max_large_gang_wait_s: large.reduce((w, o) => Math.max(w, waitOf(o, run.end)), 0),
      gpu_hours_lost: run.outcomes.reduce((s, o) => s + o.lostGpuSeconds, 0) / 3600,
      stranded_gpu_hours: (stranded * run.sampleSeconds) / 3600,
      preemptions: run.preemptions,
      makespan_s: run.end - run.start,
      max_reclaim_latency_s: run.maxReclaimLatency,
      longest_reclaim: run.longestReclaim,
      p99_wait_by_size_s: p99WaitBySize,
      max_wait_s: waits.reduce((w, x) => Math.max(w, x), 0),
      p99_bounded_slowdown: tail(slowdowns),
      max_bounded_slowdown: slowdowns.length > 0 ? slowdowns[slowdowns.length - 1] : null,
      // GPUs held over time: the work that finished, the work preemptions and failures destroyed
      // (grace periods included), and any restart overhead a job spends on its GPUs.
      gpu_hours_busy: run.memberGpuSeconds.reduce((s, g) => s + g, 0) / 3600,
    },
    byMember,
    bySize,
    series: {
      t: run.samples.map((s) => s.t - run.start),
      utilization: run.samples.map((s) => (s.upGpus > 0 ? s.usedGpus / s.upGpus : 0)),
      queueLength: run.samples.map((s) => s.queueLength),
      memberShare: Object.fromEntries(
        consortium.members.map((m, i) => [m.id, run.samples.map((s) => s.memberGpus[i] / totalGpus)]),
      ),
    },
    cdf: { jct: cdf(done.map((o) => o.finishedAt! - o.submittedAt)), wait: cdf(done.map((o) => o.waitSeconds)) },
  };
}

/**
 * What each member got, and what it was owed, summed over the samples: at each sample the up
 * GPUs are owed by entitlement, capped by what each member wanted then (running + waiting),
 * the rest going to the others in proportion to their entitlements (weighted water-filling).
 */
function sharesOverTime(run: SimRun, consortium: Consortium, site: Site): { got: number[]; fair: number[] } {
  const weights = consortium.members.map((m) => m.entitlementGpus);
  // Nobody is owed more than it may ever hold (its zone, its entitlement plus borrowing limit).
  const most = consortium.members.map((m) => mostGpus(m, site));
  const got = weights.map(() => 0);
  const fair = weights.map(() => 0);
  for (const s of run.samples) {
    const owed = waterFill(
      s.upGpus,
      weights,
      s.memberDemand.map((d, i) => Math.min(d, most[i])),
    );
    for (let i = 0; i < weights.length; i++) {
      got[i] += s.memberGpus[i];
      fair[i] += owed[i];
    }
  }
  return { got, fair };
}

/** Shares `total` in proportion to `weights`, never giving anyone more than its `caps`. */
export function waterFill(total: number, weights: readonly number[], caps: readonly number[]): number[] {
  const out = weights.map(() => 0);
  let left = total;
  let open = weights.map((_, i) => i).filter((i) => weights[i] > 0 && caps[i] > 0);
  while (left > 1e-9 && open.length > 0) {
    const weight = open.reduce((s, i) => s + weights[i], 0);
    const capped = open.filter((i) => out[i] + (left * weights[i]) / weight >= caps[i]);
    if (capped.length === 0) {
      for (const i of open) out[i] += (left * weights[i]) / weight;
      break;
    }
    for (const i of capped) {
      left -= caps[i] - out[i];
      out[i] = caps[i];
    }
    open = open.filter((i) => !capped.includes(i));
  }
  return out;
}

/**
 * Busy GPUs over up GPUs, averaged over the window in which jobs arrive: the drain after the last
 * submission (a few long jobs finishing on an emptying machine) says nothing about a policy.
 */
function utilization(run: SimRun): number {
  let sum = 0;
  let n = 0;
  for (const s of run.samples) {
    if (s.t > run.lastSubmit || s.upGpus === 0) continue;
    sum += s.usedGpus / s.upGpus;
    n++;
  }
  return n > 0 ? sum / n : 0;
}

/**
 * A job that never finished has waited until the end of the run (and not less than nothing: a
 * job that could never start may arrive after the last finish, which is where the run ends).
 */
function waitOf(o: JobOutcome, end: number): number {
  return o.finishedAt === null ? Math.max(0, end - o.submittedAt) : o.waitSeconds;
}

/**
 * (delay + run) / max(run, SLOWDOWN_FLOOR_SECONDS), at least 1, where run is the job's runtime in
 * the trace (its work) and delay everything else until it finished: waits, work lost to
 * preemptions, restart overhead. A job that never finished counts with its wait to the run's end.
 */
export function boundedSlowdown(o: JobOutcome, end: number): number {
  const delay = o.finishedAt === null ? waitOf(o, end) : Math.max(0, o.finishedAt - o.submittedAt - o.runtimeSeconds);
  return Math.max(1, (delay + o.runtimeSeconds) / Math.max(o.runtimeSeconds, SLOWDOWN_FLOOR_SECONDS));
}

/** The p99 of a sorted list, or its max below TAIL_MIN_SAMPLES; null when empty. */
export function tail(sorted: readonly number[]): number | null {
  if (sorted.length === 0) return null;
  return sorted.length < TAIL_MIN_SAMPLES ? sorted[sorted.length - 1] : quantile(sorted, 0.99);
}

export function timeStats(jobs: readonly JobOutcome[]): TimeStats {
  const jct = jobs.map((o) => o.finishedAt! - o.submittedAt).sort((a, b) => a - b);
  const wait = jobs.map((o) => o.waitSeconds).sort((a, b) => a - b);
  return {
    jobs: jobs.length,
    avg_jct_s: mean(jct),
    median_jct_s: quantile(jct, 0.5),
    p99_jct_s: quantile(jct, 0.99),
    avg_wait_s: mean(wait),
    median_wait_s: quantile(wait, 0.5),
    p99_wait_s: quantile(wait, 0.99),
  };
}

/** Jain's index over got/fair, for members with a fair share: 1 when all get the same fraction of it. */
function jain(pairs: readonly (readonly [number, number])[]): number {
  const x = pairs.filter(([, fair]) => fair > 0).map(([got, fair]) => got / fair);
  if (x.length === 0) return 1;
  const sum = x.reduce((s, v) => s + v, 0);
  const squares = x.reduce((s, v) => s + v * v, 0);
  // Mathematically ≤ 1; rounding can push equal ratios a hair above it.
  return squares > 0 ? Math.min(1, (sum * sum) / (x.length * squares)) : 1;
}

function cdf(values: number[]): [number, number][] {
  const sorted = values.slice().sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return [];
  const step = Math.max(1, Math.floor(n / CDF_POINTS));
  const out: [number, number][] = [];
  for (let i = step - 1; i < n; i += step) out.push([sorted[i], (i + 1) / n]);
  if (out[out.length - 1][1] < 1) out.push([sorted[n - 1], 1]);
  return out;
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((s, x) => s + x, 0) / xs.length;
}

/** Nearest-rank quantile of a sorted list. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

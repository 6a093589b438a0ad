// From what happened in a run to the figures a board reads (docs/simulation.md defines each).
import type { Consortium } from '../core/consortium.js';
import type { JobOutcome, SimRun } from './engine.js';
import { SIZE_CLASSES, sizeClass, type MemberStats, type PolicyResult, type SizeClass, type TimeStats } from './results.js';

const CDF_POINTS = 200;

export function summarize(run: SimRun, consortium: Consortium, totalGpus: number): PolicyResult {
  const done = run.outcomes.filter((o) => o.finishedAt !== null);
  const delivered = run.memberGpuSeconds.reduce((s, g) => s + g, 0);
  const fair = fairShares(run, consortium, delivered);
  const byMember: Record<string, MemberStats> = {};
  consortium.members.forEach((m, i) => {
    byMember[m.id] = {
      ...timeStats(done.filter((o) => o.member === m.id)),
      share: delivered > 0 ? run.memberGpuSeconds[i] / delivered : 0,
      fair_share: delivered > 0 ? fair[i] / delivered : 0,
      gpu_hours: run.memberGpuSeconds[i] / 3600,
    };
  });
  const bySize = Object.fromEntries(
    SIZE_CLASSES.map((c) => [c, timeStats(done.filter((o) => sizeClass(o.gpus) === c))]),
  ) as Record<SizeClass, TimeStats>;
  let stranded = 0;
  for (const s of run.samples) stranded += s.strandedGpus;
  const large = run.outcomes.filter((o) => o.gpus > 72);
  return {
    summary: {
      ...timeStats(done),
      utilization: run.capacityGpuSeconds > 0 ? delivered / run.capacityGpuSeconds : 0,
      jain: jain(consortium.members.map((_, i) => [run.memberGpuSeconds[i], fair[i]])),
      max_large_gang_wait_s: large.reduce((w, o) => Math.max(w, waitOf(o, run.end)), 0),
      gpu_hours_lost: run.outcomes.reduce((s, o) => s + o.lostGpuSeconds, 0) / 3600,
      stranded_gpu_hours: (stranded * run.sampleSeconds) / 3600,
      preemptions: run.preemptions,
      makespan_s: run.end - run.start,
      max_reclaim_latency_s: run.maxReclaimLatency,
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

/** A job that never started has waited until the end of the run. */
function waitOf(o: JobOutcome, end: number): number {
  return o.finishedAt === null ? end - o.submittedAt : o.waitSeconds;
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

/**
 * Each member's fair GPU-seconds: what was delivered, shared by entitlement and capped by what the
 * member asked for (weighted water-filling: a member that asked for less than its share gets
 * what it asked, and the rest goes to the others in proportion to their entitlements).
 */
function fairShares(run: SimRun, consortium: Consortium, delivered: number): number[] {
  const members = consortium.members;
  const demand = members.map(() => 0);
  const index = new Map(members.map((m, i) => [m.id, i]));
  for (const o of run.outcomes) demand[index.get(o.member)!] += o.gpus * o.runtimeSeconds;
  const fair = members.map(() => 0);
  let left = delivered;
  let open = members.map((m, i) => i).filter((i) => members[i].entitlementGpus > 0 && demand[i] > 0);
  while (left > 1e-9 && open.length > 0) {
    const weight = open.reduce((s, i) => s + members[i].entitlementGpus, 0);
    const capped = open.filter((i) => fair[i] + (left * members[i].entitlementGpus) / weight >= demand[i]);
    if (capped.length === 0) {
      for (const i of open) fair[i] += (left * members[i].entitlementGpus) / weight;
      break;
    }
    for (const i of capped) {
      left -= demand[i] - fair[i];
      fair[i] = demand[i];
    }
    open = open.filter((i) => !capped.includes(i));
  }
  return fair;
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

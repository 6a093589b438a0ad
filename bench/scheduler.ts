// npm run bench:scheduler — one scheduling cycle on se-factory (1,152 GPUs) with about 1,000
// running jobs and 10k, 50k and 100k pending jobs of mixed shapes. The last line is JSON.
import { loadConsortium, loadSite } from '../src/config/index.js';
import { cycle } from '../src/scheduler/cycle.js';
import type { ClusterState } from '../src/scheduler/types.js';
import { Workload } from '../src/sim/workload.js';

const site = loadSite(new URL('../sites/se-factory.yaml', import.meta.url).pathname);
const consortium = loadConsortium(new URL('../consortia/demo.yaml', import.meta.url).pathname, site);
const NOW = 1_000_000;
// More than 100 cycles each, so that the p99 is a p99 and not the slowest cycle.
const SIZES: [pending: number, runs: number][] = [
  [10_000, 300],
  [50_000, 120],
  [100_000, 120],
];

// Published reference figures (not measured here): Kueue's scale test admits ~40 workloads/s;
// Slurm publishes 500 simple jobs/s executed.
const KUEUE_PER_S = 40;
const SLURM_PER_S = 500;

const w = new Workload(site, consortium, 42);
const running = w.runningJobs(1300, NOW);
const usageGpuHours = Object.fromEntries(consortium.members.map((m) => [m.id, m.entitlementGpus * 24 * w.float()]));
console.log(
  `site ${site.name}: ${site.totalGpus} GPUs, ${running.length} running jobs on ${running.reduce((s, j) => s + j.allocation.reduce((t, a) => t + a.gpus, 0), 0)} GPUs`,
);

const results = [];
for (const [pending, runs] of SIZES) {
  const state: ClusterState = { site, consortium, running, pending: w.pendingJobs(pending, NOW), usageGpuHours };
  // A server runs cycles back to back: measure warm cycles, as it would see them.
  for (let i = 0; i < 10; i++) cycle(state, NOW - 1 - i);
  const times: number[] = [];
  let decided = 0;
  let starts = 0;
  let preemptions = 0;
  let reservations = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = cycle(state, NOW + i);
    times.push(performance.now() - t0);
    decided = r.pending.length + r.decisions.filter((d) => d.kind === 'start').length;
    starts = r.decisions.filter((d) => d.kind === 'start').length;
    preemptions = r.decisions.filter((d) => d.kind === 'preempt').length;
    reservations = r.decisions.filter((d) => d.kind === 'reserve').length;
  }
  times.sort((a, b) => a - b);
  const p50 = quantile(times, 0.5);
  const p99 = quantile(times, 0.99);
  const decisionsPerS = Math.round(decided / (p50 / 1000));
  const heapMb = Math.round(process.memoryUsage().heapUsed / 2 ** 20);
  console.log(
    `pending ${pending}: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${runs} cycles; ` +
      `${starts} starts, ${preemptions} preemptions, ${reservations} reservations, every job explained; ` +
      `${decisionsPerS} decisions/s = ${(decisionsPerS / KUEUE_PER_S).toFixed(0)}× Kueue's published 40/s, ` +
      `${(decisionsPerS / SLURM_PER_S).toFixed(0)}× Slurm's published 500/s; heap ${heapMb} MiB`,
  );
  results.push({ pending, cycle_ms_p50: round(p50), cycle_ms_p99: round(p99), decisions_per_s: decisionsPerS });
}
console.log(JSON.stringify({ gpus: site.totalGpus, results }));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

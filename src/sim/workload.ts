// Seeded synthetic workloads of mixed shapes, for the benchmark and for load scenarios:
// mostly single GPUs and single trays, some domain-sized gangs, a few multi-domain ones.
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { Consortium } from '../core/consortium.js';
import type { PendingJob, PriorityClass, RunningJob, Topology } from '../core/job.js';
import type { Site } from '../core/site.js';
import { cycle } from '../scheduler/cycle.js';
import type { ClusterState } from '../scheduler/types.js';

/** GPU count → weight: the shape mix of a busy training-and-inference factory. */
export const MIXED_SHAPES: readonly [number, number][] = [
  [1, 30],
  [2, 10],
  [4, 20],
  [8, 15],
  [16, 10],
  [32, 6],
  [72, 5],
  [144, 3],
  [288, 1],
];
/** Many small jobs: what a machine full of ~1,000 running jobs looks like. */
export const SMALL_SHAPES: readonly [number, number][] = [
  [1, 90],
  [2, 8],
  [4, 2],
];

const CLASSES: readonly [PriorityClass, number][] = [
  ['inference', 10],
  ['training', 45],
  ['batch', 35],
  ['lab', 10],
];

export class Workload {
  private readonly rng;
  private n = 0;

  constructor(
    readonly site: Site,
    readonly consortium: Consortium,
    seed: number,
  ) {
    this.rng = xoroshiro128plus(seed);
  }

  int(from: number, to: number): number {
    return uniformInt(this.rng, from, to);
  }

  float(): number {
    return uniformFloat64(this.rng);
  }

  pick<T>(weighted: readonly (readonly [T, number])[]): T {
    const total = weighted.reduce((s, [, w]) => s + w, 0);
    let x = this.float() * total;
    for (const [v, w] of weighted) if ((x -= w) < 0) return v;
    return weighted[weighted.length - 1][0];
  }

  job(submittedAt: number, shapes: readonly (readonly [number, number])[] = MIXED_SHAPES): PendingJob {
    const members = this.consortium.members.map((m) => [m, Math.max(1, m.entitlementGpus)] as const);
    const member = this.pick(members);
    const gpus = this.pick(shapes);
    const topology: Topology = gpus >= 8 ? (this.float() < 0.6 ? 'required' : 'preferred') : 'none';
    return {
      id: `job-${++this.n}`,
      member: member.id,
      project: member.projects[0] ?? 'default',
      priorityClass: this.pick(CLASSES),
      gang: { gpus },
      topology,
      isolation: { exclusive: false, zone: null },
      walltimeSeconds: 600 * this.int(1, 6 * 24),
      minRuntimeSeconds: 1800,
      checkpointIntervalSeconds: 1800,
      gracePeriodSeconds: 60,
      submittedAt,
      holdSince: null,
    };
  }

  /** A machine filled by the scheduler itself (so every allocation is valid), started in the past. */
  runningJobs(count: number, now: number, shapes = SMALL_SHAPES): RunningJob[] {
    const pending = Array.from({ length: count }, () => this.job(now - this.int(3600, 48 * 3600), shapes));
    const state: ClusterState = { site: this.site, consortium: this.consortium, running: [], pending, usageGpuHours: {} };
    const byId = new Map(pending.map((j) => [j.id, j]));
    const running: RunningJob[] = [];
    for (const d of cycle(state, now).decisions) {
      if (d.kind !== 'start') continue;
      const { holdSince: _h, ...spec } = byId.get(d.job)!;
      const startedAt = now - this.int(0, 24 * 3600);
      const walltimeSeconds = spec.walltimeSeconds + (now - startedAt);
      running.push({ ...spec, startedAt, walltimeSeconds, allocation: d.allocation, lastCheckpointAt: null, preempting: null });
    }
    return running;
  }

  pendingJobs(count: number, now: number): PendingJob[] {
    return Array.from({ length: count }, () => this.job(now - this.int(0, 72 * 3600)));
  }
}

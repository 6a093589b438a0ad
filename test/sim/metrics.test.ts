// The tail figures issue 18 asks for (bounded slowdown, waits by size, longest wait, busy
// GPU-hours), on small runs whose every figure is worked out by hand in the comments.
import { describe, expect, it } from 'vitest';
import { simulate, type JobOutcome, type SimRun } from '../../src/sim/engine.js';
import { boundedSlowdown, summarize, tail } from '../../src/sim/metrics.js';
import { POLICIES } from '../../src/sim/policies/index.js';
import type { PolicyResult, SimResults } from '../../src/sim/results.js';
import { describeLongestReclaim } from '../../src/sim/report.js';
import { summaryLine } from '../../src/sim/run.js';
import { consortium as builtConsortium, job, site as builtSite } from '../../src/testing/builders.js';

const site = builtSite().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build(); // 32 GPUs
const consortium = builtConsortium().member('a', { entitlement: 16 }).member('b', { entitlement: 16 }).build();

function outcome(o: Partial<JobOutcome> & Pick<JobOutcome, 'id' | 'gpus' | 'submittedAt' | 'runtimeSeconds'>): JobOutcome {
  return { member: 'a', finishedAt: null, waitSeconds: 0, preemptions: 0, lostGpuSeconds: 0, ...o };
}

function run(outcomes: JobOutcome[], o: Partial<SimRun> = {}): SimRun {
  return {
    policy: 'hand',
    outcomes,
    samples: [],
    sampleSeconds: 60,
    memberGpuSeconds: [0, 0],
    start: 0,
    lastSubmit: Math.max(0, ...outcomes.map((x) => x.submittedAt)),
    end: 10_000,
    preemptions: 0,
    maxReclaimLatency: null,
    longestReclaim: null,
    cycles: 0,
    ...o,
  };
}

function results(policies: Record<string, PolicyResult>): SimResults {
  return {
    trace: 'hand',
    jobs: 0,
    site: site.name,
    gpus: site.totalGpus,
    load: 0.9,
    usableLoad: 0.9,
    seed: 1,
    cycleSeconds: 300,
    largeGangBoundSeconds: 0,
    rejected: {},
    entitlements: { a: 0.5, b: 0.5 },
    policies,
  };
}

describe('bounded slowdown of one job', () => {
  it('is (delay + run) / max(run, 10 s), where delay is everything but the trace runtime', () => {
    // Waited 20 s, ran 5 s: (20 + 5) / max(5, 10) = 2.5, not 25 / 5 = 5.
    expect(
      boundedSlowdown(outcome({ id: 'short', gpus: 1, submittedAt: 0, runtimeSeconds: 5, finishedAt: 25, waitSeconds: 20 }), 0),
    ).toBe(2.5);
    // Waited 500 s in two waits, lost 200 s of work to a preemption, ran 1,000 s: finished at
    // 100 + 500 + 200 + 1,000 = 1,800. Delay 700 (wait and lost work): (700 + 1000) / 1000.
    expect(
      boundedSlowdown(
        outcome({
          id: 'pre',
          gpus: 4,
          submittedAt: 100,
          runtimeSeconds: 1000,
          finishedAt: 1800,
          waitSeconds: 500,
          lostGpuSeconds: 800,
        }),
        0,
      ),
    ).toBeCloseTo(1.7, 12);
  });

  it('is at least 1: a 2-second job that never waited is not "faster than itself"', () => {
    // (0 + 2) / max(2, 10) = 0.2, raised to 1.
    expect(boundedSlowdown(outcome({ id: 'tiny', gpus: 1, submittedAt: 50, runtimeSeconds: 2, finishedAt: 52 }), 0)).toBe(1);
  });

  it('counts a job that never finished with its wait to the end of the run', () => {
    // Submitted at 4,000, never started, run ends at 10,000: (6,000 + 3,000) / 3,000.
    expect(boundedSlowdown(outcome({ id: 'stuck', gpus: 64, submittedAt: 4000, runtimeSeconds: 3000 }), 10_000)).toBe(3);
    // Submitted after the run's end (nothing else was left to finish): no negative wait.
    expect(boundedSlowdown(outcome({ id: 'late', gpus: 1, submittedAt: 10_500, runtimeSeconds: 60 }), 10_000)).toBe(1);
  });
});

describe('the tail rule', () => {
  const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  it('reports the max below 100 samples and the nearest-rank p99 from 100 on; null for none', () => {
    expect(tail([])).toBeNull();
    expect(tail([7])).toBe(7);
    expect(tail(oneTo(99))).toBe(99);
    // 100 samples: rank ceil(0.99 × 100) = 99. 200 samples: rank 198.
    expect(tail(oneTo(100))).toBe(99);
    expect(tail(oneTo(200))).toBe(198);
  });
});

describe('summarize: the tail figures of a hand-made run', () => {
  const outcomes = [
    outcome({ id: 'short', gpus: 1, submittedAt: 0, runtimeSeconds: 5, finishedAt: 25, waitSeconds: 20 }),
    outcome({ id: 'tiny', gpus: 1, submittedAt: 50, runtimeSeconds: 2, finishedAt: 52 }),
    outcome({ id: 'late', gpus: 1, submittedAt: 10_500, runtimeSeconds: 60 }),
    outcome({
      id: 'pre',
      member: 'b',
      gpus: 4,
      submittedAt: 100,
      runtimeSeconds: 1000,
      finishedAt: 1800,
      waitSeconds: 500,
      preemptions: 1,
      lostGpuSeconds: 800,
    }),
    outcome({ id: 'gang', gpus: 16, submittedAt: 0, runtimeSeconds: 2000, finishedAt: 2000 }),
    outcome({ id: 'stuck', gpus: 64, submittedAt: 4000, runtimeSeconds: 3000 }),
  ];
  // GPUs held: short 1 × 5, tiny 1 × 2, gang 16 × 2,000 for a; pre 4 × (200 lost + 1,000) for b.
  const held = [5 + 2 + 32_000, 4 * 1200];
  const s = summarize(run(outcomes, { memberGpuSeconds: held, maxReclaimLatency: 420 }), consortium, site).summary;

  it('gives each size class its worst wait (under 100 jobs) and null for a class with no job', () => {
    // 1 GPU: waits 20, 0, 0 (late: never started, clamped at the run's end). 2-8: 500. 9-72: 0
    // and 6,000 (stuck, waiting from 4,000 to the end at 10,000). No job of more than 72 GPUs.
    expect(s.p99_wait_by_size_s).toEqual({ '1': 20, '2-8': 500, '9-72': 6000, '>72': null });
  });

  it('takes the longest wait over every job, a job that never started waiting to the end', () => {
    expect(s.max_wait_s).toBe(6000);
    // The existing figures stay as they were: finished jobs only, no large gang here.
    expect(s.jobs).toBe(4);
    expect(s.max_large_gang_wait_s).toBe(0);
  });

  it('gives bounded slowdown over all jobs, the worst as the p99 under 100 jobs', () => {
    // Slowdowns: short 2.5, tiny 1, late 1, pre 1.7, gang 1, stuck 3.
    expect(s.p99_bounded_slowdown).toBe(3);
    expect(s.max_bounded_slowdown).toBe(3);
  });

  it('passes the longest reclaim through and counts busy GPU-hours as GPUs held', () => {
    expect(s.max_reclaim_latency_s).toBe(420);
    expect(s.gpu_hours_busy).toBeCloseTo((32_007 + 4800) / 3600, 12);
  });

  it('gives p99 and max apart from 100 jobs on', () => {
    // 200 one-GPU jobs of runtime 100 s, job k (1…200) waiting k × 100 s: slowdown k + 1.
    const many = Array.from({ length: 200 }, (_, i) =>
      outcome({
        id: `j${i}`,
        gpus: 1,
        submittedAt: 0,
        runtimeSeconds: 100,
        waitSeconds: (i + 1) * 100,
        finishedAt: (i + 2) * 100,
      }),
    );
    const t = summarize(run(many), consortium, site).summary;
    expect(t.p99_bounded_slowdown).toBe(199); // rank 198 of 2…201
    expect(t.max_bounded_slowdown).toBe(201);
    expect(t.p99_wait_by_size_s['1']).toBe(19_800);
    expect(t.max_wait_s).toBe(20_000);
  });

  it('gives nulls, not zeros, for a run with no job', () => {
    const e = summarize(run([], { end: 0 }), consortium, site).summary;
    expect(e.p99_wait_by_size_s).toEqual({ '1': null, '2-8': null, '9-72': null, '>72': null });
    expect(e.p99_bounded_slowdown).toBeNull();
    expect(e.max_bounded_slowdown).toBeNull();
    expect(e.max_wait_s).toBe(0);
    expect(e.gpu_hours_busy).toBe(0);
  });

  it('puts every new figure in the JSON line, rounded, nulls kept', () => {
    const line = JSON.parse(
      summaryLine(results({ hand: summarize(run(outcomes, { memberGpuSeconds: held }), consortium, site) })),
    );
    expect(line.policies.hand).toMatchObject({
      p99_wait_by_size_s: { '1': 20, '2-8': 500, '9-72': 6000, '>72': null },
      max_wait_s: 6000,
      p99_bounded_slowdown: 3,
      max_bounded_slowdown: 3,
      max_reclaim_latency_s: null,
      longest_reclaim: null,
      gpu_hours_busy: 10.2, // 36,807 GPU-seconds
    });
    // The keys tools already read are still there.
    for (const k of ['avg_jct_s', 'p99_jct_s', 'avg_wait_s', 'p99_wait_s', 'utilization', 'jain', 'gpu_hours_lost'])
      expect(line.policies.hand).toHaveProperty(k);
  });
});

describe('the figures of a real replay with a reclaim', () => {
  // a runs two 16-GPU jobs of 7,000 s on 32 GPUs (16 of them borrowed), checkpointing every
  // 1,800 s with a 60 s grace; b's 16-GPU job arrives at 2,500 and fabrik reclaims.
  const sim = (j: ReturnType<typeof job>, runtimeSeconds: number) => ({ job: j.build(), runtimeSeconds });
  const a = (id: string) => job(id).member('a').gpus(16).walltime(7200).checkpointEvery(1800).grace(60).submitted(0);
  const jobs = [sim(a('a1'), 7000), sim(a('a2'), 7000), sim(job('b1').member('b').gpus(16).walltime(3600).submitted(2500), 3000)];
  const r = simulate({ site, consortium, jobs, policy: POLICIES.fabrik });
  const s = summarize(r, consortium, site).summary;

  it('counts the lost work as delay in bounded slowdown', () => {
    const a1 = r.outcomes.find((o) => o.id === 'a1')!;
    // Preempted at 2,500, 700 s past its 1,800 s checkpoint: it is stopped right after the next
    // one, at 3,600 + 60 s of grace, and loses the grace: 60 s × 16.
    expect(a1.lostGpuSeconds).toBe(60 * 16);
    // It waits 3,660 → 6,660 (until b1 ends) and runs the 3,400 s left: finished at 10,060.
    // Delay 3,000 + 60; slowdown (3,060 + 7,000) / 7,000.
    expect(a1.finishedAt).toBe(10_060);
    expect(s.max_bounded_slowdown).toBeCloseTo(10_060 / 7000, 12);
    expect(s.max_wait_s).toBe(3000);
  });

  it('counts busy GPU-hours as the work of the trace plus the work lost (and any restart overhead)', () => {
    // 16 × (7,000 + 7,000 + 3,000) + 960 lost = 272,960 GPU-seconds.
    expect(s.gpu_hours_busy * 3600).toBeCloseTo(272_960, 6);
    // Restart overhead is the engine's to report (JobOutcome.overheadGpuSeconds, in resume mode).
    const overhead = (o: JobOutcome) => (o as JobOutcome & { overheadGpuSeconds?: number }).overheadGpuSeconds ?? 0;
    const work = r.outcomes.reduce((w, o) => w + o.gpus * o.runtimeSeconds + o.lostGpuSeconds + overhead(o), 0);
    expect(s.gpu_hours_busy * 3600).toBeCloseTo(work, 6);
  });
});

describe('the longest reclaim, attributed', () => {
  // The same replay: a borrows 16 of b's GPUs with two 7,000 s jobs; b's 16-GPU job arrives at
  // 2,500. The Slurm-like policy never takes lent GPUs back, so b waits until a's jobs end.
  const sim = (j: ReturnType<typeof job>, runtimeSeconds: number) => ({ job: j.build(), runtimeSeconds });
  const a = (id: string) => job(id).member('a').gpus(16).walltime(7200).checkpointEvery(1800).grace(60).submitted(0);
  const jobs = [sim(a('a1'), 7000), sim(a('a2'), 7000), sim(job('b1').member('b').gpus(16).walltime(3600).submitted(2500), 3000)];

  it('names the member, the stretch, and what its queue waited for an hour in', () => {
    const r = simulate({ site, consortium, jobs, policy: POLICIES.slurm });
    // Cycles run on arrivals and finishes, else every 600 s while jobs wait: 2,500, 3,100, …,
    // 6,100 (an hour in: seen), then 7,000 when a's jobs end and b1 starts.
    expect(r.maxReclaimLatency).toBe(4500);
    expect(r.longestReclaim).toEqual({
      member: 'b',
      from: 2500,
      seconds: 4500,
      seen: {
        at: 6100,
        heldGpus: 0,
        entitlementGpus: 16,
        borrowedGpus: 16,
        // The top blocked job holds the Slurm-like policy's one reservation, from a's ends.
        head: { job: 'b1', gpus: 16, reason: 'WaitingForResources', estimatedStart: 7200, holding: false },
        owed: { job: 'b1', gpus: 16, reason: 'WaitingForResources', estimatedStart: 7200, holding: false },
      },
    });
    const s = summarize(r, consortium, site).summary;
    expect(s.longest_reclaim).toEqual(r.longestReclaim);
    expect(describeLongestReclaim(s.longest_reclaim!)).toBe(
      'b, 1 h 15 min from day 1 00:41: 1 h in, it held 0 of its 16 GPUs while others borrowed 16; ' +
        'its first job in line (16 GPUs) was WaitingForResources, estimated to start 18 min later',
    );
    const line = JSON.parse(summaryLine(results({ slurm: summarize(r, consortium, site) })));
    expect(line.policies.slurm.longest_reclaim).toEqual({
      member: 'b',
      from_s: 2500,
      seconds: 4500,
      seen: {
        at_s: 6100,
        held_gpus: 0,
        entitlement_gpus: 16,
        borrowed_gpus: 16,
        head: { job: 'b1', gpus: 16, reason: 'WaitingForResources', estimated_start_s: 7200, holding: false },
        owed: { job: 'b1', gpus: 16, reason: 'WaitingForResources', estimated_start_s: 7200, holding: false },
      },
    });
  });

  it('leaves a stretch under an hour unexplained; explaining one changes no outcome', () => {
    // Fabrik takes the lent GPUs back: a1 stops after its next checkpoint (3,600) and 60 s of grace.
    const r = simulate({ site, consortium, jobs, policy: POLICIES.fabrik });
    expect(r.longestReclaim).toEqual({ member: 'b', from: 2500, seconds: 1160, seen: null });
    // The explained cycle an hour into the Slurm-like run decided nothing: b1 still starts when
    // a's jobs end at 7,000 (worked out by hand), and a's jobs are never stopped.
    const slurm = simulate({ site, consortium, jobs, policy: POLICIES.slurm });
    expect(slurm.outcomes.map((o) => [o.id, o.finishedAt, o.preemptions])).toEqual([
      ['a1', 7000, 0],
      ['a2', 7000, 0],
      ['b1', 10_000, 0],
    ]);
  });
});

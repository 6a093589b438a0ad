// The digital twin on a slice of the real Philly trace: deterministic, and every policy keeps
// the machine's invariants at every cycle.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import { gangGpus } from '../../src/core/job.js';
import { simulate } from '../../src/sim/engine.js';
import { summarize } from '../../src/sim/metrics.js';
import type { Policy } from '../../src/sim/policy.js';
import { POLICIES } from '../../src/sim/policies/index.js';
import { runStudy, runStudyInParallel, summaryLine, usableLoad } from '../../src/sim/run.js';
import { parseTrace, traceWorkload } from '../../src/sim/trace.js';
import { consortium as builtConsortium, job, site as builtSite } from '../../src/testing/builders.js';

const site = loadSite(new URL('../../sites/se-factory.yaml', import.meta.url).pathname);
const consortium = loadConsortium(new URL('../../consortia/demo.yaml', import.meta.url).pathname, site);
const philly = readFileSync(new URL('../../../shared/data/traces/philly-2017-10-02-to-10-15.csv', import.meta.url), 'utf8');
/** The first 1,500 jobs of the two-week window: a busy day and a half at load 0.9. */
const slice = parseTrace(philly.split('\n').slice(0, 1501).join('\n'), 'philly-slice');

/** Wraps a policy to check, at every cycle, what it was given and what it decided. */
function checked(policy: Policy, violations: string[]): Policy {
  return {
    ...policy,
    cycle(state, now, options) {
      const used = new Int32Array(state.site.nodes.length);
      for (const j of state.running) for (const a of j.allocation) used[a.node] += a.gpus;
      const result = policy.cycle(state, now, options);
      const pending = new Map(state.pending.map((j) => [j.id, j]));
      for (const d of result.decisions) {
        if (d.kind !== 'start') continue;
        const job = pending.get(d.job);
        if (!job) violations.push(`${now}: start of ${d.job}, which is not pending`);
        const nodes = new Set(d.allocation.map((a) => a.node));
        if (nodes.size !== d.allocation.length) violations.push(`${now}: ${d.job} twice on a node`);
        if (job && d.allocation.reduce((s, a) => s + a.gpus, 0) !== gangGpus(job.gang))
          violations.push(`${now}: ${d.job} not whole`);
        for (const a of d.allocation) {
          used[a.node] += a.gpus;
          if (state.site.nodes[a.node].state !== 'up') violations.push(`${now}: ${d.job} on a node that is not up`);
        }
      }
      used.forEach((g, n) => {
        if (g > state.site.nodes[n].gpus) violations.push(`${now}: node ${n} over capacity (${g})`);
      });
      return result;
    },
  };
}

describe('the digital twin on a slice of the Philly trace', () => {
  const { jobs } = traceWorkload(slice, site, consortium, { load: 0.9, seed: 1 });

  for (const name of ['fifo', 'slurm', 'fabrik']) {
    it(`${name}: never over-allocates, starts gangs whole on up nodes, and finishes every job`, () => {
      const violations: string[] = [];
      const run = simulate({
        site,
        consortium,
        jobs,
        policy: checked(POLICIES[name], violations),
        nodeEvents: [
          { at: 3600, node: 'sp1-r02-t03', state: 'down' },
          { at: 7200, node: 'sp1-r02-t03', state: 'up' },
          { at: 5000, node: 'sp1-r05-t01', state: 'draining' },
        ],
      });
      expect(violations).toEqual([]);
      expect(run.outcomes.filter((o) => o.finishedAt === null)).toEqual([]);
      for (const o of run.outcomes) expect(o.finishedAt! - o.submittedAt).toBeGreaterThanOrEqual(o.runtimeSeconds);
      const s = summarize(run, consortium, site).summary;
      expect(s.utilization).toBeGreaterThan(0);
      expect(s.utilization).toBeLessThanOrEqual(1);
      expect(s.jain).toBeGreaterThan(0);
      expect(s.jain).toBeLessThanOrEqual(1);
    });
  }

  it('gives the same results twice for the same seed', () => {
    const a = runStudy({ site, consortium, trace: slice, policies: ['slurm', 'fabrik'], seed: 7 });
    const b = runStudy({ site, consortium, trace: slice, policies: ['slurm', 'fabrik'], seed: 7 });
    expect(a).toEqual(b);
    const last = summaryLine(a);
    expect(JSON.parse(last)).toMatchObject({
      trace: 'philly-slice',
      jobs: 1500,
      policies: { slurm: { avg_jct_s: expect.any(Number) } },
    });
  });

  it('orders FIFO behind a backfilling policy, as the literature reports', () => {
    const r = runStudy({ site, consortium, trace: slice, policies: ['fifo', 'slurm'], seed: 1, load: 1.2 });
    expect(r.policies.fifo.summary.avg_jct_s).toBeGreaterThan(r.policies.slurm.summary.avg_jct_s);
  });
});

describe('a study in worker threads', () => {
  it('gives exactly the results of the same study in one thread', async () => {
    const o = { site, consortium, trace: slice, policies: ['fifo', 'fabrik'], seed: 3 };
    expect(await runStudyInParallel(o)).toEqual(runStudy(o));
  });
});

describe('the queue depth', () => {
  it('hands every cycle all the jobs its policy looks at: heads of the queues give the run of whole queues', () => {
    // At load 1.5 queues grow far beyond a depth of 4 per member.
    const { jobs } = traceWorkload(slice, site, consortium, { load: 1.5, seed: 1 });
    const depth = 4;
    for (const name of ['fifo', 'slurm', 'fabrik']) {
      const policy = POLICIES[name];
      const heads = simulate({ site, consortium, jobs, policy, queueDepth: depth });
      const whole = simulate({
        site,
        consortium,
        jobs,
        policy: { ...policy, cycle: (state, now, options) => policy.cycle(state, now, { ...options, queueDepth: depth }) },
        queueDepth: Infinity,
      });
      expect(Math.max(...whole.samples.map((s) => s.queueLength)), name).toBeGreaterThan(depth * consortium.members.length);
      expect(heads.outcomes, name).toEqual(whole.outcomes);
    }
  });
});

describe("the baselines honour the consortium's limits", () => {
  const twoRacks = builtSite().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build();
  const limited = builtConsortium()
    .member('capped', { entitlement: 8, borrowingLimit: 0 })
    .member('other', { entitlement: 8 })
    .build();
  for (const name of ['fifo', 'slurm']) {
    it(`${name}: a member at its cap waits (QuotaExhausted) and blocks no one`, () => {
      const pending = [
        job('c1').member('capped').gpus(8).submitted(0).build(),
        job('c2').member('capped').gpus(4).submitted(1).build(),
        job('o1').member('other').gpus(8).submitted(2).build(),
      ];
      const r = POLICIES[name].cycle({ site: twoRacks, consortium: limited, running: [], pending, usageGpuHours: {} }, 0);
      expect(r.decisions.filter((d) => d.kind === 'start').map((d) => d.job)).toEqual(['c1', 'o1']);
      expect(r.pending.find((p) => p.job === 'c2')?.reason).toBe('QuotaExhausted');
    });
  }
});

describe('reclaim latency', () => {
  it('counts only borrowing a member could take back: a sovereign member waiting on its own racks is not waiting for a reclaim', () => {
    // Rack sp1-r02 (16 GPUs) is the sovereign zone; 'open' borrows on the general rack meanwhile.
    const zoned = builtSite().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).zone('sovereign', 'sp1-r02').build();
    const c = builtConsortium()
      .member('sov', { entitlement: 16, lendingLimit: 0, borrowingLimit: 0, zone: 'sovereign', isolation: 'required' })
      .member('open', { entitlement: 8 })
      .build();
    const sim = (j: ReturnType<typeof job>, runtimeSeconds: number) => ({ job: j.build(), runtimeSeconds });
    const jobs = [
      // sov holds 8 of its 16 GPUs for an hour; its 16-GPU gang waits for them: short of its share.
      sim(job('sov-a').member('sov').gpus(8).walltime(3600).submitted(0), 3600),
      sim(job('sov-b').member('sov').gpus(16).walltime(3600).submitted(60), 3600),
      // open runs 16 GPUs on an 8-GPU entitlement: it borrows, but not where sov could run.
      sim(job('open-a').member('open').gpus(16).walltime(7200).submitted(0), 7200),
    ];
    const run = simulate({ site: zoned, consortium: c, jobs, policy: POLICIES.fabrik });
    expect(run.outcomes.find((o) => o.id === 'sov-b')!.waitSeconds).toBeGreaterThan(3000);
    expect(run.maxReclaimLatency).toBeNull();
  });
});

describe('the load on the GPUs members can use', () => {
  // 32 GPUs; `vault` may use 16 and lends none of them, `lab` may use 16.
  const small = builtSite().racksPerSuperpod(2).traysPerRack(2).gpusPerTray(8).build();
  const jobsOf = (member: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      job: job(`${member}-${i}`)
        .member(member)
        .gpus(4)
        .submitted(i * 3600)
        .build(),
      runtimeSeconds: 3600,
    }));

  it('leaves out GPUs an owner never lends and leaves idle, and only those', () => {
    const c = builtConsortium().member('vault', { entitlement: 16, lendingLimit: 0 }).member('lab', { entitlement: 16 }).build();
    // lab offers 4 GPUs on average over 10 hours (11 jobs of 4 GPU-hours); vault nothing: 16 GPUs count for no one.
    const lab = jobsOf('lab', 11);
    expect(usableLoad(lab, small, c)).toBeCloseTo((11 * 4 * 3600) / (10 * 3600 * 16), 9);
    // vault's own work uses its GPUs: what it offers (2 GPUs on average) is no longer idle.
    const vault = jobsOf('vault', 5).map((j) => ({ ...j, job: { ...j.job, submittedAt: j.job.submittedAt * 2 } }));
    expect(usableLoad([...lab, ...vault], small, c)).toBeCloseTo((16 * 4 * 3600) / (10 * 3600 * (32 - 14)), 9);
    // A member that lends everything takes nothing away.
    const open = builtConsortium().member('vault', { entitlement: 16 }).member('lab', { entitlement: 16 }).build();
    expect(usableLoad(lab, small, open)).toBeCloseTo((11 * 4 * 3600) / (10 * 3600 * 32), 9);
  });
});

// Estimated starts are honest, also behind the queue depth: a job is never promised an earlier
// start than a job of its member that must start before it, a job its member may never run gets
// no start time, and a deep queue is played out at the rate its member's limit allows.
//
// "Must start before it": ahead of it in the cycle's queue (a smaller queue position) among its
// member's waiting jobs, and asking for at least as many GPUs. A smaller job ahead may
// legitimately start later (backfill starts the small job that fits), a larger one may not.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gangGpus, type PendingJob, type RunningJob } from '../../src/core/job.js';
import { loadConsortium } from '../../src/config/consortium.js';
import { loadSite } from '../../src/config/site.js';
import { cycle } from '../../src/scheduler/cycle.js';
import { mostGpus } from '../../src/scheduler/limits.js';
import { DEFAULT_CONFIG, type Explanation } from '../../src/scheduler/types.js';
import { consortium, job, onNodes, site } from '../../src/testing/builders.js';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : 20_261_207;

/**
 * Every pair (a ahead of b, same member, a at least as large) where b is promised an earlier
 * start; a job that running jobs are being stopped for starts when they stop, and is not one.
 */
function earlierThanAhead(pending: readonly Explanation[], jobs: ReadonlyMap<string, PendingJob>): string[] {
  const bad: string[] = [];
  const byMember = new Map<string, { gpus: number; start: number; id: string }[]>();
  for (const e of [...pending].sort((x, y) => x.position - y.position)) {
    const j = jobs.get(e.job)!;
    const ahead = byMember.get(j.member) ?? [];
    byMember.set(j.member, ahead);
    if (e.estimatedStart === null || e.reason === 'WaitingForReclaim') continue;
    const gpus = gangGpus(j.gang);
    for (const a of ahead)
      if (a.gpus >= gpus && a.start > e.estimatedStart)
        bad.push(`${e.job} (${gpus} GPUs) at ${e.estimatedStart} before ${a.id} (${a.gpus} GPUs) at ${a.start}`);
    ahead.push({ gpus, start: e.estimatedStart, id: e.job });
  }
  return bad;
}

describe('estimated starts', () => {
  it('never promise a job an earlier start than a job of its member that must start before it', () => {
    const s = site().racksPerSuperpod(2).traysPerRack(2).gpusPerTray(4).build(); // 16 GPUs, nodes 0-3
    const members = ['a', 'b', 'c'];
    const arb = fc.record({
      entitlement: fc.tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 })),
      borrowing: fc.tuple(
        fc.option(fc.integer({ min: 0, max: 8 })),
        fc.option(fc.integer({ min: 0, max: 8 })),
        fc.option(fc.integer({ min: 0, max: 8 })),
      ),
      running: fc.array(
        fc.record({
          member: fc.nat(2),
          node: fc.nat(3),
          gpus: fc.integer({ min: 1, max: 4 }),
          left: fc.integer({ min: 1, max: 7200 }),
        }),
        {
          maxLength: 6,
        },
      ),
      pending: fc.array(
        fc.record({
          member: fc.nat(2),
          gpus: fc.constantFrom(1, 2, 4, 8, 12),
          walltime: fc.integer({ min: 60, max: 10_000 }),
          submittedAt: fc.integer({ min: 0, max: 1000 }),
          held: fc.boolean(),
        }),
        { maxLength: 40 },
      ),
      queueDepth: fc.integer({ min: 1, max: 12 }),
    });
    fc.assert(
      fc.property(arb, (x) => {
        const cb = consortium();
        members.forEach((m, i) => cb.member(m, { entitlement: x.entitlement[i], borrowingLimit: x.borrowing[i] }));
        const c = cb.build();
        const now = 2000;
        const used = new Array<number>(4).fill(0);
        const running: RunningJob[] = [];
        x.running.forEach((r, i) => {
          const gpus = Math.min(r.gpus, 4 - used[r.node]);
          if (gpus <= 0) return;
          used[r.node] += gpus;
          running.push(
            job(`r${i}`)
              .member(members[r.member])
              .gpus(gpus)
              .walltime(r.left + 100)
              .running(now - 100, onNodes([r.node], gpus)),
          );
        });
        const pending = x.pending.map((p, i) =>
          job(`p${i}`)
            .member(members[p.member])
            .gpus(p.gpus)
            .walltime(p.walltime)
            .submitted(p.submittedAt)
            .held(p.held ? p.submittedAt : (null as unknown as number))
            .build(),
        );
        const result = cycle({ site: s, consortium: c, running, pending, usageGpuHours: {} }, now, {
          ...DEFAULT_CONFIG,
          queueDepth: x.queueDepth,
        });
        const byId = new Map(pending.map((p) => [p.id, p]));
        expect(earlierThanAhead(result.pending, byId)).toEqual([]);
        for (const e of result.pending) {
          const j = byId.get(e.job)!;
          const member = c.members.find((m) => m.id === j.member)!;
          // Beyond the member's limits: said so, and no start time.
          if (gangGpus(j.gang) > mostGpus(member, s))
            expect(e).toMatchObject({ reason: 'ExceedsMemberLimit', estimatedStart: null });
          else if (e.estimatedStart !== null) expect(e.estimatedStart).toBeGreaterThanOrEqual(now);
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('play a deep queue out at the rate its member may run it, behind the queue depth too', () => {
    // The case: 50,000 one-GPU jobs of one member on se-factory; pharma may hold 345 + 288.
    const s = loadSite(new URL('../../sites/se-factory.yaml', import.meta.url).pathname);
    const c = loadConsortium(new URL('../../consortia/demo.yaml', import.meta.url).pathname, s);
    const pharma = c.members.find((m) => m.id === 'pharma')!;
    const most = mostGpus(pharma, s);
    const pending = Array.from({ length: 50_000 }, (_, i) =>
      job(String(i))
        .member('pharma')
        .gpus(1)
        .walltime(3600)
        .submitted(i / 1000)
        .build(),
    );
    const config = { ...DEFAULT_CONFIG, queueDepth: 1000 };
    const first = cycle({ site: s, consortium: c, running: [], pending, usageGpuHours: {} }, 100, config);
    const starts = first.decisions.filter((d) => d.kind === 'start');
    expect(starts).toHaveLength(most);
    const started = new Set(starts.map((d) => d.job));
    const running = starts.map((d) =>
      job(d.job)
        .member('pharma')
        .gpus(1)
        .walltime(3600)
        .running(100, d.kind === 'start' ? [...d.allocation] : []),
    );
    const now = 101;
    const result = cycle(
      { site: s, consortium: c, running, pending: pending.filter((p) => !started.has(p.id)), usageGpuHours: {} },
      now,
      config,
    );
    const last = result.pending.find((e) => e.job === '49999')!;
    expect(last.reason).toBe('Priority');
    // Ahead of it: 49,999 − 633 jobs, 633 an hour: it starts in the 78th hour after the first ones end.
    const hours = Math.ceil((49_999 - most + 1) / most);
    expect(last.estimatedStart).toBe(100 + hours * 3600);
    expect(earlierThanAhead(result.pending, new Map(pending.map((p) => [p.id, p])))).toEqual([]);
  });

  it('give a job larger than its member may ever hold no start time, with a reason that says so', () => {
    // The README's workstation: 4 GPUs, pharma's share 1.2 GPUs and it may borrow 1 more.
    const s = site().racksPerSuperpod(1).traysPerRack(1).gpusPerTray(4).build();
    const c = consortium()
      .member('pharma', { entitlement: 1.2, borrowingLimit: 1 })
      .member('telecom', { entitlement: 0.8, borrowingLimit: 1 })
      .build();
    const big = job('big').member('pharma').gpus(4).build();
    const small = job('small').member('pharma').gpus(1).submitted(1).build();
    for (const now of [10, 1000, 100_000]) {
      const r = cycle({ site: s, consortium: c, running: [], pending: [big, small], usageGpuHours: {} }, now);
      expect(r.decisions).toMatchObject([{ kind: 'start', job: 'small' }]);
      expect(r.pending).toEqual([{ job: 'big', reason: 'ExceedsMemberLimit', position: 1, estimatedStart: null }]);
    }
  });
});

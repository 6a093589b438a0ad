// The decision applier over cycles of random states: random sites, consortia and job streams go
// through the real cycle, and the applier's records are checked against each decision and
// carried into the next cycle (jobs finish, grace periods end), as the server and the
// simulators carry them.
//
// Reproduce a failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run <this file>.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gangGpusOf, requeued, type PendingJob, type RunningJob } from '../../src/core/job.js';
import type { NodeState } from '../../src/core/site.js';
import { applyDecisions, UnknownDecisionJobError } from '../../src/scheduler/apply.js';
import { cycle } from '../../src/scheduler/cycle.js';
import { DEFAULT_CONFIG } from '../../src/scheduler/types.js';
import { consortium, job, site } from '../../src/testing/builders.js';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : 20_261_207;
const MEMBERS = ['pharma', 'telecom', 'bank'];

const scenario = fc.record({
  entitlements: fc.tuple(fc.nat(12), fc.nat(12), fc.nat(12)),
  borrowing: fc.tuple(fc.option(fc.nat(8)), fc.option(fc.nat(8)), fc.option(fc.nat(8))),
  jobs: fc.array(
    fc.record({
      member: fc.nat(2),
      gpus: fc.constantFrom(1, 2, 4, 8),
      priority: fc.constantFrom('training' as const, 'batch' as const, 'inference' as const),
      walltime: fc.integer({ min: 60, max: 4000 }),
      runtime: fc.integer({ min: 30, max: 4000 }),
      submitted: fc.integer({ min: 0, max: 3000 }),
      checkpoint: fc.option(fc.integer({ min: 60, max: 1200 })),
      grace: fc.integer({ min: 0, max: 120 }),
    }),
    { minLength: 1, maxLength: 30 },
  ),
  failure: fc.option(fc.record({ node: fc.nat(7), at: fc.integer({ min: 0, max: 3000 }) })),
  step: fc.integer({ min: 30, max: 400 }),
});

describe('the decision applier', () => {
  it('makes exactly the records each decision defines, and carried over cycles keeps every job once', () => {
    fc.assert(
      fc.property(scenario, (x) => {
        const s = site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build(); // 32 GPUs, 8 nodes
        const cb = consortium();
        MEMBERS.forEach((m, i) => cb.member(m, { entitlement: x.entitlements[i], borrowingLimit: x.borrowing[i] }));
        const c = cb.build();
        const all: PendingJob[] = x.jobs.map((j, i) => {
          const b = job(`j${i}`)
            .member(MEMBERS[j.member])
            .gpus(j.gpus)
            .priority(j.priority)
            .walltime(j.walltime)
            .submitted(j.submitted)
            .grace(j.grace);
          return (j.checkpoint === null ? b : b.checkpointEvery(j.checkpoint)).build();
        });
        const runtime = new Map(x.jobs.map((j, i) => [`j${i}`, Math.min(j.runtime, j.walltime)]));
        let pending: PendingJob[] = [];
        let running: RunningJob[] = [];
        const finished = new Set<string>();
        let site_ = s;
        for (let now = 0; now <= 8000; now += x.step) {
          // The world moves: arrivals, finishes, grace periods that end, a node that fails.
          pending.push(...all.filter((j) => j.submittedAt <= now && j.submittedAt > now - x.step));
          const still: RunningJob[] = [];
          for (const r of running) {
            if (r.preempting && r.preempting.graceEndsAt <= now) pending.push(requeued(r));
            else if (!r.preempting && r.startedAt + runtime.get(r.id)! <= now) finished.add(r.id);
            else still.push(r);
          }
          running = still;
          if (x.failure && now >= x.failure.at)
            site_ = { ...s, nodes: s.nodes.map((n, i) => (i === x.failure!.node ? { ...n, state: 'down' as NodeState } : n)) };

          const state = { site: site_, consortium: c, running, pending, usageGpuHours: {} };
          const decisions = cycle(state, now, DEFAULT_CONFIG).decisions;
          const a = applyDecisions({ pending, running }, decisions, now);

          // Each record is what its decision says, and nothing else about the job changed.
          const byId = new Map([...pending, ...running].map((j) => [j.id, j]));
          const reserved = new Set<string>();
          let starts = 0;
          let preempts = 0;
          let requeues = 0;
          for (const d of decisions) {
            if (d.kind === 'start') {
              const r = a.started[starts++];
              const { holdSince: _h, ...spec } = byId.get(d.job) as PendingJob;
              expect(r).toEqual({ ...spec, startedAt: now, allocation: d.allocation, lastCheckpointAt: null, preempting: null });
            } else if (d.kind === 'preempt') {
              const r = a.preempting[preempts++];
              expect(r).toEqual({
                ...byId.get(d.job),
                preempting: { since: now, graceEndsAt: now + d.graceSeconds, by: d.for, reason: d.reason },
              });
            } else if (d.kind === 'requeue') {
              expect(a.requeued[requeues++]).toEqual(requeued(byId.get(d.job) as RunningJob));
            } else {
              reserved.add(d.job);
              expect(a.reservedStart.get(d.job)).toBe(d.start);
            }
          }
          expect([a.started.length, a.preempting.length, a.requeued.length]).toEqual([starts, preempts, requeues]);
          // Holds: set for a job that gained a reservation, cleared for one that lost it, only those.
          const startedIds = new Set(a.started.map((r) => r.id));
          const expectedHolds = pending
            .filter((p) => !startedIds.has(p.id) && reserved.has(p.id) !== (p.holdSince != null))
            .map((p) => ({ ...p, holdSince: reserved.has(p.id) ? now : null }));
          expect(a.holds).toEqual(expectedHolds);

          // Carried into the next cycle, as a caller does.
          const gone = new Set([...startedIds, ...a.requeued.map((p) => p.id)]);
          const holds = new Map(a.holds.map((p) => [p.id, p]));
          const stopping = new Map(a.preempting.map((r) => [r.id, r]));
          pending = [...pending.filter((p) => !gone.has(p.id)).map((p) => holds.get(p.id) ?? p), ...a.requeued];
          running = [...running.filter((r) => !gone.has(r.id)).map((r) => stopping.get(r.id) ?? r), ...a.started];

          // Every job is in exactly one place; a pending job holds only what this cycle reserved.
          const ids = [...pending.map((p) => p.id), ...running.map((r) => r.id), ...finished];
          expect(new Set(ids).size).toBe(ids.length);
          expect(ids.length).toBe(all.filter((j) => j.submittedAt <= now).length);
          for (const p of pending) expect(p.holdSince != null).toBe(reserved.has(p.id));
          for (const r of running) expect(gangGpusOf(r)).toBeGreaterThan(0);
        }
      }),
      { seed: SEED, numRuns: 120 },
    );
  });

  it('refuses a decision about a job it was not given', () => {
    const p = job('p').build();
    const r = job('r').running(0, [{ node: 0, gpus: 1 }]);
    const cases = [
      { kind: 'start', job: 'x', allocation: [], borrowing: false },
      { kind: 'preempt', job: 'p', for: 'q', reason: 'Priority', graceSeconds: 0, lostGpuHours: 0 },
      { kind: 'requeue', job: 'p', reason: 'NodeFailure', nodes: [0] },
      { kind: 'reserve', job: 'r', start: 5, allocation: [] },
    ] as const;
    for (const d of cases) expect(() => applyDecisions({ pending: [p], running: [r] }, [d], 0)).toThrow(UnknownDecisionJobError);
  });
});

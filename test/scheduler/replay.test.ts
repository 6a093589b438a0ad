// Production and the simulator run the same scheduler: the server's scheduling loop (its
// controller, on a store, with the simulated executor on a virtual clock) and the event simulator
// get the same submissions, and every job starts at the same time on the same GPUs of the same
// nodes. Both take their job records from one applier (src/scheduler/apply.ts); this test is what
// says they agree end to end, preemptions, reclaim and reservations included.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { SubmitRequest } from '../../src/api/contract.js';
import type { PendingJob } from '../../src/core/job.js';
import { createSimulatedExecutor, simulatedNodesFor } from '../../src/executors/simulated.js';
import { Controller, toPending } from '../../src/server/controller.js';
import { simulate, type SimJob } from '../../src/sim/engine.js';
import type { Policy } from '../../src/sim/policy.js';
import { POLICIES } from '../../src/sim/policies/index.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { consortium, site } from '../../src/testing/builders.js';
import { VirtualClock } from '../executors/virtual-clock.js';

const SITE = site().racksPerSuperpod(2).traysPerRack(2).gpusPerTray(4).build(); // 16 GPUs, 4 nodes
const CONSORTIUM = consortium()
  .member('pharma', { entitlement: 10, borrowingLimit: 6 })
  .member('telecom', { entitlement: 6, borrowingLimit: 4 })
  .build();
const T0 = 1_700_000_000;

/** The submissions: [member, GPUs, run time, walltime, submitted after T0, grace]. */
const SUBMISSIONS: [string, number, number, number, number, number][] = [
  ['pharma', 8, 3000, 4000, 0, 60],
  ['pharma', 4, 1200, 2000, 0, 60],
  ['pharma', 4, 5000, 6000, 0, 60],
  ['pharma', 2, 600, 900, 10, 60],
  ['pharma', 1, 300, 600, 10, 60],
  ['pharma', 8, 2000, 2500, 20, 60],
  // Telecom's demand returns within its entitlement while pharma borrows: reclaim.
  ['telecom', 4, 900, 1200, 400, 30],
  ['telecom', 2, 1500, 1800, 400, 30],
  ['telecom', 4, 700, 1000, 1300, 30],
  ['pharma', 16, 800, 1000, 1400, 60],
  ['pharma', 1, 200, 400, 1500, 60],
  ['telecom', 1, 400, 500, 1600, 30],
];

interface Start {
  readonly at: number;
  /** `node:GPUs` for each node of the gang, sorted. */
  readonly where: string;
}

const dir = mkdtempSync(join(tmpdir(), 'fabrik-replay-'));
let store: Store | undefined;
afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The server's run: submissions at their times, executor exits at theirs, a cycle after each. */
async function serverRun(): Promise<Map<string, Start[]>> {
  const clock = new VirtualClock(T0);
  store = await openStore(`sqlite:${join(dir, 'fabrik.db')}`);
  await store.syncMembers(CONSORTIUM.members.map((m) => ({ id: m.id, name: m.name, projects: m.projects })));
  const executor = createSimulatedExecutor({ nodes: simulatedNodesFor(SITE), now: clock.now, schedule: clock.schedule });
  const controller = new Controller({
    store,
    executor,
    site: SITE,
    consortium: CONSORTIUM,
    dataDir: dir,
    now: clock.now,
    log: pino({ level: 'silent' }),
    // Cycles come from events only (the virtual clock does not move the timer).
    cycleSeconds: 3600,
    minCycleGapMs: 0,
  });
  const loop = controller as unknown as { queue: Promise<unknown>; kicked: boolean };
  /** Until the loop has nothing left to do: no cycle asked for, no step running. */
  const settle = async () => {
    for (;;) {
      const q = loop.queue;
      await q;
      await new Promise((r) => setTimeout(r, 5));
      if (q === loop.queue && !loop.kicked) return;
    }
  };
  await controller.start();
  await settle();
  const events = [...new Set(SUBMISSIONS.map((s) => s[4]))].sort((a, b) => a - b);
  let i = 0;
  for (const at of events) {
    await advanceTo(T0 + at);
    const jobs = [];
    for (; i < SUBMISSIONS.length && SUBMISSIONS[i][4] === at; i++) jobs.push(newJob(i));
    const outcome = await store.submit({ jobs, idempotency: null });
    if (outcome.kind !== 'created') throw new Error('submission refused');
    controller.submitted(outcome.jobs);
    await settle();
  }
  // Then every executor event in time order, a settled loop after each.
  async function advanceTo(t: number) {
    while (clock.now() < t) {
      const before = clock.now();
      await clock.advance(Math.min(t - before, nextTimer(clock) - before));
      await settle();
    }
  }
  while (clock.pending > 0 || (await store.activeJobs()).length > 0) {
    if (clock.pending === 0) throw new Error('jobs wait, but nothing will happen');
    await advanceTo(nextTimer(clock));
  }
  const starts = new Map<string, Start[]>();
  for (const j of await store.jobs({ limit: 1000 } as never)) {
    const list: Start[] = [];
    for (const e of await store.events(j.id)) {
      if (e.kind !== 'started') continue;
      const placement = (e.data as { placement: { node: string; gpus: number[] }[] }).placement;
      list.push({
        at: e.at - T0,
        where: placement
          .map((p) => `${p.node}:${p.gpus.length}`)
          .sort()
          .join(' '),
      });
    }
    starts.set(j.id, list);
  }
  await controller.close();
  return starts;
}

function nextTimer(clock: VirtualClock): number {
  const timers = (clock as unknown as { timers: { at: number; cancelled: boolean }[] }).timers.filter((t) => !t.cancelled);
  return Math.min(...timers.map((t) => t.at));
}

function newJob(i: number) {
  const [member, gpus, runtime, walltime, , grace] = SUBMISSIONS[i];
  const request = SubmitRequest.parse({
    command: ['true'],
    gpus,
    walltimeSeconds: walltime,
    gracePeriodSeconds: grace,
    env: { FABRIK_SIMULATED_SECONDS: String(runtime) },
  });
  const { member: _m, project: _p, name, array: _a, ...rest } = request;
  return {
    name,
    member,
    project: `${member}-default`,
    user: 'replay',
    request: rest,
    gpus,
    submittedAt: T0 + SUBMISSIONS[i][4],
    arrayTaskId: null,
    arrayThrottle: null,
  };
}

/** The simulator's run of the same submissions, with a cycle at every event (as the server's loop). */
function simulatorRun(serverJobs: ReadonlyMap<string, PendingJob>): Map<string, Start[]> {
  const starts = new Map<string, Start[]>();
  const recording: Policy = {
    ...POLICIES.fabrik,
    cycle(state, now, options) {
      const result = POLICIES.fabrik.cycle(state, now, options);
      for (const d of result.decisions) {
        if (d.kind !== 'start') continue;
        const where = d.allocation
          .map((a) => `${SITE.nodes[a.node].name}:${a.gpus}`)
          .sort()
          .join(' ');
        starts.set(d.job, [...(starts.get(d.job) ?? []), { at: now - T0, where }]);
      }
      return result;
    },
  };
  const jobs: SimJob[] = [...serverJobs.values()].map((job, i) => ({ job, runtimeSeconds: SUBMISSIONS[i][2] }));
  const run = simulate({ site: SITE, consortium: CONSORTIUM, jobs, policy: recording, cycleSeconds: 0, idleCycleSeconds: 1e9 });
  expect(run.outcomes.every((o) => o.finishedAt !== null)).toBe(true);
  return starts;
}

describe('a server run replayed through the simulator', () => {
  it('starts every job at the same time on the same GPUs', async () => {
    const server = await serverRun();
    // The same jobs as the scheduler saw them in the server (ids, submission times, requests).
    const pending = new Map<string, PendingJob>();
    // Each as it was submitted: no hold, nobody has preempted it yet, so it has no place to keep.
    for (const j of await store!.jobs({ limit: 1000 } as never))
      pending.set(j.id, { ...toPending(j), holdSince: null, preemptedBy: undefined, keepsPlace: undefined });
    const sorted = new Map([...pending.entries()].sort((a, b) => Number(a[0]) - Number(b[0])));
    const sim = simulatorRun(sorted);
    expect(Object.fromEntries(sim)).toEqual(Object.fromEntries(server));
    // The run exercised what the applier defines: a preemption (requeue and restart), and holds.
    expect([...server.values()].some((s) => s.length > 1)).toBe(true);
  }, 60_000);
});

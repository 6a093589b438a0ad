// A job stopped through no choice of its member's order (reclaimed by another member) waits again
// by its submission time, ahead of its member's later work; one that yielded to shorter work of
// its own class (service) goes back by its remaining work. The server stores which, as the
// simulator's `requeued` decides it, and hands it to the scheduler.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import type { PendingJob } from '../../src/core/job.js';
import { sortMemberQueue } from '../../src/scheduler/cycle.js';
import { DEFAULT_CONFIG } from '../../src/scheduler/types.js';
import { preemptionReason, toPending } from '../../src/server/controller.js';
import { lendingPair, type TestServer } from './helpers.js';

let t: TestServer;
let tel: string;
let pha: string;

beforeAll(async () => {
  ({ server: t, telecom: tel, pharma: pha } = await lendingPair());
});
const ACTIVE = 'pending,starting,running,preempting';
afterEach(async () => {
  const all = await t.call<{ jobs: JobView[] }>(t.operator, 'GET', `/v1/jobs?state=${ACTIVE}`);
  for (const j of all.body.jobs) await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`);
  await t.waitFor(
    'every job to end',
    async () => (await t.call<{ jobs: JobView[] }>(t.operator, 'GET', `/v1/jobs?state=${ACTIVE}`)).body.jobs.length === 0,
  );
});
afterAll(() => t.close());

const get = async (token: string, id: string) => (await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;
const submit = async (token: string, name: string, walltimeSeconds: number) =>
  (
    await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', {
      name,
      command: ['sleep', '120'],
      gpus: 2,
      walltimeSeconds,
      gracePeriodSeconds: 1,
    })
  ).body.jobs[0].id;
const running = (token: string, ...ids: string[]) =>
  t.waitFor(`${ids.join(', ')} to run`, async () =>
    (await Promise.all(ids.map((id) => get(token, id)))).every((j) => j.state === 'running'),
  );
const preemptedFor = async (token: string, id: string) =>
  (await t.call<{ events: { kind: string; reason: string | null }[] }>(token, 'GET', `/v1/jobs/${id}/events`)).body.events.find(
    (e) => e.kind === 'preempting',
  )?.reason;

describe('a requeued job keeps its place unless it yielded for service', () => {
  it('a reclaimed job keeps its place, and starts ahead of shorter work its member submitted after it', async () => {
    const borrowers = [await submit(tel, 'a', 3600), await submit(tel, 'x', 3600)];
    await running(tel, ...borrowers);
    const owner = await submit(pha, 'own', 3600);
    await running(pha, owner);
    const reclaimed = await t.waitFor('a borrower requeued', async () => {
      for (const id of borrowers) {
        const j = await get(tel, id);
        if (j.state === 'pending' && j.requeues === 1) return id;
      }
      return undefined;
    });
    const other = borrowers.find((id) => id !== reclaimed)!;
    expect(await preemptedFor(tel, reclaimed)).toBe('Reclaim');
    expect((await t.server.store.job(reclaimed))!.keepsPlace).toBe(true);
    expect(t.server.controller.activeJob(reclaimed)!.keepsPlace).toBe(true);

    // Shorter, submitted later: by remaining work alone it would go first (and it is too long
    // to make the running job yield to it for service). The member's order, as the controller
    // hands both to the scheduler (without the hold the reclaimed job may have gained meanwhile):
    const later = await submit(tel, 'later', 2400);
    const pending = (id: string) => ({ ...toPending(t.server.controller.activeJob(id)!), holdSince: null });
    const order = (...jobs: PendingJob[]) => sortMemberQueue(jobs, 72, DEFAULT_CONFIG).map((j) => j.id);
    expect(order(pending(later), pending(reclaimed))).toEqual([reclaimed, later]);
    expect(order(pending(later), { ...pending(reclaimed), keepsPlace: false })).toEqual([later, reclaimed]);

    // Telecom's two GPUs come free: the reclaimed job takes them.
    await t.call(tel, 'POST', `/v1/jobs/${other}/cancel`);
    await running(tel, reclaimed);
    expect((await get(tel, later)).state).toBe('pending');
  });

  it('a job that yielded to shorter work of its own class goes back by its remaining work', async () => {
    const long = await submit(tel, 'long', 3600);
    const owner = await submit(pha, 'own', 3600);
    await running(tel, long);
    await running(pha, owner);
    // Telecom is at its entitlement and the node is full: the short job's GPUs come from its own long one.
    const short = await submit(tel, 'short', 60);
    await running(tel, short);
    const yielded = await get(tel, long);
    expect(yielded).toMatchObject({ state: 'pending', requeues: 1 });
    expect(await preemptedFor(tel, long)).toBe('Service');
    expect((await t.server.store.job(long))!.keepsPlace).toBe(false);
    expect(t.server.controller.activeJob(long)!.keepsPlace).toBe(false);
  });
});

describe('preemptionReason', () => {
  it('reads the preemption reason back from the stored job reason (after a restart)', () => {
    expect(preemptionReason('Preempted (Reclaim) for job 7')).toBe('Reclaim');
    expect(preemptionReason('Preempted (Priority) for job 12')).toBe('Priority');
    expect(preemptionReason('Preempted (Service) for job 3')).toBe('Service');
    expect(preemptionReason('NodeFailure')).toBe('NodeFailure');
    for (const other of [null, 'CancelRequested', 'Preempted for job 3', '']) expect(preemptionReason(other)).toBeUndefined();
  });
});

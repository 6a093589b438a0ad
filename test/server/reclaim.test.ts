// Lending and reclaim on real processes: a member borrows idle GPUs; when their owner needs them
// the borrowed jobs get SIGTERM, are requeued whole, and the owner's job starts on those GPUs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { lendingPair, type TestServer } from './helpers.js';

let t: TestServer;
let tel: string;
let pha: string;

beforeAll(async () => {
  ({ server: t, telecom: tel, pharma: pha } = await lendingPair());
});
afterAll(async () => {
  const all = await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?state=pending,starting,running,preempting');
  for (const j of all.body.jobs) await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`);
  await t.close();
});

const get = async (token: string, id: string) => (await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;

describe('reclaim on the local executor', () => {
  it("takes back lent GPUs for their owner within the grace period, and requeues the borrower's jobs", async () => {
    const borrowed: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await t.call<{ jobs: JobView[] }>(tel, 'POST', '/v1/jobs', {
        name: `t${i}`,
        command: ['sleep', '120'],
        gracePeriodSeconds: 1,
      });
      borrowed.push(r.body.jobs[0].id);
    }
    await t.waitFor('telecom on all 4 GPUs', async () =>
      (await Promise.all(borrowed.map((id) => get(tel, id)))).every((j) => j.state === 'running'),
    );

    const owner = (
      await t.call<{ jobs: JobView[] }>(pha, 'POST', '/v1/jobs', { name: 'own', command: ['sleep', '120'], gpus: 2 })
    ).body.jobs[0];
    const started = await t.waitFor('the owner to run', async () => {
      const j = await get(pha, owner.id);
      return j.state === 'running' ? j : undefined;
    });
    expect(started.placement![0].gpus).toHaveLength(2);
    const after = await Promise.all(borrowed.map((id) => get(tel, id)));
    const requeued = after.filter((j) => j.requeues === 1);
    expect(requeued).toHaveLength(2);
    expect(requeued.every((j) => j.state === 'pending')).toBe(true);
    const events = await t.call<{ events: { kind: string; reason: string | null }[] }>(
      tel,
      'GET',
      `/v1/jobs/${requeued[0].id}/events`,
    );
    expect(events.body.events.map((e) => e.kind)).toEqual(expect.arrayContaining(['preempting', 'requeued']));
    expect(events.body.events.find((e) => e.kind === 'preempting')?.reason).toBe('Reclaim');
    // The GPUs of the owner and of the borrower's remaining jobs are distinct.
    const held = [started, ...after.filter((j) => j.state === 'running')].flatMap((j) => j.placement![0].gpus);
    expect(new Set(held).size).toBe(held.length);
    expect(held).toHaveLength(4);
  });
});

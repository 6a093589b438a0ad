// A running job reports its checkpoints: POST /v1/jobs/:id/checkpoints by its owner (or the job
// itself with the owner's token) records the time, the scheduler reads it, `fabrik show` shows it,
// and nobody else may move it: other members get 404 as for every job route, the rest 403.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';
import { runCli } from '../cli/run.js';

let t: TestServer;
let alice: string;
let bob: string;
let carol: string;
let running: JobView;

const submit = async (token: string, body: unknown) =>
  (await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', body)).body.jobs[0];
type Err = { error: { code: string; message: string } };

beforeAll(async () => {
  t = await testServer();
  alice = await t.token('pharma', 'researcher', 'alice');
  bob = await t.token('pharma', 'researcher', 'bob');
  carol = await t.token('telecom', 'researcher', 'carol');
  running = await submit(alice, { command: ['sleep', '60'], gracePeriodSeconds: 0 });
  await t.waitFor(
    'the job to run',
    async () => (await t.call<JobView>(alice, 'GET', `/v1/jobs/${running.id}`)).body.state === 'running',
  );
});
afterAll(async () => {
  await t.call(t.operator, 'POST', `/v1/jobs/${running.id}/cancel`);
  await t.close();
});

const cli = (args: string[], token: string) => runCli(args, { FABRIK_URL: t.server.url, FABRIK_TOKEN: token });

describe('checkpoints reported through the API', () => {
  it("records the owner's report, shows it, and hands it to the scheduler", async () => {
    const before = Date.now();
    const r = await t.call<JobView>(alice, 'POST', `/v1/jobs/${running.id}/checkpoints`);
    expect(r.status).toBe(200);
    expect(Date.parse(r.body.lastCheckpointAt!)).toBeGreaterThanOrEqual(before - 1000);
    const shown = await t.call<JobView>(alice, 'GET', `/v1/jobs/${running.id}`);
    expect(shown.body.lastCheckpointAt).toBe(r.body.lastCheckpointAt);
    // The scheduling loop's mirror, from which each cycle's running jobs are built, has it too.
    expect(t.server.controller.activeJob(running.id)?.lastCheckpointAt).toBe(Date.parse(r.body.lastCheckpointAt!) / 1000);
    const events = await t.call<{ events: { kind: string; actor: string }[] }>(alice, 'GET', `/v1/jobs/${running.id}/events`);
    expect(events.body.events.map((e) => e.kind)).toContain('checkpoint');
  });

  it('answers 404 to another member, 403 to a colleague and to an operator', async () => {
    const other = await t.call<Err>(carol, 'POST', `/v1/jobs/${running.id}/checkpoints`);
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe('NOT_FOUND');
    for (const token of [bob, t.operator]) {
      const r = await t.call<Err>(token, 'POST', `/v1/jobs/${running.id}/checkpoints`);
      expect(r.status).toBe(403);
      expect(r.body.error.message).toContain('only the owner');
    }
    expect((await t.call<Err>(null, 'POST', `/v1/jobs/${running.id}/checkpoints`)).status).toBe(401);
  });

  it('refuses a job that is not on its GPUs (409)', async () => {
    const waiting = await submit(alice, { command: ['true'], afterOk: [running.id] });
    const r = await t.call<Err>(alice, 'POST', `/v1/jobs/${waiting.id}/checkpoints`);
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain('is pending');
    await t.call(alice, 'POST', `/v1/jobs/${waiting.id}/cancel`);
  });

  it('fabrik checkpoint and fabrik show', async () => {
    const done = await cli(['checkpoint', running.id], alice);
    expect(done.err).toBe('');
    expect(done.out).toMatch(new RegExp(`^job ${running.id}: checkpoint recorded at \\d{4}-`));
    const show = await cli(['show', running.id], alice);
    expect(show.out).toMatch(/^LastCheckpoint=\d{4}-\d\d-\d\dT/m);
    expect(show.out).toMatch(/^JobState=RUNNING$/m);
    const refused = await cli(['checkpoint', running.id], carol);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('not found');
  });
});

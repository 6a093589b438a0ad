// A researcher's day, end to end over HTTP, on the local executor: submit a real job that prints
// its CUDA_VISIBLE_DEVICES, watch it, read its log, cancel another, ask why a third waits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplainView, JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';

let t: TestServer;
let alice: string;
let carol: string;

const jobOf = (r: { body: unknown }) => (r.body as { jobs: JobView[] }).jobs[0];

beforeAll(async () => {
  t = await testServer();
  alice = await t.token('pharma', 'researcher', 'alice');
  carol = await t.token('telecom', 'researcher', 'carol');
});
afterAll(async () => {
  await t.close();
});

async function finished(token: string, id: string): Promise<JobView> {
  return t.waitFor(`job ${id} to end`, async () => {
    const r = await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`);
    return ['succeeded', 'failed', 'cancelled', 'lost'].includes(r.body.state) ? r.body : undefined;
  });
}

describe('jobs over the API', () => {
  it('runs a real job on exactly its GPUs and keeps its log', async () => {
    const r = await t.call(alice, 'POST', '/v1/jobs', {
      name: 'hello',
      command: ['sh', '-c', 'echo "gpus=$CUDA_VISIBLE_DEVICES"'],
      gpus: 2,
    });
    expect(r.status).toBe(201);
    const job = jobOf(r);
    expect(job).toMatchObject({ member: 'pharma', user: 'alice', state: 'pending', gpus: 2 });
    const done = await finished(alice, job.id);
    expect(done).toMatchObject({ state: 'succeeded', exitCode: 0 });
    expect(done.placement?.[0].gpus).toHaveLength(2);
    const log = await t.call<string>(alice, 'GET', `/v1/jobs/${job.id}/logs`);
    expect(log.body).toContain(`gpus=${done.placement![0].gpus.join(',')}`);
    const events = await t.call<{ events: { kind: string }[] }>(alice, 'GET', `/v1/jobs/${job.id}/events`);
    expect(events.body.events.map((e) => e.kind)).toEqual(['submitted', 'started', 'running', 'succeeded']);
  });

  it('records a failing exit code', async () => {
    const job = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['sh', '-c', 'exit 3'] }));
    expect(await finished(alice, job.id)).toMatchObject({ state: 'failed', exitCode: 3, reason: 'NonZeroExitCode 3' });
  });

  it('never makes two jobs for one Idempotency-Key, and refuses the key for another request', async () => {
    const body = { name: 'once', command: ['true'] };
    const a = await t.call(alice, 'POST', '/v1/jobs', body, { 'idempotency-key': 'k-1' });
    const b = await t.call(alice, 'POST', '/v1/jobs', body, { 'idempotency-key': 'k-1' });
    expect([a.status, b.status]).toEqual([201, 200]);
    expect(jobOf(b).id).toBe(jobOf(a).id);
    const c = await t.call<{ error: { code: string; field: string } }>(
      alice,
      'POST',
      '/v1/jobs',
      { ...body, name: 'other' },
      { 'idempotency-key': 'k-1' },
    );
    expect(c.status).toBe(409);
    expect(c.body.error).toMatchObject({ code: 'IDEMPOTENCY_CONFLICT', field: 'headers.idempotency-key' });
  });

  it('cancels a running job: it gets SIGTERM and ends as cancelled', async () => {
    const job = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['sleep', '60'], gracePeriodSeconds: 2 }));
    await t.waitFor('running', async () => (await t.call<JobView>(alice, 'GET', `/v1/jobs/${job.id}`)).body.state === 'running');
    const c = await t.call(alice, 'POST', `/v1/jobs/${job.id}/cancel`);
    expect(c.status).toBe(200);
    expect(await finished(alice, job.id)).toMatchObject({ state: 'cancelled' });
    const again = await t.call<{ error: { code: string } }>(alice, 'POST', `/v1/jobs/${job.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('JOB_FINISHED');
  });

  it('says why a job waits, with a start time, and refuses one its member could never run', async () => {
    // Pharma's share of this 4-GPU host is 1.2 GPUs, plus at most 1 borrowed: 4 GPUs never fit its quota.
    const refused = await t.call<{ error: { code: string; field: string; message: string } }>(alice, 'POST', '/v1/jobs', {
      command: ['true'],
      gpus: 4,
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'EXCEEDS_MEMBER_LIMIT', field: 'body.gpus' });
    expect(refused.body.error.message).toContain('may never hold more than 2.2');
    // One GPU busy: two more would exceed the 2.2, so the job waits for pharma's own job to end.
    const busy = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['sleep', '60'], walltimeSeconds: 120 }));
    await t.waitFor(
      'the first job to run',
      async () => (await t.call<JobView>(alice, 'GET', `/v1/jobs/${busy.id}`)).body.state === 'running',
    );
    const job = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['true'], gpus: 2 }));
    const e = await t.waitFor('an explanation', async () => {
      const r = await t.call<ExplainView>(alice, 'GET', `/v1/jobs/${job.id}/explain`);
      return r.body.reason !== 'NotYetScheduled' ? r.body : undefined;
    });
    expect(e).toMatchObject({ state: 'pending', reason: 'QuotaExhausted' });
    expect(e.message).toContain('entitlement');
    // It starts when the busy job's walltime is up at the latest, not "now" and not never.
    expect(Date.parse(e.estimatedStart!)).toBeGreaterThan(Date.now());
    await t.call(alice, 'POST', `/v1/jobs/${job.id}/cancel`);
    await t.call(alice, 'POST', `/v1/jobs/${busy.id}/cancel`);
    await finished(alice, busy.id);
  });

  it("hides one member's jobs from another: 404, never 403, and not in lists", async () => {
    const job = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['true'] }));
    for (const path of [
      `/v1/jobs/${job.id}`,
      `/v1/jobs/${job.id}/logs`,
      `/v1/jobs/${job.id}/events`,
      `/v1/jobs/${job.id}/explain`,
    ]) {
      expect((await t.call(carol, 'GET', path)).status).toBe(404);
    }
    expect((await t.call(carol, 'POST', `/v1/jobs/${job.id}/cancel`)).status).toBe(404);
    const list = await t.call<{ jobs: JobView[] }>(carol, 'GET', '/v1/jobs?limit=1000');
    expect(list.body.jobs.every((j) => j.member === 'telecom')).toBe(true);
  });

  it('starts a job after the jobs it depends on succeed, and cancels it when one fails (afterok)', async () => {
    const ok = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['sleep', '1'] }));
    const bad = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['sh', '-c', 'exit 1'] }));
    const after = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['true'], afterOk: [ok.id] }));
    const never = jobOf(await t.call(alice, 'POST', '/v1/jobs', { command: ['true'], afterOk: [bad.id] }));
    const waiting = await t.call<ExplainView>(alice, 'GET', `/v1/jobs/${after.id}/explain`);
    expect(['Dependency', 'NotYetScheduled']).toContain(waiting.body.reason);
    const a = await finished(alice, after.id);
    expect(a.state).toBe('succeeded');
    expect(Date.parse(a.startedAt!)).toBeGreaterThanOrEqual(Date.parse((await finished(alice, ok.id)).endedAt!));
    expect(await finished(alice, never.id)).toMatchObject({ state: 'cancelled', reason: 'DependencyNeverSatisfied' });
  });

  it('runs an array as one job per index, at most its throttle at a time', async () => {
    const r = await t.call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', {
      name: 'sweep',
      command: ['sh', '-c', 'sleep 0.3'],
      array: { indices: [0, 1, 2, 3], throttle: 1 },
    });
    expect(r.status).toBe(201);
    const tasks = r.body.jobs;
    expect(tasks.map((j) => j.arrayTaskId)).toEqual([0, 1, 2, 3]);
    expect(new Set(tasks.map((j) => j.arrayJobId))).toEqual(new Set([tasks[0].id]));
    const done = await Promise.all(tasks.map((j) => finished(alice, j.id)));
    expect(done.every((j) => j.state === 'succeeded')).toBe(true);
    // Throttle 1: no two tasks ran at the same time.
    const spans = done.map((j) => [Date.parse(j.startedAt!), Date.parse(j.endedAt!)]).sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
  });

  it('publishes Prometheus metrics, health and readiness, and its OpenAPI description', async () => {
    const m = await t.call<string>(t.operator, 'GET', '/metrics');
    expect(m.status).toBe(200);
    for (const name of [
      'fabrik_jobs_pending',
      'fabrik_gpus_running{member="pharma"}',
      'fabrik_scheduler_cycle_seconds',
      'fabrik_http_request_duration_seconds_bucket',
    ])
      expect(m.body).toContain(name);
    expect((await t.call(null, 'GET', '/healthz')).status).toBe(200);
    expect((await t.call(null, 'GET', '/readyz')).status).toBe(200);
    const api = await t.call<{ openapi: string; paths: Record<string, unknown> }>(null, 'GET', '/openapi.json');
    expect(api.body.openapi).toMatch(/^3\./);
    expect(Object.keys(api.body.paths)).toEqual(expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}/explain', '/v1/tokens']));
  });

  it('refuses bad input with a 400 that names the field', async () => {
    const r = await t.call<{ error: { code: string; field: string } }>(alice, 'POST', '/v1/jobs', {
      command: ['true'],
      gpus: -1,
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.gpus' });
    const none = await t.call(null, 'GET', '/v1/jobs');
    expect(none.status).toBe(401);
  });
});

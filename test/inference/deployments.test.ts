// Deployments on a real server with the local executor: replicas are inference-class jobs that
// come up healthy and are listed for the gateway with their member, model, zone and
// accreditations; a killed replica is replaced; load scales them out to max and back after the
// cool-down; scale to zero and wake; another member sees nothing. The store's part on both engines.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DeploymentStore, type Deployment } from '../../src/inference/deployments/store.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, type Location } from '../audit/engines.js';
import { testServer, type TestServer } from '../server/helpers.js';

/** The bundled engine, as a member would deploy it. */
const BIN = new URL('../../bin/fabrik', import.meta.url).pathname;
const engine = (model: string) => [BIN, 'engine', '--model', model];

interface ReplicaView {
  id: string;
  replica: number;
  state: string;
  url: string | null;
  healthy: boolean;
}
interface View {
  id: string;
  member: string;
  model: string;
  target: number;
  ready: number;
  state: string;
  min: number;
  max: number;
  replicas: ReplicaView[];
}

describe('deployments on the local executor', () => {
  let t: TestServer;
  let pia: string;
  let tom: string;
  let id: string;

  const get = async () => (await t.call<View>(pia, 'GET', `/v1/deployments/${id}`)).body;
  const healthy = (n: number) => async () => {
    const d = await get();
    const up = d.replicas.filter((r) => r.healthy && r.state === 'running');
    return up.length === n && d.replicas.length === n ? d : undefined;
  };

  beforeAll(async () => {
    t = await testServer({
      deployments: { scaleDownCooldownSeconds: 1, healthIntervalMs: 100, reconcileMs: 100, targetInFlight: 2 },
    });
    pia = await t.token('pharma', 'researcher', 'pia');
    tom = await t.token('telecom', 'researcher', 'tom');
  });
  afterAll(async () => {
    await t.close();
  });

  it('deploys replicas as inference jobs that come up healthy and are listed for the gateway', async () => {
    const r = await t.call<View>(pia, 'POST', '/v1/deployments', {
      model: 'tiny',
      command: engine('tiny'),
      gpus: 1,
      min: 1,
      max: 2,
      accreditations: ['internal', 'confidential'],
    });
    expect(r.status).toBe(201);
    id = r.body.id;
    expect(r.body).toMatchObject({ member: 'pharma', model: 'tiny', min: 1, max: 2, target: 1, state: 'active' });
    const d = await t.waitFor('a healthy replica', healthy(1));
    const [replica] = t.server.deployments.replicas('pharma', 'tiny');
    const site = t.server.controller.currentSite();
    expect(replica).toMatchObject({
      id: d.replicas[0].id,
      deployment: id,
      member: 'pharma',
      model: 'tiny',
      zone: site.zones[0],
      accreditations: ['internal', 'confidential'],
      reasoning: false,
      healthy: true,
    });
    expect(replica.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // This test server runs jobs unisolated (as --single-tenant does), on a port any process here
    // can call: the replica answers only the token the gateway presents.
    expect(replica.authorization).toMatch(/^Bearer [A-Za-z0-9_-]{43}$/);
    expect((await fetch(`${replica.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${replica.url}/health`, { headers: { authorization: 'Bearer guessed' } })).status).toBe(401);
    const direct = await fetch(`${replica.url}/v1/models`, { headers: { authorization: replica.authorization! } });
    expect(await direct.json()).toMatchObject({ data: [{ id: 'tiny' }] });
    expect(t.server.deployments.models('pharma')).toEqual([{ model: 'tiny', deployment: id, createdAt: expect.any(Number) }]);
    const job = await t.call<{
      name: string;
      priorityClass: string;
      walltimeSeconds: number;
      spec: { env: Record<string, string>; secretEnv: Record<string, string> };
    }>(pia, 'GET', `/v1/jobs/${replica.id}`);
    expect(job.body).toMatchObject({ name: `deploy-${id}-r0`, priorityClass: 'inference', walltimeSeconds: 366 * 86_400 });
    expect(job.body.spec.env).toMatchObject({ FABRIK_DEPLOYMENT: id, FABRIK_ENGINE_PORT: replica.url.split(':')[2] });
    // The token is a secret of the job: its creator and the operator see the names, never the value.
    expect(job.body.spec.secretEnv).toEqual({ FABRIK_ENGINE_API_KEY: '(secret)', VLLM_API_KEY: '(secret)' });
    const token = replica.authorization!.slice('Bearer '.length);
    for (const who of [pia, t.operator])
      expect(JSON.stringify((await t.call(who, 'GET', `/v1/jobs/${replica.id}`)).body)).not.toContain(token);
    // While the gateway, presenting the token, serves the member's key from it.
    const admin = await t.token('pharma', 'member-admin', 'pam');
    const key = await t.call<{ secret: string }>(admin, 'POST', '/v1/keys', { name: 'app', models: ['tiny'] });
    const served = await fetch(`${t.server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.body.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Shall I compare thee' }], max_tokens: 3 }),
    });
    expect(served.status).toBe(200);
    expect(((await served.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(3);
    // One endpoint per model name within a member.
    const again = await t.call<{ error: { code: string } }>(pia, 'POST', '/v1/deployments', {
      model: 'tiny',
      command: engine('tiny'),
    });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('CONFLICT');
  });

  it('is invisible to another member', async () => {
    expect((await t.call(tom, 'GET', `/v1/deployments/${id}`)).status).toBe(404);
    expect((await t.call(tom, 'PATCH', `/v1/deployments/${id}`, { max: 1 })).status).toBe(404);
    expect((await t.call(tom, 'DELETE', `/v1/deployments/${id}`)).status).toBe(404);
    expect((await t.call<{ deployments: View[] }>(tom, 'GET', '/v1/deployments')).body.deployments).toEqual([]);
    expect(t.server.deployments.replicas('telecom', 'tiny')).toEqual([]);
    expect(t.server.deployments.models('telecom')).toEqual([]);
    const all = await t.call<{ deployments: View[] }>(t.operator, 'GET', '/v1/deployments');
    expect(all.body.deployments.map((d) => d.id)).toEqual([id]);
  });

  it('replaces a replica whose process is killed', async () => {
    const [before] = t.server.deployments.replicas('pharma', 'tiny');
    // The engine's whole process group, as the OOM killer or a crash would end it.
    const job = t.server.controller.activeJob(before.id) ?? (await t.server.store.job(before.id));
    const ranks = (job?.handle as { ranks: { pgid: number }[] } | null)?.ranks ?? [];
    expect(ranks.length).toBe(1);
    process.kill(-ranks[0].pgid, 'SIGKILL');
    const d = await t.waitFor('a replacement', async () => {
      const v = await healthy(1)();
      return v && v.replicas[0].id !== before.id ? v : undefined;
    });
    expect(d.replicas[0].replica).toBe(1);
    const old = await t.call<{ state: string }>(pia, 'GET', `/v1/jobs/${before.id}`);
    expect(['failed', 'lost']).toContain(old.body.state);
  });

  it('scales out to max on load at once and back after the cool-down', async () => {
    const [first] = t.server.deployments.replicas('pharma', 'tiny');
    t.server.deployments.load(first.id, 7, 1000); // 7 in flight at 2 per replica: 4, capped at max 2
    const two = await t.waitFor('two healthy replicas', healthy(2));
    expect(two.target).toBe(2);
    // Each replica has a token of its own: one replica's job cannot call another.
    const tokens = t.server.deployments.replicas('pharma', 'tiny').map((r) => r.authorization);
    expect(new Set(tokens).size).toBe(2);
    // What an operator graphs: wanted, ready, and the load it scaled on.
    const metrics = String((await t.call(t.operator, 'GET', '/metrics')).body);
    const series = '{member="pharma",model="tiny"}';
    expect(metrics).toContain(`fabrik_deployment_target_replicas${series} 2`);
    expect(metrics).toContain(`fabrik_deployment_ready_replicas${series} 2`);
    expect(metrics).toContain(`fabrik_deployment_requests_in_flight${series} 7`);
    expect(metrics).toContain(`fabrik_deployment_queued_tokens${series} 1000`);
    for (const r of t.server.deployments.replicas('pharma', 'tiny')) t.server.deployments.load(r.id, 0, 0);
    const one = await t.waitFor('back to one', healthy(1), 10_000);
    expect(one.target).toBe(1);
    const events = await t.call<{ events: { kind: string; subject: string; data: { from: number; to: number } }[] }>(
      pia,
      'GET',
      '/v1/audit/events?limit=1000',
    );
    const scaled = events.body.events.filter((e) => e.kind === 'deployment.scaled' && e.subject === id).map((e) => e.data);
    expect(scaled).toEqual([expect.objectContaining({ from: 1, to: 2 }), expect.objectContaining({ from: 2, to: 1 })]);
    expect(events.body.events.some((e) => e.kind === 'deployment.created' && e.subject === id)).toBe(true);
  });

  it('scales to zero when idle and wakes on the next request', async () => {
    const patched = await t.call<View>(pia, 'PATCH', `/v1/deployments/${id}`, { scaleToZeroSeconds: 1 });
    expect(patched.status).toBe(200);
    const asleep = await t.waitFor('scale to zero', async () => {
      const d = await get();
      return d.target === 0 && d.replicas.length === 0 ? d : undefined;
    });
    expect(asleep.ready).toBe(0);
    expect(t.server.deployments.replicas('pharma', 'tiny')).toEqual([]);
    // Still listed: a request for it is what wakes it.
    expect(t.server.deployments.models('pharma').map((m) => m.model)).toEqual(['tiny']);
    expect(t.server.deployments.wake('pharma', 'nothing')).toBe(false);
    expect(t.server.deployments.wake('telecom', 'tiny')).toBe(false);
    expect(t.server.deployments.wake('pharma', 'tiny')).toBe(true);
    const awake = await t.waitFor('a replica again', healthy(1));
    expect(awake.target).toBe(1);
    // Keep it awake for the next test.
    const off = await t.call<View>(pia, 'PATCH', `/v1/deployments/${id}`, { scaleToZeroSeconds: null });
    expect(off.status).toBe(200);
  });

  it('refuses bad bounds and lets only writers of the member change it', async () => {
    const badBounds = await t.call<{ error: { code: string } }>(pia, 'PATCH', `/v1/deployments/${id}`, { min: 3, max: 2 });
    expect(badBounds.status).toBe(400);
    const above = await t.call<{ error: { code: string } }>(pia, 'PATCH', `/v1/deployments/${id}`, { min: 3 });
    expect(above.status).toBe(400);
    const auditor = await t.token('pharma', 'auditor', 'aud');
    expect((await t.call(auditor, 'GET', `/v1/deployments/${id}`)).status).toBe(200);
    expect((await t.call(auditor, 'DELETE', `/v1/deployments/${id}`)).status).toBe(403);
    // An operator deploys for no member, and scales no member's deployment; it may delete one (an
    // operational act like cancelling a job: the last test deletes as pharma's researcher instead).
    for (const [method, path, body] of [
      ['POST', '/v1/deployments', { model: 'x', command: engine('x') }],
      ['POST', '/v1/deployments', { model: 'x', command: engine('x'), member: 'pharma' }],
      ['PATCH', `/v1/deployments/${id}`, { max: 1 }],
    ] as const) {
      const r = await t.call<{ error: { code: string; message: string } }>(t.operator, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      expect(r.body.error.message).toMatch(/by a member's people; an operator runs the machine, not a member's work/);
    }
  });

  it('deletes: its replicas stop and it is gone from the replica source', async () => {
    const before = (await get()).replicas.map((r) => r.id);
    const del = await t.call<View>(pia, 'DELETE', `/v1/deployments/${id}`);
    expect(del.status).toBe(200);
    expect(del.body.state).toBe('deleted');
    expect(t.server.deployments.replicas('pharma', 'tiny')).toEqual([]);
    expect(t.server.deployments.models('pharma')).toEqual([]);
    for (const job of before)
      await t.waitFor(
        'the replica stopped',
        async () => (await t.call<{ state: string }>(pia, 'GET', `/v1/jobs/${job}`)).body.state === 'cancelled',
      );
    expect((await t.call<{ deployments: View[] }>(pia, 'GET', '/v1/deployments')).body.deployments).toEqual([]);
    expect((await t.call(pia, 'DELETE', `/v1/deployments/${id}`)).status).toBe(409);
  });
});

describe('deployments across a restart', () => {
  it('finds its replicas again: the same jobs, healthy, with no new replica submitted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-deploy-'));
    const settings = { deployments: { healthIntervalMs: 100, reconcileMs: 100 } };
    let t = await testServer(settings, dir);
    try {
      const pam = await t.token('pharma', 'member-admin', 'pam');
      const created = await t.call<View>(pam, 'POST', '/v1/deployments', {
        model: 'kept',
        command: engine('kept'),
        min: 1,
        max: 1,
      });
      expect(created.status).toBe(201);
      const ready = async () => t.server.deployments.replicas('pharma', 'kept').find((r) => r.healthy);
      const before = await t.waitFor('a healthy replica', ready);
      await t.close();
      t = await testServer(settings, dir);
      const after = await t.waitFor('the replica found again', ready);
      expect(after).toMatchObject({ id: before.id, url: before.url });
      const jobs = await t.call<{ jobs: { id: string }[] }>(pam, 'GET', `/v1/jobs?name=deploy-${created.body.id}-r1`);
      expect(jobs.body.jobs).toEqual([]);
      expect((await t.call(pam, 'DELETE', `/v1/deployments/${created.body.id}`)).status).toBe(200);
      await t.waitFor(
        'the replica stopped',
        async () => (await t.call<{ state: string }>(pam, 'GET', `/v1/jobs/${before.id}`)).body.state === 'cancelled',
      );
    } finally {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const deployment: Deployment = {
  id: 'ab12cd34',
  member: 'pharma',
  project: 'discovery',
  model: 'tiny',
  command: ['bin/fabrik', 'engine', '--model', 'tiny'],
  gpus: 2,
  min: 1,
  max: 3,
  target: 1,
  accreditations: ['internal', 'confidential'],
  zone: 'general',
  reasoning: true,
  scaleToZeroSeconds: 300,
  state: 'active',
  nextReplica: 0,
  createdAt: 1_700_000_000.125,
  createdBy: 'pia',
  updatedAt: 1_700_000_000.125,
  deletedAt: null,
  deletedBy: null,
};

forEachEngine('deployment store', (engine, location) => {
  describe(`deployment store (${engine})`, () => {
    let where: Location;
    let store: KyselyStore;
    let deployments: DeploymentStore;
    beforeEach(async () => {
      where = await location();
      store = (await openStore(where.url)) as KyselyStore;
      deployments = new DeploymentStore(store.db);
    });
    afterEach(async () => {
      await store.close();
      await where.dispose();
    });

    it('keeps deployments with their command, bounds and accreditations, and their replicas', async () => {
      await deployments.add(deployment);
      await deployments.add({
        ...deployment,
        id: 'ef56',
        model: 'other',
        zone: null,
        scaleToZeroSeconds: null,
        reasoning: false,
      });
      await expect(deployments.add(deployment)).rejects.toThrow();
      expect(await deployments.get('ab12cd34')).toEqual(deployment);
      expect(await deployments.get('nope')).toBeUndefined();
      await deployments.update('ab12cd34', { target: 3, max: 4, nextReplica: 2, scaleToZeroSeconds: null, updatedAt: 5.5 });
      expect(await deployments.get('ab12cd34')).toMatchObject({
        target: 3,
        max: 4,
        nextReplica: 2,
        scaleToZeroSeconds: null,
        updatedAt: 5.5,
      });
      await deployments.addReplica({ jobId: '7', deployment: 'ab12cd34', replica: 0, port: 20001, createdAt: 2.25 });
      await deployments.addReplica({ jobId: '9', deployment: 'ab12cd34', replica: 1, port: 20002, createdAt: 3.25 });
      await deployments.addReplica({ jobId: '8', deployment: 'ef56', replica: 0, port: 20003, createdAt: 2.5 });
      expect((await deployments.replicas('ab12cd34')).map((r) => [r.jobId, r.replica, r.port])).toEqual([
        ['7', 0, 20001],
        ['9', 1, 20002],
      ]);
      await deployments.removeReplica('7');
      expect((await deployments.replicas()).map((r) => r.jobId)).toEqual(['9', '8']);
      await deployments.update('ab12cd34', { state: 'deleted', deletedAt: 9, deletedBy: 'pam', updatedAt: 9 });
      expect((await deployments.active()).map((d) => d.id)).toEqual(['ef56']);
      expect(await deployments.get('ab12cd34')).toMatchObject({ state: 'deleted', deletedAt: 9, deletedBy: 'pam' });
    });
  });
});

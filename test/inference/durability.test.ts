// kill -9 of the server while members create gateway keys and rescale a deployment: after a
// restart every acknowledged key authenticates, the deployment has the bounds last acknowledged
// (or the ones in flight at the kill), and its replica, which kept running, is taken back and
// serves through the gateway without a new replica being started.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { killHard, operatorToken, spawnServer, type SpawnedServer } from '../server/spawned.js';

const BIN = new URL('../../bin/fabrik', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fabrik-inference-kill9-'));
const servers: SpawnedServer[] = [];

afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface View {
  id: string;
  max: number;
  ready: number;
  replicas: { id: string; healthy: boolean }[];
}

describe('kill -9 while keys are created and a deployment is rescaled', () => {
  it('keeps every acknowledged key and scale, and takes the running replica back', async () => {
    let server = await spawnServer(dir);
    servers.push(server);
    const operator = operatorToken(dir);
    const call = async <T>(token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json()) as T };
    };
    // Pharma's first admin, made by the operator (bootstrap): it comes with a token.
    const admin = (
      await call<{ secret: string }>(operator, 'POST', '/v1/users', {
        name: 'pam',
        roles: ['member-admin'],
        member: 'pharma',
      })
    ).body.secret;
    const created = await call<View>(admin, 'POST', '/v1/deployments', {
      model: 'kept',
      command: [BIN, 'engine', '--model', 'kept', '--ttft-ms', '0', '--itl-ms', '0'],
      min: 1,
      max: 1,
      accreditations: ['internal'],
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    const view = async () => (await call<View>(admin, 'GET', `/v1/deployments/${id}`)).body;
    const healthy = async () => {
      for (let i = 0; i < 600; i++) {
        const v = await view();
        if (v.ready === 1 && v.replicas.length === 1) return v;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no healthy replica: ${JSON.stringify(await view())}`);
    };
    const replica = (await healthy()).replicas[0].id;

    // Keys from 6 clients and rescales from one, until the kill.
    const keys: string[] = [];
    let acknowledgedMax = 1;
    let inFlightMax = 1;
    let stop = false;
    const keyClients = Array.from({ length: 6 }, async (_, c) => {
      try {
        for (let i = 0; !stop; i++) {
          const r = await call<{ secret: string }>(admin, 'POST', '/v1/keys', { name: `k${c}-${i}`, models: ['kept'] });
          expect(r.status).toBe(201);
          keys.push(r.body.secret);
        }
      } catch {
        // the server is gone
      }
    });
    const scaler = (async () => {
      try {
        for (let i = 0; !stop; i++) {
          inFlightMax = 2 + (i % 5);
          const r = await call<View>(admin, 'PATCH', `/v1/deployments/${id}`, { max: inFlightMax });
          expect(r.status).toBe(200);
          acknowledgedMax = inFlightMax;
        }
      } catch {
        // the server is gone
      }
    })();
    while (keys.length < 60) await new Promise((r) => setTimeout(r, 10));
    await killHard(server);
    stop = true;
    await Promise.all([...keyClients, scaler]);

    server = await spawnServer(dir);
    servers.push(server);
    // Every acknowledged key works: /v1/models answers it with the model.
    for (const key of keys) {
      const res = await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual(['kept']);
    }
    const after = await healthy();
    expect([acknowledgedMax, inFlightMax]).toContain(after.max);
    // The same replica, taken back: nothing new was started.
    expect(after.replicas.map((r) => r.id)).toEqual([replica]);
    const jobs = await call<{ jobs: unknown[] }>(admin, 'GET', `/v1/jobs?name=deploy-${id}-r1`);
    expect(jobs.body.jobs).toEqual([]);
    const openai = new OpenAI({ apiKey: keys[0], baseURL: `${server.url}/v1`, maxRetries: 0 });
    const answer = await openai.completions.create({ model: 'kept', prompt: 'Shall I compare thee', max_tokens: 4 });
    expect(answer.usage?.completion_tokens).toBe(4);

    expect((await call(admin, 'DELETE', `/v1/deployments/${id}`)).status).toBe(200);
    for (let i = 0; i < 300; i++) {
      const state = (await call<{ state: string }>(admin, 'GET', `/v1/jobs/${replica}`)).body.state;
      if (state === 'cancelled') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await call<{ state: string }>(admin, 'GET', `/v1/jobs/${replica}`)).body.state).toBe('cancelled');
    server.child.kill('SIGTERM');
  }, 240_000); // two server starts from the TypeScript sources, on a busy 2-core machine
});

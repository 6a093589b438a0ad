// kill -9 of the server during a burst of submissions: after a restart every acknowledged job is
// there, no GPU is held twice, and the processes the local executor started are found again.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { bootstrapAdmin, killHard, operatorToken, spawnServer, type SpawnedServer } from './spawned.js';

const dir = mkdtempSync(join(tmpdir(), 'fabrik-kill9-'));
const children: ChildProcess[] = [];
/** Each member's first admin, made once (the bootstrap) and kept across restarts: its people submit. */
const admins = new Map<string, string>();
async function adminOf(server: SpawnedServer, member: string): Promise<string> {
  if (!admins.has(member)) admins.set(member, await bootstrapAdmin(server.url, operatorToken(dir), member));
  return admins.get(member)!;
}

async function up(): Promise<SpawnedServer> {
  const s = await spawnServer(dir);
  children.push(s.child);
  return s;
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('kill -9 during a burst of submissions', () => {
  it('keeps every acknowledged job, holds no GPU twice, finds running processes again, and requeues a lost one', async () => {
    let server = await up();
    const [pharma, telecom] = [await adminOf(server, 'pharma'), await adminOf(server, 'telecom')];
    const operator = operatorToken(dir);
    const call = async (method: string, path: string, body?: unknown, key?: string, token = operator) => {
      const res = await fetch(server.url + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(key ? { 'idempotency-key': key } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: (await res.json()) as never };
    };
    // Two long jobs hold GPUs across the crash.
    const longIds: string[] = [];
    for (const member of [pharma, telecom]) {
      const r = await call('POST', '/v1/jobs', { command: ['sleep', '120'], gpus: 1, gracePeriodSeconds: 1 }, undefined, member);
      longIds.push((r.body as { jobs: JobView[] }).jobs[0].id);
    }
    const doomed = (
      (await call('POST', '/v1/jobs', { command: ['sleep', '121.25'], gpus: 1, gracePeriodSeconds: 1 }, undefined, pharma))
        .body as { jobs: JobView[] }
    ).jobs[0].id;
    longIds.push(doomed);
    const running = async () => {
      const states = await Promise.all(longIds.map((id) => call('GET', `/v1/jobs/${id}`)));
      return states.every((s) => (s.body as JobView).state === 'running');
    };
    for (let i = 0; i < 600 && !(await running()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await running()).toBe(true);

    // A burst from 20 clients; the server is killed while it runs.
    const acknowledged: string[] = [];
    let stop = false;
    let alive = 20;
    const clients = Array.from({ length: 20 }, async (_, c) => {
      try {
        for (let i = 0; !stop; i++) {
          // Queued behind pharma's long job (afterOk): none of the burst runs before the crash.
          const body = { command: ['true'], afterOk: [longIds[0]] };
          const r = await call('POST', '/v1/jobs', body, `burst-${c}-${i}`, pharma);
          expect(r.status).toBe(201);
          acknowledged.push((r.body as { jobs: JobView[] }).jobs[0].id);
        }
      } catch {
        // the server is gone
      } finally {
        alive--;
      }
    });
    while (acknowledged.length < 100 && alive > 0) await new Promise((r) => setTimeout(r, 20));
    expect(acknowledged.length).toBeGreaterThanOrEqual(100);
    await killHard(server);
    stop = true;
    await Promise.all(clients);

    // While the server is down, one job's processes (its rank wrapper included, so nothing records
    // how they ended) vanish: it must come back as lost and requeued.
    spawnSync('pkill', ['-KILL', '-f', `fabrik-rank job=${doomed} `]);
    spawnSync('pkill', ['-KILL', '-f', 'sleep 121.25']);

    server = await up();
    // Every acknowledged submission survived.
    for (const id of acknowledged) expect((await call('GET', `/v1/jobs/${id}`)).status).toBe(200);
    // The long jobs' processes were found again, on the same GPUs.
    const after = await Promise.all(longIds.slice(0, 2).map(async (id) => (await call('GET', `/v1/jobs/${id}`)).body as JobView));
    expect(after.map((j) => j.state)).toEqual(['running', 'running']);
    // The job whose processes vanished was marked lost and requeued whole.
    const lost = (await call('GET', `/v1/jobs/${doomed}`)).body as JobView;
    expect(lost.requeues).toBe(1);
    const events = (
      (await call('GET', `/v1/jobs/${doomed}/events`)).body as { events: { kind: string; reason: string | null }[] }
    ).events;
    expect(events.find((e) => e.kind === 'requeued')?.reason).toMatch(/^Lost/);
    // No GPU is held by two jobs.
    const list = (await call('GET', '/v1/jobs?state=starting,running,preempting&limit=1000')).body as { jobs: JobView[] };
    const held = list.jobs.flatMap((j) => (j.placement ?? []).flatMap((p) => p.gpus.map((g) => `${p.node}/${g}`)));
    expect(new Set(held).size).toBe(held.length);
    for (const id of longIds) await call('POST', `/v1/jobs/${id}/cancel`);
    for (let i = 0; i < 300; i++) {
      const s = await Promise.all(longIds.map(async (id) => ((await call('GET', `/v1/jobs/${id}`)).body as JobView).state));
      if (s.every((x) => x === 'cancelled')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await Promise.all(longIds.map(async (id) => ((await call('GET', `/v1/jobs/${id}`)).body as JobView).state))).toEqual([
      'cancelled',
      'cancelled',
      'cancelled',
    ]);
    server.child.kill('SIGTERM');
  }, 240_000); // two server starts from the TypeScript sources, on a busy 2-core machine

  it('stops gracefully on SIGTERM: exit code 0, and its jobs keep running for the next start', async () => {
    const server = await up();
    const headers = { authorization: `Bearer ${operatorToken(dir)}`, 'content-type': 'application/json' };
    const r = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${await adminOf(server, 'telecom')}` },
      body: JSON.stringify({ command: ['sleep', '60'], gracePeriodSeconds: 1 }),
    });
    const id = ((await r.json()) as { jobs: JobView[] }).jobs[0].id;
    const state = async (url: string) => ((await (await fetch(`${url}/v1/jobs/${id}`, { headers })).json()) as JobView).state;
    for (let i = 0; i < 300 && (await state(server.url)) !== 'running'; i++) await new Promise((r) => setTimeout(r, 100));
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const again = await up();
    expect(await state(again.url)).toBe('running');
    await fetch(`${again.url}/v1/jobs/${id}/cancel`, { method: 'POST', headers });
    again.child.kill('SIGTERM');
  }, 240_000);
});

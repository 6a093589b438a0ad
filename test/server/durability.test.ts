// kill -9 of the server during a burst of submissions: after a restart every acknowledged job is
// there, no GPU is held twice, and the processes the local executor started are found again.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fabrik-kill9-'));
const children: ChildProcess[] = [];

async function up(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', `${root}src/cli/main.ts`, 'up', '--data', dir, '--port', '0', '--gpus', '4', '--cycle-seconds', '1'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FABRIK_LOG_LEVEL: 'warn' },
    },
  );
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.resume();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const url = /listening on (\S+);/.exec(err)?.[1];
    if (url) return { child, url };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`fabrik up did not start:\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('kill -9 during a burst of submissions', () => {
  it('keeps every acknowledged job, holds no GPU twice, finds running processes again, and requeues a lost one', async () => {
    let server = await up();
    const token = readFileSync(join(dir, 'operator-token'), 'utf8').trim();
    const call = async (method: string, path: string, body?: unknown, key?: string) => {
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
    for (const m of ['pharma', 'telecom']) {
      const r = await call('POST', '/v1/jobs', { member: m, command: ['sleep', '120'], gpus: 1, gracePeriodSeconds: 1 });
      longIds.push((r.body as { jobs: JobView[] }).jobs[0].id);
    }
    const doomed = (
      (await call('POST', '/v1/jobs', { member: 'pharma', command: ['sleep', '121.25'], gpus: 1, gracePeriodSeconds: 1 }))
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
          const r = await call('POST', '/v1/jobs', { member: 'bank', command: ['true'], gpus: 4 }, `burst-${c}-${i}`);
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
    server.child.kill('SIGKILL');
    stop = true;
    await Promise.all(clients);
    const killed = server.child;
    if (killed.exitCode === null && killed.signalCode === null) await new Promise((r) => killed.once('exit', r));

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
    const token = readFileSync(join(dir, 'operator-token'), 'utf8').trim();
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const r = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ member: 'telecom', command: ['sleep', '60'], gracePeriodSeconds: 1 }),
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

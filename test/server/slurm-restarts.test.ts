// Restarts on both sides of Fabrik → Slurm, against the real cluster of scripts/slurm/up.sh:
// - `kill -9` of `fabrik up` at moments around a submission (before the placement, while the
//   job is handed to Slurm, after): once restarted, every acknowledged job ran in exactly one
//   Slurm job and succeeded;
// - slurmctld restarted while jobs run, two of them ending while it is down, one submitted then:
//   Fabrik ends every job in the right state with the right exit code, and cancels after it.
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { openStore } from '../../src/store/open.js';
import { testServer } from './helpers.js';
import { closeAndCancel, slurmJobsTagged, slurmReachable } from '../slurm-cluster.js';
import { bootstrapAdmin, killHard, spawnServer, type SpawnedServer } from './spawned.js';

const reachable = await slurmReachable('slurm restart tests');

const FINAL = ['succeeded', 'failed', 'cancelled', 'lost'];
const children: ChildProcess[] = [];
const dirs: string[] = [];

/** A data folder the members' Unix users can reach (their jobs write their logs into it). */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-slurm-restart-'));
  chmodSync(dir, 0o711);
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.runIf(reachable)('restarts between Fabrik and Slurm', () => {
  it('kill -9 of Fabrik around a submission: after the restart every acknowledged job ran in exactly one Slurm job', async () => {
    const dir = dataDir();
    const up = async (): Promise<SpawnedServer> => {
      const server = await spawnServer(dir, ['--executor', 'slurm', '--slurm-create-users']);
      children.push(server.child);
      return server;
    };

    let server = await up();
    // Pharma's first admin submits: an operator does no member's work.
    const token = await bootstrapAdmin(server.url, readFileSync(join(dir, 'operator-token'), 'utf8').trim(), 'pharma');
    const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return (await res.json()) as T;
    };
    // Killed right after the acknowledgement, and at moments that fall before the placement (the
    // cycle runs every second), while the job is being handed to Slurm, and after.
    const ids: string[] = [];
    for (const delayMs of [0, 150, 400, 700, 1000, 1500]) {
      const r = await call<{ jobs: JobView[] }>('POST', '/v1/jobs', {
        name: `kill9-${delayMs}`,
        script: '#!/bin/bash\nsleep 2\necho ran\n',
        gpus: 1,
      });
      ids.push(r.jobs[0].id);
      await new Promise((res) => setTimeout(res, delayMs));
      await killHard(server);
      server = await up();
    }
    const ended = await until(
      'every job to end',
      async () => {
        const jobs = await Promise.all(ids.map((id) => call<JobView>('GET', `/v1/jobs/${id}`)));
        return jobs.every((j) => FINAL.includes(j.state)) ? jobs : null;
      },
      120_000,
    );
    server.child.kill('SIGTERM');
    const store = await openStore(`sqlite:${join(dir, 'fabrik.db')}`);
    try {
      for (const j of ended) {
        expect(j, `${j.name}: ${j.reason}`).toMatchObject({ state: 'succeeded', exitCode: 0 });
        expect(await slurmJobsTagged(store, j.id), j.name).toHaveLength(1);
      }
    } finally {
      await store.close();
    }
  }, 240_000);

  it('restarting slurmctld while jobs run loses nothing: each job ends in the right state', async () => {
    const t = await testServer({ executor: 'slurm', slurm: { createUnixUsers: true } }, dataDir());
    try {
      const bank = await t.token('bank', 'researcher', 'bo');
      const submit = async (name: string, script: string) => {
        const r = await t.call<{ jobs: JobView[] }>(bank, 'POST', '/v1/jobs', { name, script, gpus: 1 });
        expect(r.status).toBe(201);
        return r.body.jobs[0].id;
      };
      const job = async (id: string) => (await t.call<JobView>(t.operator, 'GET', `/v1/jobs/${id}`)).body;
      // Two end while slurmctld is down; one outlives the restart and is cancelled after it.
      const ok = await submit('ends-ok', '#!/bin/bash\nsleep 4\n');
      const bad = await submit('ends-3', '#!/bin/bash\nsleep 4\nexit 3\n');
      const long = await submit('long', '#!/bin/bash\nsleep 300\n');
      for (const id of [ok, bad, long]) await t.waitFor(`${id} running`, async () => (await job(id)).state === 'running', 60_000);

      execFileSync('bash', ['-c', 'kill "$(cat /run/slurmctld.pid)"']);
      // Submitted while slurmctld is down: it waits for it instead of failing.
      const during = await submit('during', '#!/bin/bash\necho late\n');
      await new Promise((r) => setTimeout(r, 7_000));
      execFileSync('slurmctld');
      await until('slurmctld up', async () => spawnSync('scontrol', ['ping']).stdout.toString().includes('UP'), 30_000);

      const endOf = (id: string) =>
        t.waitFor(`${id} to end`, async () => ((j) => (FINAL.includes(j.state) ? j : undefined))(await job(id)), 90_000);
      expect(await endOf(ok)).toMatchObject({ state: 'succeeded', exitCode: 0 });
      expect(await endOf(bad)).toMatchObject({ state: 'failed', exitCode: 3 });
      expect(await endOf(during)).toMatchObject({ state: 'succeeded', exitCode: 0 });
      expect((await job(long)).state).toBe('running');
      expect((await t.call(t.operator, 'POST', `/v1/jobs/${long}/cancel`)).status).toBe(200);
      expect(await endOf(long)).toMatchObject({ state: 'cancelled' });
      // Each ran in exactly one Slurm job (a submit refused while the nodes re-registered leaves a
      // job the executor cancelled before it started: it never ran).
      for (const id of [ok, bad, long, during])
        expect(await slurmJobsTagged(t.server.store, id, { started: true })).toHaveLength(1);
    } finally {
      // Whatever happened, slurmctld runs again for the next tests.
      execFileSync('bash', ['-c', 'pgrep -x slurmctld >/dev/null || slurmctld']);
      await closeAndCancel(t);
    }
  }, 240_000);
});

// Preemption on real Slurm: a member borrows the idle half of the cluster with a 2-node gang; its
// owner asks for it back; each rank of the gang gets the job's signal, writes its checkpoint
// within the grace period, and the gang is requeued, then resumes from its checkpoint once the
// owner's job is done.
import { chmodSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { consortium, site } from '../../src/testing/builders.js';
import { testServer, type TestServer } from './helpers.js';
import { closeAndCancel, slurmReachable } from '../slurm-cluster.js';

const reachable = await slurmReachable('slurm reclaim tests');

let t: TestServer;
let tel: string;
let pha: string;
const shared = mkdtempSync(join(tmpdir(), 'fabrik-ckpt-'));
chmodSync(shared, 0o777);

describe.runIf(reachable)('reclaim on Slurm', () => {
  beforeAll(async () => {
    // The cluster's 32 GPUs, half each: nothing is scaled.
    const s = site().racksPerSuperpod(1).traysPerRack(8).gpusPerTray(4).build();
    const c = consortium().member('pharma', { entitlement: 16 }).member('telecom', { entitlement: 16 }).build();
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-slurm-reclaim-'));
    chmodSync(dir, 0o711);
    t = await testServer({ executor: 'slurm', site: s, consortium: c, slurm: { createUnixUsers: true } }, dir);
    tel = await t.token('telecom', 'researcher', 'tom');
    pha = await t.token('pharma', 'researcher', 'pia');
  });
  afterAll(async () => {
    if (t) await closeAndCancel(t);
  });

  const get = async (id: string) => (await t.call<JobView>(t.operator, 'GET', `/v1/jobs/${id}`)).body;

  it("signals every rank of a borrowing gang, lets it checkpoint, requeues it, and resumes it after the owner's job", async () => {
    // Each rank checkpoints on TERM; started again, it resumes from its checkpoint and ends.
    const gang = (name: string) => ({
      name,
      nodes: 2,
      gpusPerNode: 8,
      gracePeriodSeconds: 20,
      script: [
        '#!/bin/bash',
        `f=${shared}/$FABRIK_JOB_ID-rank$RANK`,
        'if [ -f "$f" ]; then echo "rank $RANK resumed from $(cat "$f")"; exit 0; fi',
        `trap 'sleep 1; echo step=7 > "$f"; exit 0' TERM`,
        'echo "rank $RANK training"',
        'while true; do sleep 0.1; done',
        '',
      ].join('\n'),
    });
    const borrowed: string[] = [];
    for (const name of ['tel-a', 'tel-b']) {
      const r = await t.call<{ jobs: JobView[] }>(tel, 'POST', '/v1/jobs', gang(name));
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      borrowed.push(r.body.jobs[0].id);
    }
    await t.waitFor(
      'telecom on all 32 GPUs',
      async () => (await Promise.all(borrowed.map(get))).every((j) => j.state === 'running'),
      60_000,
    );

    const own = await t.call<{ jobs: JobView[] }>(pha, 'POST', '/v1/jobs', {
      name: 'own',
      nodes: 2,
      gpusPerNode: 8,
      script: '#!/bin/bash\nsleep 3\n',
    });
    const ownId = own.body.jobs[0].id;
    const preempted = await t.waitFor(
      'one telecom gang requeued',
      async () => (await Promise.all(borrowed.map(get))).find((j) => j.requeues === 1),
      60_000,
    );
    // Both ranks wrote their checkpoint within the grace period: the signal reached them, not a kill.
    // Slurm may report the job requeued while the last rank's trap is still writing (a loaded
    // machine): wait a little for the file, then read it.
    for (const rank of [0, 1]) {
      const file = join(shared, `${preempted.id}-rank${rank}`);
      await t.waitFor(
        `rank ${rank}'s checkpoint`,
        async () => existsSync(file) && readFileSync(file, 'utf8').endsWith('\n'),
        10_000,
      );
      expect(readFileSync(file, 'utf8')).toBe('step=7\n');
    }
    const events = await t.call<{ events: { kind: string; reason: string | null }[] }>(
      tel,
      'GET',
      `/v1/jobs/${preempted.id}/events`,
    );
    expect(events.body.events.find((e) => e.kind === 'preempting')?.reason).toBe('Reclaim');

    expect(
      await t.waitFor(
        'the owner to finish',
        async () => ((j) => (j.state === 'succeeded' ? j : undefined))(await get(ownId)),
        60_000,
      ),
    ).toMatchObject({ exitCode: 0 });
    const resumed = await t.waitFor(
      'the preempted gang to run again and end',
      async () => ((j) => (['succeeded', 'failed', 'lost'].includes(j.state) ? j : undefined))(await get(preempted.id)),
      90_000,
    );
    expect(resumed).toMatchObject({ state: 'succeeded', exitCode: 0, requeues: 1 });
    const log = (await t.call<string>(tel, 'GET', `/v1/jobs/${preempted.id}/logs`)).body;
    expect(log).toContain('rank 0 resumed from step=7');
    expect(log).toContain('rank 1 resumed from step=7');
    // The other gang was never touched.
    const other = borrowed.find((id) => id !== preempted.id)!;
    expect(await get(other)).toMatchObject({ state: 'running', requeues: 0 });
    expect(existsSync(join(shared, `${other}-rank0`))).toBe(false);
  }, 240_000);
});

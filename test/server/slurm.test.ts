// Fabrik in front, a real Slurm behind (scripts/slurm/up.sh): a job submitted over the API runs
// on the Slurm node Fabrik chose, with its GPUs, and its log comes back through `fabrik logs`.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';
import { closeAndCancel, slurmReachable } from '../slurm-cluster.js';

const reachable = await slurmReachable('slurm server tests');

let t: TestServer;
let alice: string;

describe.runIf(reachable)('fabrik up --executor slurm', () => {
  beforeAll(async () => {
    // The members' Unix users write their jobs' logs: the data folder must be reachable by them.
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-server-slurm-'));
    chmodSync(dir, 0o711);
    t = await testServer({ executor: 'slurm', slurm: { createUnixUsers: true } }, dir);
    alice = await t.token('pharma', 'researcher', 'alice');
  });
  afterAll(async () => {
    if (t) await closeAndCancel(t);
  });

  it("runs a submitted job on Slurm as the member's user, on the node Fabrik chose with the GPUs it asked for, and keeps its log", async () => {
    const r = await t.call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', {
      name: 'on-slurm',
      script: '#!/bin/bash\necho "user=$(id -un) account=$SLURM_JOB_ACCOUNT node=$SLURMD_NODENAME gpus=$CUDA_VISIBLE_DEVICES"\n',
      gpus: 2,
    });
    expect(r.status).toBe(201);
    const id = r.body.jobs[0].id;
    const done = await t.waitFor(
      'the job to end on Slurm',
      async () => {
        const j = (await t.call<JobView>(alice, 'GET', `/v1/jobs/${id}`)).body;
        return ['succeeded', 'failed', 'cancelled', 'lost'].includes(j.state) ? j : undefined;
      },
      60_000,
    );
    expect(done, JSON.stringify({ reason: done.reason, exit: done.exitCode })).toMatchObject({ state: 'succeeded', exitCode: 0 });
    const node = done.placement![0].node;
    const log = await t.call<string>(alice, 'GET', `/v1/jobs/${id}/logs`);
    expect(log.body).toMatch(new RegExp(`^user=pharma-alice account=pharma node=${node} gpus=\\d,\\d\\n`));
  }, 90_000);

  it('keeps work off a node drained in Slurm until it is resumed', async () => {
    const nodeState = async (name: string) =>
      (await t.call<{ nodes: { name: string; state: string }[] }>(alice, 'GET', '/v1/nodes')).body.nodes.find(
        (n) => n.name === name,
      )?.state;
    execFileSync('scontrol', ['update', 'nodename=node3', 'state=drain', 'reason=fabrik-test']);
    try {
      await t.waitFor('node3 draining in Fabrik', async () => (await nodeState('node3')) === 'draining', 30_000);
      // Each within its member's share.
      const ids: string[] = [];
      for (const [member, gpus] of [
        ['pharma', 8],
        ['telecom', 6],
        ['bank', 4],
      ] as const) {
        // One of the member's people submits: an operator does no member's work.
        const r = await t.call<{ jobs: JobView[] }>(await t.token(member, 'researcher', `${member}-r`), 'POST', '/v1/jobs', {
          script: '#!/bin/bash\nsleep 5\n',
          gpus,
        });
        ids.push(r.body.jobs[0].id);
      }
      const placed = await Promise.all(
        ids.map((id) =>
          t.waitFor(
            `job ${id} placed`,
            async () => (await t.call<JobView>(t.operator, 'GET', `/v1/jobs/${id}`)).body.placement ?? undefined,
            60_000,
          ),
        ),
      );
      // 8 + 6 + 4 GPUs need three nodes of 8; best-fit fills node1, node2, node3 in any order, but for the drain.
      expect(new Set(placed.flat().map((p) => p.node))).toEqual(new Set(['node1', 'node2', 'node4']));
      for (const id of ids) await t.call(t.operator, 'POST', `/v1/jobs/${id}/cancel`);
    } finally {
      execFileSync('scontrol', ['update', 'nodename=node3', 'state=resume']);
    }
    await t.waitFor('node3 up again in Fabrik', async () => (await nodeState('node3')) === 'up', 30_000);
  }, 120_000);
});

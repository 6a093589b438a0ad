// Deployments on the real Slurm cluster (scripts/slurm/up.sh): a replica is a Slurm job run as the
// member's Unix user, its engine listens on the node's interfaces and the server reaches it at the
// node's address (NodeAddr); the gateway serves the openai client from it; a replica Slurm ends
// (scancel, as an operator or a node failure would) is replaced; deleting cancels the Slurm jobs.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testServer, type TestServer } from '../server/helpers.js';
import { closeAndCancel, slurmJobsTagged, slurmNodesOrSkip } from '../slurm-cluster.js';

const nodes = await slurmNodesOrSkip('deployments on Slurm');
const BIN = new URL('../../bin/fabrik', import.meta.url).pathname;

interface View {
  id: string;
  replicas: { id: string; replica: number; state: string; node: string | null; url: string | null; healthy: boolean }[];
}

describe.runIf(nodes !== null)('deployments on Slurm', () => {
  let t: TestServer;
  let pia: string;
  let id: string;
  const get = async () => (await t.call<View>(pia, 'GET', `/v1/deployments/${id}`)).body;
  const oneHealthy = (not?: string) => async () => {
    const d = await get();
    const up = d.replicas.filter((r) => r.healthy && r.state === 'running' && r.id !== not);
    return up.length === 1 && d.replicas.length === 1 ? d : undefined;
  };

  beforeAll(async () => {
    // The members' Unix users run the replicas and write their logs: they pass through the data folder
    // (0711: through, not list) to their own job folders.
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-deploy-slurm-'));
    chmodSync(dir, 0o711);
    t = await testServer(
      {
        executor: 'slurm',
        slurm: { createUnixUsers: true },
        deployments: { healthIntervalMs: 200, reconcileMs: 200 },
      },
      dir,
    );
    pia = await t.token('pharma', 'researcher', 'pia');
  });
  afterAll(async () => {
    if (t) await closeAndCancel(t);
  });

  it("runs the replica as a Slurm job of the member's user, reached at its node's address, and serves the openai client", async () => {
    const r = await t.call<View>(pia, 'POST', '/v1/deployments', {
      model: 'tiny',
      command: [BIN, 'engine', '--model', 'tiny', '--ttft-ms', '0', '--itl-ms', '0'],
      gpus: 1,
      min: 1,
      max: 1,
      accreditations: ['internal'],
    });
    expect(r.status).toBe(201);
    id = r.body.id;
    // tsx compiles the CLI on first start as a new Unix user: give it time.
    const d = await t.waitFor('a healthy replica on Slurm', oneHealthy(), 120_000);
    const replica = d.replicas[0];
    const address = nodes!.find((n) => n.name === replica.node)?.address;
    expect(address).toBeTruthy();
    expect(replica.url).toMatch(new RegExp(`^http://${address!.replace(/\./g, '\\.')}:(2\\d{4})$`));
    // It listens on every interface of its node, not on loopback only.
    const port = replica.url!.split(':')[2];
    expect(execFileSync('ss', ['-Hltn', `sport = :${port}`]).toString()).toMatch(/\b0\.0\.0\.0:\d+\s/);
    // Reachable by anything on the cluster network, so it answers only the gateway's token.
    expect((await fetch(`${replica.url}/health`)).status).toBe(401);
    expect((await fetch(`${replica.url}/v1/models`, { headers: { authorization: 'Bearer guessed' } })).status).toBe(401);
    const job = await t.call<{ spec: { env: Record<string, string>; secretEnv: Record<string, string> } }>(
      pia,
      'GET',
      `/v1/jobs/${replica.id}`,
    );
    expect(job.body.spec.env).toMatchObject({ FABRIK_ENGINE_HOST: '0.0.0.0', FABRIK_DEPLOYMENT: id });
    expect(job.body.spec.secretEnv).toEqual({ FABRIK_ENGINE_API_KEY: '(secret)', VLLM_API_KEY: '(secret)' });
    const running = await slurmJobsTagged(t.server.store, replica.id, { started: true });
    expect(running).toHaveLength(1);
    const user = execFileSync('squeue', ['-h', '-j', running[0], '-o', '%u']).toString().trim();
    expect(user).toBe('pharma-pia');

    const admin = await t.token('pharma', 'member-admin', 'pam');
    const key = await t.call<{ secret: string }>(admin, 'POST', '/v1/keys', { name: 'slurm', models: ['tiny'] });
    const openai = new OpenAI({ apiKey: key.body.secret, baseURL: `${t.server.url}/v1`, maxRetries: 0 });
    const answer = await openai.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Shall I compare thee' }],
      max_completion_tokens: 8,
    });
    expect(answer.choices[0].message.content).toBeTruthy();
    expect(answer.usage?.completion_tokens).toBe(8);
  }, 180_000);

  it('replaces a replica that Slurm ended', async () => {
    const before = (await get()).replicas[0];
    const [slurmJob] = await slurmJobsTagged(t.server.store, before.id, { started: true });
    execFileSync('scancel', [slurmJob]);
    const d = await t.waitFor('a replacement on Slurm', oneHealthy(before.id), 120_000);
    expect(d.replicas[0].replica).toBeGreaterThan(before.replica);
    const old = await t.call<{ state: string }>(pia, 'GET', `/v1/jobs/${before.id}`);
    expect(['failed', 'lost', 'cancelled']).toContain(old.body.state);
  }, 180_000);

  it("deleting the deployment ends its replicas' Slurm jobs", async () => {
    const replica = (await get()).replicas[0];
    expect((await t.call(pia, 'DELETE', `/v1/deployments/${id}`)).status).toBe(200);
    await t.waitFor(
      'the Slurm job to end',
      async () => {
        const live = execFileSync('squeue', ['-h', '-t', 'PD,R,CG,S', '-o', '%k']).toString();
        return !live.includes(`:${replica.id}`);
      },
      60_000,
    );
    const job = await t.waitFor('the replica job to end', async () => {
      const j = (await t.call<{ state: string }>(pia, 'GET', `/v1/jobs/${replica.id}`)).body;
      return j.state === 'running' ? undefined : j;
    });
    expect(job.state).toBe('cancelled');
  }, 120_000);
});

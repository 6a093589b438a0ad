// GET /v1/nodes to a member shows its own GPUs per node and other members' only as one site-wide
// sum: where another member runs, and how much per rack, is not a competitor's to know. Operators
// and consortium auditors see every member's use per node. `fabrik nodes` prints either.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testServer, type TestServer } from './helpers.js';

const root = new URL('../../', import.meta.url).pathname;

interface NodesView {
  nodes: { name: string; gpusInUse: number; byMember?: Record<string, number> }[];
  others: { gpusInUse: number } | null;
}

let t: TestServer;
let pharma: string;
let telecom: string;
let auditor: string;
const ids: string[] = [];

beforeAll(async () => {
  t = await testServer({ localNodes: 2 });
  pharma = await t.token('pharma', 'researcher', 'pia');
  telecom = await t.token('telecom', 'researcher', 'tom');
  auditor = await t.token(null, 'auditor', 'aud');
  // pharma and telecom hold 1 GPU each (their quota on this 4-GPU host), running until cancelled.
  for (const [token, gpus] of [
    [pharma, 1],
    [telecom, 1],
  ] as const) {
    const r = await t.call<{ jobs: { id: string }[] }>(token, 'POST', '/v1/jobs', { command: ['sleep', '120'], gpus });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    ids.push(r.body.jobs[0].id);
  }
  await t.waitFor('both jobs to run', async () => {
    const states = await Promise.all(ids.map((id) => t.call<{ state: string }>(t.operator, 'GET', `/v1/jobs/${id}`)));
    return states.every((s) => s.body.state === 'running');
  });
}, 60_000);

afterAll(async () => {
  for (const id of ids) await t.call(t.operator, 'POST', `/v1/jobs/${id}/cancel`);
  await t?.close();
});

const sum = (v: NodesView) => v.nodes.reduce((s, n) => s + n.gpusInUse, 0);

describe('GET /v1/nodes', () => {
  it("a member sees its own GPUs per node and others' as one site-wide sum, no member named", async () => {
    for (const [token, own, others] of [
      [pharma, 1, 1],
      [telecom, 1, 1],
    ] as const) {
      const r = await t.call<NodesView>(token, 'GET', '/v1/nodes');
      expect(r.status).toBe(200);
      expect(sum(r.body)).toBe(own);
      expect(r.body.others).toEqual({ gpusInUse: others });
      for (const n of r.body.nodes) expect(n.byMember).toBeUndefined();
      const text = JSON.stringify(r.body);
      expect(text).not.toContain(token === pharma ? 'telecom' : 'pharma');
    }
  });

  it('operators and consortium auditors see every member per node', async () => {
    for (const token of [t.operator, auditor]) {
      const r = await t.call<NodesView>(token, 'GET', '/v1/nodes');
      expect(r.status).toBe(200);
      expect(sum(r.body)).toBe(2);
      expect(r.body.others).toBeNull();
      const perMember: Record<string, number> = {};
      for (const n of r.body.nodes) for (const [m, g] of Object.entries(n.byMember ?? {})) perMember[m] = (perMember[m] ?? 0) + g;
      expect(perMember).toEqual({ pharma: 1, telecom: 1 });
    }
  });

  it('`fabrik nodes` prints the table for a member', async () => {
    const out = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'nodes'], {
        env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: pharma },
        cwd: root,
      });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      child.on('exit', (code) => resolve({ code: code ?? -1, out: text }));
    });
    expect(out.code, out.out).toBe(0);
    const lines = out.out.trim().split('\n');
    expect(lines[0]).toMatch(/^NODE\s+DOMAIN\s+ZONE\s+STATE\s+GPUS\s+IN USE$/);
    expect(lines).toHaveLength(3);
    expect(lines.slice(1).reduce((s, l) => s + Number(l.split(/\s+/).at(-1)), 0)).toBe(1);
  });
});

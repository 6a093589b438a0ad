// `fabrik models` and `fabrik approvals` against a real server: the table, the card as Markdown,
// and a refused export as one line naming the stable code (exit 1).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from '../server/helpers.js';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
let t: TestServer;
let token: string;

async function fabrik(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run('npx', ['tsx', 'src/cli/main.ts', ...args], {
      cwd: root,
      env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: token },
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

beforeAll(async () => {
  t = await testServer();
  token = await t.token('telecom', 'member-admin', 'tara');
  const ds = await t.call(token, 'POST', '/v1/datasets', {
    id: 'towers',
    classification: 'restricted',
    zones: ['general'],
    location: '/l',
  });
  expect(ds.status).toBe(201);
  const r = await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', {
    command: ['true'],
    gpus: 1,
    datasets: ['towers'],
    purpose: 'ran',
  });
  const id = r.body.jobs[0].id;
  await t.waitFor('the job', async () => (await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body.state === 'succeeded');
  const m = await t.call(token, 'POST', '/v1/models', { name: 'ran', version: '1', jobId: id, artifact: '/m/ran/1' });
  expect(m.status).toBe(201);
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe('fabrik models and approvals', () => {
  it('lists models, prints the card and refuses an unapproved export with its code', async () => {
    const list = await fabrik('models', 'list');
    expect(list.out).toMatch(/ran\s+1\s+telecom\s+\d+\s+restricted\s+\*\s+general\s+two approvers\s+full/);
    const card = await fabrik('models', 'card', 'ran', '1', '--set', 'intendedUse=radio planning');
    expect(card.code).toBe(0);
    expect(card.out).toContain('# Model card: ran 1');
    expect(card.out).toContain('Intended use: radio planning');
    expect(card.out).toContain('Annex XI, section 2');
    const exp = await fabrik('models', 'export', 'ran', '1');
    expect(exp.code).toBe(1);
    expect(exp.err).toContain('[APPROVAL_REQUIRED]');
    const req = await fabrik('approvals', 'request', 'model-export', 'model:ran@1', '--reason', 'publish');
    expect(req.out).toMatch(/^approval apr-[0-9a-f]+: model-export of model:ran@1/);
    expect((await fabrik('approvals', 'list')).out).toContain('model:ran@1');
  }, 60_000);
});

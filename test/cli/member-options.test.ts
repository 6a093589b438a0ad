// The CLI's side of "an operator never acts as a member" (issue 17): the options that once let an
// operator submit, deploy or make a key for a member are refused before anything is sent, with a
// sentence that says why; what an operator may still try (a dataset for a member) gets the server's
// 403 as one readable line. Against a real server, as its operator, so a refusal that let the
// request through would show as a job, a deployment or a key.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testServer, type TestServer } from '../server/helpers.js';

const bin = new URL('../../bin/fabrik', import.meta.url).pathname;

let t: TestServer;
beforeAll(async () => {
  t = await testServer({ executor: 'simulated' });
});
afterAll(async () => {
  await t?.close();
});

function fabrik(token: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { env: { PATH: process.env.PATH ?? '', FABRIK_URL: t.server.url, FABRIK_TOKEN: token } }, (e, out, err) =>
      resolve({ code: e ? Number(e.code ?? 1) : 0, out, err }),
    );
  });
}

describe("the CLI's --member options", () => {
  it('submit, deploy and keys create refuse --member, saying why, and send nothing', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['submit', '--member', 'pharma', '--wrap', 'true'],
        /Fabrik no longer takes --member: a job is submitted for your token's member/,
      ],
      [['submit', '--member=telecom', '-G', '1', '--', 'true'], /an operator runs the machine, not a member's work/],
      [
        ['deploy', '--model', 'm', '--member', 'pharma', '--', 'true'],
        /Fabrik no longer takes --member: a deployment is your token's member's/,
      ],
      [
        ['keys', 'create', '--name', 'k', '--member', 'pharma'],
        /Fabrik no longer takes --member: a key is your token's member's/,
      ],
    ];
    for (const [args, says] of cases) {
      const r = await fabrik(t.operator, args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.err, args.join(' ')).toMatch(says);
      // One line for a person, not a stack trace.
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    const jobs = await t.call<{ jobs: unknown[] }>(t.operator, 'GET', '/v1/jobs');
    const deployments = await t.call<{ deployments: unknown[] }>(t.operator, 'GET', '/v1/deployments');
    const keys = await t.call<{ keys: unknown[] }>(t.operator, 'GET', '/v1/keys');
    expect([jobs.body.jobs, deployments.body.deployments, keys.body.keys]).toEqual([[], [], []]);
  });

  it("an operator's request for a member's work gets the server's 403 as one readable line", async () => {
    const submit = await fabrik(t.operator, ['submit', '--wrap', 'true']);
    expect(submit.code).toBe(1);
    expect(submit.err.trim()).toBe(
      "fabrik: jobs are submitted by a member's people; an operator runs the machine, not a member's work (body.member) [FORBIDDEN]",
    );
    const dataset = await fabrik(t.operator, [
      'datasets',
      'register',
      'trials',
      '--classification',
      'internal',
      '--zones',
      'general',
      '--location',
      '/data/trials',
    ]);
    expect(dataset.code).toBe(1);
    expect(dataset.err.trim()).toBe(
      "fabrik: datasets are registered by a member's people; an operator runs the machine, not a member's work (body.owner) [FORBIDDEN]",
    );
    // The same commands work for a member's person, without --member.
    const pia = await t.token('pharma', 'researcher', 'pia');
    const ok = await fabrik(pia, ['submit', '--wrap', 'true']);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^Submitted batch job \d+$/m);
  });
});

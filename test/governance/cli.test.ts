// The README's walk-through on the command line: register a dataset, grant it for a purpose,
// watch a job be admitted and another refused with the rule, and ask who may use the data.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testServer, type TestServer } from '../server/helpers.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
let t: TestServer;
const tokens: Record<string, string> = {};

function fabrik(who: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
      env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: tokens[who] },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

beforeAll(async () => {
  t = await testServer();
  tokens.pia = await t.token('pharma', 'researcher', 'pia');
  tokens.pam = await t.token('pharma', 'member-admin', 'pam');
  tokens.tom = await t.token('telecom', 'researcher', 'tom');
});
afterAll(() => t.close());

describe('fabrik datasets, agreements and submit --dataset', () => {
  it('walks from a dataset to an admitted job and a refused one', async () => {
    const reg = await fabrik('pia', [
      'datasets',
      'register',
      'genomes',
      '--classification',
      'internal',
      '--zones',
      'general',
      '--location',
      '/lustre/pharma/genomes',
    ]);
    expect(reg.out.trim()).toBe('dataset genomes registered for pharma: internal, zones general');
    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const dua = await fabrik('pia', [
      'agreements',
      'propose',
      'dua-genomes',
      '--grantee',
      'telecom',
      '--datasets',
      'genomes',
      '--purposes',
      'research',
      '--zones',
      'general',
      '--expires',
      expires,
      '--produces',
      'internal',
    ]);
    expect(dua.out).toContain('agreement dua-genomes proposed: pharma → telecom');
    expect((await fabrik('pam', ['agreements', 'approve', 'dua-genomes'])).out.trim()).toBe('agreement dua-genomes approved');

    // Qualified (pharma's genomes), as the README does; the refused one below names it bare.
    const ok = await fabrik('tom', [
      'submit',
      '--dataset',
      'pharma/genomes',
      '--purpose',
      'research',
      '--parsable',
      '--wrap',
      'true',
    ]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out.trim()).toMatch(/^\d+$/);
    const refused = await fabrik('tom', ['submit', '--dataset', 'genomes', '--purpose', 'advertising', '--wrap', 'true']);
    expect(refused.code).toBe(1);
    // The last line: the one before says which FABRIK_* variables --export=ALL left out (the token).
    expect(refused.err.trim().split('\n').at(-1)).toBe(
      'fabrik: admission refused: dataset pharma/genomes: refused by purpose-not-permitted (body.datasets) [ADMISSION_DENIED]',
    );

    const uses = await fabrik('pia', ['datasets', 'uses', 'genomes']);
    expect(uses.out).toMatch(/telecom\s+research\s+general\s+dua-genomes/);
    const bad = await fabrik('pia', [
      'agreements',
      'propose',
      'x',
      '--grantee',
      'telecom',
      '--datasets',
      'genomes',
      '--purposes',
      'r',
      '--zones',
      'general',
      '--expires',
      'soon',
      '--produces',
      'internal',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.err.trim()).toBe("fabrik: --expires: 'soon' is not a date (ISO 8601, e.g. 2027-06-30)");
  }, 60_000);
});

// Names come from other people: a job name or a dataset name full of terminal escapes must not
// clear the screen, move the cursor, recolour the terminal, reorder text or print fake rows when
// the CLI shows it. Checked on the helper, then through the real CLI against a real server.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliFailure } from '../../src/cli/errors.js';
import { ApiRequestError } from '../../src/cli/client.js';
import { line, printable, printableText, terminalJson } from '../../src/cli/printable.js';
import { table } from '../../src/cli/table.js';
import { testServer, type TestServer } from '../server/helpers.js';
import { runCli } from './run.js';

/** Everything a terminal acts on: C0 (newline, tab, bell, ESC), DEL, C1, line separators, bidi controls. */
const ACTIVE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** A name an attacker would pick: clear screen, cursor home, colour, title (OSC), a fake row, RTL override, 8-bit CSI. */
const EVIL =
  '\u001b[2J\u001b[H\u001b[31mred\u001b[0m\u001b]0;pwned\u0007ok\nFAKE 999 pharma RUNNING\r\u202eevil\u202c\u009b2Jend\u007f\u2028x';

describe('printable', () => {
  it('removes escape sequences whole and every other control character', () => {
    expect(printable(EVIL)).toBe('redokFAKE 999 pharma RUNNINGevilendx');
    expect(printable('plain name: ø, 漢字, 😀')).toBe('plain name: ø, 漢字, 😀');
    expect(printable(42)).toBe('42');
  });

  it('printableText keeps line ends and tabs, and nothing else a terminal acts on', () => {
    expect(printableText('a\tb\r\nc\u001b[2Jd\u202e')).toBe('a\tb\ncd');
  });

  it('line`` cleans the values, not the text around them', () => {
    expect(line`job ${'x\ny'}:\t${'\u001b[2Jdone'}`).toBe('job xy:\tdone');
  });

  it('any string (property): nothing active is left', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        expect(printable(s)).not.toMatch(ACTIVE);
        expect(printableText(s).replace(/[\n\t]/g, '')).not.toMatch(ACTIVE);
      }),
      { numRuns: 2000 },
    );
  });

  it('terminalJson is the same value, with nothing active raw', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = terminalJson(v);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(v)));
        expect(text.replace(/\n/g, '')).not.toMatch(ACTIVE);
      }),
    );
  });

  it('table cells cannot add rows or shift columns', () => {
    const t = table(['ID', 'NAME', 'STATE'], [['1', EVIL, 'pending']]);
    expect(t).toHaveLength(2);
    expect(t[1]).toBe('1   redokFAKE 999 pharma RUNNINGevilendx  pending');
  });

  it("an API error's message, field and code are one clean line", () => {
    const f = cliFailure(new ApiRequestError(404, 'NOT_FOUND', `dataset ${EVIL} not found`, 'body.\u001b[2Jid'));
    expect(f?.line).toBe('fabrik: dataset redokFAKE 999 pharma RUNNINGevilendx not found (body.id) [NOT_FOUND]');
  });
});

const cli = runCli;

describe('through the real CLI against a server', () => {
  let t: TestServer;
  let env: Record<string, string>;
  let blockerId: string | undefined;

  beforeAll(async () => {
    t = await testServer();
    env = { FABRIK_URL: t.server.url, FABRIK_TOKEN: t.operator, FABRIK_DATA: t.dataDir };
    // What pharma's researcher wrote; the operator's CLI prints it (a member's people submit and register).
    const pia = await t.token('pharma', 'researcher', 'pia');
    // Held: it depends (afterOk) on a long job of pharma's, so it stays in the queue.
    const blocker = await t.call<{ jobs: { id: string }[] }>(pia, 'POST', '/v1/jobs', {
      command: ['sleep', '600'],
      gracePeriodSeconds: 0,
    });
    blockerId = blocker.body.jobs[0].id;
    const job = await t.call(pia, 'POST', '/v1/jobs', {
      name: EVIL.slice(0, 128),
      command: ['true'],
      afterOk: [blockerId],
    });
    expect(job.status, JSON.stringify(job.body)).toBe(201);
    const ds = await t.call(pia, 'POST', '/v1/datasets', {
      id: 'trials',
      name: EVIL,
      classification: 'internal',
      zones: ['general'],
      location: `/data/${EVIL}`,
    });
    expect(ds.status, JSON.stringify(ds.body)).toBe(201);
  }, 60_000);
  afterAll(async () => {
    if (blockerId) await t.call(t.operator, 'POST', `/v1/jobs/${blockerId}/cancel`);
    await t?.close();
  });

  it('queue, jobs, datasets list: every row is one clean line; --json keeps the value, escaped', async () => {
    for (const args of [['queue'], ['jobs'], ['datasets', 'list']]) {
      const r = await cli(args, env);
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
      expect(r.out.replace(/\n/g, ''), args.join(' ')).not.toMatch(ACTIVE);
      expect(r.out, args.join(' ')).toContain('redokFAKE 999 pharma RUNNING');
      // The fake row is not a row.
      expect(
        r.out.split('\n').filter((l) => l.startsWith('FAKE')),
        args.join(' '),
      ).toEqual([]);
    }
    const j = await cli(['datasets', 'list', '--json'], env);
    expect(j.out.replace(/\n/g, '')).not.toMatch(ACTIVE);
    expect((JSON.parse(j.out) as { name: string }[])[0].name).toBe(EVIL);
  });

  it('an error naming what another person typed is one clean line', async () => {
    const r = await cli(['agreements', 'approve', `x${EVIL}`], env);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).not.toMatch(/\u001b|\u009b|\u202e/);
  });
});

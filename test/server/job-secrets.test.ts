// A job's environment and its secrets (issue 17): secretEnv reaches the job (it can print it into
// its own log) and nothing else: no API answer, to anyone; not the store (SQLite's file, or the
// rows PostgreSQL's administrator reads); not the audit log. Plain env values are the owner's only.
// Fabrik's own credentials never go into a job: refused by the API, left out by `fabrik submit`.
// A real server and real jobs on the local executor, on SQLite and on PostgreSQL.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { SecretBox, SecretKeyError, SecretOpenError } from '../../src/server/secrets.js';
import { forEachEngine, type Location } from '../audit/engines.js';
import { testServer, type TestServer } from './helpers.js';

type Err = { error: { code: string; message: string; field?: string } };
const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;

forEachEngine('job secrets', (engine, location) => {
  describe(`secret and plain job environments (${engine})`, () => {
    let loc: Location;
    let t: TestServer;
    let alice: string; // pharma researcher: the owner
    let bob: string; // pharma researcher: same member, not the owner
    let padmin: string;
    let paud: string;
    const secret = `s3cret-${randomBytes(12).toString('hex')}`;
    const plain = `plain-${randomBytes(12).toString('hex')}`;
    /** A job that prints its secret and its plain variable (the same request each time: a keyed retry). */
    const withSecret = () => ({
      name: 'with-secret',
      script: '#!/bin/bash\necho "secret=$API_SECRET plain=$PLAIN"\n',
      env: { PLAIN: plain },
      secretEnv: { API_SECRET: secret },
    });
    let job: JobView;
    /** Every answer the test got, to search for the secret at the end. */
    const answers: string[] = [];

    const call = async <T = unknown>(token: string, method: string, path: string, body?: unknown, h?: Record<string, string>) => {
      const r = await t.call<T>(token, method, path, body, h);
      answers.push(typeof r.body === 'string' ? r.body : JSON.stringify(r.body));
      return r;
    };
    const ended = (token: string, id: string) =>
      t.waitFor(`job ${id} to end`, async () => {
        const j = (await call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;
        return ['succeeded', 'failed', 'cancelled', 'lost'].includes(j.state) ? j : undefined;
      });

    beforeAll(async () => {
      loc = await location();
      t = await testServer(engine === 'postgres' ? { store: loc.url } : {});
      alice = await t.token('pharma', 'researcher', 'alice');
      bob = await t.token('pharma', 'researcher', 'bob');
      padmin = await t.token('pharma', 'member-admin', 'padmin');
      paud = await t.token('pharma', 'auditor', 'paud');
      const r = await call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', withSecret(), { 'idempotency-key': 'secret-1' });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      job = await ended(alice, r.body.jobs[0].id);
    });
    afterAll(async () => {
      await t?.close();
      await loc?.dispose();
    });

    it('gives the job its secret: it can print it into its own log', async () => {
      expect(job.state).toBe('succeeded');
      const log = await t.call<string>(alice, 'GET', `/v1/jobs/${job.id}/logs`);
      expect(log.body).toBe(`secret=${secret} plain=${plain}\n`);
    });

    it('shows the secret to no one, the owner included; plain values to the owner only', async () => {
      for (const [who, token] of [
        ['owner', alice],
        ['operator', t.operator],
        ['same member', bob],
        ['member admin', padmin],
        ['auditor', paud],
      ] as const) {
        const one = await call<JobView>(token, 'GET', `/v1/jobs/${job.id}`);
        expect(one.body.spec.secretEnv, who).toEqual({ API_SECRET: '(secret)' });
        expect(one.body.spec.env, who).toEqual({ PLAIN: who === 'owner' ? plain : '(hidden)' });
        const list = await call<{ jobs: JobView[] }>(token, 'GET', '/v1/jobs?limit=1000');
        const listed = list.body.jobs.find((j) => j.id === job.id)!;
        expect(listed.spec, who).toEqual(one.body.spec);
        await call(token, 'GET', `/v1/jobs/${job.id}/events`);
        await call(token, 'GET', `/v1/jobs/${job.id}/explain`);
      }
      // The submitter's own answer, and a retry's.
      const again = await call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', withSecret(), { 'idempotency-key': 'secret-1' });
      expect(again.status).toBe(200);
      expect(again.body.jobs[0]).toMatchObject({ id: job.id, spec: { secretEnv: { API_SECRET: '(secret)' } } });
      // The same key with another secret is another request.
      const other = await call<Err>(
        alice,
        'POST',
        '/v1/jobs',
        {
          name: 'with-secret',
          script: '#!/bin/bash\necho "secret=$API_SECRET plain=$PLAIN"\n',
          env: { PLAIN: plain },
          secretEnv: { API_SECRET: `${secret}-other` },
        },
        { 'idempotency-key': 'secret-1' },
      );
      expect(other.status).toBe(409);
    });

    it('cancel answers with the same view as GET', async () => {
      const r = await call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', {
        name: 'cancel-me',
        command: ['sleep', '60'],
        env: { PLAIN: plain },
        secretEnv: { API_SECRET: secret },
        gracePeriodSeconds: 1,
      });
      const id = r.body.jobs[0].id;
      for (const [who, token] of [
        ['operator', t.operator],
        ['owner', alice],
      ] as const) {
        const c = await call<JobView>(token, 'POST', `/v1/jobs/${id}/cancel`);
        if (c.status !== 200) continue; // the operator's cancel went first
        expect(c.body.spec.secretEnv, who).toEqual({ API_SECRET: '(secret)' });
        expect(c.body.spec.env, who).toEqual({ PLAIN: who === 'owner' ? plain : '(hidden)' });
      }
      await ended(alice, id);
    });

    it('keeps the secret out of every answer, the store and the audit log; the key file is 0600', async () => {
      answers.push(JSON.stringify((await t.call(t.operator, 'GET', '/v1/audit/events?limit=1000')).body));
      for (const a of answers) expect(a).not.toContain(secret);
      expect(answers.join('\n')).toContain('(secret)');
      if (engine === 'sqlite') {
        for (const f of ['fabrik.db', 'fabrik.db-wal'].map((n) => join(t.dataDir, n)).filter((f) => existsSync(f)))
          expect(readFileSync(f, 'latin1'), f).not.toContain(secret);
      } else {
        // What the database's administrator reads: the request column, ciphertext only.
        const client = new pg.Client({ connectionString: loc.url.replace(/\?.*$/, '') });
        await client.connect();
        try {
          const schema = new URL(loc.url).searchParams.get('schema')!;
          const rows = await client.query<{ request: string }>(`select request from ${schema}.jobs`);
          const all = rows.rows.map((r) => r.request).join('\n');
          expect(all).toContain('fabrik-sealed:v1:');
          expect(all).not.toContain(secret);
          const dump = await client.query<{ t: string }>(
            `select string_agg(row_to_json(x)::text, ' ') as t from (select * from ${schema}.job_events) x`,
          );
          expect(dump.rows[0].t ?? '').not.toContain(secret);
        } finally {
          await client.end();
        }
      }
      expect(statSync(join(t.dataDir, 'secrets.key')).mode & 0o777).toBe(0o600);
    });

    it("refuses Fabrik credentials in a job's environment, plain or secret, naming the variable", async () => {
      const token = await t.token('pharma', 'researcher', 'carrier');
      for (const [body, field] of [
        [{ env: { FABRIK_TOKEN: 'x' } }, 'body.env.FABRIK_TOKEN'],
        [{ env: { FABRIK_STORE: 'postgres://u:pw@db/f' } }, 'body.env.FABRIK_STORE'],
        [{ env: { FABRIK_OIDC_AUDIENCE: 'x' } }, 'body.env.FABRIK_OIDC_AUDIENCE'],
        [{ env: { fabrik_api_key: 'x' } }, 'body.env.fabrik_api_key'],
        [{ env: { MY_COPY: `Bearer ${token}` } }, 'body.env.MY_COPY'],
        [{ secretEnv: { FABRIK_TOKEN: token } }, 'body.secretEnv.FABRIK_TOKEN'],
        [{ secretEnv: { HIDDEN: token } }, 'body.secretEnv.HIDDEN'],
        [{ env: { SAME: 'a' }, secretEnv: { SAME: 'b' } }, 'body.secretEnv.SAME'],
      ] as const) {
        const r = await t.call<Err>(alice, 'POST', '/v1/jobs', { command: ['true'], ...body });
        expect(r.status, field).toBe(400);
        expect(r.body.error, field).toMatchObject({ code: 'VALIDATION_FAILED', field });
        expect(JSON.stringify(r.body)).not.toContain(token);
      }
      // Settings that are not credentials pass: the ones Fabrik itself gives jobs, for one.
      const ok = await call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', {
        command: ['true'],
        env: { FABRIK_ENGINE_PORT: '8000', FABRIK_MODEL: 'm', HF_HOME: '/cache', DOC: 'fbk_ is the prefix of API tokens' },
        secretEnv: { GATEWAY_KEY: `fgk_${'x'.repeat(43)}` },
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
      await ended(alice, ok.body.jobs[0].id);
    });

    it('fabrik submit --export=ALL leaves FABRIK_* out (naming all but its own settings), and sends --secret-env encrypted', async () => {
      const out = await fabrik(['--wrap', 'env', '--secret-env', 'CLI_SECRET', '--parsable'], {
        FABRIK_URL: t.server.url,
        FABRIK_TOKEN: alice,
        FABRIK_STORE: 'postgres://fabrik:pw@db/fabrik',
        OTHER_VAR: 'fine',
        CLI_SECRET: secret,
      });
      expect(out.code, out.err).toBe(0);
      expect(out.err.match(/not exported: /g)).toHaveLength(1);
      expect(out.err).toMatch(/not exported: FABRIK_STORE \(/);
      expect(out.err).not.toContain(alice);
      const id = out.out.trim();
      const j = await ended(alice, id);
      expect(j.state).toBe('succeeded');
      expect(Object.keys(j.spec.env)).not.toContain('FABRIK_TOKEN');
      expect(j.spec.secretEnv).toEqual({ CLI_SECRET: '(secret)' });
      const log = (await t.call<string>(alice, 'GET', `/v1/jobs/${id}/logs`)).body;
      expect(log).toContain('OTHER_VAR=fine');
      expect(log).toContain(`CLI_SECRET=${secret}`);
      expect(log).not.toContain(alice);
      // Naming the credential is refused, with a message, and nothing is submitted.
      const named = await fabrik(['--wrap', 'true', '--export=FABRIK_TOKEN'], { FABRIK_URL: t.server.url, FABRIK_TOKEN: alice });
      expect(named.code).not.toBe(0);
      expect(named.err).toMatch(/FABRIK_TOKEN is a Fabrik credential/);
      expect(named.err).not.toContain(alice);
    }, 60_000);
  });
});

function fabrik(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const { FABRIK_TOKEN: _t, FABRIK_URL: _u, ...rest } = process.env;
    const child = spawn(process.execPath, ['--import', 'tsx', main, 'submit', ...args], { env: { ...rest, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

describe('the secret box', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-secrets-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const alice = { member: 'pharma', user: 'alice' };

  it('makes its key 0600 on first use, and opens only what it sealed, for whom and under which name', () => {
    const box = new SecretBox(join(dir, 'secrets.key'), true);
    const sealed = box.seal(alice, 'A', 'value');
    expect(sealed).toMatch(/^fabrik-sealed:v1:/);
    expect(sealed).not.toContain('value');
    expect(statSync(join(dir, 'secrets.key')).mode & 0o777).toBe(0o600);
    // Another server on the same folder reads the same key.
    expect(new SecretBox(join(dir, 'secrets.key'), true).open(alice, 'A', sealed)).toBe('value');
    expect(box.seal(alice, 'A', 'value')).not.toBe(sealed);
    // Copied into another member's job, under another name, tampered with, or stored as plaintext: refused.
    expect(() => box.open({ member: 'telecom', user: 'alice' }, 'A', sealed)).toThrow(SecretOpenError);
    expect(() => box.open(alice, 'B', sealed)).toThrow(SecretOpenError);
    const flipped = sealed.slice(0, -2) + (sealed.endsWith('A') ? 'B' : 'A') + sealed.slice(-1);
    expect(() => box.open(alice, 'A', flipped)).toThrow(SecretOpenError);
    expect(() => box.open(alice, 'A', 'value')).toThrow(SecretOpenError);
    // Another key does not open it.
    writeFileSync(join(dir, 'other.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
    expect(() => new SecretBox(join(dir, 'other.key'), false).open(alice, 'A', sealed)).toThrow(SecretOpenError);
  });

  it("refuses an operator's key that is missing, readable by others, or not 32 bytes", () => {
    expect(() => new SecretBox(join(dir, 'none.key'), false).seal(alice, 'A', 'v')).toThrow(SecretKeyError);
    writeFileSync(join(dir, 'open.key'), randomBytes(32).toString('base64'));
    chmodSync(join(dir, 'open.key'), 0o644);
    expect(() => new SecretBox(join(dir, 'open.key'), false).seal(alice, 'A', 'v')).toThrow(/chmod 600/);
    writeFileSync(join(dir, 'short.key'), randomBytes(16).toString('base64'), { mode: 0o600 });
    expect(() => new SecretBox(join(dir, 'short.key'), false).seal(alice, 'A', 'v')).toThrow(/32 bytes/);
  });
});

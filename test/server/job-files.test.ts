// The log API serves a job's own log and nothing else (issue 17): paths outside the job's folder
// are refused at submit, and what a job plants in its own folder (a symbolic link to the server's
// files, a hard link to them, a FIFO, a folder swapped for a link) is never followed or served.
// A real server and real jobs on the local executor, on SQLite and on PostgreSQL.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SubmitRequest, type JobView } from '../../src/api/contract.js';
import { forEachEngine, type Location } from '../audit/engines.js';
import { testServer, type TestServer } from './helpers.js';

type Err = { error: { code: string; message: string; field?: string } };

forEachEngine('job files', (engine, location) => {
  describe(`job logs are served from the job's own folder only (${engine})`, () => {
    let loc: Location;
    let t: TestServer;
    let alice: string;
    /** What must never reach a job's log reader: a server-only file's content, the operator token. */
    const serverOnly = `server-only-${randomBytes(12).toString('hex')}`;

    beforeAll(async () => {
      loc = await location();
      t = await testServer(engine === 'postgres' ? { store: loc.url } : {});
      alice = await t.token('pharma', 'researcher', 'alice');
      writeFileSync(join(t.dataDir, 'server-only'), serverOnly, { mode: 0o400 });
    });
    afterAll(async () => {
      await t?.close();
      await loc?.dispose();
    });

    const secrets = () => [serverOnly, t.operator, 'SQLite format'];

    async function submit(body: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
      return t.call(alice, 'POST', '/v1/jobs', { name: 'files', ...body });
    }

    async function runToEnd(body: Record<string, unknown>): Promise<JobView> {
      const r = await submit(body);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      const id = (r.body as { jobs: JobView[] }).jobs[0].id;
      return t.waitFor(`job ${id} to end`, async () => {
        const j = (await t.call<JobView>(alice, 'GET', `/v1/jobs/${id}`)).body;
        return ['succeeded', 'failed', 'cancelled', 'lost'].includes(j.state) ? j : undefined;
      });
    }

    /** Neither stream serves anything of the server; a refusal is a 403 with the error body. */
    async function notServed(id: string, query = ''): Promise<void> {
      for (const stream of ['output', 'error']) {
        const r = await t.call<Err>(alice, 'GET', `/v1/jobs/${id}/logs?stream=${stream}${query}`);
        const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
        for (const s of secrets()) expect(text, `${stream} of job ${id}`).not.toContain(s);
        expect(r.status, text).toBe(403);
        expect((r.body as Err).error.code).toBe('FORBIDDEN');
      }
    }

    it('refuses at submit an output or error outside the job folder, and says where logs go', async () => {
      for (const path of [
        '/proc/self/environ',
        '/etc/passwd',
        join(t.dataDir, 'operator-token'),
        join(t.dataDir, 'server-only'),
        '../../operator-token',
        'logs/../../../fabrik.db',
        'rank-0.json',
      ])
        for (const field of ['output', 'error']) {
          const r = await submit({ command: ['true'], [field]: path });
          expect(r.status, path).toBe(400);
          const e = (r.body as Err).error;
          expect(e).toMatchObject({ code: 'VALIDATION_FAILED', field: `body.${field}` });
          expect(e.message).toMatch(/job's own folder|a file Fabrik keeps/);
        }
    });

    it('refuses a working directory that leads out of the job folder into the data folder', async () => {
      for (const workdir of ['../..', 'a/../../b', t.dataDir, join(t.dataDir, 'jobs'), join(t.dataDir, 'jobs', '1')]) {
        const r = await submit({ command: ['true'], workdir });
        expect(r.status, workdir).toBe(400);
        expect((r.body as Err).error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.workdir' });
      }
    });

    it("serves the job's own logs, relative names and sub-folders included, whatever its working directory", async () => {
      const j = await runToEnd({
        command: ['sh', '-c', 'echo out-line; echo err-line >&2'],
        output: 'logs/%x-%j.out',
        error: '%x-%j.err',
        workdir: tmpdir(),
      });
      expect(j.state).toBe('succeeded');
      expect((await t.call(alice, 'GET', `/v1/jobs/${j.id}/logs`)).body).toBe('out-line\n');
      expect((await t.call(alice, 'GET', `/v1/jobs/${j.id}/logs?stream=error`)).body).toBe('err-line\n');
      expect((await t.call(alice, 'GET', `/v1/jobs/${j.id}/logs?follow=true`)).body).toBe('out-line\n');
      expect((await t.call(alice, 'GET', `/v1/jobs/${j.id}/logs?offset=4`)).body).toBe('line\n');
      // sbatch's -o none: nothing is kept, the log reads empty.
      const none = await runToEnd({ command: ['echo', 'gone'], output: '/dev/null' });
      expect((await t.call(alice, 'GET', `/v1/jobs/${none.id}/logs`)).body).toBe('');
    });

    it('does not follow a symbolic link the job puts in place of its log, to the store, a key or the environ', async () => {
      for (const target of [
        join(t.dataDir, 'operator-token'),
        join(t.dataDir, 'server-only'),
        join(t.dataDir, engine === 'sqlite' ? 'fabrik.db' : 'secrets.key'),
        `/proc/${process.pid}/environ`,
      ]) {
        const j = await runToEnd({
          script: `#!/bin/bash\nlog="fabrik-$FABRIK_JOB_ID.out"\nrm -f "$log"\nln -s '${target}' "$log"\n`,
        });
        expect(j.state, target).toBe('succeeded');
        await notServed(j.id);
        await notServed(j.id, '&follow=true');
      }
    });

    it("does not serve a hard link to a server file, a FIFO, or a folder swapped for a link on the log's way", async () => {
      const hard = await runToEnd({
        script: `#!/bin/bash\nlog="fabrik-$FABRIK_JOB_ID.out"\nrm -f "$log"\nln '${join(t.dataDir, 'operator-token')}' "$log" || exit 9\n`,
      });
      expect(hard.state).toBe('succeeded');
      await notServed(hard.id);
      // A FIFO is refused at once: the server never waits on a writer.
      const fifo = await runToEnd({ script: `#!/bin/bash\nlog="fabrik-$FABRIK_JOB_ID.out"\nrm -f "$log"\nmkfifo "$log"\n` });
      expect(fifo.state).toBe('succeeded');
      await notServed(fifo.id);
      // The log's folder becomes a link to the data folder, where a file of the log's name is the token.
      const swapped = await runToEnd({
        output: 'logs/operator-token',
        error: 'err.log',
        script: `#!/bin/bash\nrm -rf logs\nln -s '${t.dataDir}' logs\n`,
      });
      expect(swapped.state).toBe('succeeded');
      const r = await t.call<Err>(alice, 'GET', `/v1/jobs/${swapped.id}/logs`);
      expect(r.status).toBe(403);
      expect(JSON.stringify(r.body)).not.toContain(t.operator);
      expect(r.body.error.message).toMatch(/symbolic link/);
    });

    it('confines a job name used in a log pattern (%x), even `..`', async () => {
      const j = await runToEnd({ name: '..', output: '%x/%x/fabrik.db', command: ['echo', 'mine'] });
      expect(j.state).toBe('succeeded');
      const r = await t.call(alice, 'GET', `/v1/jobs/${j.id}/logs`);
      expect([r.status, r.body]).toEqual([200, 'mine\n']);
      const slash = await runToEnd({ name: '../../operator-token', output: '%x', command: ['echo', 'also mine'] });
      expect((await t.call(alice, 'GET', `/v1/jobs/${slash.id}/logs`)).body).toBe('also mine\n');
    });

    it('serves a job stored before the rule with an absolute output from its own folder only', async () => {
      const request = SubmitRequest.parse({ command: ['echo', 'legacy'] });
      const { member: _m, project: _p, name: _n, array: _a, ...rest } = request;
      const outcome = await t.server.store.submit({
        jobs: [
          {
            name: 'legacy',
            member: 'pharma',
            project: 'protein-folding',
            user: 'alice',
            request: { ...rest, gpus: 1, output: '/proc/self/environ', error: join(t.dataDir, 'server-only') },
            gpus: 1,
            submittedAt: Date.now() / 1000,
            arrayTaskId: null,
            arrayThrottle: null,
          },
        ],
        idempotency: null,
      });
      if (outcome.kind !== 'created') throw new Error(outcome.kind);
      t.server.controller.submitted(outcome.jobs);
      const id = outcome.jobs[0].id;
      await t.waitFor('the legacy job to end', async () => {
        const j = (await t.call<JobView>(alice, 'GET', `/v1/jobs/${id}`)).body;
        return j.state === 'succeeded';
      });
      for (const stream of ['output', 'error']) {
        const r = await t.call(alice, 'GET', `/v1/jobs/${id}/logs?stream=${stream}`);
        expect([r.status, r.body]).toEqual([200, 'legacy\n']);
      }
    });
  });
});

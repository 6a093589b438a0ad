// The crash window between a job's commit and its `job.submitted` (issue 17), on a real `fabrik up`
// and on both stores: kill -9 during a burst of keyed submissions, one more job committed by hand
// while the server is down (exactly what a kill between the two commits leaves: a job, no event),
// then a restart and the clients' keyed retries. Afterwards every job in the store, acknowledged,
// retried or never answered, has exactly one `job.submitted`: none lost, none doubled. And, on a
// live server, the keyed retry itself logs what is missing (the route's call of ensureSubmitted).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { openStore, type KyselyStore, type NewJob } from '../../src/store/index.js';
import { forEachEngine } from '../audit/engines.js';
import { apiClient } from '../security/client.js';
import { testServer } from './helpers.js';
import { killHard, operatorToken, spawnServer, type SpawnedServer } from './spawned.js';

const BODY = { member: 'bank', command: ['true'], gpus: 1 };

forEachEngine('audit gap after kill -9', (engine, location) => {
  describe(`audit gap after kill -9 (${engine})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-audit-gap-'));
    const servers: SpawnedServer[] = [];
    const cleanups: (() => Promise<void>)[] = [];

    afterAll(async () => {
      for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) await killHard(s);
      for (const c of cleanups) await c();
      rmSync(dir, { recursive: true, force: true });
    });

    it('every acknowledged, retried or unanswered job has exactly one job.submitted', async () => {
      const place = await location();
      cleanups.push(() => place.dispose());
      const storeUrl = engine === 'sqlite' ? `sqlite:${join(dir, 'fabrik.db')}` : place.url;
      const up = async () => {
        const s = await spawnServer(dir, ['--store', storeUrl]);
        servers.push(s);
        return s;
      };
      let server = await up();
      // A member's researcher submits (an operator does no member's work), made as a consortium makes one.
      const token = (await apiClient(server.url).people(operatorToken(dir), { bank: ['bo'] })).bank.bo;
      const submit = async (key: string) => {
        const res = await fetch(`${server.url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(BODY),
        });
        return { status: res.status, jobs: ((await res.json()) as { jobs: JobView[] }).jobs };
      };

      // 20 clients submit with keys; the server dies mid-burst. A client's key in flight then is one
      // it never got an answer for: the job may be committed (with or without its event) or not.
      const acknowledged: string[] = [];
      const unanswered: string[] = [];
      const failures: string[] = [];
      let alive = 20;
      const clients = Array.from({ length: 20 }, async (_, c) => {
        let key = '';
        try {
          for (let i = 0; ; i++) {
            key = `gap-${c}-${i}`;
            const r = await submit(key);
            expect(r.status).toBe(201);
            acknowledged.push(r.jobs[0].id);
          }
        } catch (e) {
          failures.push(String(e));
          unanswered.push(key);
        } finally {
          alive--;
        }
      });
      while (acknowledged.length < 150 && alive > 0) await new Promise((r) => setTimeout(r, 20));
      expect(acknowledged.length, failures[0]).toBeGreaterThanOrEqual(150);
      await killHard(server);
      await Promise.all(clients);
      expect(unanswered).toHaveLength(20);

      // While it is down: one job committed the way the route commits it, its audit append never made.
      const store = await openStore(storeUrl, { poolSize: 2 });
      const outcome = await store.submit({
        jobs: [
          {
            name: 'cut-short',
            member: 'bank',
            project: 'default',
            user: 'bo',
            request: { command: ['true'], env: {}, topology: 'none', priorityClass: 'batch' } as unknown as NewJob['request'],
            gpus: 1,
            submittedAt: Date.now() / 1000,
            arrayTaskId: null,
            arrayThrottle: null,
          },
        ],
        idempotency: null,
      });
      const cutShort = outcome.kind === 'created' ? outcome.jobs[0].id : '';
      const gap = await sql<{
        id: string | number;
      }>`select id from jobs j where not exists (select 1 from audit_events a where a.subject = cast(j.id as text) and a.kind = 'job.submitted')`.execute(
        store.db,
      );
      await store.close();
      // How many a crash left without their event (the one above, and whatever the kill cut off).
      console.log(
        `[audit-gap ${engine}] ${acknowledged.length} acknowledged; ${gap.rows.length} jobs without job.submitted before the restart`,
      );
      expect(gap.rows.map((r) => String(r.id))).toContain(cutShort);

      // The restart reconciles; then each client retries its unanswered key with the same request.
      server = await up();
      const retried: string[] = [];
      for (const key of unanswered) {
        const r = await submit(key);
        expect([200, 201]).toContain(r.status);
        retried.push(r.jobs[0].id);
      }
      const stopped = new Promise((r) => server.child.once('exit', r));
      server.child.kill('SIGTERM');
      await stopped;

      const after = await openStore(storeUrl, { poolSize: 2 });
      try {
        const jobs = (await sql<{ id: string | number }>`select id from jobs`.execute(after.db)).rows.map((r) => String(r.id));
        const counts = new Map(
          (
            await sql<{
              subject: string;
              n: string | number;
            }>`select subject, count(*) as n from audit_events where kind = 'job.submitted' group by subject`.execute(after.db)
          ).rows.map((r) => [r.subject, Number(r.n)]),
        );
        for (const id of [...acknowledged, ...retried, cutShort]) expect(jobs).toContain(id);
        expect(jobs.filter((id) => counts.get(id) !== 1)).toEqual([]);
        const late = await after.db
          .selectFrom('audit_events')
          .select('data')
          .where('kind', '=', 'job.submitted')
          .where('subject', '=', cutShort)
          .executeTakeFirstOrThrow();
        expect(JSON.parse(late.data)).toMatchObject({ name: 'cut-short', loggedLate: 'server-start' });
      } finally {
        await after.close();
      }
    }, 300_000); // two server starts from the TypeScript sources on a busy 2-core machine
  });
});

forEachEngine('audit gap, keyed retry', (engine, location) => {
  describe(`audit gap, keyed retry on a live server (${engine})`, () => {
    it('a keyed retry of a job committed without its event logs job.submitted, once, however many retry at once', async () => {
      const place = await location();
      const t = await testServer({ store: engine === 'sqlite' ? undefined : place.url });
      try {
        const bo = await t.token('bank', 'researcher', 'bo');
        // One request through the route, to learn the hash the route keeps for this body (it
        // fingerprints the request with the server's own key).
        const body = { member: 'bank', command: ['true'], gpus: 1, name: 'retried' };
        const first = await t.call<{ jobs: JobView[] }>(bo, 'POST', '/v1/jobs', body, { 'idempotency-key': 'k-0' });
        expect(first.status).toBe(201);
        const stored = (await t.server.store.job(first.body.jobs[0].id))!;
        const db = (t.server.store as KyselyStore).db;
        const { request_hash } = await db
          .selectFrom('idempotency_keys')
          .select('request_hash')
          .where('key', '=', 'k-0')
          .executeTakeFirstOrThrow();
        // The same request under another key, committed as the route commits it, its audit append
        // never made (it failed, or the process died before it).
        const outcome = await t.server.store.submit({
          jobs: [{ ...stored, submittedAt: Date.now() / 1000 }],
          idempotency: { member: 'bank', user: 'bo', key: 'k-1', requestHash: request_hash },
        });
        const id = outcome.kind === 'created' ? outcome.jobs[0].id : '';
        const retries = await Promise.all(
          [1, 2, 3].map(() => t.call<{ jobs: JobView[] }>(bo, 'POST', '/v1/jobs', body, { 'idempotency-key': 'k-1' })),
        );
        expect(retries.map((r) => [r.status, r.body.jobs[0].id])).toEqual([1, 2, 3].map(() => [200, id]));
        const events = (await t.server.audit.events({ after: -1, limit: 1000 })).filter(
          (e) => e.kind === 'job.submitted' && e.subject === id,
        );
        expect(events).toHaveLength(1);
        expect(events[0]).toMatchObject({ actor: 'bo', member: 'bank', data: { loggedLate: 'keyed-retry' } });
      } finally {
        await t.close();
        await place.dispose();
      }
    });
  });
});

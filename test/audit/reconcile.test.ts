// The crash window between a job's commit and its `job.submitted` (issue 17): on both engines, with
// jobs committed through the real store and no event appended (what a kill -9 between the two
// leaves), the keyed retry's ensureSubmitted() and the start's reconcileSubmissions() log each
// missing event exactly once, however many ask at the same time; appendOnce() finds an event that
// is committed or still queued. The spawned-server version with kill -9 is test/server/audit-gap.test.ts.
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { AuditLog } from '../../src/audit/log.js';
import { ensureSubmitted, reconcileSubmissions } from '../../src/audit/reconcile.js';
import { openStore, type KyselyStore, type NewJob, type StoredJob } from '../../src/store/index.js';
import { forEachEngine, type Location } from './engines.js';

const key = generateKeyPairSync('ed25519').privateKey;

const job = (name: string, user = 'ada', arrayTaskId: number | null = null): NewJob => ({
  name,
  member: 'pharma',
  project: 'discovery',
  user,
  request: { command: ['true'], env: {}, topology: 'none', priorityClass: 'batch' } as unknown as NewJob['request'],
  gpus: 2,
  submittedAt: 1_800_000_000.25,
  arrayTaskId,
  arrayThrottle: null,
});

forEachEngine('audit reconciliation', (engine, location) => {
  describe(`audit reconciliation (${engine})`, () => {
    const open: { store: KyselyStore; log: AuditLog }[] = [];
    const places: Location[] = [];

    afterEach(async () => {
      for (const o of open.splice(0)) {
        await o.log.close({ checkpoint: false });
        await o.store.close();
      }
      await Promise.all(places.splice(0).map((p) => p.dispose()));
    });

    async function start(place?: Location) {
      if (!place) places.push((place = await location()));
      const store = await openStore(place.url, { poolSize: 4 });
      const log = await AuditLog.open(store.db, { origin: 'fabrik/test', signingKey: key, checkpointIntervalMs: 0 });
      open.push({ store, log });
      return { store, log, place };
    }

    const submittedEvents = async (log: AuditLog): Promise<AuditEvent[]> =>
      (await log.events({ after: -1, limit: 1000 })).filter((e) => e.kind === 'job.submitted');

    /** Commits jobs as the route does, and stops there: the crash before the audit append. */
    async function committed(store: KyselyStore, jobs: NewJob[], key: string | null = null): Promise<StoredJob[]> {
      const outcome = await store.submit({
        jobs,
        idempotency: key ? { member: 'pharma', user: 'ada', key, requestHash: 'h' } : null,
      });
      if (outcome.kind === 'conflict') throw new Error('conflict');
      return [...outcome.jobs];
    }

    it('appendOnce: one event for many askers at once, the queued one found, a committed one found later', async () => {
      const { log } = await start();
      const e = { kind: 'job.submitted', actor: 'ada', member: 'pharma', subject: '41' };
      const seqs = await Promise.all(Array.from({ length: 20 }, () => log.appendOnce(e)));
      expect(new Set(seqs).size).toBe(1);
      // A plain append still queued (not yet written) is found, not doubled.
      const queued = log.append({ ...e, subject: '42' });
      const again = log.appendOnce({ ...e, subject: '42' });
      expect(await again).toBe(await queued);
      // Committed: found in the store by its (subject, kind).
      expect(await log.appendOnce(e)).toBe(seqs[0]);
      expect(await log.find('job.submitted', '41')).toBe(seqs[0]);
      // Another kind about the same subject is another event.
      const started = await log.appendOnce({ ...e, kind: 'job.started' });
      expect(started).not.toBe(seqs[0]);
      expect(await log.find('job.started', '41')).toBe(started);
      expect(await log.find('job.submitted', '43')).toBeUndefined();
      expect(log.size).toBe(3);
    });

    it('ensureSubmitted: a keyed retry logs the missing events once, even when retried concurrently', async () => {
      const { store, log } = await start();
      const array = [job('sweep', 'ada', 0), job('sweep', 'ada', 1), job('sweep', 'ada', 2)];
      const first = await committed(store, array, 'retry-1');
      // The client never got its reply; it retries with the same key, three times at once.
      const outcome = await store.submit({
        jobs: array,
        idempotency: { member: 'pharma', user: 'ada', key: 'retry-1', requestHash: 'h' },
      });
      expect(outcome.kind).toBe('replayed');
      const replayed = outcome.kind === 'replayed' ? [...outcome.jobs] : [];
      expect(replayed.map((j) => j.id)).toEqual(first.map((j) => j.id));
      const answers = await Promise.all([1, 2, 3].map(() => ensureSubmitted(log, replayed, 'ada')));
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      const events = await submittedEvents(log);
      expect(events.map((e) => e.subject)).toEqual(first.map((j) => j.id));
      expect(events[0]).toMatchObject({
        actor: 'ada',
        member: 'pharma',
        data: {
          name: 'sweep',
          project: 'discovery',
          gpus: 2,
          priorityClass: 'batch',
          loggedLate: 'keyed-retry',
          submittedAt: '2027-01-15T08:00:00.250Z',
        },
      });
      // A later retry finds them and adds nothing.
      expect(await ensureSubmitted(log, replayed, 'ada')).toEqual(answers[0]);
      expect(log.size).toBe(3);
    });

    it('reconcileSubmissions: at start, every job without its event gets one (a replica as the deployments controller’s), once', async () => {
      const { store, log, place } = await start();
      const [logged] = await committed(store, [job('fine')]);
      await log.append({ kind: 'job.submitted', actor: 'ada', member: 'pharma', subject: logged.id });
      const lost = [...(await committed(store, [job('lost-a', 'bob')])), ...(await committed(store, [job('lost-b')], 'k'))];
      // A model replica the deployments controller submitted (its replica row written) before the crash.
      const [replica] = await committed(store, [job('deploy-d1-r0', 'carol')]);
      await store.db
        .insertInto('deployments')
        .values({
          id: 'd1',
          member: 'pharma',
          project: 'discovery',
          model: 'm',
          command: '["engine"]',
          gpus: 2,
          min_replicas: 1,
          max_replicas: 1,
          target: 1,
          accreditations: '[]',
          zone: null,
          reasoning: 0,
          scale_to_zero_seconds: null,
          state: 'active',
          next_replica: 1,
          created_at: 1,
          created_by: 'carol',
          updated_at: 1,
          deleted_at: null,
          deleted_by: null,
        })
        .execute();
      await store.db
        .insertInto('deployment_replicas')
        .values({ job_id: replica.id, deployment: 'd1', replica: 0, port: 9000, created_at: 1 })
        .execute();

      expect(await reconcileSubmissions(log, store)).toEqual([...lost.map((j) => j.id), replica.id]);
      const events = await submittedEvents(log);
      expect(events.map((e) => e.subject)).toEqual([logged.id, ...lost.map((j) => j.id), replica.id]);
      expect(events[1]).toMatchObject({ actor: 'bob', data: { loggedLate: 'server-start', name: 'lost-a' } });
      expect(events[3]).toMatchObject({ actor: 'deployments', data: { deployment: 'd1', loggedLate: 'server-start' } });
      // Nothing more to do, now or after a restart.
      expect(await reconcileSubmissions(log, store)).toEqual([]);
      await log.close();
      await store.close();
      open.splice(0);
      const again = await start(place);
      expect(await reconcileSubmissions(again.log, again.store)).toEqual([]);
      expect((await submittedEvents(again.log)).length).toBe(4);
    });
  });
});

// The audit log on both engines: appends are numbered without gaps and group-committed; an
// untouched log always verifies and reopens; editing, deleting or reordering stored events (by
// direct SQL, as someone with the database's password would) fails verification and names the
// first bad entry, and a server refuses to start on a log whose rows no longer match its checkpoint.
//
// Reproduce a property failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/audit.
import { generateKeyPairSync, createPublicKey, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditIntegrityError } from '../../src/audit/errors.js';
import { eventLeafHash } from '../../src/audit/event.js';
import { AuditLog } from '../../src/audit/log.js';
import { verifyInclusion } from '../../src/audit/merkle.js';
import { verifyStore } from '../../src/audit/verify.js';
import type { AuditEventInput } from '../../src/core/audit.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, type Location } from './engines.js';

const seed = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {};
const ORIGIN = 'fabrik/test';

const event = (i: number, member: string | null = 'pharma'): AuditEventInput => ({
  kind: 'job.submitted',
  actor: 'ada',
  member,
  subject: String(i),
  data: { gpus: i % 8, name: `job ${i}`, tags: ['a', i] },
});

const arbEvent: fc.Arbitrary<AuditEventInput> = fc.record({
  kind: fc.constantFrom('job.submitted', 'job.started', 'token.issued', 'auth.login'),
  actor: fc.string({ minLength: 1, maxLength: 12 }),
  member: fc.constantFrom('pharma', 'telecom', null),
  subject: fc.option(fc.string({ maxLength: 8 }), { nil: null }),
  data: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), { nil: undefined }),
});

forEachEngine('audit log', (engine, location) => {
  describe(`audit log (${engine})`, () => {
    const open: { store: KyselyStore; log?: AuditLog }[] = [];
    const places: Location[] = [];
    let key: KeyObject;

    afterEach(async () => {
      for (const o of open.splice(0)) {
        await o.log?.close({ checkpoint: false });
        await o.store.close();
      }
      await Promise.all(places.splice(0).map((p) => p.dispose()));
    });

    async function fresh(): Promise<Location> {
      const place = await location();
      places.push(place);
      key = generateKeyPairSync('ed25519').privateKey;
      return place;
    }

    async function start(place: Location, o: { interval?: number; signingKey?: KeyObject } = {}) {
      const store = await openStore(place.url, { poolSize: 4 });
      const entry: { store: KyselyStore; log?: AuditLog } = { store };
      open.push(entry);
      entry.log = await AuditLog.open(store.db, {
        origin: ORIGIN,
        signingKey: o.signingKey ?? key,
        checkpointIntervalMs: o.interval ?? 0,
      });
      return { store, log: entry.log };
    }

    /** Closes the server's log and store (as a stopped server), and opens the store alone. */
    async function stopped(place: Location, log: AuditLog, store: KyselyStore): Promise<KyselyStore> {
      await log.close();
      await store.close();
      open.splice(
        open.findIndex((o) => o.store === store),
        1,
      );
      const again = await openStore(place.url, { poolSize: 2 });
      open.push({ store: again });
      return again;
    }

    const verify = (store: KyselyStore) => verifyStore(store.db, { origin: ORIGIN, publicKey: createPublicKey(key) });

    /** A log of `n` events with checkpoints at 4 and at the end, then the server stopped. */
    async function stoppedLog(n: number) {
      const place = await fresh();
      const { store, log } = await start(place);
      for (let i = 0; i < n; i++) {
        await log.append(event(i));
        if (i === 3) await log.checkpoint();
      }
      return { place, store: await stopped(place, log, store) };
    }

    it('numbers concurrent appends 0, 1, 2, … without gaps, in few transactions', async () => {
      const { log } = await start(await fresh());
      const seqs = await Promise.all(Array.from({ length: 2000 }, (_, i) => log.append(event(i))));
      expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
      expect(log.stats.commits).toBeLessThan(20);
      expect(log.size).toBe(2000);
      const e = await log.event(seqs[7]);
      expect(e).toMatchObject({ seq: seqs[7], kind: 'job.submitted', member: 'pharma', subject: '7' });
      expect(e!.data).toEqual({ gpus: 7, name: 'job 7', tags: ['a', 7] });
    });

    it('refuses an event without a kind or with data that is not JSON, and the log goes on', async () => {
      const { log } = await start(await fresh());
      await expect(log.append({ ...event(0), kind: '' })).rejects.toThrow(/needs a kind/);
      await expect(log.append({ ...event(0), data: { n: 1n } })).rejects.toThrow();
      expect(await log.append(event(0))).toBe(0);
    });

    it('property: an untouched log verifies, reopens to the same root, and proves every event against its checkpoint', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(arbEvent, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 5 }),
          async (bursts) => {
            const place = await fresh();
            let { store, log } = await start(place);
            for (const burst of bursts) {
              await Promise.all(burst.map((e) => log.append(e)));
              await log.checkpoint();
            }
            const checkpoint = log.latestCheckpoint()!;
            const root = Buffer.from(checkpoint.rootHash, 'base64');
            for (let seq = 0; seq < checkpoint.size; seq++) {
              const e = (await log.event(seq))!;
              expect(
                verifyInclusion(seq, checkpoint.size, eventLeafHash(e), log.inclusionProof(seq, checkpoint.size), root),
              ).toBe(true);
            }
            store = await stopped(place, log, store);
            expect(await verify(store)).toMatchObject({
              ok: true,
              events: checkpoint.size,
              checkpoints: bursts.length,
              firstBad: null,
            });
            await store.close();
            open.splice(
              open.findIndex((o) => o.store === store),
              1,
            );
            ({ log } = await start(place));
            expect(log.rootHash(log.size).toString('base64')).toBe(checkpoint.rootHash);
          },
        ),
        { numRuns: engine === 'sqlite' ? 15 : 6, ...seed },
      );
    });

    it('signs a checkpoint every interval while the log grows, and none while it does not', async () => {
      const { log } = await start(await fresh(), { interval: 50 });
      await log.append(event(0));
      await new Promise((r) => setTimeout(r, 200));
      expect(log.latestCheckpoint()).toMatchObject({ size: 1, origin: ORIGIN });
      const signed = log.stats.checkpoints;
      await new Promise((r) => setTimeout(r, 200));
      expect(log.stats.checkpoints).toBe(signed);
    });

    it('tamper: an edited event is named by its seq', async () => {
      const { place: _p, store } = await stoppedLog(10);
      await sql`update audit_events set data = ${'{"gpus":999}'} where seq = 6`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({ entry: 'event 6', seq: 6 });
    });

    it('tamper: an edited actor or time is named by its seq', async () => {
      const { store } = await stoppedLog(10);
      await sql`update audit_events set actor = ${'mallory'} where seq = 2`.execute(store.db);
      await sql`update audit_events set at = at + 1 where seq = 8`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({ entry: 'event 2', seq: 2 });
    });

    it('tamper: a deleted event is named, and the server refuses to start', async () => {
      const { place, store } = await stoppedLog(10);
      await sql`delete from audit_events where seq = 5`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({
        entry: 'event 5',
        seq: 5,
        problem: expect.stringMatching(/missing/),
      });
      await expect(start(place)).rejects.toThrow(AuditIntegrityError);
      await expect(start(place)).rejects.toThrow(/event 5: it is missing/);
    });

    it('tamper: the last events deleted are found by the checkpoint that covered them', async () => {
      const { place, store } = await stoppedLog(10);
      await sql`delete from audit_events where seq >= 8`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({ entry: 'checkpoint at size 10', seq: 8 });
      await expect(start(place)).rejects.toThrow(/checkpoint at size 10: the store holds only 8 events/);
    });

    it('tamper: two events swapped (content and leaf hash) are named by the first of them', async () => {
      const { store } = await stoppedLog(10);
      // Move 7 aside, 3 to 7, the old 7 to 3: every column moves but the seq.
      await sql`update audit_events set seq = -1 where seq = 7`.execute(store.db);
      await sql`update audit_events set seq = 7 where seq = 3`.execute(store.db);
      await sql`update audit_events set seq = 3 where seq = -1`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({ entry: 'event 3', seq: 3 });
    });

    it('tamper: an event rewritten with a matching leaf hash fails against the checkpoint, and the server refuses to start', async () => {
      const { place, store } = await stoppedLog(10);
      const row = await store.db.selectFrom('audit_events').selectAll().where('seq', '=', 6).executeTakeFirstOrThrow();
      const forged = {
        seq: 6,
        at: new Date(Number(row.at)).toISOString(),
        kind: row.kind,
        actor: 'mallory',
        member: row.member,
        subject: row.subject,
        data: JSON.parse(row.data),
        salt: row.salt ?? undefined,
      };
      await sql`update audit_events set actor = ${'mallory'}, leaf_hash = ${eventLeafHash(forged).toString('hex')} where seq = 6`.execute(
        store.db,
      );
      expect((await verify(store)).firstBad).toMatchObject({
        entry: 'checkpoint at size 10',
        seq: 4,
        problem: expect.stringMatching(/among 4\.\.9/),
      });
      await expect(start(place)).rejects.toThrow(/checkpoint at size 10: the stored events no longer hash to its root/);
    });

    it('tamper: an edited checkpoint fails its signature; another key is refused at start', async () => {
      const { place, store } = await stoppedLog(10);
      await sql`update audit_checkpoints set at = at + 1000 where size = 4`.execute(store.db);
      expect((await verify(store)).firstBad).toMatchObject({
        entry: 'checkpoint at size 4',
        problem: expect.stringMatching(/signature/),
      });
      await expect(start(place, { signingKey: generateKeyPairSync('ed25519').privateKey })).rejects.toThrow(
        /signature does not verify/,
      );
    });
  });
});

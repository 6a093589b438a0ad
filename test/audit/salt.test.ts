// Salted leaves (issue 17): an inclusion proof must tell its asker nothing about the events next
// to its own. Before salting, the sibling hash in a member's proof was the hash of a guessable
// event (kinds, actors, members and job ids are small sets, `at` is near the asker's own event),
// and a few thousand guesses named it. Shown here on both engines: the same brute force that finds
// an unsalted neighbour finds nothing once leaves are salted, although every field it guesses is
// right; a log made before salting (migration 009) still verifies from a checkpoint saved then,
// and its events and the new salted ones prove against the new checkpoints; salts cannot be
// stripped or added behind the log's back.
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { signCheckpoint } from '../../src/audit/checkpoint.js';
import { canonicalJson, eventLeafHash, isoOfMs, leafContent, SALT_BYTES, type AuditEvent } from '../../src/audit/event.js';
import { AuditLog } from '../../src/audit/log.js';
import { leafHash, MerkleTree, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, storeMigratedBefore, type Location } from './engines.js';

const ORIGIN = 'fabrik/test';

/** What an attacker who knows the factory guesses from: every kind, person, member and job id it could be. */
const SPACE = {
  kinds: ['job.submitted', 'job.started', 'job.running', 'job.succeeded', 'job.failed', 'job.cancelled'],
  actors: ['ada', 'bob', 'scheduler', 'executor'],
  members: ['pharma', 'telecom', 'defense'],
  subjects: Array.from({ length: 12 }, (_, i) => String(i + 1)),
  /** Milliseconds either side of the asker's own event. */
  window: 300,
};

/**
 * The attack: every event that could be the neighbour at `seq` (data null: a job.running carries
 * none), hashed as a leaf, compared with the sibling hash from the proof. Returns the guess that
 * matched, and how many were tried.
 */
function bruteForce(sibling: Buffer, seq: number, nearMs: number): { found: AuditEvent | null; tries: number } {
  let tries = 0;
  for (let ms = nearMs - SPACE.window; ms <= nearMs + SPACE.window; ms++) {
    const at = isoOfMs(ms);
    for (const kind of SPACE.kinds)
      for (const actor of SPACE.actors)
        for (const member of SPACE.members)
          for (const subject of SPACE.subjects) {
            tries++;
            const guess = { seq, at, kind, actor, member, subject };
            if (leafHash(leafContent(guess, 'null')).equals(sibling)) return { found: { ...guess, data: null }, tries };
          }
  }
  return { found: null, tries };
}

forEachEngine('salted audit leaves', (engine, location) => {
  describe(`salted audit leaves (${engine})`, () => {
    const places: Location[] = [];
    const open: { store: KyselyStore; log: AuditLog }[] = [];
    const key: KeyObject = generateKeyPairSync('ed25519').privateKey;

    afterEach(async () => {
      for (const o of open.splice(0)) {
        await o.log.close({ checkpoint: false });
        await o.store.close();
      }
      await Promise.all(places.splice(0).map((p) => p.dispose()));
    });

    async function fresh(): Promise<Location> {
      const place = await location();
      places.push(place);
      return place;
    }

    async function start(place: Location, now?: () => number) {
      const store = await openStore(place.url, { poolSize: 4 });
      const log = await AuditLog.open(store.db, { origin: ORIGIN, signingKey: key, checkpointIntervalMs: 0, now });
      open.push({ store, log });
      return { store, log };
    }

    /** pharma's job 6 starts running, then telecom's job 7 does: telecom asks for its own proof. */
    async function neighbours(log: AuditLog) {
      const pharma = await log.append({ kind: 'job.running', actor: 'executor', member: 'pharma', subject: '6' });
      const telecom = await log.append({ kind: 'job.running', actor: 'executor', member: 'telecom', subject: '7' });
      return { pharma, telecom };
    }

    it('gives every new event its own 32-byte salt, inside the leaf, and serves the leaf as the event', async () => {
      const { log } = await start(await fresh());
      const seqs = await Promise.all(
        Array.from({ length: 50 }, (_, i) => log.append({ kind: 'k', actor: 'a', member: null, subject: String(i) })),
      );
      const events = await log.events({ after: -1, limit: 100 });
      expect(events.map((e) => e.seq)).toEqual(seqs);
      const salts = events.map((e) => e.salt!);
      expect(salts.every((s) => Buffer.from(s, 'base64').length === SALT_BYTES)).toBe(true);
      expect(new Set(salts).size).toBe(salts.length);
      for (const e of events) {
        // The leaf is the canonical JSON of the event as served, salt included: nothing else to know.
        expect(leafContent(e)).toBe(canonicalJson(e));
        expect(eventLeafHash(e).equals(log.leafHash(e.seq))).toBe(true);
        const { salt: _salt, ...unsalted } = e;
        expect(eventLeafHash(unsalted).equals(log.leafHash(e.seq))).toBe(false);
      }
      expect(log.saltedFrom).toBe(0);
    });

    it('brute force: the neighbour in a member’s proof is not found, though every field guessed is right', async () => {
      const { log } = await start(await fresh());
      const { pharma, telecom } = await neighbours(log);
      const checkpoint = (await log.checkpoint())!;
      // telecom's own proof verifies against the checkpoint it saved, with the salt it was shown.
      const own = (await log.event(telecom))!;
      const proof = log.inclusionProof(telecom, checkpoint.size);
      expect(
        verifyInclusion(telecom, checkpoint.size, eventLeafHash(own), proof, Buffer.from(checkpoint.rootHash, 'base64')),
      ).toBe(true);
      // Its first sibling is pharma's leaf; the attacker's space holds pharma's event, field for field.
      const sibling = proof[0];
      const truth = (await log.event(pharma))!;
      expect(SPACE.kinds).toContain(truth.kind);
      expect(SPACE.actors).toContain(truth.actor);
      expect(SPACE.members).toContain(truth.member);
      expect(SPACE.subjects).toContain(truth.subject);
      expect(Math.abs(Date.parse(truth.at) - Date.parse(own.at))).toBeLessThanOrEqual(SPACE.window);
      expect(eventLeafHash(truth).equals(sibling)).toBe(true);
      const attack = bruteForce(sibling, pharma, Date.parse(own.at));
      expect(attack.found).toBeNull();
      expect(attack.tries).toBe((2 * SPACE.window + 1) * 6 * 4 * 3 * 12);
    }, 60_000);

    it('a log made before salting: still verifies from the checkpoint saved then, its old events stay guessable, new ones do not', async () => {
      const place = await fresh();
      // An older Fabrik's log: unsalted leaves and a signed checkpoint over them, that a member saved.
      const old = await storeMigratedBefore(place, '009_audit_salts');
      const t0 = Date.now() - 60_000;
      const legacy: AuditEvent[] = [
        // Leaves 0 and 1 are siblings: telecom's proof for 1 starts with pharma's leaf 0.
        { seq: 0, at: isoOfMs(t0 + 40), kind: 'job.running', actor: 'executor', member: 'pharma', subject: '6', data: null },
        { seq: 1, at: isoOfMs(t0 + 95), kind: 'job.running', actor: 'executor', member: 'telecom', subject: '7', data: null },
        {
          seq: 2,
          at: isoOfMs(t0 + 200),
          kind: 'token.issued',
          actor: 'fabrik',
          member: null,
          subject: 'tok',
          data: { bootstrap: true },
        },
      ];
      const tree = new MerkleTree();
      for (const e of legacy) {
        const hash = eventLeafHash(e);
        tree.append(hash);
        await sql`insert into audit_events (seq, at, kind, actor, member, subject, data, leaf_hash)
          values (${e.seq}, ${Date.parse(e.at)}, ${e.kind}, ${e.actor}, ${e.member}, ${e.subject}, ${canonicalJson(e.data)}, ${hash.toString('hex')})`.execute(
          old,
        );
      }
      const saved = signCheckpoint(
        { origin: ORIGIN, size: 3, rootHash: tree.root().toString('base64'), at: isoOfMs(t0 + 1000) },
        key,
      );
      await sql`insert into audit_checkpoints (size, root_hash, at, signature) values (3, ${saved.rootHash}, ${t0 + 1000}, ${saved.signature})`.execute(
        old,
      );
      await old.destroy();

      // The upgrade: 009 runs, the log opens against the old checkpoint, and salting starts at 3.
      const { store, log } = await start(place);
      expect(log.saltedFrom).toBe(3);
      // One more first, so that the new neighbours are siblings too (leaves 4 and 5).
      await log.append({ kind: 'node.state', actor: 'operator', member: null, subject: 'gpu-1' });
      const { pharma, telecom } = await neighbours(log);
      expect([pharma, telecom]).toEqual([4, 5]);
      const now = (await log.checkpoint())!;
      const root = Buffer.from(now.rootHash, 'base64');
      const b = (s: string) => Buffer.from(s, 'base64');
      // The member's saved checkpoint still leads to the new one, and every event proves, old and new.
      expect(verifyConsistency(3, now.size, b(saved.rootHash), root, log.consistencyProof(3, now.size))).toBe(true);
      for (let seq = 0; seq < now.size; seq++) {
        const e = (await log.event(seq))!;
        expect('salt' in e, `event ${seq}`).toBe(seq >= 3);
        expect(verifyInclusion(seq, now.size, eventLeafHash(e), log.inclusionProof(seq, now.size), root), `event ${seq}`).toBe(
          true,
        );
      }
      // The threat, on the old leaves: telecom's proof for event 1 names pharma's event 0.
      const oldAttack = bruteForce(log.inclusionProof(1, now.size)[0], 0, Date.parse(legacy[1].at));
      expect(oldAttack.found).toEqual(legacy[0]);
      // The fix, on the new ones: the same guesses, nothing.
      const newAttack = bruteForce(log.inclusionProof(telecom, now.size)[0], pharma, Date.parse((await log.event(telecom))!.at));
      expect(newAttack.found).toBeNull();

      const verify = () => verifyStore(store.db, { origin: ORIGIN, publicKey: createPublicKey(key) });
      expect(await verify()).toMatchObject({ ok: true, events: 6, checkpoints: 2 });
      // A salt stripped (with the leaf rewritten to the unsalted rule) is named by the switch point.
      const row = (await log.event(pharma))!;
      const { salt, ...stripped } = row;
      await sql`update audit_events set salt = null, leaf_hash = ${eventLeafHash(stripped).toString('hex')} where seq = ${pharma}`.execute(
        store.db,
      );
      expect((await verify()).firstBad).toMatchObject({
        entry: `event ${pharma}`,
        problem: expect.stringMatching(/no salt, but every event from 3 on/),
      });
      await sql`update audit_events set salt = ${salt!}, leaf_hash = ${eventLeafHash(row).toString('hex')} where seq = ${pharma}`.execute(
        store.db,
      );
      expect((await verify()).ok).toBe(true);
      // A salt put on an old event: named too.
      await sql`update audit_events set salt = ${salt!} where seq = 1`.execute(store.db);
      expect((await verify()).firstBad).toMatchObject({
        entry: 'event 1',
        problem: expect.stringMatching(/has a salt, but events before 3/),
      });
    }, 60_000);
  });
});

// `fabrik audit verify --store`: the operator's check of the stored log itself. Every event is
// rehashed from its content (not from its stored leaf hash), the tree is rebuilt from those
// hashes, and every stored checkpoint must have the rebuilt root at its size and a valid signature.
// The first thing found wrong is named: an event by its seq, a checkpoint by its size. Events from
// the salting switch point on must carry a salt, and those before it must not (migration 009).
import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import { checkpointSignedBy } from './checkpoint.js';
import { AuditIntegrityError } from './errors.js';
import { eventLeafHash, eventOfRow } from './event.js';
import { checkpointOfRow, saltedFrom } from './log.js';
import { MerkleTree } from './merkle.js';
import type { AuditTables } from './schema.js';

export interface StoreVerification {
  readonly ok: boolean;
  readonly events: number;
  readonly checkpoints: number;
  /** Whether signatures were checked (a public key was given). */
  readonly signatures: boolean;
  /** The first bad entry and what is wrong with it; null when all is well. */
  readonly firstBad: { readonly entry: string; readonly seq: number | null; readonly problem: string } | null;
}

const PAGE = 10_000;

export async function verifyStore<DB extends AuditTables>(
  db: Kysely<DB>,
  o: { readonly origin: string; readonly publicKey: KeyObject | null },
): Promise<StoreVerification> {
  const audit = db as unknown as Kysely<AuditTables>;
  const tree = new MerkleTree();
  let checkpoints = 0;
  const fail = (entry: string, seq: number | null, problem: string): StoreVerification => ({
    ok: false,
    events: tree.size,
    checkpoints,
    signatures: o.publicKey !== null,
    firstBad: { entry, seq, problem },
  });
  let from: number;
  try {
    from = await saltedFrom(audit);
  } catch (e) {
    if (e instanceof AuditIntegrityError) return fail(e.entry, null, e.problem);
    throw e;
  }
  for (;;) {
    const rows = await audit
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>=', tree.size)
      .orderBy('seq')
      .limit(PAGE)
      .execute();
    for (const row of rows) {
      const seq = Number(row.seq);
      const expected = tree.size;
      if (seq !== expected)
        return fail(`event ${expected}`, expected, `it is missing: the next stored event is ${seq} (deleted or renumbered)`);
      if (seq >= from && row.salt == null)
        return fail(
          `event ${seq}`,
          seq,
          `it has no salt, but every event from ${from} on was logged with one (its salt was removed)`,
        );
      if (seq < from && row.salt != null)
        return fail(
          `event ${seq}`,
          seq,
          `it has a salt, but events before ${from} were logged without one (the switch point or the event was edited)`,
        );
      let leaf: Buffer;
      try {
        leaf = eventLeafHash(eventOfRow(row));
      } catch {
        return fail(`event ${seq}`, seq, 'its data is not JSON (edited)');
      }
      if (leaf.toString('hex') !== row.leaf_hash)
        return fail(`event ${seq}`, seq, 'its content does not hash to its leaf (edited, or moved from another seq)');
      tree.append(leaf);
    }
    if (rows.length < PAGE) break;
  }
  // Ascending: the first checkpoint that no longer matches brackets the first changed event.
  const rows = await audit.selectFrom('audit_checkpoints').selectAll().orderBy('size').execute();
  let previous = 0;
  for (const row of rows) {
    const c = checkpointOfRow(o.origin, row);
    const where = `checkpoint at size ${c.size}`;
    if (c.size > tree.size)
      return fail(where, tree.size, `the store holds only ${tree.size} events (events ${tree.size}.. deleted)`);
    if (tree.root(c.size).toString('base64') !== c.rootHash)
      return fail(
        where,
        previous,
        `the events no longer hash to its root: an event among ${previous}..${c.size - 1} was changed together with its leaf hash`,
      );
    if (o.publicKey && !checkpointSignedBy(c, o.publicKey)) return fail(where, null, 'its signature does not verify');
    previous = c.size;
    checkpoints++;
  }
  return { ok: true, events: tree.size, checkpoints, signatures: o.publicKey !== null, firstBad: null };
}

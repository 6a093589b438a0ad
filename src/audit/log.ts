// The audit log: every control-plane event is a leaf of an RFC 6962 tree, stored in the store's
// database and mirrored in memory, where proofs come from. One writer per store: sequence numbers
// are handed out here, in memory, from what is stored.
//
// Appends are group-committed: while one transaction commits, the events that arrive wait, and
// all of them go into the next (one fsync on SQLite, one round of statements on PostgreSQL), so
// the rate follows the disk's commits times the batch, not one commit per event. An event enters
// the tree only once its transaction has committed, so a failed batch leaves no hole: the next
// batch takes the same numbers. Every second, if the tree grew, a signed checkpoint is stored.
// Each event gets a random salt inside its leaf (src/audit/event.ts says why).
import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { AuditEventInput, AuditSink } from '../core/audit.js';
import { createPublicKey } from 'node:crypto';
import { checkpointSignedBy, signCheckpoint, type SignedCheckpoint } from './checkpoint.js';
import { AuditClosedError, AuditIntegrityError } from './errors.js';
import { canonicalJson, eventOfRow, freshSalts, isoOfMs, leafContent, type AuditEvent } from './event.js';
import { leafHash, MerkleTree } from './merkle.js';
import type { AuditTables } from './schema.js';

export interface AuditLogOptions {
  /** The log's name in its checkpoints: `fabrik/<installation id>`. */
  readonly origin: string;
  readonly signingKey: KeyObject;
  /** Between two checkpoints when the log grew (default 1,000 ms; 0: only on demand and on close). */
  readonly checkpointIntervalMs?: number;
  /** Events written in one transaction at most (default 4,096). */
  readonly maxBatch?: number;
  /** Seconds since the epoch. */
  readonly now?: () => number;
}

interface Waiting {
  readonly event: Omit<AuditEvent, 'seq' | 'data' | 'salt'>;
  /** canonicalJson(data), made once: it is what is hashed and what is stored. */
  readonly dataText: string;
  resolve: (seq: number) => void;
  reject: (error: unknown) => void;
  /** What append() returned: appendOnce() hands the same promise to a second asker. */
  done: Promise<number>;
}

type Db = Kysely<AuditTables>;

/** Rows per INSERT: 9 parameters a row stays under both engines' limits (PostgreSQL: 65,535 a statement). */
const ROWS_PER_INSERT = 500;
const PAGE = 50_000;
const MAX_EVENTS_PAGE = 1000;

export class AuditLog implements AuditSink {
  private readonly tree = new MerkleTree();
  private queue: Waiting[] = [];
  private scheduled = false;
  private tail: Promise<unknown> = Promise.resolve();
  private latest: SignedCheckpoint | null;
  private readonly timer: NodeJS.Timeout | null;
  private closed = false;
  private readonly now: () => number;
  /** Transactions committed and events in them: the group commit's effect, for the benchmark. */
  readonly stats = { commits: 0, events: 0, checkpoints: 0 };

  private constructor(
    private readonly db: Db,
    private readonly o: AuditLogOptions,
    latest: SignedCheckpoint | null,
    /** The first seq appended with a salt (migration 009_audit_salts); those before it have none. */
    readonly saltedFrom: number,
  ) {
    this.latest = latest;
    this.now = o.now ?? (() => Date.now() / 1000);
    const every = o.checkpointIntervalMs ?? 1000;
    this.timer = every > 0 ? setInterval(() => void this.checkpoint().catch(() => undefined), every) : null;
    this.timer?.unref();
  }

  /**
   * Rebuilds the tree from the stored leaf hashes and checks it against the latest stored
   * checkpoint; refuses (AuditIntegrityError) when they disagree or its signature is not ours.
   */
  static async open<DB extends AuditTables>(db: Kysely<DB>, o: AuditLogOptions): Promise<AuditLog> {
    const audit = db as unknown as Db;
    const latestRow = await audit.selectFrom('audit_checkpoints').selectAll().orderBy('size', 'desc').limit(1).executeTakeFirst();
    const latest = latestRow ? checkpointOfRow(o.origin, latestRow) : null;
    const log = new AuditLog(audit, o, latest, await saltedFrom(audit));
    try {
      await log.load();
      if (latest) log.check(latest);
      if (log.saltedFrom > log.size)
        throw new AuditIntegrityError(
          'the salting switch point',
          `it says salting began at event ${log.saltedFrom}, but the store holds only ${log.size} events`,
        );
    } catch (e) {
      await log.close({ checkpoint: false });
      throw e;
    }
    return log;
  }

  /** Events in the tree (committed). */
  get size(): number {
    return this.tree.size;
  }

  append(e: AuditEventInput): Promise<number> {
    if (this.closed) return Promise.reject(new AuditClosedError());
    let event: Waiting['event'];
    let dataText: string;
    try {
      dataText = e.data === undefined ? 'null' : canonicalJson(e.data);
      event = {
        at: isoOfMs(Math.round(this.now() * 1000)),
        kind: required(e.kind, 'kind'),
        actor: required(e.actor, 'actor'),
        member: e.member,
        subject: e.subject,
      };
    } catch (error) {
      return Promise.reject(error);
    }
    const waiting = { event, dataText } as Waiting;
    waiting.done = new Promise<number>((resolve, reject) => {
      waiting.resolve = resolve;
      waiting.reject = reject;
    });
    this.queue.push(waiting);
    this.schedule();
    return waiting.done;
  }

  /**
   * The seq of the first committed event of `kind` about `subject`; undefined when there is none.
   * One probe of the (subject, kind) index. Events still queued are not seen: appendOnce() is the
   * way to add one only if it is missing.
   */
  async find(kind: string, subject: string): Promise<number | undefined> {
    const row = await this.db
      .selectFrom('audit_events')
      .select('seq')
      .where('subject', '=', subject)
      .where('kind', '=', kind)
      .orderBy('seq')
      .limit(1)
      .executeTakeFirst();
    return row && Number(row.seq);
  }

  /**
   * Appends `e` unless an event of its kind about its subject is committed or waiting to be: resolves
   * with that event's seq, or the new one's. For events that must exist exactly once and may have
   * been lost in a crash (a job's `job.submitted`, added again by a keyed retry or at start).
   *
   * The look-up runs in the writer's turn, so no batch commits while it reads; what was queued
   * meanwhile is then found in the queue. Callers that ask at the same time therefore get one event:
   * the second finds the first's in the queue or, once it is written, in the store.
   */
  appendOnce(e: AuditEventInput & { readonly subject: string }): Promise<number> {
    if (this.closed) return Promise.reject(new AuditClosedError());
    return this.serial(async () => {
      const seq = await this.find(e.kind, e.subject);
      if (seq !== undefined) return { seq };
      const queued = this.queue.find((w) => w.event.kind === e.kind && w.event.subject === e.subject);
      // Not awaited here: the append is written by a later turn of this same writer.
      return { seq: queued ? queued.done : this.append(e) };
    }).then((r) => r.seq);
  }

  /** The key members check checkpoints with. */
  publicKey(): KeyObject {
    return createPublicKey(this.o.signingKey);
  }

  /** The latest signed checkpoint; null before the first. */
  latestCheckpoint(): SignedCheckpoint | null {
    return this.latest;
  }

  /** Signs and stores a checkpoint now if the log grew since the last one; returns the latest. */
  checkpoint(): Promise<SignedCheckpoint | null> {
    return this.serial(async () => {
      const size = this.tree.size;
      if (size === 0 || (this.latest !== null && this.latest.size >= size)) return this.latest;
      const ms = Math.round(this.now() * 1000);
      const signed = signCheckpoint(
        { origin: this.o.origin, size, rootHash: this.tree.root(size).toString('base64'), at: isoOfMs(ms) },
        this.o.signingKey,
      );
      await this.db
        .insertInto('audit_checkpoints')
        .values({ size, root_hash: signed.rootHash, at: ms, signature: signed.signature })
        .execute();
      this.latest = signed;
      this.stats.checkpoints++;
      return signed;
    });
  }

  /** The leaf hash appended at `seq`. */
  leafHash(seq: number): Buffer {
    return this.tree.leaf(seq);
  }

  rootHash(size: number): Buffer {
    return this.tree.root(size);
  }

  inclusionProof(seq: number, size: number): Buffer[] {
    return this.tree.inclusionProof(seq, size);
  }

  consistencyProof(from: number, to: number): Buffer[] {
    return this.tree.consistencyProof(from, to);
  }

  /** One committed event, as stored now (a verifier rehashes it; the tree keeps what was appended). */
  async event(seq: number): Promise<AuditEvent | undefined> {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq >= this.tree.size) return undefined;
    const row = await this.db.selectFrom('audit_events').selectAll().where('seq', '=', seq).executeTakeFirst();
    return row && eventOfRow(row);
  }

  /** Committed events after `after` (-1: from the first), oldest first; `member` narrows to one member's. */
  async events(filter: { after: number; limit: number; member?: string }): Promise<AuditEvent[]> {
    const limit = Math.min(Math.max(Math.floor(filter.limit), 0), MAX_EVENTS_PAGE);
    if (limit === 0) return [];
    let query = this.db
      .selectFrom('audit_events')
      .selectAll()
      .where('seq', '>', filter.after)
      // Not yet in the tree: its transaction committed, but the proofs do not know it yet.
      .where('seq', '<', this.tree.size)
      .orderBy('seq')
      .limit(limit);
    if (filter.member !== undefined) query = query.where('member', '=', filter.member);
    return (await query.execute()).map(eventOfRow);
  }

  /** Writes what is queued, signs a last checkpoint (unless told not to), and stops the timer. */
  async close(o: { checkpoint?: boolean } = {}): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.closed) return;
    this.closed = true;
    do await this.serial(() => this.flush());
    while (this.queue.length > 0);
    if (o.checkpoint !== false) await this.checkpoint();
  }

  // ---- inside ------------------------------------------------------------------------------

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /**
   * One batch per turn of the writer: what arrives meanwhile waits for the next turn, behind any
   * checkpoint asked for in between (looping here would starve checkpoints under steady load).
   */
  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.queue.splice(0, this.o.maxBatch ?? 4096);
    if (this.queue.length > 0) this.schedule();
    if (batch.length > 0) await this.write(batch);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate: every request that arrived in this turn of the event loop joins the batch.
    setImmediate(() => void this.serial(() => this.flush()));
  }

  private async write(batch: readonly Waiting[]): Promise<void> {
    const first = this.tree.size;
    const salts = freshSalts(batch.length);
    const events = batch.map((w, i) => ({ seq: first + i, ...w.event, salt: salts[i] }));
    const hashes = events.map((e, i) => leafHash(leafContent(e, batch[i].dataText)));
    const rows = events.map((e, i) => ({
      seq: e.seq,
      at: Date.parse(e.at),
      kind: e.kind,
      actor: e.actor,
      member: e.member,
      subject: e.subject,
      data: batch[i].dataText,
      leaf_hash: hashes[i].toString('hex'),
      salt: e.salt,
    }));
    try {
      await this.db.transaction().execute(async (trx) => {
        for (let i = 0; i < rows.length; i += ROWS_PER_INSERT)
          await trx
            .insertInto('audit_events')
            .values(rows.slice(i, i + ROWS_PER_INSERT))
            .execute();
      });
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    for (const h of hashes) this.tree.append(h);
    this.stats.commits++;
    this.stats.events += batch.length;
    batch.forEach((w, i) => w.resolve(first + i));
  }

  /** The stored leaf hashes, in order and without gaps, into the tree. */
  private async load(): Promise<void> {
    for (;;) {
      const from = this.tree.size;
      const rows = await this.db
        .selectFrom('audit_events')
        .select(['seq', 'leaf_hash'])
        .where('seq', '>=', from)
        .orderBy('seq')
        .limit(PAGE)
        .execute();
      for (const row of rows) {
        const seq = Number(row.seq);
        if (seq !== this.tree.size)
          throw new AuditIntegrityError(`event ${this.tree.size}`, `it is missing (the next stored event is ${seq})`);
        const hash = Buffer.from(row.leaf_hash, 'hex');
        if (hash.length !== 32 || hash.toString('hex') !== row.leaf_hash)
          throw new AuditIntegrityError(`event ${seq}`, 'its leaf hash is not 32 bytes of hex');
        this.tree.append(hash);
      }
      if (rows.length < PAGE) return;
    }
  }

  private check(c: SignedCheckpoint): void {
    const where = `checkpoint at size ${c.size}`;
    if (!checkpointSignedBy(c, createPublicKey(this.o.signingKey)))
      throw new AuditIntegrityError(
        where,
        "its signature does not verify with this server's key (audit-ed25519.pem was replaced, or the checkpoint was edited)",
      );
    if (c.size > this.tree.size) throw new AuditIntegrityError(where, `the store holds only ${this.tree.size} events`);
    if (this.tree.root(c.size).toString('base64') !== c.rootHash)
      throw new AuditIntegrityError(where, 'the stored events no longer hash to its root');
  }
}

/** Where salting began (the row 009_audit_salts wrote). */
export async function saltedFrom(db: Kysely<AuditTables>): Promise<number> {
  const row = await db.selectFrom('audit_salting').select('from_seq').where('id', '=', 1).executeTakeFirst();
  // The migration always writes it: a store without it was edited, and the log must not guess.
  if (!row) throw new AuditIntegrityError('the salting switch point', 'its row in audit_salting is missing');
  return Number(row.from_seq);
}

function required(value: string, what: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`an audit event needs a ${what}`);
  return value;
}

export function checkpointOfRow(
  origin: string,
  row: { size: string | number; root_hash: string; at: string | number; signature: string },
): SignedCheckpoint {
  return { origin, size: Number(row.size), rootHash: row.root_hash, at: isoOfMs(Number(row.at)), signature: row.signature };
}

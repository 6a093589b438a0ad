// The audit log's tables (migrations 003_audit and 009_audit_salts, run with the store's own
// migrations). Leaf hashes are stored beside the content they hash, so that a restart rebuilds the
// tree without rehashing every event; `fabrik audit verify --store` rehashes the content and compares.
import { sql, type ColumnType, type Kysely, type Migration } from 'kysely';

/** pg returns int8 as a decimal string, better-sqlite3 as a number. */
type Int8 = ColumnType<string | number, number, never>;

export interface AuditEventsTable {
  /** The leaf index, from 0, without gaps. */
  seq: Int8;
  /** Unix milliseconds (an integer, so that the ISO time in the leaf says exactly what is stored). */
  at: Int8;
  kind: string;
  actor: string;
  member: string | null;
  subject: string | null;
  /** Canonical JSON of the event's data ('null' when it had none). */
  data: string;
  /** Hex of leafHash(canonical event): see src/audit/event.ts. */
  leaf_hash: string;
  /** Base64 of the event's random salt (hashed inside the leaf); null on events logged before 009_audit_salts. */
  salt: ColumnType<string | null, string | null | undefined, never>;
}

/** One row: where salting began. Events from `from_seq` on have a salt; those before never will. */
export interface AuditSaltingTable {
  id: number;
  from_seq: Int8;
}

export interface AuditCheckpointsTable {
  size: Int8;
  /** Base64 of the tree's root at `size`. */
  root_hash: string;
  /** Unix milliseconds. */
  at: Int8;
  /** Base64 Ed25519 signature of the checkpoint's text (src/audit/checkpoint.ts). */
  signature: string;
}

export interface AuditTables {
  audit_events: AuditEventsTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_salting: AuditSaltingTable;
}

export function auditMigrations(engine: 'sqlite' | 'postgres'): Record<string, Migration> {
  return {
    '003_audit': {
      async up(db: Kysely<unknown>) {
        // On SQLite `integer primary key` is the rowid itself: appends go to the end of the table's own b-tree.
        const int8 = engine === 'postgres' ? 'bigint' : 'integer';
        await db.schema
          .createTable('audit_events')
          .addColumn('seq', int8, (c) => c.primaryKey())
          .addColumn('at', int8, (c) => c.notNull())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('member', 'text')
          .addColumn('subject', 'text')
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('leaf_hash', 'text', (c) => c.notNull())
          .execute();
        // A member reads its own events page by page.
        await db.schema.createIndex('audit_events_member_seq').on('audit_events').columns(['member', 'seq']).execute();
        await db.schema
          .createTable('audit_checkpoints')
          .addColumn('size', int8, (c) => c.primaryKey())
          .addColumn('root_hash', 'text', (c) => c.notNull())
          .addColumn('at', int8, (c) => c.notNull())
          .addColumn('signature', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '009_audit_salts': {
      async up(db: Kysely<unknown>) {
        const int8 = engine === 'postgres' ? 'bigint' : 'integer';
        // Nullable: the leaves already signed keep their unsalted hash rule (a checkpoint a member
        // saved must go on verifying); every event appended from now on has a salt.
        await db.schema.alterTable('audit_events').addColumn('salt', 'text').execute();
        // The switch point, written once: `verify --store` refuses a salt before it and its absence
        // after it, so salts cannot be stripped, or a log rewritten as "older", without notice.
        await db.schema
          .createTable('audit_salting')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('from_seq', int8, (c) => c.notNull())
          .execute();
        // Seqs have no gaps, so the count is the next seq.
        await sql`insert into audit_salting (id, from_seq) select 1, count(*) from audit_events`.execute(db);
        // "Is there a job.submitted for job 7?" (the keyed retry, the reconciliation at start):
        // one index probe, not a scan of the log.
        await db.schema.createIndex('audit_events_subject_kind').on('audit_events').columns(['subject', 'kind']).execute();
      },
    },
  };
}

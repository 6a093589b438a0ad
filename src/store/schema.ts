// The tables and their migrations. Both engines get the same tables; JSON is stored as TEXT on
// both so that one query layer reads and writes it the same way, and times are double precision
// seconds (PostgreSQL's `real` would round them to about a minute). Migrations are code, not
// files, so that a bundled or installed Fabrik carries its own schema.
import { Migrator, sql } from 'kysely';
import type { ColumnType, CreateTableBuilder, Generated, Kysely, Migration, MigrationProvider } from 'kysely';
import { randomUUID } from 'node:crypto';
import { governanceMigrations, type GovernanceTables } from '../governance/schema.js';
import { modelMigrations, type ModelTables } from '../governance/models-schema.js';
import { auditMigrations, type AuditTables } from '../audit/schema.js';
import { gatewayMigrations, type GatewayTables } from '../inference/gateway/schema.js';
import { deploymentMigrations, type DeploymentTables } from '../inference/deployments/schema.js';
import { reservationMigrations, type ReservationTables } from './reservations.js';
import { StoreMigrationError, describeCause } from './errors.js';

export type Engine = 'sqlite' | 'postgres';

/** An integer id: pg returns int8 as a decimal string, better-sqlite3 as a number. */
type IdValue = string | number;

export interface MembersTable {
  id: string;
  name: string;
  /** JSON array of project ids. */
  projects: string;
}

export interface TokensTable {
  id: string;
  hash: string;
  prefix: string;
  name: string;
  member: string | null;
  role: string;
  username: string;
  /** The user record (migration 008); null only in a row written by an older Fabrik mid-upgrade. */
  user_id: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface UsersTable {
  id: string;
  member: string | null;
  name: string;
  /** JSON array of roles. */
  roles: string;
  origin: string;
  issuer: string | null;
  subject: string | null;
  created_by: string;
  created_at: number;
  disabled_at: number | null;
}

export interface JobsTable {
  id: Generated<IdValue>;
  name: string;
  member: string;
  project: string;
  username: string;
  state: string;
  reason: string | null;
  /** JSON of the JobRequest. */
  request: string;
  gpus: number;
  submitted_at: number;
  started_at: number | null;
  ended_at: number | null;
  exit_code: number | null;
  placement: string | null;
  handle: string | null;
  hold_since: number | null;
  /** Migration 013: when the running job last reported a checkpoint. */
  last_checkpoint_at: number | null;
  /** Migration 014: 1 or 0 (StoredJob.keepsPlace). */
  keeps_place: number;
  /** JSON array of job ids. */
  preempted_by: string;
  requeues: number;
  array_job_id: ColumnType<IdValue | null, number | null, number | null>;
  array_task_id: number | null;
  array_throttle: number | null;
  updated_at: number;
}

export interface JobEventsTable {
  id: Generated<IdValue>;
  job_id: ColumnType<IdValue, number, never>;
  at: number;
  kind: string;
  actor: string;
  member: string;
  reason: string | null;
  data: string | null;
}

export interface IdempotencyKeysTable {
  member: string;
  username: string;
  key: string;
  request_hash: string;
  /** JSON array of the job ids the first call created. */
  job_ids: string;
  created_at: number;
}

export interface NodeStatesTable {
  node: string;
  state: string;
  reason: string | null;
  changed_by: string;
  at: number;
}

/** One row (id 1): the decayed usage is saved and read whole. */
export interface UsageTable {
  id: number;
  at: number;
  /** JSON object: member → GPU-hours. */
  gpu_hours: string;
}

/** One row (id 1), made by the migration: what tells this installation apart from another. */
export interface InstallationTable {
  id: number;
  /** Random, e.g. to tag the jobs this Fabrik hands to a Slurm cluster that others may share. */
  uid: string;
  created_at: number;
}

export interface Database extends GovernanceTables, ModelTables, AuditTables, GatewayTables, DeploymentTables, ReservationTables {
  members: MembersTable;
  users: UsersTable;
  tokens: TokensTable;
  /** Migration 008 adds who asked, as a user id: the two-person rule compares people, not names. */
  approvals: ModelTables['approvals'] & { requested_by_id: string | null };
  jobs: JobsTable;
  job_events: JobEventsTable;
  idempotency_keys: IdempotencyKeysTable;
  node_states: NodeStatesTable;
  usage: UsageTable;
  installation: InstallationTable;
}

type AnyDb = Kysely<unknown>;
type TableBuilder = CreateTableBuilder<string, never>;

/** An ever-increasing id: AUTOINCREMENT so SQLite never reuses the id of a deleted row. */
function serialId(engine: Engine) {
  return (table: TableBuilder): TableBuilder =>
    engine === 'postgres'
      ? table.addColumn('id', 'bigint', (c) => c.generatedByDefaultAsIdentity().primaryKey())
      : table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement());
}

async function createIdentityTables(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('members')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('projects', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('member', 'text')
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('created_at', 'double precision', (c) => c.notNull())
    .addColumn('expires_at', 'double precision')
    .addColumn('revoked_at', 'double precision')
    .execute();
  await db.schema.createIndex('tokens_member').on('tokens').columns(['member', 'created_at']).execute();
}

async function createJobTables(db: AnyDb, engine: Engine): Promise<void> {
  await db.schema
    .createTable('jobs')
    .$call(serialId(engine))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('member', 'text', (c) => c.notNull())
    .addColumn('project', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('request', 'text', (c) => c.notNull())
    .addColumn('gpus', 'integer', (c) => c.notNull())
    .addColumn('submitted_at', 'double precision', (c) => c.notNull())
    .addColumn('started_at', 'double precision')
    .addColumn('ended_at', 'double precision')
    .addColumn('exit_code', 'integer')
    .addColumn('placement', 'text')
    .addColumn('handle', 'text')
    .addColumn('hold_since', 'double precision')
    .addColumn('preempted_by', 'text', (c) => c.notNull())
    .addColumn('requeues', 'integer', (c) => c.notNull())
    .addColumn('array_job_id', 'bigint')
    .addColumn('array_task_id', 'integer')
    .addColumn('array_throttle', 'integer')
    .addColumn('updated_at', 'double precision', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('jobs_member_id').on('jobs').columns(['member', 'id']).execute();
  await db.schema.createIndex('jobs_state').on('jobs').column('state').execute();
  await db.schema.createIndex('jobs_array_job_id').on('jobs').column('array_job_id').execute();
  await db.schema
    .createTable('job_events')
    .$call(serialId(engine))
    .addColumn('job_id', 'bigint', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
    .addColumn('at', 'double precision', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('member', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('data', 'text')
    .execute();
  await db.schema.createIndex('job_events_job_id').on('job_events').columns(['job_id', 'id']).execute();
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('member', 'text', (c) => c.notNull())
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('job_ids', 'text', (c) => c.notNull())
    .addColumn('created_at', 'double precision', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pk', ['member', 'username', 'key'])
    .execute();
}

async function createMachineTables(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('node_states')
    .addColumn('node', 'text', (c) => c.primaryKey())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('changed_by', 'text', (c) => c.notNull())
    .addColumn('at', 'double precision', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('usage')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('at', 'double precision', (c) => c.notNull())
    .addColumn('gpu_hours', 'text', (c) => c.notNull())
    .execute();
}

/**
 * Users become records and every token belongs to one. Tokens written before carried a free-text
 * user name: each (member, name) they name becomes a user with the roles its tokens had, vouched
 * for by `legacy` (nobody we know made them, so the two-person rule counts them all as one person).
 */
async function createUsers(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('member', 'text')
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('roles', 'text', (c) => c.notNull())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('issuer', 'text')
    .addColumn('subject', 'text')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'double precision', (c) => c.notNull())
    .addColumn('disabled_at', 'double precision')
    .execute();
  // A name is unique within a member, and among those of no member (NULLs are distinct in a plain index).
  await sql`create unique index users_member_name on users ((coalesce(member, '')), name)`.execute(db);
  await sql`create unique index users_subject on users (issuer, subject) where subject is not null`.execute(db);
  await db.schema.alterTable('tokens').addColumn('user_id', 'text').execute();
  await db.schema.createIndex('tokens_user_id').on('tokens').column('user_id').execute();
  await db.schema.alterTable('approvals').addColumn('requested_by_id', 'text').execute();

  const d = db as Kysely<Database>;
  const old = await d
    .selectFrom('tokens')
    .select(['id', 'member', 'username', 'role', 'created_at'])
    .orderBy('created_at')
    .execute();
  const users = new Map<string, { id: string; member: string | null; name: string; roles: Set<string>; at: number }>();
  for (const t of old) {
    const key = JSON.stringify([t.member, t.username]);
    const u = users.get(key) ?? {
      id: newUserId(),
      member: t.member,
      name: t.username,
      roles: new Set(),
      at: Number(t.created_at),
    };
    u.roles.add(t.role);
    users.set(key, u);
    await d.updateTable('tokens').set({ user_id: u.id }).where('id', '=', t.id).execute();
  }
  for (const u of users.values())
    await d
      .insertInto('users')
      .values({
        id: u.id,
        member: u.member,
        name: u.name,
        roles: JSON.stringify([...u.roles].sort()),
        origin: 'local',
        issuer: null,
        subject: null,
        created_by: 'legacy',
        created_at: u.at,
        disabled_at: null,
      })
      .execute();
}

export const newUserId = () => `usr_${randomUUID().replaceAll('-', '').slice(0, 20)}`;

/** Every migration, by name; names sort in the order they run. Never edit one that shipped: add the next. */
export function migrations(engine: Engine): Record<string, Migration> {
  // In the order they run (by name), whichever feature each comes from.
  return Object.fromEntries(Object.entries(allMigrations(engine)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function allMigrations(engine: Engine): Record<string, Migration> {
  return {
    '001_initial': {
      async up(db: AnyDb) {
        await createIdentityTables(db);
        await createJobTables(db, engine);
        await createMachineTables(db);
      },
    },
    '002_installation': {
      async up(db: AnyDb) {
        await db.schema
          .createTable('installation')
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('uid', 'text', (c) => c.notNull())
          .addColumn('created_at', 'double precision', (c) => c.notNull())
          .execute();
        // Made here, once: replicas migrate one after the other, so they all read the same row.
        await (db as Kysely<Database>)
          .insertInto('installation')
          .values({ id: 1, uid: randomUUID(), created_at: Date.now() / 1000 })
          .execute();
      },
    },
    '008_users': { up: (db: AnyDb) => createUsers(db) },
    // Running jobs report their checkpoints (POST /v1/jobs/:id/checkpoints); the scheduler reads them.
    '013_job_checkpoints': {
      up: (db: AnyDb) => db.schema.alterTable('jobs').addColumn('last_checkpoint_at', 'double precision').execute(),
    },
    // A requeued job stopped by reclaim, priority or a failed node keeps its place in its member's queue.
    '014_job_keeps_place': {
      up: (db: AnyDb) =>
        db.schema
          .alterTable('jobs')
          .addColumn('keeps_place', 'integer', (c) => c.notNull().defaultTo(0))
          .execute(),
    },
    ...auditMigrations(engine),
    ...governanceMigrations,
    ...modelMigrations,
    ...gatewayMigrations,
    ...deploymentMigrations,
    ...reservationMigrations,
  };
}

class InCodeMigrationProvider implements MigrationProvider {
  constructor(private readonly engine: Engine) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations(this.engine);
  }
}

/**
 * Brings the schema to the latest migration. On PostgreSQL the migrator holds an advisory lock,
 * so replicas starting together migrate one after the other. Its bookkeeping tables go in the
 * current schema, named explicitly: Kysely looks for them across every schema of the database,
 * and would otherwise take another schema's for ours.
 */
export async function migrateToLatest(db: Kysely<Database>, engine: Engine): Promise<void> {
  const migrationTableSchema = engine === 'postgres' ? await currentSchema(db) : undefined;
  // Unordered: 008_users was written while 009_audit_salts shipped, so a store may have run 009
  // first; each migration touches its own tables and runs once either way.
  const migrator = new Migrator({
    db,
    provider: new InCodeMigrationProvider(engine),
    migrationTableSchema,
    allowUnorderedMigrations: true,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? null;
  throw new StoreMigrationError(failed, describeCause(error), { cause: error });
}

async function currentSchema(db: Kysely<Database>): Promise<string> {
  const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
  const schema = rows[0]?.schema;
  if (!schema) throw new StoreMigrationError(null, 'no schema on the search_path exists to create the tables in');
  return schema;
}

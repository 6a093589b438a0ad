// The tables of datasets, data-use agreements and site policies (migration 004; keyed per member
// since 011). JSON lists are TEXT on both engines, like the rest of the store.
import { sql, type Kysely, type Migration } from 'kysely';
import { ENTITY_REFERENCE } from './model.js';
import { createScopedModelVersions, MODEL_VERSION_COLUMNS } from './models-schema.js';

/** Keyed by (owner, id): each member names its own datasets. */
export interface DatasetsTable {
  id: string;
  owner: string;
  name: string;
  classification: string;
  /** JSON array of zones. */
  zones: string;
  location: string;
  created_at: number;
  created_by: string;
}

/** Keyed by (grantor, id). */
export interface AgreementsTable {
  id: string;
  grantor: string;
  grantee: string;
  /** JSON arrays. */
  datasets: string;
  purposes: string;
  zones: string;
  expires_at: number;
  produces: string;
  no_export: number;
  created_at: number;
  created_by: string;
  approved_at: number | null;
  approved_by: string | null;
  revoked_at: number | null;
  revoked_by: string | null;
}

export interface SitePoliciesTable {
  id: string;
  /** Cedar text. */
  text: string;
  created_at: number;
  created_by: string;
}

export interface GovernanceTables {
  datasets: DatasetsTable;
  agreements: AgreementsTable;
  site_policies: SitePoliciesTable;
}

/**
 * Rebuilds a table under a new primary key: the one way SQLite changes a key, and as good on
 * PostgreSQL (inside the migration's transaction on both). `create` makes the new table under
 * `name`; the rows are copied column by column, then the new table takes the old one's name.
 */
export async function rekeyTable(
  db: Kysely<unknown>,
  table: string,
  columns: readonly string[],
  create: (name: string) => Promise<void>,
): Promise<void> {
  const next = `${table}_011`;
  await create(next);
  const list = sql.join(columns.map((c) => sql.ref(c)));
  await sql`insert into ${sql.table(next)} (${list}) select ${list} from ${sql.table(table)}`.execute(db);
  await db.schema.dropTable(table).execute();
  await db.schema.alterTable(next).renameTo(table).execute();
}

/**
 * Site policies written before 011 name datasets and agreements by their bare id, which was unique
 * then: each such reference becomes `owner/id`, so that a forbid keeps forbidding what it meant
 * (an unqualified uid would match nothing from now on). A name no row has is left as it was.
 */
async function qualifyPolicyReferences(db: Kysely<GovernanceTables>): Promise<void> {
  const owners = {
    Dataset: new Map((await db.selectFrom('datasets').select(['id', 'owner']).execute()).map((r) => [r.id, r.owner])),
    Agreement: new Map((await db.selectFrom('agreements').select(['id', 'grantor']).execute()).map((r) => [r.id, r.grantor])),
  };
  for (const p of await db.selectFrom('site_policies').select(['id', 'text']).execute()) {
    const text = p.text.replace(ENTITY_REFERENCE, (all, head: string, type: 'Dataset' | 'Agreement', id: string) => {
      const owner = owners[type].get(id);
      return owner === undefined ? all : `${head}"${owner}/${id}"`;
    });
    if (text !== p.text) await db.updateTable('site_policies').set({ text }).where('id', '=', p.id).execute();
  }
}

export const governanceMigrations: Record<string, Migration> = {
  '004_governance': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('datasets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('classification', 'text', (c) => c.notNull())
        .addColumn('zones', 'text', (c) => c.notNull())
        .addColumn('location', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('agreements')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('grantor', 'text', (c) => c.notNull())
        .addColumn('grantee', 'text', (c) => c.notNull())
        .addColumn('datasets', 'text', (c) => c.notNull())
        .addColumn('purposes', 'text', (c) => c.notNull())
        .addColumn('zones', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'double precision', (c) => c.notNull())
        .addColumn('produces', 'text', (c) => c.notNull())
        .addColumn('no_export', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('approved_at', 'double precision')
        .addColumn('approved_by', 'text')
        .addColumn('revoked_at', 'double precision')
        .addColumn('revoked_by', 'text')
        .execute();
      await db.schema.createIndex('agreements_grantee').on('agreements').column('grantee').execute();
      await db.schema
        .createTable('site_policies')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
    },
  },
  // Ids are each member's own: pharma's trials and telecom's trials are two datasets, so that
  // creating one never answers "exists" for another member's. Existing rows keep their ids (unique
  // until now); jobs and models that named them bare still find them (see resolveName).
  '011_member_scoped_ids': {
    // PostgreSQL runs a migration in a transaction; SQLite's migrator does not (Kysely counts it
    // among engines without transactional DDL, though it has it): its own, so that a crash between
    // dropping a table and renaming its copy leaves the store as it was.
    up: (db: Kysely<unknown>) => (db.isTransaction ? scopeIds(db) : db.transaction().execute(scopeIds)),
  },
};

async function scopeIds(db: Kysely<unknown>): Promise<void> {
  await rekeyTable(
    db,
    'datasets',
    ['id', 'owner', 'name', 'classification', 'zones', 'location', 'created_at', 'created_by'],
    async (name) => {
      await db.schema
        .createTable(name)
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('classification', 'text', (c) => c.notNull())
        .addColumn('zones', 'text', (c) => c.notNull())
        .addColumn('location', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('datasets_owner_id_pk', ['owner', 'id'])
        .execute();
    },
  );
  await rekeyTable(db, 'agreements', AGREEMENT_COLUMNS, async (name) => {
    await db.schema
      .createTable(name)
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('grantor', 'text', (c) => c.notNull())
      .addColumn('grantee', 'text', (c) => c.notNull())
      .addColumn('datasets', 'text', (c) => c.notNull())
      .addColumn('purposes', 'text', (c) => c.notNull())
      .addColumn('zones', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'double precision', (c) => c.notNull())
      .addColumn('produces', 'text', (c) => c.notNull())
      .addColumn('no_export', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'double precision', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('approved_at', 'double precision')
      .addColumn('approved_by', 'text')
      .addColumn('revoked_at', 'double precision')
      .addColumn('revoked_by', 'text')
      .addPrimaryKeyConstraint('agreements_grantor_id_pk', ['grantor', 'id'])
      .execute();
  });
  // Dropped with the old table on both engines.
  await db.schema.createIndex('agreements_grantee').on('agreements').column('grantee').execute();
  // Models by (member, name, version): a member's name never collides with another's.
  await rekeyTable(db, 'model_versions', MODEL_VERSION_COLUMNS, (name) => createScopedModelVersions(db, name));
  await db.schema.createIndex('model_versions_member').on('model_versions').column('member').execute();
  await qualifyPolicyReferences(db as Kysely<GovernanceTables>);
}

const AGREEMENT_COLUMNS = [
  'id',
  'grantor',
  'grantee',
  'datasets',
  'purposes',
  'zones',
  'expires_at',
  'produces',
  'no_export',
  'created_at',
  'created_by',
  'approved_at',
  'approved_by',
  'revoked_at',
  'revoked_by',
];

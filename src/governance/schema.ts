// The tables of datasets, data-use agreements and site policies (migration 004). JSON lists are
// TEXT on both engines, like the rest of the store.
import type { Kysely, Migration } from 'kysely';

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
};

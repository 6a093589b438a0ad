// The tables of model versions, two-person approvals and members' break-glass settings
// (migration 005). Lineage, restrictions, card fields and approvers are JSON in TEXT on both
// engines, like the rest of the store: they are read whole and never queried inside.
import type { Kysely, Migration } from 'kysely';

/** Keyed by (member, name, version) since migration 011 (src/governance/schema.ts). */
export interface ModelVersionsTable {
  name: string;
  version: string;
  /** The member of the job that made it (the owner of the model). */
  member: string;
  job_id: string;
  /** Where the weights are: a path or URL on the factory's storage. */
  artifact: string;
  /** JSON: classification, purposes, zones, noExport (computed from the lineage, never from a request). */
  restrictions: string;
  /** JSON: datasets → agreements → job → placement, as they were at registration. */
  lineage: string;
  /** JSON: the members whose datasets it was trained on (who may read its lineage). */
  grantors: string;
  /** JSON: the fields people fill in (intended use, limitations, evaluation, the provider's Annex XI answers). */
  card: string;
  created_at: number;
  created_by: string;
  card_updated_at: number | null;
  card_updated_by: string | null;
}

export interface ApprovalsTable {
  id: string;
  /** `model-export` or `break-glass`. */
  kind: string;
  /** `model:<name>@<version>` or `job:<id>`. */
  subject: string;
  /** The member whose object it is (whose admins approve). */
  member: string;
  reason: string;
  requested_by: string;
  requested_role: string;
  created_at: number;
  expires_at: number;
  /** JSON array of { user, role, at }: at most one entry per user. */
  approvers: string;
  /** `pending`, `approved` (two distinct approvers), `used` (an export consumed it). */
  state: string;
  approved_at: number | null;
  used_at: number | null;
}

export interface BreakGlassTable {
  member: string;
  /** 1: operators read this member's job details only with an approved break-glass request. */
  required: number;
  updated_at: number;
  updated_by: string;
}

export interface ModelTables {
  model_versions: ModelVersionsTable;
  approvals: ApprovalsTable;
  break_glass: BreakGlassTable;
}

export const modelMigrations: Record<string, Migration> = {
  '005_models': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('model_versions')
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('artifact', 'text', (c) => c.notNull())
        .addColumn('restrictions', 'text', (c) => c.notNull())
        .addColumn('lineage', 'text', (c) => c.notNull())
        .addColumn('grantors', 'text', (c) => c.notNull())
        .addColumn('card', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('card_updated_at', 'double precision')
        .addColumn('card_updated_by', 'text')
        .addPrimaryKeyConstraint('model_versions_pk', ['name', 'version'])
        .execute();
      await db.schema.createIndex('model_versions_member').on('model_versions').column('member').execute();
      await db.schema
        .createTable('approvals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('requested_role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('expires_at', 'double precision', (c) => c.notNull())
        .addColumn('approvers', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('approved_at', 'double precision')
        .addColumn('used_at', 'double precision')
        .execute();
      await db.schema.createIndex('approvals_subject').on('approvals').columns(['kind', 'subject']).execute();
      await db.schema
        .createTable('break_glass')
        .addColumn('member', 'text', (c) => c.primaryKey())
        .addColumn('required', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'double precision', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .execute();
    },
  },
};

export const MODEL_VERSION_COLUMNS = [
  'name',
  'version',
  'member',
  'job_id',
  'artifact',
  'restrictions',
  'lineage',
  'grantors',
  'card',
  'created_at',
  'created_by',
  'card_updated_at',
  'card_updated_by',
];

/** model_versions as migration 011 keys it, under `name` (the migration renames it after the copy). */
export async function createScopedModelVersions(db: Kysely<unknown>, name: string): Promise<void> {
  await db.schema
    .createTable(name)
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('member', 'text', (c) => c.notNull())
    .addColumn('job_id', 'text', (c) => c.notNull())
    .addColumn('artifact', 'text', (c) => c.notNull())
    .addColumn('restrictions', 'text', (c) => c.notNull())
    .addColumn('lineage', 'text', (c) => c.notNull())
    .addColumn('grantors', 'text', (c) => c.notNull())
    .addColumn('card', 'text', (c) => c.notNull())
    .addColumn('created_at', 'double precision', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('card_updated_at', 'double precision')
    .addColumn('card_updated_by', 'text')
    .addPrimaryKeyConstraint('model_versions_member_name_version_pk', ['member', 'name', 'version'])
    .execute();
}

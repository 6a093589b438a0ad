// The tables of model deployments (migration 007): one row per deployment, and one per replica job
// the controller keeps for it. JSON lists are TEXT on both engines, like the rest of the store.
import type { Kysely, Migration } from 'kysely';

export interface DeploymentsTable {
  id: string;
  member: string;
  project: string;
  /** The model name clients call; unique among a member's active deployments. */
  model: string;
  /** JSON argv of the engine. */
  command: string;
  gpus: number;
  min_replicas: number;
  max_replicas: number;
  /** The replica count the controller keeps now (what the autoscaler last chose); survives restarts. */
  target: number;
  /** JSON array of classifications. */
  accreditations: string;
  zone: string | null;
  reasoning: number;
  /** Idle seconds before the deployment scales to zero; null: never. */
  scale_to_zero_seconds: number | null;
  /** active | deleted */
  state: string;
  /** Replica numbers only grow, so a job name `deploy-<id>-r<k>` is never reused. */
  next_replica: number;
  created_at: number;
  created_by: string;
  updated_at: number;
  deleted_at: number | null;
  deleted_by: string | null;
}

export interface DeploymentReplicasTable {
  /** The Fabrik job that runs it. */
  job_id: string;
  deployment: string;
  replica: number;
  /** FABRIK_ENGINE_PORT it was given. */
  port: number;
  created_at: number;
}

export interface DeploymentTables {
  deployments: DeploymentsTable;
  deployment_replicas: DeploymentReplicasTable;
}

export const deploymentMigrations: Record<string, Migration> = {
  '007_deployments': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('project', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('command', 'text', (c) => c.notNull())
        .addColumn('gpus', 'integer', (c) => c.notNull())
        .addColumn('min_replicas', 'integer', (c) => c.notNull())
        .addColumn('max_replicas', 'integer', (c) => c.notNull())
        .addColumn('target', 'integer', (c) => c.notNull())
        .addColumn('accreditations', 'text', (c) => c.notNull())
        .addColumn('zone', 'text')
        .addColumn('reasoning', 'integer', (c) => c.notNull())
        .addColumn('scale_to_zero_seconds', 'integer')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('next_replica', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'double precision', (c) => c.notNull())
        .addColumn('deleted_at', 'double precision')
        .addColumn('deleted_by', 'text')
        .execute();
      await db.schema.createIndex('deployments_member_model').on('deployments').columns(['member', 'model', 'state']).execute();
      await db.schema
        .createTable('deployment_replicas')
        .addColumn('job_id', 'text', (c) => c.primaryKey())
        .addColumn('deployment', 'text', (c) => c.notNull().references('deployments.id').onDelete('cascade'))
        .addColumn('replica', 'integer', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('deployment_replicas_deployment').on('deployment_replicas').column('deployment').execute();
    },
  },
};

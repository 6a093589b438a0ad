// Deployments and their replica jobs in the store (both engines, through the same Kysely db).
// The controller keeps its own mirror in memory; this is what survives a restart.
import type { Kysely } from 'kysely';
import type { Classification } from '../../governance/model.js';
import type { Database } from '../../store/schema.js';
import type { DeploymentReplicasTable, DeploymentsTable } from './schema.js';

export interface Deployment {
  readonly id: string;
  readonly member: string;
  readonly project: string;
  readonly model: string;
  readonly command: readonly string[];
  readonly gpus: number;
  readonly min: number;
  readonly max: number;
  /** The replica count the controller keeps now. */
  readonly target: number;
  readonly accreditations: readonly Classification[];
  readonly zone: string | null;
  readonly reasoning: boolean;
  readonly scaleToZeroSeconds: number | null;
  readonly state: 'active' | 'deleted';
  readonly nextReplica: number;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly updatedAt: number;
  readonly deletedAt: number | null;
  readonly deletedBy: string | null;
}

export interface ReplicaRecord {
  readonly jobId: string;
  readonly deployment: string;
  readonly replica: number;
  readonly port: number;
  readonly createdAt: number;
}

const num = (v: number | null) => (v === null ? null : Number(v));

function deployment(r: DeploymentsTable): Deployment {
  return {
    id: r.id,
    member: r.member,
    project: r.project,
    model: r.model,
    command: JSON.parse(r.command) as string[],
    gpus: Number(r.gpus),
    min: Number(r.min_replicas),
    max: Number(r.max_replicas),
    target: Number(r.target),
    accreditations: JSON.parse(r.accreditations) as Classification[],
    zone: r.zone,
    reasoning: Number(r.reasoning) === 1,
    scaleToZeroSeconds: num(r.scale_to_zero_seconds),
    state: r.state as Deployment['state'],
    nextReplica: Number(r.next_replica),
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
    updatedAt: Number(r.updated_at),
    deletedAt: num(r.deleted_at),
    deletedBy: r.deleted_by,
  };
}

function row(d: Deployment): DeploymentsTable {
  return {
    id: d.id,
    member: d.member,
    project: d.project,
    model: d.model,
    command: JSON.stringify(d.command),
    gpus: d.gpus,
    min_replicas: d.min,
    max_replicas: d.max,
    target: d.target,
    accreditations: JSON.stringify(d.accreditations),
    zone: d.zone,
    reasoning: d.reasoning ? 1 : 0,
    scale_to_zero_seconds: d.scaleToZeroSeconds,
    state: d.state,
    next_replica: d.nextReplica,
    created_at: d.createdAt,
    created_by: d.createdBy,
    updated_at: d.updatedAt,
    deleted_at: d.deletedAt,
    deleted_by: d.deletedBy,
  };
}

function replica(r: DeploymentReplicasTable): ReplicaRecord {
  return {
    jobId: r.job_id,
    deployment: r.deployment,
    replica: Number(r.replica),
    port: Number(r.port),
    createdAt: Number(r.created_at),
  };
}

export type DeploymentChange = Partial<
  Pick<Deployment, 'min' | 'max' | 'target' | 'scaleToZeroSeconds' | 'state' | 'nextReplica' | 'deletedAt' | 'deletedBy'>
> & { readonly updatedAt: number };

export class DeploymentStore {
  constructor(private readonly db: Kysely<Database>) {}

  async add(d: Deployment): Promise<void> {
    await this.db.insertInto('deployments').values(row(d)).execute();
  }

  async get(id: string): Promise<Deployment | undefined> {
    const r = await this.db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? deployment(r) : undefined;
  }

  /** Active deployments (what the controller keeps running), oldest first. */
  async active(): Promise<Deployment[]> {
    const rows = await this.db
      .selectFrom('deployments')
      .selectAll()
      .where('state', '=', 'active')
      .orderBy('created_at')
      .execute();
    return rows.map(deployment);
  }

  async update(id: string, change: DeploymentChange): Promise<void> {
    const set: Partial<DeploymentsTable> = { updated_at: change.updatedAt };
    if (change.min !== undefined) set.min_replicas = change.min;
    if (change.max !== undefined) set.max_replicas = change.max;
    if (change.target !== undefined) set.target = change.target;
    if (change.scaleToZeroSeconds !== undefined) set.scale_to_zero_seconds = change.scaleToZeroSeconds;
    if (change.state !== undefined) set.state = change.state;
    if (change.nextReplica !== undefined) set.next_replica = change.nextReplica;
    if (change.deletedAt !== undefined) set.deleted_at = change.deletedAt;
    if (change.deletedBy !== undefined) set.deleted_by = change.deletedBy;
    await this.db.updateTable('deployments').set(set).where('id', '=', id).execute();
  }

  async addReplica(r: ReplicaRecord): Promise<void> {
    await this.db
      .insertInto('deployment_replicas')
      .values({ job_id: r.jobId, deployment: r.deployment, replica: r.replica, port: r.port, created_at: r.createdAt })
      .execute();
  }

  async removeReplica(jobId: string): Promise<void> {
    await this.db.deleteFrom('deployment_replicas').where('job_id', '=', jobId).execute();
  }

  async replicas(deploymentId?: string): Promise<ReplicaRecord[]> {
    let q = this.db.selectFrom('deployment_replicas').selectAll();
    if (deploymentId !== undefined) q = q.where('deployment', '=', deploymentId);
    return (await q.orderBy('deployment').orderBy('replica').execute()).map(replica);
  }
}

// Model versions, two-person approvals and break-glass settings in the store (both engines,
// through the same Kysely db). Approvals change by compare-and-set on their approver list, so two
// approvers answering at the same moment never lose one another's approval. A model version is
// its member's: (member, name, version), so that a name never tells one member about another's.
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { ApprovalsTable, ModelVersionsTable } from './models-schema.js';
import type { CardFields, Lineage, ModelRecord, Restrictions } from './models.js';
import { AlreadyExistsError } from './store.js';

export const APPROVAL_KINDS = ['model-export', 'break-glass'] as const;
export type ApprovalKind = (typeof APPROVAL_KINDS)[number];
export type ApprovalState = 'pending' | 'approved' | 'used';

export interface Approver {
  readonly user: string;
  /** The user record (absent in approvals given before users were records): the person, not the name. */
  readonly userId?: string;
  readonly role: string;
  readonly at: number;
}

export interface Approval {
  readonly id: string;
  readonly kind: ApprovalKind;
  readonly subject: string;
  readonly member: string;
  readonly reason: string;
  readonly requestedBy: string;
  /** The requester's user record (null in approvals asked for before users were records). */
  readonly requestedById: string | null;
  readonly requestedRole: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly approvers: readonly Approver[];
  readonly state: ApprovalState;
  readonly approvedAt: number | null;
  readonly usedAt: number | null;
}

const num = (v: number | null) => (v === null ? null : Number(v));

function model(r: ModelVersionsTable): ModelRecord {
  return {
    name: r.name,
    version: r.version,
    member: r.member,
    jobId: r.job_id,
    artifact: r.artifact,
    restrictions: JSON.parse(r.restrictions) as Restrictions,
    lineage: JSON.parse(r.lineage) as Lineage,
    grantors: JSON.parse(r.grantors) as string[],
    card: JSON.parse(r.card) as CardFields,
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
    cardUpdatedAt: num(r.card_updated_at),
    cardUpdatedBy: r.card_updated_by,
  };
}

function approval(r: ApprovalsTable & { requested_by_id: string | null }): Approval {
  return {
    id: r.id,
    kind: r.kind as ApprovalKind,
    subject: r.subject,
    member: r.member,
    reason: r.reason,
    requestedBy: r.requested_by,
    requestedById: r.requested_by_id,
    requestedRole: r.requested_role,
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    approvers: JSON.parse(r.approvers) as Approver[],
    state: r.state as ApprovalState,
    approvedAt: num(r.approved_at),
    usedAt: num(r.used_at),
  };
}

export class ModelStore {
  constructor(private readonly db: Kysely<Database>) {}

  /** Adds it; AlreadyExistsError when its member has this name and version already. */
  async addModel(m: ModelRecord): Promise<void> {
    const r = await this.db
      .insertInto('model_versions')
      .values({
        name: m.name,
        version: m.version,
        member: m.member,
        job_id: m.jobId,
        artifact: m.artifact,
        restrictions: JSON.stringify(m.restrictions),
        lineage: JSON.stringify(m.lineage),
        grantors: JSON.stringify(m.grantors),
        card: JSON.stringify(m.card),
        created_at: m.createdAt,
        created_by: m.createdBy,
        card_updated_at: m.cardUpdatedAt,
        card_updated_by: m.cardUpdatedBy,
      })
      .onConflict((oc) => oc.columns(['member', 'name', 'version']).doNothing())
      .executeTakeFirst();
    if (Number(r.numInsertedOrUpdatedRows ?? 0) !== 1)
      throw new AlreadyExistsError(`model ${m.name} version ${m.version} exists`);
  }

  async model(member: string, name: string, version: string): Promise<ModelRecord | undefined> {
    const r = await this.db
      .selectFrom('model_versions')
      .selectAll()
      .where('member', '=', member)
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    return r && model(r);
  }

  /** Every member's versions with this name and version (at most one each), by member. */
  async modelsNamed(name: string, version: string): Promise<ModelRecord[]> {
    const rows = await this.db
      .selectFrom('model_versions')
      .selectAll()
      .where('name', '=', name)
      .where('version', '=', version)
      .orderBy('member')
      .execute();
    return rows.map(model);
  }

  /** All versions, by name, member and registration (few: a consortium registers models, not jobs). */
  async models(): Promise<ModelRecord[]> {
    const rows = await this.db
      .selectFrom('model_versions')
      .selectAll()
      .orderBy('name')
      .orderBy('member')
      .orderBy('created_at')
      .execute();
    return rows.map(model);
  }

  async updateCard(member: string, name: string, version: string, card: CardFields, by: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('model_versions')
      .set({ card: JSON.stringify(card), card_updated_at: at, card_updated_by: by })
      .where('member', '=', member)
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async addApproval(a: Approval): Promise<void> {
    await this.db
      .insertInto('approvals')
      .values({
        id: a.id,
        kind: a.kind,
        subject: a.subject,
        member: a.member,
        reason: a.reason,
        requested_by: a.requestedBy,
        requested_by_id: a.requestedById,
        requested_role: a.requestedRole,
        created_at: a.createdAt,
        expires_at: a.expiresAt,
        approvers: JSON.stringify(a.approvers),
        state: a.state,
        approved_at: a.approvedAt,
        used_at: a.usedAt,
      })
      .execute();
  }

  async approval(id: string): Promise<Approval | undefined> {
    const r = await this.db.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirst();
    return r && approval(r);
  }

  async approvals(filter: { member?: string; kind?: ApprovalKind; subject?: string } = {}): Promise<Approval[]> {
    let q = this.db.selectFrom('approvals').selectAll().orderBy('created_at').orderBy('id');
    if (filter.member !== undefined) q = q.where('member', '=', filter.member);
    if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
    if (filter.subject !== undefined) q = q.where('subject', '=', filter.subject);
    return (await q.execute()).map(approval);
  }

  /**
   * Replaces the approver list if it is still `before` (compare-and-set): false when someone else
   * changed it first (the caller reads again and retries).
   */
  async setApprovers(
    id: string,
    before: readonly Approver[],
    after: readonly Approver[],
    approvedAt: number | null,
  ): Promise<boolean> {
    const r = await this.db
      .updateTable('approvals')
      .set({ approvers: JSON.stringify(after), state: approvedAt === null ? 'pending' : 'approved', approved_at: approvedAt })
      .where('id', '=', id)
      .where('state', '=', 'pending')
      .where('approvers', '=', JSON.stringify(before))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Consumes an approved approval (once): false when it was used already. */
  async useApproval(id: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('approvals')
      .set({ state: 'used', used_at: at })
      .where('id', '=', id)
      .where('state', '=', 'approved')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async breakGlassRequired(member: string): Promise<boolean> {
    const r = await this.db.selectFrom('break_glass').select('required').where('member', '=', member).executeTakeFirst();
    return r !== undefined && Number(r.required) === 1;
  }

  async setBreakGlass(member: string, required: boolean, by: string, at: number): Promise<void> {
    const values = { required: required ? 1 : 0, updated_at: at, updated_by: by };
    await this.db
      .insertInto('break_glass')
      .values({ member, ...values })
      .onConflict((oc) => oc.column('member').doUpdateSet(values))
      .execute();
  }
}

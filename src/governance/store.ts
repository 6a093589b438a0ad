// Datasets, agreements and site policies in the store (both engines, through the same Kysely db).
// Each member names its own: a dataset is (owner, id), an agreement (grantor, id).
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import {
  datasetVisibleTo,
  granteeParts,
  nameParts,
  resolveName,
  type Agreement,
  type Classification,
  type Dataset,
} from './model.js';
import type { AgreementsTable, DatasetsTable } from './schema.js';

/** A dataset or agreement id that its member has taken already. */
export class AlreadyExistsError extends Error {
  override readonly name = 'AlreadyExistsError';
}

const list = (json: string) => JSON.parse(json) as string[];

function dataset(r: DatasetsTable): Dataset {
  return {
    id: r.id,
    owner: r.owner,
    name: r.name,
    classification: r.classification as Classification,
    zones: list(r.zones),
    location: r.location,
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
  };
}

function agreement(r: AgreementsTable): Agreement {
  const g = granteeParts(r.grantee);
  const num = (v: number | null) => (v === null ? null : Number(v));
  return {
    id: r.id,
    grantor: r.grantor,
    grantee: r.grantee,
    granteeMember: g.member,
    granteeProject: g.project,
    datasets: list(r.datasets),
    purposes: list(r.purposes),
    zones: list(r.zones),
    expiresAt: Number(r.expires_at),
    produces: r.produces as Classification,
    noExport: Number(r.no_export) === 1,
    createdAt: Number(r.created_at),
    createdBy: r.created_by,
    approvedAt: num(r.approved_at),
    approvedBy: r.approved_by,
    revokedAt: num(r.revoked_at),
    revokedBy: r.revoked_by,
  };
}

export class GovernanceStore {
  constructor(private readonly db: Kysely<Database>) {}

  /** Adds it; AlreadyExistsError when its owner has one by that id (two at once: one wins, on both engines). */
  async addDataset(d: Dataset): Promise<void> {
    const r = await this.db
      .insertInto('datasets')
      .values({
        id: d.id,
        owner: d.owner,
        name: d.name,
        classification: d.classification,
        zones: JSON.stringify(d.zones),
        location: d.location,
        created_at: d.createdAt,
        created_by: d.createdBy,
      })
      .onConflict((oc) => oc.columns(['owner', 'id']).doNothing())
      .executeTakeFirst();
    if (Number(r.numInsertedOrUpdatedRows ?? 0) !== 1) throw new AlreadyExistsError(`dataset ${d.id} exists`);
  }

  async dataset(owner: string, id: string): Promise<Dataset | undefined> {
    const r = await this.db.selectFrom('datasets').selectAll().where('owner', '=', owner).where('id', '=', id).executeTakeFirst();
    return r && dataset(r);
  }

  /** Every member's datasets (ids: those with these ids, whoever owns them), by id, then owner. */
  async datasets(ids?: readonly string[]): Promise<Dataset[]> {
    let q = this.db.selectFrom('datasets').selectAll().orderBy('id').orderBy('owner');
    if (ids) {
      if (ids.length === 0) return [];
      q = q.where('id', 'in', [...new Set(ids)]);
    }
    return (await q.execute()).map(dataset);
  }

  /**
   * The datasets a job of this member names, as admission resolved them: `owner/id` since 011;
   * a bare id (a job from before) as it resolves now. Names that no longer resolve to one dataset
   * the member may use are left out: their job is refused where it is placed (dataset-gone).
   */
  async jobDatasets(member: string, names: readonly string[]): Promise<Dataset[]> {
    if (names.length === 0) return [];
    const visible = await this.visibleNamed(member, names);
    return names.flatMap((n) => {
      const r = resolveName(
        n,
        member,
        visible,
        (d) => d.owner,
        (d) => d.id,
      );
      return r.found ? [r.found] : [];
    });
  }

  /** The datasets with these names' ids that `member` may see (all of them for null: operators, consortium auditors). */
  async visibleNamed(member: string | null, names: readonly string[], known?: readonly Agreement[]): Promise<Dataset[]> {
    const all = await this.datasets(names.map((n) => nameParts(n).id));
    if (member === null) return all;
    // `known`: the member's agreements, when the caller has read them already.
    const agreements = known ?? (await this.agreementsFor(member));
    return all.filter((d) => datasetVisibleTo(d, member, agreements));
  }

  /** Adds it; AlreadyExistsError when its grantor has one by that id. */
  async addAgreement(a: Agreement): Promise<void> {
    const r = await this.db
      .insertInto('agreements')
      .values({
        id: a.id,
        grantor: a.grantor,
        grantee: a.grantee,
        datasets: JSON.stringify(a.datasets),
        purposes: JSON.stringify(a.purposes),
        zones: JSON.stringify(a.zones),
        expires_at: a.expiresAt,
        produces: a.produces,
        no_export: a.noExport ? 1 : 0,
        created_at: a.createdAt,
        created_by: a.createdBy,
        approved_at: a.approvedAt,
        approved_by: a.approvedBy,
        revoked_at: a.revokedAt,
        revoked_by: a.revokedBy,
      })
      .onConflict((oc) => oc.columns(['grantor', 'id']).doNothing())
      .executeTakeFirst();
    if (Number(r.numInsertedOrUpdatedRows ?? 0) !== 1) throw new AlreadyExistsError(`agreement ${a.id} exists`);
  }

  async agreement(grantor: string, id: string): Promise<Agreement | undefined> {
    const r = await this.db
      .selectFrom('agreements')
      .selectAll()
      .where('grantor', '=', grantor)
      .where('id', '=', id)
      .executeTakeFirst();
    return r && agreement(r);
  }

  /** Every member's agreements (id: those with this id, whoever grants them), by id, then grantor. */
  async agreements(id?: string): Promise<Agreement[]> {
    let q = this.db.selectFrom('agreements').selectAll().orderBy('id').orderBy('grantor');
    if (id !== undefined) q = q.where('id', '=', id);
    return (await q.execute()).map(agreement);
  }

  /** Agreements granting to this member or one of its projects (few: filtered here, not with LIKE, whose `_` is a wildcard). */
  async agreementsFor(member: string): Promise<Agreement[]> {
    return (await this.agreements()).filter((a) => a.granteeMember === member);
  }

  /** Approves (once); false when it was approved or revoked already. */
  async approveAgreement(grantor: string, id: string, by: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('agreements')
      .set({ approved_at: at, approved_by: by })
      .where('grantor', '=', grantor)
      .where('id', '=', id)
      .where('approved_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Revokes (once); false when it was revoked already. */
  async revokeAgreement(grantor: string, id: string, by: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('agreements')
      .set({ revoked_at: at, revoked_by: by })
      .where('grantor', '=', grantor)
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async sitePolicies(): Promise<Record<string, string>> {
    const rows = await this.db.selectFrom('site_policies').select(['id', 'text']).orderBy('id').execute();
    return Object.fromEntries(rows.map((r) => [r.id, r.text]));
  }

  async putSitePolicy(id: string, text: string, by: string, at: number): Promise<void> {
    await this.db
      .insertInto('site_policies')
      .values({ id, text, created_at: at, created_by: by })
      .onConflict((oc) => oc.column('id').doUpdateSet({ text, created_at: at, created_by: by }))
      .execute();
  }

  async deleteSitePolicy(id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('site_policies').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }
}

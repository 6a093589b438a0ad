// Datasets, agreements and site policies in the store (both engines, through the same Kysely db).
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { granteeParts, type Agreement, type Classification, type Dataset } from './model.js';
import type { AgreementsTable, DatasetsTable } from './schema.js';

/** A dataset or agreement id that is taken. */
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

  async addDataset(d: Dataset): Promise<void> {
    const taken = await this.db.selectFrom('datasets').select('id').where('id', '=', d.id).executeTakeFirst();
    if (taken) throw new AlreadyExistsError(`dataset ${d.id} exists`);
    await this.db
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
      .execute();
  }

  async dataset(id: string): Promise<Dataset | undefined> {
    const r = await this.db.selectFrom('datasets').selectAll().where('id', '=', id).executeTakeFirst();
    return r && dataset(r);
  }

  async datasets(ids?: readonly string[]): Promise<Dataset[]> {
    let q = this.db.selectFrom('datasets').selectAll().orderBy('id');
    if (ids) {
      if (ids.length === 0) return [];
      q = q.where('id', 'in', [...ids]);
    }
    return (await q.execute()).map(dataset);
  }

  async addAgreement(a: Agreement): Promise<void> {
    const taken = await this.db.selectFrom('agreements').select('id').where('id', '=', a.id).executeTakeFirst();
    if (taken) throw new AlreadyExistsError(`agreement ${a.id} exists`);
    await this.db
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
      .execute();
  }

  async agreement(id: string): Promise<Agreement | undefined> {
    const r = await this.db.selectFrom('agreements').selectAll().where('id', '=', id).executeTakeFirst();
    return r && agreement(r);
  }

  async agreements(): Promise<Agreement[]> {
    return (await this.db.selectFrom('agreements').selectAll().orderBy('id').execute()).map(agreement);
  }

  /** Agreements granting to this member or one of its projects (few: filtered here, not with LIKE, whose `_` is a wildcard). */
  async agreementsFor(member: string): Promise<Agreement[]> {
    return (await this.agreements()).filter((a) => a.granteeMember === member);
  }

  /** Approves (once); false when it was approved or revoked already. */
  async approveAgreement(id: string, by: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('agreements')
      .set({ approved_at: at, approved_by: by })
      .where('id', '=', id)
      .where('approved_at', 'is', null)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Revokes (once); false when it was revoked already. */
  async revokeAgreement(id: string, by: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('agreements')
      .set({ revoked_at: at, revoked_by: by })
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

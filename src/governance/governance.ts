// Sovereignty at admission: a job that declares input datasets and a purpose is admitted only when
// the Cedar policies allow every dataset for it, and is then bound to the zones all of them allow
// and, for confidential or restricted data, to NVLink domains of its own. The same policies are
// asked again when the scheduler has chosen the nodes (a revocation since the submission stops the
// job there), and answer "who can use this dataset, and for what?".
import { CLASSIFICATION_RANK, type Agreement, type Dataset } from './model.js';
import { AdmissionPolicies, checkPolicyText, type UseDecision } from './policies.js';
import type { GovernanceStore } from './store.js';

export interface AdmissionRequest {
  readonly member: string;
  readonly project: string;
  readonly purpose: string;
  readonly datasets: readonly string[];
  /** The zone the job asked for, if any. */
  readonly zone: string | null;
  readonly exclusive: boolean;
}

export type Admission =
  | {
      readonly allow: true;
      /** The zone it is bound to (null: any), and whether its NVLink domains must be its member's alone. */
      readonly zone: string | null;
      readonly exclusive: boolean;
      readonly uses: readonly UseDecision[];
    }
  | { readonly allow: false; readonly refusal: UseDecision; readonly message: string };

/** A dataset the member may not see (unknown, or another's without an agreement naming it). */
export class UnknownDatasetError extends Error {
  override readonly name = 'UnknownDatasetError';
  constructor(readonly dataset: string) {
    super(`dataset ${dataset} does not exist`);
  }
}

export interface UseGrant {
  /** `member` or `member/project`. */
  readonly grantee: string;
  /** `*` for the owner: its own data, for any purpose. */
  readonly purposes: readonly string[];
  readonly zones: readonly string[];
  /** The agreement, null for the owner. */
  readonly agreement: string | null;
  readonly until: number | null;
}

export function describeRefusal(d: UseDecision): string {
  const rules = d.rules.join(', ');
  return `dataset ${d.dataset}: refused by ${rules}`;
}

export class Governance {
  private cached: AdmissionPolicies | null = null;

  constructor(
    readonly store: GovernanceStore,
    /** The site's zones, in order: the first allowed one binds a job that named none. */
    private readonly zones: readonly string[],
    private readonly now: () => number,
  ) {}

  async policies(): Promise<AdmissionPolicies> {
    return (this.cached ??= new AdmissionPolicies(await this.store.sitePolicies()));
  }

  /** Adds or replaces an operator's site-wide policy (checked first: a broken one never lands). */
  async putSitePolicy(id: string, text: string, by: string): Promise<void> {
    checkPolicyText(id, text);
    await this.store.putSitePolicy(id, text, by, this.now());
    this.cached = null;
  }

  async deleteSitePolicy(id: string): Promise<boolean> {
    const gone = await this.store.deleteSitePolicy(id);
    this.cached = null;
    return gone;
  }

  /** Whether a member sees a dataset: it owns it, or an agreement (in any state) names it for the member. */
  visible(d: Dataset, member: string | null, agreements: readonly Agreement[]): boolean {
    return (
      member === null || d.owner === member || agreements.some((a) => a.granteeMember === member && a.datasets.includes(d.id))
    );
  }

  /** The datasets a job names, each visible to its member; throws UnknownDatasetError otherwise. */
  private async inputs(member: string, ids: readonly string[]): Promise<{ datasets: Dataset[]; agreements: Agreement[] }> {
    const agreements = await this.store.agreementsFor(member);
    const found = new Map((await this.store.datasets(ids)).map((d) => [d.id, d]));
    const datasets = ids.map((id) => {
      const d = found.get(id);
      if (!d || !this.visible(d, member, agreements)) throw new UnknownDatasetError(id);
      return d;
    });
    return { datasets, agreements };
  }

  async admit(r: AdmissionRequest): Promise<Admission> {
    const { datasets, agreements } = await this.inputs(r.member, r.datasets);
    const policies = await this.policies();
    const now = this.now();
    const job = { member: r.member, project: r.project, purpose: r.purpose };
    const refuse = (refusal: UseDecision): Admission => ({ allow: false, refusal, message: describeRefusal(refusal) });
    const candidates = r.zone !== null ? [r.zone] : this.zones;
    let zones = new Set(candidates);
    const uses: UseDecision[] = [];
    for (const d of datasets) {
      // Before placement: the agreement itself (approved, in force, for this purpose).
      const general = policies.decide(job, d, agreements, { zone: '', cotenants: [] }, now);
      if (!general.allow) return refuse(general);
      const here = candidates.map((zone) => policies.decide(job, d, agreements, { zone, cotenants: [] }, now));
      const allowed = here.filter((x) => x.allow);
      if (allowed.length === 0) return refuse(here[0]);
      zones = new Set([...zones].filter((z) => here[candidates.indexOf(z)].allow));
      uses.push(allowed[0]);
    }
    if (zones.size === 0)
      return refuse({ dataset: datasets.map((d) => d.id).join('+'), allow: false, agreement: null, rules: ['no-common-zone'] });
    const zone = r.zone ?? (zones.size === this.zones.length ? null : this.zones.find((z) => zones.has(z))!);
    const exclusive =
      r.exclusive || datasets.some((d) => CLASSIFICATION_RANK[d.classification] >= CLASSIFICATION_RANK.confidential);
    return { allow: true, zone, exclusive, uses };
  }

  /** At placement: the refusals for these nodes' zone and neighbours (empty: it may start). */
  async checkPlacement(
    r: Omit<AdmissionRequest, 'zone' | 'exclusive'>,
    zone: string,
    cotenants: readonly string[],
  ): Promise<UseDecision[]> {
    if (r.datasets.length === 0) return [];
    let inputs: { datasets: Dataset[]; agreements: Agreement[] };
    try {
      inputs = await this.inputs(r.member, r.datasets);
    } catch (err) {
      if (err instanceof UnknownDatasetError)
        return [{ dataset: err.dataset, allow: false, agreement: null, rules: ['dataset-gone'] }];
      throw err;
    }
    const policies = await this.policies();
    const job = { member: r.member, project: r.project, purpose: r.purpose };
    return inputs.datasets
      .map((d) => policies.decide(job, d, inputs.agreements, { zone, cotenants }, this.now()))
      .filter((d) => !d.allow);
  }

  /**
   * Who can use the dataset, and for what, from the same policies: the owner, and each grantee of
   * an agreement naming it, with the purposes and zones the policies allow today.
   */
  async whoCanUse(id: string, viewer: string | null): Promise<{ dataset: Dataset; grants: UseGrant[] }> {
    const d = await this.store.dataset(id);
    const all = await this.store.agreements();
    if (!d || !this.visible(d, viewer, all)) throw new UnknownDatasetError(id);
    const policies = await this.policies();
    const now = this.now();
    const zonesFor = (job: { member: string; project: string; purpose: string }, a: Agreement[]) =>
      this.zones.filter((zone) => policies.decide(job, d, a, { zone, cotenants: [] }, now).allow);
    const grants: UseGrant[] = [
      {
        grantee: d.owner,
        purposes: ['*'],
        zones: zonesFor({ member: d.owner, project: '*', purpose: '*' }, []),
        agreement: null,
        until: null,
      },
    ];
    for (const a of all.filter((x) => x.datasets.includes(id))) {
      const project = a.granteeProject ?? '*';
      const purposes = a.purposes.filter(
        (purpose) =>
          policies.decide({ member: a.granteeMember, project, purpose }, d, [a], { zone: '', cotenants: [] }, now).allow,
      );
      if (purposes.length === 0) continue;
      const zones = zonesFor({ member: a.granteeMember, project, purpose: purposes[0] }, [a]);
      if (zones.length > 0) grants.push({ grantee: a.grantee, purposes, zones, agreement: a.id, until: a.expiresAt });
    }
    // A member that is not the viewer's sees only what concerns itself.
    const mine = viewer === null || viewer === d.owner ? grants : grants.filter((g) => g.grantee.split('/')[0] === viewer);
    return { dataset: d, grants: mine };
  }
}

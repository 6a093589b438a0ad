// Sovereignty at admission: a job that declares input datasets and a purpose is admitted only when
// the Cedar policies allow every dataset for it, and is then bound to the zones all of them allow
// and, for confidential or restricted data, to NVLink domains of its own. The same policies are
// asked again when the scheduler has chosen the nodes (a revocation since the submission stops the
// job there), and answer "who can use this dataset, and for what?".
//
// Jobs name datasets the way people do: `trials` (their member's own, else the one other member's
// granted to them by that name) or `pharma/trials`. Admission resolves each name once, and the job
// keeps the qualified names it was admitted with (Admission.datasets), so that a dataset named
// `trials` registered later by anyone never changes what the job uses.
import { AmbiguousNameError, CLASSIFICATION_RANK, qualified, resolveName, type Agreement, type Dataset } from './model.js';
import { AdmissionPolicies, checkPolicyText, type UseDecision } from './policies.js';
import type { GovernanceStore } from './store.js';

export interface AdmissionRequest {
  readonly member: string;
  readonly project: string;
  readonly purpose: string;
  /** As the job names them: `id` or `owner/id`. */
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
      /** The datasets it was admitted with, `owner/id`, in the order it named them: what the job keeps. */
      readonly datasets: readonly string[];
    }
  | { readonly allow: false; readonly refusal: UseDecision; readonly message: string };

/**
 * A dataset the member may not see (unknown, or another's without an agreement naming it): the
 * message names only what the caller gave, the same for both.
 */
export class UnknownDatasetError extends Error {
  override readonly name = 'UnknownDatasetError';
  constructor(readonly dataset: string) {
    super(`dataset ${dataset} does not exist`);
  }
}

/** The one dataset a name means to this member (null: operators, consortium auditors), among those it sees. */
function resolveDataset(name: string, member: string | null, visible: readonly Dataset[]): Dataset {
  const r = resolveName(
    name,
    member,
    visible,
    (d) => d.owner,
    (d) => d.id,
  );
  if (r.ambiguous.length > 0) throw new AmbiguousNameError('dataset', name, r.ambiguous);
  if (!r.found) throw new UnknownDatasetError(name);
  return r.found;
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

  /**
   * The datasets a job names, each resolved for its member among those it sees; throws
   * UnknownDatasetError (none: absent and another member's alike) or AmbiguousNameError.
   */
  private async inputs(member: string, names: readonly string[]): Promise<{ datasets: Dataset[]; agreements: Agreement[] }> {
    const agreements = await this.store.agreementsFor(member);
    const visible = await this.store.visibleNamed(member, names, agreements);
    const datasets = names.map((name) => resolveDataset(name, member, visible));
    // `trials` and `pharma/trials` may be one dataset: it is used once.
    const unique = [...new Map(datasets.map((d) => [qualified(d.owner, d.id), d])).values()];
    return { datasets: unique, agreements };
  }

  /** The one dataset a name means to this viewer (null: all of them are visible); throws as inputs() does. */
  async dataset(name: string, viewer: string | null): Promise<Dataset> {
    return resolveDataset(name, viewer, await this.store.visibleNamed(viewer, [name]));
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
    const names = datasets.map((d) => qualified(d.owner, d.id));
    if (zones.size === 0) return refuse({ dataset: names.join('+'), allow: false, agreement: null, rules: ['no-common-zone'] });
    const zone = r.zone ?? (zones.size === this.zones.length ? null : this.zones.find((z) => zones.has(z))!);
    const exclusive =
      r.exclusive || datasets.some((d) => CLASSIFICATION_RANK[d.classification] >= CLASSIFICATION_RANK.confidential);
    return { allow: true, zone, exclusive, uses, datasets: names };
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
      // Only a bare name of a job from before 011 can be: refused, never guessed.
      if (err instanceof AmbiguousNameError)
        return [{ dataset: err.given, allow: false, agreement: null, rules: ['dataset-ambiguous'] }];
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
  async whoCanUse(name: string, viewer: string | null): Promise<{ dataset: Dataset; grants: UseGrant[] }> {
    const d = await this.dataset(name, viewer);
    const all = (await this.store.agreements()).filter((a) => a.grantor === d.owner && a.datasets.includes(d.id));
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
    for (const a of all) {
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

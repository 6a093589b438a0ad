// Admission in Cedar: may this job use this dataset, here? The built-in rules below are Cedar
// policies like the ones an operator adds; each has an id, and a refusal names the ids that
// decided it (Cedar's diagnostics), so that "denied: agreement-expired" is the rule itself, not a
// paraphrase. The owner of a dataset uses it under its own rules (zones, co-tenancy); anyone else
// needs an agreement that names the dataset and the job's member or project, and every forbid
// below must stay silent. Datasets and agreements are Cedar entities by their qualified names
// (`Fabrik::Dataset::"pharma/trials"`, `Fabrik::Agreement::"pharma/dua-trials"`): two members'
// `trials` are two entities, and no policy can mean one and match the other.
import type { AuthorizationAnswer, CedarValueJson, CheckParseAnswer, EntityJson } from '@cedar-policy/cedar-wasm/nodejs';
import { withCedar } from './cedar.js';
import { ENTITY_REFERENCE, qualified, type Agreement, type Dataset } from './model.js';

/** The built-in rules, by id: the id is what a refusal names. */
export const BUILT_IN_POLICIES: Readonly<Record<string, string>> = {
  'owner-uses-own-data': `permit (principal is Fabrik::Job, action == Fabrik::Action::"use", resource is Fabrik::Dataset)
    when { principal.member == resource.owner };`,
  'agreement-grants-use': `permit (principal is Fabrik::Job, action == Fabrik::Action::"use", resource is Fabrik::Dataset)
    when { context has agreement && context.agreement.datasets.contains(resource) &&
           (context.agreement.grantee == principal.member || context.agreement.grantee == principal.project) };`,
  'agreement-not-approved': `forbid (principal, action == Fabrik::Action::"use", resource)
    when { context has agreement && !context.agreement.approved };`,
  'agreement-revoked': `forbid (principal, action == Fabrik::Action::"use", resource)
    when { context has agreement && context.agreement.revoked };`,
  'agreement-expired': `forbid (principal, action == Fabrik::Action::"use", resource)
    when { context has agreement && context.now >= context.agreement.expiresAt };`,
  'purpose-not-permitted': `forbid (principal, action == Fabrik::Action::"use", resource)
    when { context has agreement && !context.agreement.purposes.contains(principal.purpose) };`,
  'zone-not-in-agreement': `forbid (principal, action == Fabrik::Action::"use", resource)
    when { context has agreement && context.zone != "" && !context.agreement.zones.contains(context.zone) };`,
  'zone-not-allowed-for-dataset': `forbid (principal, action == Fabrik::Action::"use", resource is Fabrik::Dataset)
    when { context.zone != "" && !resource.zones.contains(context.zone) };`,
  // Sensitive data never shares an NVLink domain with another member's work.
  'shared-nvlink-domain': `forbid (principal, action == Fabrik::Action::"use", resource is Fabrik::Dataset)
    when { (resource.classification == "confidential" || resource.classification == "restricted") &&
           !context.cotenants.isEmpty() };`,
};

/** What a job is, for admission. */
export interface AdmissionJob {
  readonly member: string;
  readonly project: string;
  readonly purpose: string;
}

/** Where the scheduler would run it: the zone ("" before placement) and the other members on its NVLink domains. */
export interface AdmissionPlace {
  readonly zone: string;
  readonly cotenants: readonly string[];
}

export interface UseDecision {
  /** `owner/id`. */
  readonly dataset: string;
  readonly allow: boolean;
  /** The agreement that allowed it, `grantor/id` (null: the owner's own data, or a refusal). */
  readonly agreement: string | null;
  /** On a refusal: the ids of the rules that decided it (`no-agreement` when nothing could allow it). */
  readonly rules: readonly string[];
}

/** Operator policies could not be parsed: the error names the policy. */
export class InvalidPolicyError extends Error {
  override readonly name = 'InvalidPolicyError';
}

const uid = (type: string, id: string) => ({ __entity: { type: `Fabrik::${type}`, id } });

/**
 * How deep an operator's policy may nest. Cedar (cedar-wasm) parses and evaluates by recursion on
 * a fixed stack: a few hundred nested brackets, or a few hundred `+` or `.attr` in a chain, and it
 * throws (RangeError, or a wasm "memory access out of bounds") instead of answering, once at the
 * PUT and then at every admission. An admission rule is a few lines: these bounds are far above
 * any real one and far below what breaks Cedar, and they are checked before Cedar sees the text.
 */
export const POLICY_LIMITS = {
  /** Brackets ( [ { inside one another. */
  nesting: 32,
  /** Operators, `.`, `if`, `has`, `like`, `in`, `is` and opening brackets in one policy: each may add a level. */
  operators: 256,
} as const;

/** Checks an operator's Cedar text; throws InvalidPolicyError naming the policy and what is wrong. */
export function checkPolicyText(id: string, text: string): void {
  checkPolicyShape(id, text);
  checkEntityNames(id, text);
  let answer: CheckParseAnswer;
  try {
    answer = withCedar((cedar) => cedar.checkParsePolicySet({ staticPolicies: { [id]: text } }));
  } catch (e) {
    // Cedar answers failures as values; a throw is its stack giving out, on a shape the bounds missed.
    throw new InvalidPolicyError(`policy ${id}: Cedar could not read it (${(e as Error).message}); simplify it`);
  }
  if (answer.type === 'failure') throw new InvalidPolicyError(`policy ${id}: ${answer.errors.map((e) => e.message).join('; ')}`);
  // Evaluated once, the way admission will: a policy that parses but cannot be evaluated never lands.
  try {
    withCedar((cedar) =>
      cedar.isAuthorized({
        principal: uid('Job', 'probe'),
        action: { type: 'Fabrik::Action', id: 'use' },
        resource: uid('Dataset', 'probe'),
        context: { now: 0, zone: '', cotenants: [] },
        policies: { staticPolicies: { [id]: text } },
        entities: [],
      }),
    );
  } catch (e) {
    throw new InvalidPolicyError(`policy ${id}: Cedar could not evaluate it (${(e as Error).message}); simplify it`);
  }
}

/**
 * A dataset or agreement named by its bare id would match no entity (they are `owner/id`), so the
 * policy would quietly never apply: refused, with the form to use.
 */
function checkEntityNames(id: string, text: string): void {
  for (const m of text.matchAll(ENTITY_REFERENCE)) {
    const owner = m[2] === 'Dataset' ? 'owner' : 'grantor';
    throw new InvalidPolicyError(
      `policy ${id}: Fabrik::${m[2]}::"${m[3]}" names no member: ${m[2].toLowerCase()}s are Fabrik::${m[2]}::"<${owner}>/${m[3] || '<id>'}" (e.g. "pharma/${m[3] || 'trials'}")`,
    );
  }
}

const OPENING = new Set(['(', '[', '{']);
const CLOSING: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
const DEEPENING_WORDS = new Set(['if', 'has', 'like', 'in', 'is']);

/**
 * The policy's nesting and operator count, from its tokens (strings and comments skipped), against
 * POLICY_LIMITS; the error names the line and column where a limit was passed.
 */
function checkPolicyShape(id: string, text: string): void {
  let depth = 0;
  let operators = 0;
  let line = 1;
  let lineStart = 0;
  const at = (i: number) => `line ${line}, column ${i - lineStart + 1}`;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') {
      line++;
      lineStart = i + 1;
    } else if (c === '"') {
      // A string literal: backslash escapes; an unclosed one is left for Cedar to name.
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (OPENING.has(c)) {
      operators++;
      if (++depth > POLICY_LIMITS.nesting)
        throw new InvalidPolicyError(
          `policy ${id}: brackets nested more than ${POLICY_LIMITS.nesting} deep (at ${at(i)}); an admission rule needs far fewer`,
        );
    } else if (c in CLOSING) {
      depth = Math.max(0, depth - 1);
    } else if ('!=<>&|+-*.'.includes(c)) {
      // `==`, `&&`, `<=`… are one operator.
      if ('=&|'.includes(text[i + 1] ?? '') && c !== '.') i++;
      operators++;
    } else if (/[A-Za-z_]/.test(c)) {
      let end = i + 1;
      while (end < text.length && /\w/.test(text[end])) end++;
      if (DEEPENING_WORDS.has(text.slice(i, end))) operators++;
      i = end - 1;
    }
    if (operators > POLICY_LIMITS.operators)
      throw new InvalidPolicyError(
        `policy ${id}: more than ${POLICY_LIMITS.operators} operators (at ${at(i)}); split it into several policies`,
      );
  }
}

export class AdmissionPolicies {
  private readonly policies: Record<string, string>;

  /** `site`: the operator's policies, by id, added to the built-in ones. */
  constructor(site: Readonly<Record<string, string>> = {}) {
    this.policies = { ...BUILT_IN_POLICIES, ...site };
  }

  /** May the job use the dataset at this place, under one of these agreements? */
  decide(job: AdmissionJob, dataset: Dataset, agreements: readonly Agreement[], place: AdmissionPlace, now: number): UseDecision {
    const candidates: (Agreement | null)[] =
      dataset.owner === job.member
        ? [null]
        : agreements.filter(
            (a) =>
              a.grantor === dataset.owner &&
              a.datasets.includes(dataset.id) &&
              (a.grantee === job.member || a.grantee === `${job.member}/${job.project}`),
          );
    const name = qualified(dataset.owner, dataset.id);
    if (candidates.length === 0) return { dataset: name, allow: false, agreement: null, rules: ['no-agreement'] };
    let first: UseDecision | null = null;
    for (const a of candidates) {
      const d = this.evaluate(job, dataset, a, place, now);
      if (d.allow) return d;
      first ??= d;
    }
    return first!;
  }

  private evaluate(
    job: AdmissionJob,
    dataset: Dataset,
    agreement: Agreement | null,
    place: AdmissionPlace,
    now: number,
  ): UseDecision {
    const name = qualified(dataset.owner, dataset.id);
    const entities: EntityJson[] = [
      { uid: uid('Member', job.member), attrs: {}, parents: [] },
      { uid: uid('Project', `${job.member}/${job.project}`), attrs: {}, parents: [uid('Member', job.member)] },
      {
        uid: uid('Job', 'this'),
        attrs: {
          member: uid('Member', job.member),
          project: uid('Project', `${job.member}/${job.project}`),
          purpose: job.purpose,
        },
        parents: [],
      },
      {
        uid: uid('Dataset', name),
        attrs: { owner: uid('Member', dataset.owner), classification: dataset.classification, zones: [...dataset.zones] },
        parents: [],
      },
    ];
    const context: Record<string, CedarValueJson> = {
      now: Math.floor(now),
      zone: place.zone,
      cotenants: [...place.cotenants],
    };
    const agreementName = agreement && qualified(agreement.grantor, agreement.id);
    if (agreement && agreementName) {
      entities.push({
        uid: uid('Agreement', agreementName),
        attrs: {
          grantee: agreement.granteeProject ? uid('Project', agreement.grantee) : uid('Member', agreement.granteeMember),
          // An agreement grants its grantor's datasets only.
          datasets: agreement.datasets.map((d) => uid('Dataset', qualified(agreement.grantor, d))),
          purposes: [...agreement.purposes],
          zones: [...agreement.zones],
          expiresAt: Math.floor(agreement.expiresAt),
          approved: agreement.approvedAt !== null,
          revoked: agreement.revokedAt !== null,
        },
        parents: [],
      });
      context.agreement = uid('Agreement', agreementName);
    }
    // The policies are checked one by one when they are put; together, on a real job's entities,
    // Cedar may still refuse them or run out of stack. Admission then fails closed and says why:
    // no use is allowed, and nothing answers a 500.
    let answer: AuthorizationAnswer;
    try {
      answer = withCedar((cedar) =>
        cedar.isAuthorized({
          principal: uid('Job', 'this'),
          action: { type: 'Fabrik::Action', id: 'use' },
          resource: uid('Dataset', name),
          context,
          policies: { staticPolicies: this.policies },
          entities,
        }),
      );
    } catch (e) {
      return {
        dataset: name,
        allow: false,
        agreement: null,
        rules: [`policies: Cedar could not evaluate them (${(e as Error).message})`],
      };
    }
    if (answer.type === 'failure')
      return { dataset: name, allow: false, agreement: null, rules: answer.errors.map((e) => `policies: ${e.message}`) };
    const { decision, diagnostics } = answer.response;
    // Policies that fail to evaluate (a site policy reading an attribute that is not there) deny, and say so.
    const errors = diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`);
    const allow = decision === 'allow' && errors.length === 0;
    let rules: string[] = [];
    if (decision === 'deny') rules = diagnostics.reason.length > 0 ? [...diagnostics.reason].sort() : ['no-permit'];
    else if (!allow) rules = errors;
    return { dataset: name, allow, agreement: allow ? agreementName : null, rules };
  }
}

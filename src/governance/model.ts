// Datasets and data-use agreements: what the API takes and what the store keeps.
import { z } from 'zod';

export const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted'] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];
/** Stronger is higher: a model is never weaker than the strongest of its data. */
export const CLASSIFICATION_RANK: Readonly<Record<Classification, number>> = {
  public: 0,
  internal: 1,
  confidential: 2,
  restricted: 3,
};

const id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash and underscore');
const purpose = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'a purpose: lower-case letters, digits, dot, dash and underscore');
/** A dataset as agreements and jobs name it: `trials`, or `pharma/trials` (its owner's, across members). */
export const datasetName = z
  .string()
  .min(1)
  .max(129)
  .regex(/^([a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/, 'a dataset: id, or owner/id');

export const DatasetInput = z.strictObject({
  id,
  /** The registering person's own member (it may be repeated, never another). */
  owner: id.optional(),
  name: z.string().min(1).max(256).optional(),
  classification: z.enum(CLASSIFICATIONS),
  /** Zones its data may be processed in (at least one). */
  zones: z.array(id).min(1).max(64),
  /** Where it lives: a path or URL on the factory's storage. */
  location: z.string().min(1).max(4096),
});
export type DatasetInput = z.output<typeof DatasetInput>;

export interface Dataset {
  readonly id: string;
  readonly owner: string;
  readonly name: string;
  readonly classification: Classification;
  readonly zones: readonly string[];
  readonly location: string;
  readonly createdAt: number;
  readonly createdBy: string;
}

export const AgreementInput = z.strictObject({
  id,
  /** A member (`telecom`) or one of its projects (`telecom/ran-model`). */
  grantee: z.string().regex(/^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)?$/, 'a member, or member/project'),
  /** The grantor's own datasets: `trials`, or `pharma/trials`. */
  datasets: z.array(datasetName).min(1).max(256),
  purposes: z.array(purpose).min(1).max(64),
  zones: z.array(id).min(1).max(64),
  expires: z.iso.datetime({ offset: true }),
  /** The classification of what is produced under it (models trained on the data). */
  produces: z.enum(CLASSIFICATIONS),
  /** The model may not leave the factory. */
  noExport: z.boolean().default(false),
});
export type AgreementInput = z.output<typeof AgreementInput>;

export interface Agreement {
  readonly id: string;
  /** The member whose datasets it grants. */
  readonly grantor: string;
  /** `member` or `member/project`. */
  readonly grantee: string;
  readonly granteeMember: string;
  readonly granteeProject: string | null;
  readonly datasets: readonly string[];
  readonly purposes: readonly string[];
  readonly zones: readonly string[];
  readonly expiresAt: number;
  readonly produces: Classification;
  readonly noExport: boolean;
  readonly createdAt: number;
  readonly createdBy: string;
  /** Approval by a member admin of the grantor: until then it grants nothing. */
  readonly approvedAt: number | null;
  readonly approvedBy: string | null;
  readonly revokedAt: number | null;
  readonly revokedBy: string | null;
}

export function granteeParts(grantee: string): { member: string; project: string | null } {
  const [member, project] = grantee.split('/');
  return { member, project: project ?? null };
}

/**
 * Ids are a member's own: pharma's `trials` and telecom's `trials` are two datasets (and the same
 * goes for agreements and models), so that creating one never tells a member that another member
 * has one by that name. `owner/id` names one across members; a bare `id` is the caller's own, or
 * the one other member's that it may use.
 */
export const qualified = (member: string, id: string) => `${member}/${id}`;

/** `pharma/trials` → member pharma, id trials; `trials` → no member. */
export function nameParts(name: string): { member: string | null; id: string } {
  const at = name.indexOf('/');
  return at < 0 ? { member: null, id: name } : { member: name.slice(0, at), id: name.slice(at + 1) };
}

/** A bare name that more than one object the caller may use answers to: it must give one of `choices`. */
export class AmbiguousNameError extends Error {
  override readonly name = 'AmbiguousNameError';
  constructor(
    readonly kind: 'dataset' | 'agreement' | 'model',
    readonly given: string,
    /** The qualified names the caller may use instead (all of them visible to it). */
    readonly choices: readonly string[],
  ) {
    super(`${kind} ${given} names more than one you may use: give one of ${choices.join(', ')}`);
  }
}

/** What a name means: one object (found), none (found null, nothing ambiguous), or several (their qualified names). */
export interface Resolution<T> {
  readonly found: T | null;
  readonly ambiguous: readonly string[];
}

/**
 * Which of `candidates` (the objects with the name's id that the caller may see) a name means:
 * `member/id` that member's; a bare id the caller's member's own first, else the only other one.
 * Several others: ambiguous, with their qualified names (none of them hidden from the caller, so
 * the list says nothing an answer of theirs would not). None: not found, like an absent name.
 */
export function resolveName<T>(
  name: string,
  viewer: string | null,
  candidates: readonly T[],
  memberOf: (t: T) => string,
  idOf: (t: T) => string,
): Resolution<T> {
  const { member, id } = nameParts(name);
  const named = candidates.filter((c) => idOf(c) === id);
  if (member !== null) return { found: named.find((c) => memberOf(c) === member) ?? null, ambiguous: [] };
  const own = viewer === null ? undefined : named.find((c) => memberOf(c) === viewer);
  if (own !== undefined) return { found: own, ambiguous: [] };
  if (named.length <= 1) return { found: named[0] ?? null, ambiguous: [] };
  return { found: null, ambiguous: named.map((c) => qualified(memberOf(c), id)).sort() };
}

/** Whether a member sees a dataset: it owns it, or an agreement of its owner (in any state) names it for the member. */
export function datasetVisibleTo(d: Dataset, member: string | null, agreements: readonly Agreement[]): boolean {
  return (
    member === null ||
    d.owner === member ||
    agreements.some((a) => a.granteeMember === member && a.grantor === d.owner && a.datasets.includes(d.id))
  );
}

/** Whether a member sees an agreement: it grants or receives it (operators and consortium auditors: all). */
export const agreementVisibleTo = (a: Agreement, member: string | null) =>
  member === null || a.grantor === member || a.granteeMember === member;

/** `Fabrik::Dataset::"trials"` (or Agreement), with Cedar's optional spaces around `::`, and a bare id. */
export const ENTITY_REFERENCE = /(Fabrik\s*::\s*(Dataset|Agreement)\s*::\s*)"([^"/\\]*)"/g;

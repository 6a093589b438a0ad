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

export const DatasetInput = z.strictObject({
  id,
  /** Operators register on a member's behalf; everyone else for their own member. */
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
  datasets: z.array(id).min(1).max(256),
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

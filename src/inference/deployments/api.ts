// The deployments API contract: what clients send and get back, as zod schemas (validated in,
// serialized out, published as OpenAPI). The CLI reads the same types.
import { z } from 'zod';
import { CLASSIFICATIONS } from '../../governance/model.js';

const id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash and underscore');
const count = z.number().int().min(1).max(1000);
/** Idle seconds before scaling to zero (null: never). */
const idle = z
  .number()
  .int()
  .min(1)
  .max(30 * 86_400)
  .nullable();

export const CreateDeployment = z
  .strictObject({
    /** The deployer's own member, which it may repeat; another is refused (operators deploy for none). */
    member: id.optional(),
    /** Default: the member's first project (the replicas' GPU-hours are charged to it). */
    project: id.optional(),
    /** The name clients call in `model`; one active deployment per name within a member. */
    model: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._:/@-]*$/, 'letters, digits and . _ : / @ -'),
    /** argv of the engine (no shell); it must serve the OpenAI API on $FABRIK_ENGINE_PORT. */
    command: z.array(z.string().max(65_536)).min(1).max(4096),
    gpus: z.number().int().min(1).max(100_000).default(1),
    /** Replicas kept while awake (at least 1: scale to zero is `scaleToZeroSeconds`). */
    min: count.default(1),
    max: count.optional(),
    /** The data classifications it may process; the gateway routes a key only to replicas accredited for its own. */
    accreditations: z
      .array(z.enum(CLASSIFICATIONS))
      .min(1)
      .max(CLASSIFICATIONS.length)
      .default(['public'])
      .transform((a) => [...new Set(a)]),
    zone: id.nullable().default(null),
    reasoning: z.boolean().default(false),
    scaleToZeroSeconds: idle.default(null),
  })
  .superRefine((r, ctx) => {
    if (r.max !== undefined && r.max < r.min)
      ctx.addIssue({ code: 'custom', path: ['max'], message: `max is below min (${r.min})` });
  });
export type CreateDeployment = z.input<typeof CreateDeployment>;

export const ScaleDeployment = z
  .strictObject({ min: count.optional(), max: count.optional(), scaleToZeroSeconds: idle.optional() })
  .refine((r) => Object.keys(r).length > 0, { message: 'give min, max or scaleToZeroSeconds' })
  .refine((r) => r.min === undefined || r.max === undefined || r.min <= r.max, { message: 'min is above max', path: ['min'] });

export const ReplicaView = z.object({
  /** The job that runs it. */
  id: z.string(),
  replica: z.number().int(),
  /** The job's state, or `stopping` once it was told to stop. */
  state: z.string(),
  node: z.string().nullable(),
  url: z.string().nullable(),
  healthy: z.boolean(),
  inFlight: z.number(),
  queuedTokens: z.number(),
});
export type ReplicaView = z.infer<typeof ReplicaView>;

export const DeploymentView = z.object({
  id: z.string(),
  member: z.string(),
  project: z.string(),
  model: z.string(),
  command: z.array(z.string()),
  gpus: z.number().int(),
  min: z.number().int(),
  max: z.number().int(),
  /** Replicas the controller keeps now (0: scaled to zero). */
  target: z.number().int(),
  /** Replicas running and answering their health check. */
  ready: z.number().int(),
  accreditations: z.array(z.string()),
  zone: z.string().nullable(),
  reasoning: z.boolean(),
  scaleToZeroSeconds: z.number().int().nullable(),
  state: z.enum(['active', 'deleted']),
  createdAt: z.string(),
  createdBy: z.string(),
  updatedAt: z.string(),
  replicas: z.array(ReplicaView),
});
export type DeploymentView = z.infer<typeof DeploymentView>;

// The audit API's shapes, shared by the server's routes and the CLI that verifies what they serve.
// Hashes and signatures are base64, as in a transparency log's checkpoint.
import { z } from 'zod';

export const AuditEventView = z.object({
  seq: z.number().int(),
  at: z.string(),
  kind: z.string(),
  actor: z.string(),
  member: z.string().nullable(),
  subject: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).nullable(),
  /**
   * Base64 of the event's random salt, hashed inside its leaf so that nobody can guess the leaf
   * from someone else's inclusion proof. Shown only with the event; absent on events logged before
   * salting began (their leaves never had one).
   */
  salt: z.string().optional(),
});
export type AuditEventView = z.infer<typeof AuditEventView>;

export const CheckpointView = z.object({
  origin: z.string(),
  size: z.number().int(),
  rootHash: z.string(),
  at: z.string(),
  signature: z.string(),
});
export type CheckpointView = z.infer<typeof CheckpointView>;

export const PublicKeyView = z.object({
  algorithm: z.literal('Ed25519'),
  /** SPKI, PEM. */
  publicKey: z.string(),
  fingerprint: z.string(),
});
export type PublicKeyView = z.infer<typeof PublicKeyView>;

export const InclusionProofView = z.object({
  seq: z.number().int(),
  size: z.number().int(),
  /** The leaf as it was appended (the tree's); a verifier rehashes `event` and compares. */
  leafHash: z.string(),
  proof: z.array(z.string()),
  /** The event as stored now. */
  event: AuditEventView,
});
export type InclusionProofView = z.infer<typeof InclusionProofView>;

export const ConsistencyProofView = z.object({
  from: z.number().int(),
  to: z.number().int(),
  proof: z.array(z.string()),
});
export type ConsistencyProofView = z.infer<typeof ConsistencyProofView>;

/** What `fabrik audit checkpoint` saves and `fabrik audit verify --checkpoint` starts from. */
export const SavedCheckpoint = z.object({
  checkpoint: CheckpointView,
  publicKey: z.string(),
  server: z.string().optional(),
  savedAt: z.string().optional(),
});
export type SavedCheckpoint = z.infer<typeof SavedCheckpoint>;

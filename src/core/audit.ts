// The audit port: what every part of the control plane calls to record an event in the
// tamper-evident log. The consumer owns this interface; the Merkle log behind it lives in
// src/audit. Kept to one method so that routes written by others stay stable as the log evolves.

/** One control-plane event: who did what to which object, on behalf of which member. */
export interface AuditEventInput {
  /** Dotted and stable, e.g. `job.submitted`, `token.issued`, `auth.login`. */
  readonly kind: string;
  /** The user (or `scheduler`, `executor`, `fabrik`) that caused it. */
  readonly actor: string;
  /** The member whose event it is (who may see it); null: the factory's own (operators, auditors). */
  readonly member: string | null;
  /** The object it concerns (a job id, a token id, a dataset id, …). */
  readonly subject: string | null;
  /** Anything else worth keeping; JSON values only (it is hashed as canonical JSON). */
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface AuditSink {
  /** Appends the event; resolves with its sequence number (its leaf index) once it is durable. */
  append(e: AuditEventInput): Promise<number>;
}

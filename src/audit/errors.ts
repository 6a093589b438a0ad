// The audit log's named errors. An integrity error needs a person (the stored log was changed);
// a closed log is a bug in the caller's shutdown order.

/** The stored events do not match the latest signed checkpoint: the server refuses to start. */
export class AuditIntegrityError extends Error {
  override readonly name = 'AuditIntegrityError';
  constructor(
    /** The first event (seq) or checkpoint (size) found wrong, in words. */
    readonly entry: string,
    readonly problem: string,
  ) {
    super(
      `the audit log in the store was changed: ${entry}: ${problem}; run \`fabrik audit verify --store URL\` for the details`,
    );
  }
}

/** append() after close(). */
export class AuditClosedError extends Error {
  override readonly name = 'AuditClosedError';
  constructor() {
    super('the audit log is closed');
  }
}

// Errors are small named classes that say when they are thrown and carry the key field. A bad
// URL is the operator's to fix (retrying will not help); an unreachable database may come back
// (retryable); a failed migration or a closed store is a bug or needs a person.

/** The store URL cannot be understood; thrown before anything is opened. */
export class StoreUrlError extends Error {
  override readonly name = 'StoreUrlError';
  constructor(
    /** The URL as given, with any password masked. */
    readonly url: string,
    readonly problem: string,
  ) {
    super(`store URL '${url}': ${problem}`);
  }
}

/** The database could not be opened or reached (retryable: it may come back). */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(
    /** The URL with any password masked. */
    readonly url: string,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot open the store at '${url}': ${problem}`, options);
  }
}

/** Creating or upgrading the schema failed; names the migration when one was running. */
export class StoreMigrationError extends Error {
  override readonly name = 'StoreMigrationError';
  constructor(
    readonly migration: string | null,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`migrating the store${migration ? ` (${migration})` : ''} failed: ${problem}`, options);
  }
}

/** A call reached the store after close() (a bug in the caller's shutdown order). */
export class StoreClosedError extends Error {
  override readonly name = 'StoreClosedError';
  constructor(readonly operation: string) {
    super(`${operation}: the store is closed`);
  }
}

/** One line from whatever a driver threw: Node's AggregateError (IPv4 and IPv6 both refused) has no message of its own. */
export function describeCause(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return [...new Set(error.errors.map(describeCause))].join('; ');
  }
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return error.message || (typeof code === 'string' ? code : error.name);
  }
  return String(error);
}

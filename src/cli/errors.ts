// What the CLI does with an error that reaches it: a line and an exit code, or (a bug) the trace.
// Errors are known by their names: main.ts loads only the module of the command it runs, and
// importing every error class would load the modules that throw them (test/cli/errors.test.ts
// makes each class and checks that it is known).
import { ApiRequestError } from './client.js';
import { printable, printableText } from './printable.js';

/** Errors in what a person typed or wrote: exit 2. */
const USAGE_ERRORS = new Set([
  'GovernanceUsageError',
  'InvalidDescriptionError',
  'UnknownPolicyError',
  'SubmitUsageError',
  'InvalidEnvironmentError',
  'SiteImportError',
  'SiteMismatchError',
  'AuditFileError',
  'EngineUsageError',
  'DataDirError',
  'WorkloadTooShortError',
]);
/** Reaching Fabrik, its store or Slurm failed (exit 1), or a check ran and failed (exit 1; the message names what). */
const FAILURES = new Set([
  'UnreachableError',
  'StoreUrlError',
  'StoreUnavailableError',
  'StoreMigrationError',
  'SlurmRestError',
  'AuditVerificationError',
]);

/** The line to print and the exit code, or null for an error that is a bug (its trace is printed). */
export function cliFailure(e: unknown): { line: string; code: 1 | 2 } | null {
  if (!(e instanceof Error)) return null;
  if (USAGE_ERRORS.has(e.name)) return { line: `fabrik: ${printableText(e.message)}`, code: 2 };
  if (e instanceof ApiRequestError) {
    // The server's words, with what others wrote in them (a job's name, a dataset id): one clean line.
    const message = printable(e.message);
    // Validation messages already start with the field they are about: named once.
    const field = e.field && !e.message.startsWith(e.field) ? ` (${printable(e.field)})` : '';
    return { line: `fabrik: ${message}${field} [${printable(e.code)}]`, code: 1 };
  }
  if (FAILURES.has(e.name)) return { line: `fabrik: ${printableText(e.message)}`, code: 1 };
  // `fabrik up` on a port another program holds.
  if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE')
    return { line: `fabrik: ${e.message}: another program listens there; choose another with --port`, code: 1 };
  return null;
}

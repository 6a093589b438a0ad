// The API contract: what clients send and get back, as zod schemas. The server validates with
// them (and publishes them as OpenAPI); the CLI builds requests from them. Field names are the
// JSON names; times are ISO 8601 strings on the wire, seconds inside the server.
import { z } from 'zod';

export const JOB_STATES = ['pending', 'starting', 'running', 'preempting', 'succeeded', 'failed', 'cancelled', 'lost'] as const;
export type JobState = (typeof JOB_STATES)[number];
/** A job in one of these states never changes again. */
export const FINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled', 'lost'];

export const ROLES = ['operator', 'member-admin', 'researcher', 'auditor'] as const;
export type Role = (typeof ROLES)[number];
/** Roles of a member's people; operators belong to no member, auditors may be either. */
export const MEMBER_ROLES = ['member-admin', 'researcher', 'auditor'] as const satisfies readonly Role[];

/** A user name: what jobs, tokens and the audit log show. */
export const UserName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._@-]+$/, 'letters, digits and . _ @ -');

/**
 * A person's record. `createdBy` is the user id that created it, or how it came to be without one:
 * `bootstrap` (a member's first admins, made by an operator), `server` (the first operator, made on
 * the first start), `idp` (an OIDC subject), `legacy` (a name tokens carried before users were records).
 */
export const UserView = z.object({
  id: z.string(),
  member: z.string().nullable(),
  name: z.string(),
  roles: z.array(z.enum(ROLES)),
  origin: z.enum(['local', 'oidc']),
  issuer: z.string().nullable(),
  subject: z.string().nullable(),
  createdBy: z.string(),
  createdAt: z.string(),
  disabledAt: z.string().nullable(),
});
export type UserView = z.infer<typeof UserView>;

export const TokenView = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  member: z.string().nullable(),
  role: z.enum(ROLES),
  user: z.string(),
  userId: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export type TokenView = z.infer<typeof TokenView>;

const name = z.string().min(1).max(128);
const id = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash and underscore');
const seconds = (max: number) => z.number().int().min(0).max(max);
const envName = z
  .string()
  .max(256)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

/** Seconds since the epoch (inside the server) as the ISO 8601 text the API speaks. */
export function isoTime(seconds: number): string;
export function isoTime(seconds: number | null): string | null;
export function isoTime(seconds: number | null): string | null {
  return seconds === null ? null : new Date(seconds * 1000).toISOString();
}

/**
 * Fabrik's own credentials never travel into a job (its process, its stored request, its view):
 * a job acts with the rights it was given at admission, never with its submitter's API token.
 * The rule, for `env` and `secretEnv` alike:
 * - a name in Fabrik's namespace that holds a credential is refused: FABRIK_TOKEN, FABRIK_STORE
 *   (a database URL with its password), FABRIK_OIDC_*, and any FABRIK_* name with a word TOKEN,
 *   SECRET, PASSWORD, PASSWD, CREDENTIAL or KEY in it (case ignored). Other FABRIK_* names are
 *   settings, not credentials, and pass: the deployments controller sets FABRIK_ENGINE_PORT,
 *   FABRIK_ENGINE_HOST, FABRIK_DEPLOYMENT and FABRIK_MODEL, the simulated executor reads
 *   FABRIK_SIMULATED_*; the executor itself sets FABRIK_JOB_ID and FABRIK_JOB_NAME. A replica's
 *   token, FABRIK_ENGINE_API_KEY, is a credential and refused here: the deployments controller adds
 *   it to its replica jobs' secretEnv itself, after these checks, so no member can set it.
 * - a value that holds a Fabrik API token (`fbk_` and its 43 base64url characters), under any
 *   name, is refused. Gateway keys (`fgk_…`) are the member's to give a job: in `secretEnv`.
 * Returns why the variable is refused, or null. The message never repeats the value.
 */
export function fabrikCredentialIn(name: string, value: string): string | null {
  const upper = name.toUpperCase();
  if (upper.startsWith('FABRIK_')) {
    const words = upper.slice('FABRIK_'.length).split('_');
    if (
      upper === 'FABRIK_STORE' ||
      words[0] === 'OIDC' ||
      words.some((w) => /^(TOKENS?|SECRETS?|PASSWORDS?|PASSWD|CREDENTIALS?|KEYS?)$/.test(w))
    )
      return `${name} is a Fabrik credential or server setting that holds one: it never goes into a job`;
  }
  if (API_TOKEN.test(value))
    return `${name}'s value holds a Fabrik API token (fbk_…): a job never gets an API token; give it nothing, or a gateway key (fgk_…) in secretEnv`;
  return null;
}
/** An API token as auth.ts makes them: `fbk_` and 32 random bytes in base64url (43 characters). */
const API_TOKEN = /fbk_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/;

/**
 * Where a job's logs may go: its own folder (`<data>/jobs/<id>/`), by a relative path without `..`,
 * which is read from that folder whatever the working directory (Slurm reads `-o` against `-D`);
 * or /dev/null (sbatch's `-o none`). The server serves logs from that folder only, so a path
 * elsewhere (`/proc/self/environ`, the store, another job's folder) is refused here, at submit.
 * Names of the executor's own files in the folder (its script, its ranks' specs and exit records)
 * are refused too: a log there would be read back with them. Returns why, or null.
 */
export function logPathProblem(path: string): string | null {
  if (path === DEV_NULL) return null;
  const where =
    "logs go in the job's own folder: give a relative path such as %x-%j.out (Slurm's -o %x-%j.out means the same here, " +
    "in the job's folder whatever -D says) or /dev/null; fabrik logs <id> reads them";
  if (path.startsWith('/')) return `an absolute path is not allowed: ${where}`;
  if (path.includes('\0')) return `a NUL character is not allowed in a path: ${where}`;
  const parts = path.split('/');
  if (parts.includes('..')) return `'..' is not allowed: ${where}`;
  const first = parts.filter((p) => p !== '' && p !== '.')[0] ?? '';
  if (parts.filter((p) => p !== '' && p !== '.').length === 1 && EXECUTOR_FILES.test(first))
    return `${first} is a file Fabrik keeps in the job's folder (its script, its ranks' records): give another name`;
  if (first === '') return `give a file name: ${where}`;
  return null;
}
/** sbatch's `-o none`: the log is discarded, and the log API serves it as empty. */
export const DEV_NULL = '/dev/null';
/** The executor's own files at the top of a job's folder (see executors/local.ts). */
const EXECUTOR_FILES = /^(script\.sh|rank-\d+\.(json|exit(\.tmp|\.signalled)?))$/;

/** One job, or an array of them (`array`), as `sbatch` would take it. */
export const SubmitRequest = z
  .strictObject({
    name: name.default('job'),
    /** The submitter's own member, which it may repeat; another is refused (operators submit for none). */
    member: id.optional(),
    /** Default: the member's first project. */
    project: id.optional(),
    /** argv of the program to run (no shell), or `script`: a batch script run with bash. */
    command: z.array(z.string().max(65_536)).min(1).max(4096).optional(),
    script: z.string().min(1).max(1_048_576).optional(),
    env: z.record(envName, z.string().max(65_536)).default({}),
    /**
     * Variables the job gets like `env`, whose values are secrets: kept encrypted (AES-256-GCM, a
     * key the store does not hold), decrypted only to start the job, and never shown to anyone
     * (views show the name and "(secret)"). A name is in env or here, not both.
     */
    secretEnv: z.record(envName, z.string().max(65_536)).default({}),
    /**
     * Working directory on the execution host (default: the job's folder). A relative one is
     * inside the job's folder (no `..`); an absolute one may not be in the control plane's data
     * folder (checked by the server).
     */
    workdir: z.string().min(1).max(4096).optional(),
    /** Either a GPU count that the scheduler shapes into nodes, or nodes × GPUs per node. */
    gpus: z.number().int().min(1).max(100_000).optional(),
    nodes: z.number().int().min(1).max(10_000).optional(),
    gpusPerNode: z.number().int().min(1).max(64).optional(),
    cpusPerTask: z.number().int().min(1).max(1024).optional(),
    memoryMb: z.number().int().min(1).max(100_000_000).optional(),
    topology: z.enum(['required', 'preferred', 'none']).default('preferred'),
    priorityClass: z.enum(['inference', 'training', 'batch', 'lab']).default('training'),
    /** The time limit: the job is stopped when it runs longer. */
    walltimeSeconds: z
      .number()
      .int()
      .min(1)
      .max(366 * 86_400)
      .default(3600),
    minRuntimeSeconds: seconds(366 * 86_400).default(0),
    checkpointIntervalSeconds: z
      .number()
      .int()
      .min(1)
      .max(366 * 86_400)
      .nullable()
      .default(null),
    /** Between the checkpoint signal (SIGTERM, or `signal`) and SIGKILL on cancel or preemption. */
    gracePeriodSeconds: seconds(3600).default(30),
    signal: z.enum(['TERM', 'USR1', 'USR2', 'INT', 'HUP']).default('TERM'),
    exclusive: z.boolean().default(false),
    zone: id.nullable().default(null),
    /** Log files; %j job id, %x job name, %A array job id, %a array index. Default: fabrik-%j.out. */
    output: z.string().min(1).max(4096).optional(),
    error: z.string().min(1).max(4096).optional(),
    /** Start only after these jobs succeeded (Slurm's afterok). */
    afterOk: z.array(z.string().regex(/^\d+$/, 'a job id')).max(1000).default([]),
    /** Array tasks: one job per index, at most `throttle` running at once. */
    array: z
      .strictObject({
        indices: z.array(z.number().int().min(0).max(1_000_000)).min(1).max(10_000),
        throttle: z.number().int().min(1).max(10_000).nullable().default(null),
      })
      .optional(),
    /** Requeue after a node failure (preempted jobs are always requeued). */
    requeue: z.boolean().default(true),
    /**
     * Input datasets: admission checks each against its data-use agreements (Cedar policies). A
     * dataset is `trials` (the member's own, else the one another member granted it by that id) or
     * `pharma/trials`; the job keeps the qualified names.
     */
    datasets: z
      .array(
        z
          .string()
          .min(1)
          .max(129)
          .regex(/^([a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/, 'a dataset: id, or owner/id'),
      )
      .max(64)
      .default([]),
    /** What the job is for; with datasets, an agreement must permit it. */
    purpose: id.nullable().default(null),
    /** Run in this advance reservation of the member's (Slurm's --reservation): only on its GPUs, inside its window. */
    reservation: id.nullable().default(null),
  })
  .superRefine((r, ctx) => {
    for (const field of ['env', 'secretEnv'] as const)
      for (const [name, value] of Object.entries(r[field])) {
        const why = fabrikCredentialIn(name, value);
        if (why) ctx.addIssue({ code: 'custom', path: [field, name], message: why });
      }
    for (const name of Object.keys(r.secretEnv))
      if (Object.hasOwn(r.env, name))
        ctx.addIssue({ code: 'custom', path: ['secretEnv', name], message: `${name} is in env too: give it in one of them` });
    for (const field of ['output', 'error'] as const) {
      const why = r[field] === undefined ? null : logPathProblem(r[field]);
      if (why) ctx.addIssue({ code: 'custom', path: [field], message: why });
    }
    if (r.workdir !== undefined && (r.workdir.split('/').includes('..') || r.workdir.includes('\0')))
      ctx.addIssue({
        code: 'custom',
        path: ['workdir'],
        message: "'..' and NUL are not allowed: a relative working directory is inside the job's folder",
      });
    if (r.datasets.length > 0 && r.purpose === null)
      ctx.addIssue({ code: 'custom', path: ['purpose'], message: 'a job that uses datasets names its purpose' });
    if ((r.command === undefined) === (r.script === undefined))
      ctx.addIssue({ code: 'custom', path: ['command'], message: 'give exactly one of command and script' });
    if (r.gpus !== undefined && (r.nodes !== undefined || r.gpusPerNode !== undefined))
      ctx.addIssue({ code: 'custom', path: ['gpus'], message: 'give either gpus, or nodes and gpusPerNode' });
    if ((r.nodes === undefined) !== (r.gpusPerNode === undefined) && r.gpus === undefined)
      ctx.addIssue({
        code: 'custom',
        path: [r.nodes === undefined ? 'nodes' : 'gpusPerNode'],
        message: 'nodes and gpusPerNode go together',
      });
  });
export type SubmitRequest = z.input<typeof SubmitRequest>;
export type SubmitSpec = z.output<typeof SubmitRequest>;

/** Where a job runs: per node, the node's name and the GPU indices on it. */
export const Placement = z.array(z.object({ node: z.string(), gpus: z.array(z.number().int()) }));
export type Placement = z.infer<typeof Placement>;

export const JobView = z.object({
  id: z.string(),
  name: z.string(),
  member: z.string(),
  project: z.string(),
  user: z.string(),
  state: z.enum(JOB_STATES),
  /** Why it waits (pending) or why it ended (failed, cancelled, lost). */
  reason: z.string().nullable(),
  gpus: z.number().int(),
  priorityClass: z.string(),
  walltimeSeconds: z.number().int(),
  submittedAt: z.string(),
  startedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  placement: Placement.nullable(),
  arrayJobId: z.string().nullable(),
  arrayTaskId: z.number().int().nullable(),
  requeues: z.number().int(),
  /** The last checkpoint the job reported in its current run (POST /v1/jobs/:id/checkpoints), or null. */
  lastCheckpointAt: z.string().nullable(),
  /**
   * The request as submitted, less who and which array task. `env`: values for the job's owner
   * only, "(hidden)" for everyone else; `secretEnv`: "(secret)" for everyone.
   */
  spec: z.looseObject({
    env: z.record(z.string(), z.string()),
    secretEnv: z.record(z.string(), z.string()),
  }),
});
export type JobView = z.infer<typeof JobView>;

export const JobEventView = z.object({
  at: z.string(),
  kind: z.string(),
  actor: z.string(),
  reason: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).nullable(),
});
export type JobEventView = z.infer<typeof JobEventView>;

export const ExplainView = z.object({
  job: z.string(),
  state: z.enum(JOB_STATES),
  /** One of the scheduler's reasons (QuotaExhausted, Priority, …), or Dependency. */
  reason: z.string().nullable(),
  position: z.number().int().nullable(),
  estimatedStart: z.string().nullable(),
  message: z.string(),
});
export type ExplainView = z.infer<typeof ExplainView>;

/**
 * Every error the API returns: a stable `code`, a sentence for people, and the offending field
 * (a dotted path into the request) when one is to blame.
 */
export const ERROR_CODES = [
  'VALIDATION_FAILED',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'IDEMPOTENCY_CONFLICT',
  /** The admission policies refused the job's use of its datasets; the message names the rule. */
  'ADMISSION_DENIED',
  /** Two-person rule: the action needs an approval with two distinct approvers first (POST /v1/approvals). */
  'APPROVAL_REQUIRED',
  /** The model may never leave the factory: one of its data-use agreements says noExport. */
  'EXPORT_FORBIDDEN',
  'JOB_FINISHED',
  /** An advance reservation cannot be booked: its window is over, it is not whole nodes, no room, or the consortium's rules. */
  'RESERVATION_IN_PAST',
  'RESERVATION_SHAPE',
  'RESERVATION_NO_ROOM',
  'RESERVATION_RULES',
  /** The job asks for more GPUs than its member may ever hold (entitlement plus borrowing limit, its zone). */
  'EXCEEDS_MEMBER_LIMIT',
  'CONFLICT',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'METHOD_NOT_ALLOWED',
  'BAD_REQUEST',
  'UNAVAILABLE',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Book an advance reservation (a capability run), as Slurm's `scontrol create reservation`. */
export const ReservationRequest = z.strictObject({
  /** Unique in the factory; jobs name it (`--reservation`). */
  name: id,
  /** Whose it is: an operator names the member; a member admin books for its own (it may repeat it). */
  member: id.optional(),
  /** Whole nodes: a multiple of the nodes' GPUs. */
  gpus: z.number().int().min(1).max(100_000),
  start: z.iso.datetime({ offset: true }),
  durationSeconds: z
    .number()
    .int()
    .min(60)
    .max(366 * 86_400),
});
export type ReservationRequest = z.input<typeof ReservationRequest>;

/** What everyone sees of a reservation (sinfo -T); who booked it only its member and operators. */
export const ReservationView = z.object({
  name: z.string(),
  member: z.string(),
  start: z.string(),
  end: z.string(),
  gpus: z.number().int(),
  nodes: z.array(z.string()),
  /** `active` from its start to its end, `future` before. */
  state: z.enum(['future', 'active']),
  createdBy: z.string().nullable(),
  createdAt: z.string().nullable(),
});
export type ReservationView = z.infer<typeof ReservationView>;

export const ErrorBody = z.object({
  error: z.object({
    code: z.enum(ERROR_CODES),
    message: z.string(),
    field: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

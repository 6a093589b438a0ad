// The store port: everything the control plane keeps. One Kysely query layer implements it over
// SQLite (the embedded default) and PostgreSQL (production, shared by several replicas); the
// same conformance suite runs on both. Times are seconds since the epoch (fractions allowed).
import type { JobState, Placement, Role, SubmitSpec } from '../api/contract.js';

/** What a job asked for, as stored: the validated request less who and which array task. */
export type JobRequest = Omit<SubmitSpec, 'member' | 'project' | 'name' | 'array'>;

export interface StoredJob {
  /** Decimal string of an increasing integer, like Slurm's job ids. */
  readonly id: string;
  readonly name: string;
  readonly member: string;
  readonly project: string;
  readonly user: string;
  readonly state: JobState;
  /** Why it waits or why it ended (free text or a scheduler reason code). */
  readonly reason: string | null;
  readonly request: JobRequest;
  /** Total GPUs of the gang. */
  readonly gpus: number;
  readonly submittedAt: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  readonly exitCode: number | null;
  readonly placement: Placement | null;
  /** The executor's handle for finding the job again after a restart. */
  readonly handle: Readonly<Record<string, unknown>> | null;
  /** Set while it holds a reservation or preempted for (the scheduler's holdSince). */
  readonly holdSince: number | null;
  readonly preemptedBy: readonly string[];
  readonly requeues: number;
  readonly arrayJobId: string | null;
  readonly arrayTaskId: number | null;
  /** At most this many tasks of its array run at once (null: no limit). */
  readonly arrayThrottle: number | null;
  /** Last time the job's row changed (seconds). */
  readonly updatedAt: number;
}

export interface NewJob {
  readonly name: string;
  readonly member: string;
  readonly project: string;
  readonly user: string;
  readonly request: JobRequest;
  readonly gpus: number;
  readonly submittedAt: number;
  readonly arrayTaskId: number | null;
  readonly arrayThrottle: number | null;
}

/**
 * One submission: a job, or the tasks of one array (stored together; the array job id is the
 * first task's id, as in Slurm). With an idempotency key, a retry with the same request hash
 * returns the jobs of the first call; the same key with another request is a conflict.
 */
export interface Submission {
  readonly jobs: readonly NewJob[];
  readonly idempotency: {
    readonly member: string;
    readonly user: string;
    readonly key: string;
    readonly requestHash: string;
  } | null;
}

export type SubmitOutcome =
  | { readonly kind: 'created'; readonly jobs: readonly StoredJob[] }
  | { readonly kind: 'replayed'; readonly jobs: readonly StoredJob[] }
  | { readonly kind: 'conflict' };

export interface JobEvent {
  readonly job: string;
  readonly at: number;
  /** submitted, started, running, preempting, requeued, succeeded, failed, cancelled, lost, reserved, … */
  readonly kind: string;
  /** Who caused it: a user id, or `scheduler`, `executor`, `operator:<id>`. */
  readonly actor: string;
  readonly member: string;
  readonly reason: string | null;
  readonly data: Readonly<Record<string, unknown>> | null;
}

/** A change to one job, applied only if the job is still in `from` (else skipped and reported). */
export interface JobUpdate {
  readonly id: string;
  readonly from: readonly JobState[];
  readonly set: Partial<
    Pick<
      StoredJob,
      | 'state'
      | 'reason'
      | 'startedAt'
      | 'endedAt'
      | 'exitCode'
      | 'placement'
      | 'handle'
      | 'holdSince'
      | 'preemptedBy'
      | 'requeues'
    >
  >;
  readonly event: Omit<JobEvent, 'job' | 'member'> | null;
}

export interface JobFilter {
  /** Only this member's jobs (the caller's, unless an operator or auditor asks for all). */
  readonly member?: string;
  readonly user?: string;
  readonly project?: string;
  readonly states?: readonly JobState[];
  readonly name?: string;
  readonly arrayJobId?: string;
  /** Cursor: jobs with ids greater than this (ids ascend). */
  readonly after?: string;
  readonly limit: number;
}

export interface TokenRecord {
  readonly id: string;
  /** SHA-256 of the secret, hex: the secret itself is never stored. */
  readonly hash: string;
  /** The first characters of the secret, shown in listings so a person can tell tokens apart. */
  readonly prefix: string;
  readonly name: string;
  /** null: an operator token (the whole factory). */
  readonly member: string | null;
  readonly role: Role;
  readonly user: string;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
}

export interface NodeStateRecord {
  readonly node: string;
  readonly state: 'up' | 'draining' | 'down' | 'maintenance';
  readonly reason: string | null;
  readonly by: string;
  readonly at: number;
}

export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  /** Creates or upgrades the schema; safe to run on every start and from several replicas. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Members and their projects, from the consortium file (insert or update). */
  syncMembers(
    members: readonly { readonly id: string; readonly name: string; readonly projects: readonly string[] }[],
  ): Promise<void>;

  createToken(token: TokenRecord): Promise<void>;
  tokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** All tokens, or one member's (null: operator tokens), newest first. */
  listTokens(member?: string | null): Promise<TokenRecord[]>;
  tokenById(id: string): Promise<TokenRecord | undefined>;
  revokeToken(id: string, at: number): Promise<boolean>;
  countTokens(): Promise<number>;

  /**
   * Durable when it resolves. Calls that arrive together are committed in one transaction
   * (group commit): one fsync for many submissions.
   */
  submit(submission: Submission): Promise<SubmitOutcome>;
  job(id: string): Promise<StoredJob | undefined>;
  jobs(filter: JobFilter): Promise<StoredJob[]>;
  /** Every job not in a final state: what the scheduling loop and recovery work from. */
  activeJobs(): Promise<StoredJob[]>;
  /** Applies the updates in one transaction; returns the ids that were skipped (state moved on). */
  updateJobs(updates: readonly JobUpdate[]): Promise<string[]>;
  events(job: string): Promise<JobEvent[]>;

  nodeStates(): Promise<NodeStateRecord[]>;
  setNodeState(record: NodeStateRecord): Promise<void>;

  /** Decayed GPU-hours per member at `at` (fair share survives restarts). */
  usage(): Promise<{ readonly at: number; readonly gpuHours: Readonly<Record<string, number>> } | null>;
  saveUsage(at: number, gpuHours: Readonly<Record<string, number>>): Promise<void>;

  /** This installation's random id, the same from every replica and across restarts. */
  installationId(): Promise<string>;
}

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
  /**
   * When the running job last reported a checkpoint (POST /v1/jobs/:id/checkpoints; migration
   * 013): the scheduler counts the work a preemption would destroy from it. Null: none reported
   * in this run (its checkpoint interval, or its start, counts).
   */
  readonly lastCheckpointAt: number | null;
  /**
   * Requeued after a stop through no choice of its member's order (reclaim, priority, a failed
   * node, lost by the executor; migration 014): it waits again by its submission time (the
   * scheduler's keepsPlace). False for new jobs and for those that yielded to shorter work.
   */
  readonly keepsPlace: boolean;
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
      | 'lastCheckpointAt'
      | 'keepsPlace'
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
  /** The user's name, as jobs and the audit log show it. */
  readonly user: string;
  /** The user record the token belongs to: whoever holds the token acts as that person. */
  readonly userId: string;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
}

/**
 * Where a user record came from when no user created it. A record made by a user names that
 * user's id instead; the chain of creators is what the two-person rule reads (governance/approvals.ts).
 */
export const VOUCHED = {
  /** One of a member's first admins, made by an operator before the member had people of its own. */
  bootstrap: 'bootstrap',
  /** The first operator, made by the server on its first start. */
  server: 'server',
  /** An OIDC subject: the identity provider vouches for the person. */
  idp: 'idp',
  /** A name tokens carried before users were records (migration 008): all of them count as one person. */
  legacy: 'legacy',
} as const;

export interface UserRecord {
  /** `usr_…`: never reused, never renamed (the name may change, the id does not). */
  readonly id: string;
  /** null: operators and consortium-wide auditors. */
  readonly member: string | null;
  /** Unique within its member (or among those of no member). */
  readonly name: string;
  /** What its tokens may be: a token's role is one of these. */
  readonly roles: readonly Role[];
  readonly origin: 'local' | 'oidc';
  /** An OIDC user's identity: the issuer and the subject (preferred_username is only its name). */
  readonly issuer: string | null;
  readonly subject: string | null;
  /** The id of the user that created it, or one of VOUCHED. */
  readonly createdBy: string;
  readonly createdAt: number;
  readonly disabledAt: number | null;
}

/** What may change of a user: an OIDC login refreshes name, member and roles; a disable is for good. */
export type UserUpdate = Partial<Pick<UserRecord, 'name' | 'member' | 'roles' | 'disabledAt'>>;

/** The user's name (within its member) or OIDC subject is taken. */
export class UserExistsError extends Error {
  constructor(readonly user: Pick<UserRecord, 'member' | 'name'>) {
    super(`a user named ${user.name} exists${user.member ? ` in ${user.member}` : ''}`);
    this.name = 'UserExistsError';
  }
}

/** Why a bootstrap was refused: the member has people of its own already, or its first admins. */
export type BootstrapOutcome = 'created' | 'closed' | 'full';

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

  /** Throws UserExistsError when the name is taken in the member, or the OIDC subject has a record. */
  createUser(user: UserRecord): Promise<void>;
  /**
   * Creates one of a member's first admins (createdBy VOUCHED.bootstrap), atomically: only while
   * every user of the member is such an admin ('closed' otherwise) and fewer than `max` exist ('full').
   */
  bootstrapUser(user: UserRecord, max: number): Promise<BootstrapOutcome>;
  userById(id: string): Promise<UserRecord | undefined>;
  /** member null: among operators and consortium-wide auditors. */
  userByName(member: string | null, name: string): Promise<UserRecord | undefined>;
  userBySubject(issuer: string, subject: string): Promise<UserRecord | undefined>;
  /** All users, or one member's (null: those of no member), oldest first. */
  listUsers(member?: string | null): Promise<UserRecord[]>;
  /** False when there is no such user. Throws UserExistsError when a new name is taken. */
  updateUser(id: string, set: UserUpdate): Promise<boolean>;

  createToken(token: TokenRecord): Promise<void>;
  tokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** All tokens, or one member's (null: operator tokens), newest first. */
  listTokens(member?: string | null): Promise<TokenRecord[]>;
  /** The tokens of one user, newest first. */
  userTokens(userId: string): Promise<TokenRecord[]>;
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

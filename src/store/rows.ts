// Records to rows and back. The drivers disagree on types: pg returns int8 (ids, counts) as
// decimal strings and better-sqlite3 returns numbers, so every integer is read through Number()
// and every id through String(); JSON travels as TEXT on both engines.
import type { Insertable, Selectable, Updateable } from 'kysely';
import type { JobState, Role } from '../api/contract.js';
import type { Database, JobEventsTable, JobsTable, TokensTable, UsersTable } from './schema.js';
import type { JobEvent, JobUpdate, NewJob, NodeStateRecord, StoredJob, TokenRecord, UserRecord, UserUpdate } from './store.js';

/** Rows per INSERT: 500 × 20 columns stays far below SQLite's 32,766 bound parameters. */
export const ROWS_PER_INSERT = 500;

type Row<T extends keyof Database> = Selectable<Database[T]>;

const numberOrNull = (value: number | string | null): number | null => (value === null ? null : Number(value));
const jsonOrNull = (value: unknown): string | null => (value === null ? null : JSON.stringify(value));
const parseOrNull = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

/** A job id as the database compares it, or undefined when the text is not one (no such job). */
export function parseJobId(id: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(id)) return undefined;
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function jobRow(job: NewJob, arrayJobId: number | null): Insertable<JobsTable> {
  return {
    name: job.name,
    member: job.member,
    project: job.project,
    username: job.user,
    state: 'pending',
    reason: null,
    request: JSON.stringify(job.request),
    gpus: job.gpus,
    submitted_at: job.submittedAt,
    started_at: null,
    ended_at: null,
    exit_code: null,
    placement: null,
    handle: null,
    hold_since: null,
    last_checkpoint_at: null,
    keeps_place: 0,
    preempted_by: '[]',
    requeues: 0,
    array_job_id: arrayJobId,
    array_task_id: job.arrayTaskId,
    array_throttle: job.arrayThrottle,
    // The row's last change is its submission, so that it agrees with its last event.
    updated_at: job.submittedAt,
  };
}

export function toJob(row: Row<'jobs'>): StoredJob {
  return {
    id: String(row.id),
    name: row.name,
    member: row.member,
    project: row.project,
    user: row.username,
    state: row.state as JobState,
    reason: row.reason,
    request: JSON.parse(row.request) as StoredJob['request'],
    gpus: Number(row.gpus),
    submittedAt: Number(row.submitted_at),
    startedAt: numberOrNull(row.started_at),
    endedAt: numberOrNull(row.ended_at),
    exitCode: numberOrNull(row.exit_code),
    placement: parseOrNull<StoredJob['placement']>(row.placement),
    handle: parseOrNull<StoredJob['handle']>(row.handle),
    holdSince: numberOrNull(row.hold_since),
    lastCheckpointAt: numberOrNull(row.last_checkpoint_at ?? null),
    keepsPlace: Number(row.keeps_place) === 1,
    preemptedBy: JSON.parse(row.preempted_by) as string[],
    requeues: Number(row.requeues),
    arrayJobId: row.array_job_id === null ? null : String(row.array_job_id),
    arrayTaskId: numberOrNull(row.array_task_id),
    arrayThrottle: numberOrNull(row.array_throttle),
    updatedAt: Number(row.updated_at),
  };
}

/** The columns an update sets: only the fields it names (undefined: leave alone; null: clear). */
export function updateColumns(set: JobUpdate['set'], updatedAt: number): Updateable<JobsTable> {
  const columns: Updateable<JobsTable> = { updated_at: updatedAt };
  if (set.state !== undefined) columns.state = set.state;
  if (set.reason !== undefined) columns.reason = set.reason;
  if (set.startedAt !== undefined) columns.started_at = set.startedAt;
  if (set.endedAt !== undefined) columns.ended_at = set.endedAt;
  if (set.exitCode !== undefined) columns.exit_code = set.exitCode;
  if (set.placement !== undefined) columns.placement = jsonOrNull(set.placement);
  if (set.handle !== undefined) columns.handle = jsonOrNull(set.handle);
  if (set.holdSince !== undefined) columns.hold_since = set.holdSince;
  if (set.lastCheckpointAt !== undefined) columns.last_checkpoint_at = set.lastCheckpointAt;
  if (set.keepsPlace !== undefined) columns.keeps_place = set.keepsPlace ? 1 : 0;
  if (set.preemptedBy !== undefined) columns.preempted_by = JSON.stringify(set.preemptedBy);
  if (set.requeues !== undefined) columns.requeues = set.requeues;
  return columns;
}

export function eventRow(jobId: number, event: Omit<JobEvent, 'job'>): Insertable<JobEventsTable> {
  return {
    job_id: jobId,
    at: event.at,
    kind: event.kind,
    actor: event.actor,
    member: event.member,
    reason: event.reason,
    data: jsonOrNull(event.data),
  };
}

export function toEvent(row: Row<'job_events'>): JobEvent {
  return {
    job: String(row.job_id),
    at: Number(row.at),
    kind: row.kind,
    actor: row.actor,
    member: row.member,
    reason: row.reason,
    data: parseOrNull<JobEvent['data']>(row.data),
  };
}

export function tokenRow(token: TokenRecord): Insertable<TokensTable> {
  return {
    id: token.id,
    hash: token.hash,
    prefix: token.prefix,
    name: token.name,
    member: token.member,
    role: token.role,
    username: token.user,
    user_id: token.userId,
    created_at: token.createdAt,
    expires_at: token.expiresAt,
    revoked_at: token.revokedAt,
  };
}

export function toToken(row: Row<'tokens'>): TokenRecord {
  return {
    id: row.id,
    hash: row.hash,
    prefix: row.prefix,
    name: row.name,
    member: row.member,
    role: row.role as Role,
    user: row.username,
    // Every row has one after migration 008; an older replica's insert mid-upgrade has none and
    // reads as a user that does not exist, so the token is refused rather than trusted.
    userId: row.user_id ?? '',
    createdAt: Number(row.created_at),
    expiresAt: numberOrNull(row.expires_at),
    revokedAt: numberOrNull(row.revoked_at),
  };
}

export function userRow(user: UserRecord): Insertable<UsersTable> {
  return {
    id: user.id,
    member: user.member,
    name: user.name,
    roles: JSON.stringify(user.roles),
    origin: user.origin,
    issuer: user.issuer,
    subject: user.subject,
    created_by: user.createdBy,
    created_at: user.createdAt,
    disabled_at: user.disabledAt,
  };
}

export function toUser(row: Row<'users'>): UserRecord {
  return {
    id: row.id,
    member: row.member,
    name: row.name,
    roles: JSON.parse(row.roles) as Role[],
    origin: row.origin as UserRecord['origin'],
    issuer: row.issuer,
    subject: row.subject,
    createdBy: row.created_by,
    createdAt: Number(row.created_at),
    disabledAt: numberOrNull(row.disabled_at),
  };
}

/** The columns a user update sets: only the fields it names. */
export function userColumns(set: UserUpdate): Updateable<UsersTable> {
  const columns: Updateable<UsersTable> = {};
  if (set.name !== undefined) columns.name = set.name;
  if (set.member !== undefined) columns.member = set.member;
  if (set.roles !== undefined) columns.roles = JSON.stringify(set.roles);
  if (set.disabledAt !== undefined) columns.disabled_at = set.disabledAt;
  return columns;
}

export function toNodeState(row: Row<'node_states'>): NodeStateRecord {
  return {
    node: row.node,
    state: row.state as NodeStateRecord['state'],
    reason: row.reason,
    by: row.changed_by,
    at: Number(row.at),
  };
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

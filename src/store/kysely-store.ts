// The store over Kysely: one query layer, the same SQL on SQLite and PostgreSQL except how a
// transaction begins. Submissions are group-committed (group-commit.ts, submissions.ts);
// everything else is a plain query or one transaction per call.
import { sql } from 'kysely';
import type { Kysely } from 'kysely';
import type { JobState } from '../api/contract.js';
import { StoreClosedError } from './errors.js';
import { GroupCommit, type GroupCommitStats } from './group-commit.js';
import {
  eventRow,
  parseJobId,
  toEvent,
  toJob,
  toNodeState,
  toToken,
  tokenRow,
  toUser,
  updateColumns,
  userColumns,
  userRow,
} from './rows.js';
import { migrateToLatest, type Database, type Engine } from './schema.js';
import { writeSubmissions } from './submissions.js';
import type {
  JobEvent,
  JobFilter,
  JobUpdate,
  NodeStateRecord,
  StoredJob,
  Store,
  Submission,
  SubmitOutcome,
  TokenRecord,
  BootstrapOutcome,
  UserRecord,
  UserUpdate,
} from './store.js';
import { UserExistsError, VOUCHED } from './store.js';

const ACTIVE_STATES: readonly JobState[] = ['pending', 'starting', 'running', 'preempting'];
const MAX_PAGE = 1000;

export interface KyselyStoreOptions {
  /** Submissions written in one transaction at most (default 256). */
  readonly maxBatch?: number;
}

type Db = Kysely<Database>;

export class KyselyStore implements Store {
  /** submit()'s bookkeeping: submissions acknowledged, transactions committed, retried alone. */
  readonly stats: Readonly<GroupCommitStats>;
  private readonly submissions: GroupCommit<Submission, SubmitOutcome>;
  private closed = false;

  constructor(
    readonly db: Db,
    readonly engine: Engine,
    options: KyselyStoreOptions = {},
  ) {
    this.submissions = new GroupCommit(
      (batch) => this.transaction((trx) => writeSubmissions(trx, batch)),
      options.maxBatch ?? 256,
    );
    this.stats = this.submissions.stats;
  }

  async migrate(): Promise<void> {
    await migrateToLatest(this.db, this.engine);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.submissions.drain();
    await this.db.destroy();
  }

  async syncMembers(members: readonly { readonly id: string; readonly name: string; readonly projects: readonly string[] }[]) {
    if (members.length === 0) return;
    await this.db
      .insertInto('members')
      .values(members.map((m) => ({ id: m.id, name: m.name, projects: JSON.stringify(m.projects) })))
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({ name: eb.ref('excluded.name'), projects: eb.ref('excluded.projects') })),
      )
      .execute();
  }

  async createUser(user: UserRecord): Promise<void> {
    await this.insertUser(this.db, user);
  }

  async bootstrapUser(user: UserRecord, max: number): Promise<BootstrapOutcome> {
    if (user.member === null) throw new RangeError('bootstrapUser: a bootstrap admin belongs to a member');
    const member = user.member;
    return this.transaction(async (trx) => {
      // SQLite's transaction holds the write lock already; PostgreSQL's needs a lock of its own, or
      // two bootstraps at once would both count the same users and both insert.
      if (this.engine === 'postgres')
        await sql`select pg_advisory_xact_lock(hashtext(${`fabrik-bootstrap:${member}`}))`.execute(trx);
      const users = await trx.selectFrom('users').select('created_by').where('member', '=', member).execute();
      if (users.some((u) => u.created_by !== VOUCHED.bootstrap)) return 'closed';
      if (users.length >= max) return 'full';
      await this.insertUser(trx, user);
      return 'created';
    });
  }

  /** Inserts; a unique violation (name in member, or OIDC subject) becomes UserExistsError. */
  private async insertUser(db: Db, user: UserRecord): Promise<void> {
    const taken = async () =>
      (await this.userByName(user.member, user.name, db)) ??
      (user.subject !== null && user.issuer !== null ? await this.userBySubject(user.issuer, user.subject, db) : undefined);
    if (await taken()) throw new UserExistsError(user);
    try {
      await db.insertInto('users').values(userRow(user)).execute();
    } catch (error) {
      // Inserted by someone else between the check and the insert.
      if (await taken()) throw new UserExistsError(user);
      throw error;
    }
  }

  async userById(id: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  async userByName(member: string | null, name: string, db: Db = this.db): Promise<UserRecord | undefined> {
    const row = await db
      .selectFrom('users')
      .selectAll()
      .where('name', '=', name)
      .where((eb) => (member === null ? eb('member', 'is', null) : eb('member', '=', member)))
      .executeTakeFirst();
    return row && toUser(row);
  }

  async userBySubject(issuer: string, subject: string, db: Db = this.db): Promise<UserRecord | undefined> {
    const row = await db
      .selectFrom('users')
      .selectAll()
      .where('issuer', '=', issuer)
      .where('subject', '=', subject)
      .executeTakeFirst();
    return row && toUser(row);
  }

  async listUsers(member?: string | null): Promise<UserRecord[]> {
    let query = this.db.selectFrom('users').selectAll().orderBy('created_at').orderBy('id');
    if (member === null) query = query.where('member', 'is', null);
    else if (member !== undefined) query = query.where('member', '=', member);
    return (await query.execute()).map(toUser);
  }

  async updateUser(id: string, set: UserUpdate): Promise<boolean> {
    const columns = userColumns(set);
    if (Object.keys(columns).length === 0) return (await this.userById(id)) !== undefined;
    try {
      const result = await this.db.updateTable('users').set(columns).where('id', '=', id).executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    } catch (error) {
      const before = await this.userById(id);
      const member = set.member !== undefined ? set.member : (before?.member ?? null);
      const name = set.name ?? before?.name;
      const other = name === undefined ? undefined : await this.userByName(member, name);
      if (other && other.id !== id) throw new UserExistsError({ member, name: name! });
      throw error;
    }
  }

  async userTokens(userId: string): Promise<TokenRecord[]> {
    const rows = await this.db
      .selectFrom('tokens')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return rows.map(toToken);
  }

  async createToken(token: TokenRecord): Promise<void> {
    await this.db.insertInto('tokens').values(tokenRow(token)).execute();
  }

  async tokenByHash(hash: string): Promise<TokenRecord | undefined> {
    const row = await this.db.selectFrom('tokens').selectAll().where('hash', '=', hash).executeTakeFirst();
    return row && toToken(row);
  }

  async tokenById(id: string): Promise<TokenRecord | undefined> {
    const row = await this.db.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toToken(row);
  }

  async listTokens(member?: string | null): Promise<TokenRecord[]> {
    let query = this.db.selectFrom('tokens').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc');
    if (member === null) query = query.where('member', 'is', null);
    else if (member !== undefined) query = query.where('member', '=', member);
    return (await query.execute()).map(toToken);
  }

  /** True when the token exists; a second revocation keeps the first time. */
  async revokeToken(id: string, at: number): Promise<boolean> {
    const result = await this.db
      .updateTable('tokens')
      .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.val(at)) }))
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async countTokens(): Promise<number> {
    const row = await this.db
      .selectFrom('tokens')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  submit(submission: Submission): Promise<SubmitOutcome> {
    if (this.closed) return Promise.reject(new StoreClosedError('submit'));
    if (submission.jobs.length === 0) return Promise.reject(new RangeError('submit: a submission holds at least one job'));
    return this.submissions.add(submission);
  }

  async job(id: string): Promise<StoredJob | undefined> {
    const jobId = parseJobId(id);
    if (jobId === undefined) return undefined;
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    return row && toJob(row);
  }

  async jobs(filter: JobFilter): Promise<StoredJob[]> {
    const limit = Math.min(Math.max(Math.floor(filter.limit), 0), MAX_PAGE);
    if (limit === 0 || filter.states?.length === 0) return [];
    let query = this.db.selectFrom('jobs').selectAll().orderBy('id').limit(limit);
    if (filter.member !== undefined) query = query.where('member', '=', filter.member);
    if (filter.user !== undefined) query = query.where('username', '=', filter.user);
    if (filter.project !== undefined) query = query.where('project', '=', filter.project);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.states !== undefined) query = query.where('state', 'in', filter.states);
    if (filter.arrayJobId !== undefined) {
      const arrayJobId = parseJobId(filter.arrayJobId);
      if (arrayJobId === undefined) return [];
      query = query.where('array_job_id', '=', arrayJobId);
    }
    // A number, not the text: '10' < '9' as strings.
    if (filter.after !== undefined) {
      const after = cursor(filter.after);
      // Past every id the engines can hold (and that JavaScript counts exactly): nothing follows.
      if (after === null) return [];
      query = query.where('id', '>', after);
    }
    return (await query.execute()).map(toJob);
  }

  async activeJobs(): Promise<StoredJob[]> {
    const rows = await this.db.selectFrom('jobs').selectAll().where('state', 'in', ACTIVE_STATES).orderBy('id').execute();
    return rows.map(toJob);
  }

  async updateJobs(updates: readonly JobUpdate[]): Promise<string[]> {
    if (this.closed) throw new StoreClosedError('updateJobs');
    if (updates.length === 0) return [];
    const now = Date.now() / 1000;
    return this.transaction(async (trx) => {
      const skipped: string[] = [];
      for (const update of updates) if (!(await applyUpdate(trx, update, now))) skipped.push(update.id);
      return skipped;
    });
  }

  async events(job: string): Promise<JobEvent[]> {
    const jobId = parseJobId(job);
    if (jobId === undefined) return [];
    const rows = await this.db.selectFrom('job_events').selectAll().where('job_id', '=', jobId).orderBy('id').execute();
    return rows.map(toEvent);
  }

  async nodeStates(): Promise<NodeStateRecord[]> {
    return (await this.db.selectFrom('node_states').selectAll().orderBy('node').execute()).map(toNodeState);
  }

  async setNodeState(record: NodeStateRecord): Promise<void> {
    const row = { node: record.node, state: record.state, reason: record.reason, changed_by: record.by, at: record.at };
    await this.db
      .insertInto('node_states')
      .values(row)
      .onConflict((oc) =>
        oc.column('node').doUpdateSet({ state: row.state, reason: row.reason, changed_by: row.changed_by, at: row.at }),
      )
      .execute();
  }

  async usage(): Promise<{ readonly at: number; readonly gpuHours: Readonly<Record<string, number>> } | null> {
    const row = await this.db.selectFrom('usage').selectAll().where('id', '=', 1).executeTakeFirst();
    return row ? { at: Number(row.at), gpuHours: JSON.parse(row.gpu_hours) as Record<string, number> } : null;
  }

  async saveUsage(at: number, gpuHours: Readonly<Record<string, number>>): Promise<void> {
    const row = { id: 1, at, gpu_hours: JSON.stringify(gpuHours) };
    await this.db
      .insertInto('usage')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet({ at: row.at, gpu_hours: row.gpu_hours }))
      .execute();
  }

  async installationId(): Promise<string> {
    return (await this.db.selectFrom('installation').select('uid').where('id', '=', 1).executeTakeFirstOrThrow()).uid;
  }

  /**
   * One transaction. On SQLite it begins IMMEDIATE: a deferred transaction that reads and then
   * writes fails at once with SQLITE_BUSY when another process wrote meanwhile, where taking
   * the write lock up front waits for it (busy_timeout) instead.
   */
  private async transaction<T>(work: (trx: Db) => Promise<T>): Promise<T> {
    if (this.engine === 'postgres') return this.db.transaction().execute(work);
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await work(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (error) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw error;
      }
    });
  }
}

/** Applies the update if the job is still in one of its `from` states; false when skipped. */
async function applyUpdate(trx: Db, update: JobUpdate, now: number): Promise<boolean> {
  const id = parseJobId(update.id);
  if (id === undefined || update.from.length === 0) return false;
  const row = await trx
    .updateTable('jobs')
    .set(updateColumns(update.set, update.event?.at ?? now))
    .where('id', '=', id)
    .where('state', 'in', update.from)
    .returning('member')
    .executeTakeFirst();
  if (!row) return false;
  if (update.event === null) return true;
  await trx
    .insertInto('job_events')
    .values(eventRow(id, { ...update.event, member: row.member }))
    .execute();
  return true;
}

/**
 * The id a page starts after; null when it is beyond every id there can be. A cursor is any
 * decimal number (leading zeros too): `GET /v1/jobs?after=999999999999999999` must not reach the
 * database, whose integer it overflows (PostgreSQL's bigint, JavaScript's safe integers).
 */
function cursor(after: string): number | null {
  if (!/^[0-9]+$/.test(after)) throw new RangeError(`jobs: the cursor '${after}' is not a job id`);
  const digits = after.replace(/^0+(?=.)/, '');
  if (digits === '0') return 0;
  return parseJobId(digits) ?? null;
}

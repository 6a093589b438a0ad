// Who a Fabrik job is in Slurm: the member's Unix user runs it, charged to the member's Slurm
// account, with the project as its wckey (so `sacct` and `sreport` split a member's use by
// project without a sub-account per project) and its priority class as its QOS `fabrik-<class>`. Missing accounts, users and wckeys are created
// with `sacctmgr -i` the first time a member, user or project is seen (a shell per new identity,
// never per request); missing Unix users only when the operator says so (`createUnixUsers`),
// because on a real cluster users come from the directory (LDAP, SSSD) that every node shares.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PRIORITY_RANK, type PriorityClass } from '../core/job.js';
import type { ExecJob } from './executor.js';
import { ensureUnixUser, lookUpUnixUser, slurmName, unixUserOf } from './identity.js';

// The name mapping is shared with the local executor, which runs jobs as the same Unix users.
export { slurmName, unixUserOf };

const run = promisify(execFile);

export interface SlurmIdentityOptions {
  /**
   * The Unix user of a Fabrik user: `{member}` and `{user}` are replaced. Default
   * `{member}-{user}`: two members' "alice" are two people, and must not share files or jobs.
   * A site whose directory already names users uniquely sets `{user}`.
   */
  readonly userName?: string;
  /** Create missing Unix users on this host (useradd). Off by default: users belong to the directory. */
  readonly createUnixUsers?: boolean;
  /** Create missing Slurm accounts, users and wckeys with sacctmgr (default true). */
  readonly manageAccounts?: boolean;
}

/** What a job runs as in Slurm. */
export interface SlurmIdentity {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  /** The member's Slurm account. */
  readonly account: string;
  /** The project, as the job's wckey. */
  readonly wckey: string;
  /** The priority class, as the job's QOS. */
  readonly qos: string;
}

/** A Slurm account, user or wckey could not be made, or the Unix user does not exist. */
export class SlurmIdentityError extends Error {
  override readonly name = 'SlurmIdentityError';
}

export class SlurmIdentities {
  private readonly template: string;
  /** One promise per identity, and per account and QOS: concurrent first jobs make them once. */
  private readonly ready = new Map<string, Promise<SlurmIdentity>>();
  private readonly made = new Map<string, Promise<void>>();

  constructor(private readonly o: SlurmIdentityOptions = {}) {
    this.template = o.userName ?? '{member}-{user}';
  }

  /** The Unix user a job runs as (no side effects: recovery and signals use it). */
  userOf(job: Pick<ExecJob, 'member' | 'user'>): string {
    return unixUserOf(this.template, job);
  }

  /** The job's identity, made in Unix and Slurm first if missing. */
  forJob(job: Pick<ExecJob, 'member' | 'user' | 'project' | 'priorityClass'>): Promise<SlurmIdentity> {
    const who = {
      user: this.userOf(job),
      account: slurmName(job.member),
      wckey: slurmName(job.project),
      qos: `fabrik-${job.priorityClass}`,
    };
    return memo(this.ready, `${who.user}\u0000${who.account}\u0000${who.wckey}\u0000${who.qos}`, () => this.make(who, job));
  }

  private async make(
    who: Omit<SlurmIdentity, 'uid' | 'gid'>,
    job: Pick<ExecJob, 'member' | 'priorityClass'>,
  ): Promise<SlurmIdentity> {
    const { uid, gid } = await this.unixUser(who.user);
    if (this.o.manageAccounts ?? true) {
      await memo(this.made, `account:${who.account}`, () => this.ensureAccount(who.account, job.member));
      await memo(this.made, `qos:${who.qos}`, () => this.ensureQos(who.qos, job.priorityClass));
      await this.ensureAssociation(who);
    }
    return { ...who, uid, gid };
  }

  private async unixUser(user: string): Promise<{ uid: number; gid: number }> {
    const found = await lookUpUnixUser(user);
    if (found) return found;
    if (!this.o.createUnixUsers)
      throw new SlurmIdentityError(
        `Unix user '${user}' does not exist on this host; add it to the directory, or let Fabrik create users (slurm.createUnixUsers)`,
      );
    return ensureUnixUser(user).catch((err: Error) => {
      throw new SlurmIdentityError(err.message);
    });
  }

  private async ensureAccount(account: string, member: string): Promise<void> {
    if ((await sacctmgr(['-n', '-P', 'show', 'account', account, 'format=account'])).trim() !== '') return;
    await sacctmgr(['-i', 'add', 'account', account, `Description=Fabrik member ${member}`, `Organization=${account}`]);
  }

  /** Slurm schedules nothing by it (Fabrik decides): it names the class in sacct and sreport, and ranks it in sprio. */
  private async ensureQos(qos: string, priorityClass: PriorityClass): Promise<void> {
    if ((await sacctmgr(['-n', '-P', 'show', 'qos', qos, 'format=name'])).trim() !== '') return;
    await sacctmgr([
      '-i',
      'add',
      'qos',
      qos,
      `Description=Fabrik priority class ${priorityClass}`,
      `Priority=${1000 * (PRIORITY_RANK[priorityClass] + 1)}`,
    ]);
  }

  private async ensureAssociation({ user, account, wckey, qos }: Omit<SlurmIdentity, 'uid' | 'gid'>): Promise<void> {
    const show = () => sacctmgr(['-n', '-P', 'show', 'assoc', `account=${account}`, `user=${user}`, 'format=qos']);
    let assoc = await show();
    if (assoc.trim() === '') {
      await sacctmgr(['-i', 'add', 'user', user, `account=${account}`, `DefaultAccount=${account}`]);
      assoc = await show();
    }
    // AccountingStorageEnforce=qos refuses a job whose QOS its association does not list.
    if (!assoc.trim().split(',').includes(qos))
      await sacctmgr(['-i', 'modify', 'user', 'where', `name=${user}`, `account=${account}`, 'set', `qos+=${qos}`]);
    const keys = await sacctmgr(['-n', '-P', 'show', 'wckey', `user=${user}`, `name=${wckey}`, 'format=wckey']);
    if (keys.trim() === '') await sacctmgr(['-i', 'add', 'user', user, `wckey=${wckey}`]);
  }
}

/**
 * `make()` once per key, shared by concurrent callers. A failure is forgotten: the next job tries
 * again (sacctmgr or the directory may be back).
 */
function memo<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = make();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

/** sacctmgr's stdout; "Nothing new added" (someone else made it first) is not a failure. */
async function sacctmgr(args: string[]): Promise<string> {
  try {
    return (await run('sacctmgr', args, { timeout: 30_000 })).stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    const out = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    if (/Nothing new added/i.test(out)) return out;
    throw new SlurmIdentityError(`sacctmgr ${args.join(' ')}: ${out.trim() || e.message}`);
  }
}

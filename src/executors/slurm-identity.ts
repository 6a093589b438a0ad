// Who a Fabrik job is in Slurm: the member's Unix user runs it, charged to the member's Slurm
// account, with the project as its wckey (so `sacct` and `sreport` split a member's use by
// project without a sub-account per project). Missing accounts, users and wckeys are created
// with `sacctmgr -i` the first time a member, user or project is seen (a shell per new identity,
// never per request); missing Unix users only when the operator says so (`createUnixUsers`),
// because on a real cluster users come from the directory (LDAP, SSSD) that every node shares.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import type { ExecJob } from './executor.js';

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
}

/** A Slurm account, user or wckey could not be made, or the Unix user does not exist. */
export class SlurmIdentityError extends Error {
  override readonly name = 'SlurmIdentityError';
}

/**
 * A name both Unix and Slurm accept: lowercase letters, digits, `-` and `_`, starting with a
 * letter, at most 32 characters (useradd's limit). A name that had to be shortened keeps a hash
 * of the original so that two long names never become one.
 */
export function slurmName(raw: string): string {
  const cleaned = raw.toLowerCase().replace(/[^a-z0-9_-]+/g, '-');
  const s = /^[a-z_]/.test(cleaned) ? cleaned : `u${cleaned}`;
  if (s === raw && s.length <= 32) return s;
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 6);
  return `${s.slice(0, 25).replace(/-+$/, '')}-${hash}`;
}

/** The Unix user name for a job's Fabrik user under the `userName` template. */
export function unixUserOf(template: string, job: Pick<ExecJob, 'member' | 'user'>): string {
  return slurmName(template.replace(/\{member\}/g, job.member).replace(/\{user\}/g, job.user));
}

export class SlurmIdentities {
  private readonly template: string;
  /** One promise per identity: concurrent first jobs of a member make its account once. */
  private readonly ready = new Map<string, Promise<SlurmIdentity>>();
  private readonly accounts = new Map<string, Promise<void>>();

  constructor(private readonly o: SlurmIdentityOptions = {}) {
    this.template = o.userName ?? '{member}-{user}';
  }

  /** The Unix user a job runs as (no side effects: recovery and signals use it). */
  userOf(job: Pick<ExecJob, 'member' | 'user'>): string {
    return unixUserOf(this.template, job);
  }

  /** The job's identity, made in Unix and Slurm first if missing. */
  forJob(job: Pick<ExecJob, 'member' | 'user' | 'project'>): Promise<SlurmIdentity> {
    const user = this.userOf(job);
    const account = slurmName(job.member);
    const wckey = slurmName(job.project);
    const key = `${user}\u0000${account}\u0000${wckey}`;
    let p = this.ready.get(key);
    if (!p) {
      p = this.make(user, account, wckey, job.member);
      // A failure is not remembered: the next job tries again (sacctmgr or the directory may be back).
      p.catch(() => this.ready.delete(key));
      this.ready.set(key, p);
    }
    return p;
  }

  private async make(user: string, account: string, wckey: string, member: string): Promise<SlurmIdentity> {
    const { uid, gid } = await this.unixUser(user);
    if (this.o.manageAccounts ?? true) {
      let acc = this.accounts.get(account);
      if (!acc) {
        acc = this.ensureAccount(account, member);
        acc.catch(() => this.accounts.delete(account));
        this.accounts.set(account, acc);
      }
      await acc;
      await this.ensureAssociation(user, account, wckey);
    }
    return { user, uid, gid, account, wckey };
  }

  private async unixUser(user: string): Promise<{ uid: number; gid: number }> {
    const look = async () => {
      try {
        const { stdout } = await run('getent', ['passwd', user]);
        const [, , uid, gid] = stdout.trim().split(':');
        return { uid: Number(uid), gid: Number(gid) };
      } catch {
        return null;
      }
    };
    const found = await look();
    if (found) return found;
    if (!this.o.createUnixUsers)
      throw new SlurmIdentityError(
        `Unix user '${user}' does not exist on this host; add it to the directory, or let Fabrik create users (slurm.createUnixUsers)`,
      );
    // No home, no login: the user only runs batch jobs that Fabrik submits for it.
    await run('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', user]).catch((err: Error) => {
      throw new SlurmIdentityError(`could not create Unix user '${user}': ${err.message}`);
    });
    const made = await look();
    if (!made) throw new SlurmIdentityError(`Unix user '${user}' was created but cannot be looked up`);
    return made;
  }

  private async ensureAccount(account: string, member: string): Promise<void> {
    if ((await sacctmgr(['-n', '-P', 'show', 'account', account, 'format=account'])).trim() !== '') return;
    await sacctmgr(['-i', 'add', 'account', account, `Description=Fabrik member ${member}`, `Organization=${account}`]);
  }

  private async ensureAssociation(user: string, account: string, wckey: string): Promise<void> {
    const assoc = await sacctmgr(['-n', '-P', 'show', 'assoc', `account=${account}`, `user=${user}`, 'format=user']);
    if (assoc.trim() === '') await sacctmgr(['-i', 'add', 'user', user, `account=${account}`, `DefaultAccount=${account}`]);
    const keys = await sacctmgr(['-n', '-P', 'show', 'wckey', `user=${user}`, `name=${wckey}`, 'format=wckey']);
    if (keys.trim() === '') await sacctmgr(['-i', 'add', 'user', user, `wckey=${wckey}`]);
  }
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

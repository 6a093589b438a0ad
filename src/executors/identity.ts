// Who a Fabrik job runs as on a Unix host: the member's user, named by a template
// (`{member}-{user}` by default, so that two members' "alice" are two people who share no files
// and no processes). The Slurm executor and the local executor use the same mapping, so a member's
// files on a shared file system have one owner whichever executor ran the job.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import type { ExecJob } from './executor.js';

const run = promisify(execFile);

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

/** A Unix user as the kernel knows it. */
export interface UnixUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** The Unix user does not exist and could not be made. */
export class UnixUserError extends Error {
  override readonly name = 'UnixUserError';
}

/** The user from the passwd database (getent: files, LDAP, SSSD alike); null when there is none. */
export async function lookUpUnixUser(name: string): Promise<UnixUser | null> {
  try {
    const { stdout } = await run('getent', ['passwd', name]);
    const [, , uid, gid] = stdout.trim().split(':');
    const u = { name, uid: Number(uid), gid: Number(gid) };
    return Number.isInteger(u.uid) && Number.isInteger(u.gid) ? u : null;
  } catch {
    return null;
  }
}

const making = new Map<string, Promise<UnixUser>>();

/**
 * The user, created first when missing: no home and no login shell, since it only runs the jobs
 * Fabrik starts for it. Concurrent first jobs of one user create it once; a failure is forgotten,
 * so the next job tries again.
 */
export function ensureUnixUser(name: string): Promise<UnixUser> {
  let p = making.get(name);
  if (!p) {
    p = (async () => {
      const found = await lookUpUnixUser(name);
      if (found) return found;
      await run('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]).catch(
        async (err: Error) => {
          // Another process (a second server, Slurm's own tooling) may have made it meanwhile.
          if (await lookUpUnixUser(name)) return;
          throw new UnixUserError(`could not create Unix user '${name}': ${err.message}`);
        },
      );
      const made = await lookUpUnixUser(name);
      if (!made) throw new UnixUserError(`Unix user '${name}' was created but cannot be looked up`);
      return made;
    })();
    p.catch(() => making.delete(name));
    making.set(name, p);
  }
  return p;
}

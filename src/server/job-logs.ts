// Opening a job's log for the log API. The server reads with its own rights (it may be root) files
// in a folder the job writes to (and, with isolation, owns): nothing in that folder is trusted.
// A log is served only when it is a regular file inside the job's own folder, reached without a
// symbolic link at any step, with one link only (a hard link to the store or the operator token
// has two), and the checks are made on the opened descriptor (fstat, and on Linux the kernel's
// own name for it in /proc/self/fd): a file swapped for a link after a check is not followed.
import { constants, type Stats } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { DEV_NULL } from '../api/contract.js';

/** The log exists but must not be served; `why` is a sentence for the job's owner. */
export class LogRefusedError extends Error {
  override readonly name = 'LogRefusedError';
  constructor(readonly why: string) {
    super(why);
  }
}

/** An open log (read it, then close it), or null: there is none yet (or it is /dev/null), read as empty. */
export type OpenLog = { readonly handle: FileHandle; readonly stat: Stats } | null;

// O_NONBLOCK: opening a FIFO for reading would wait for a writer (and hold a thread) without it.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

const missing = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/**
 * Opens `path`, which must be inside `jobDir` (the job's own folder, `<data>/jobs/<id>`).
 * Throws LogRefusedError when it must not be served.
 */
export async function openJobLog(jobDir: string, path: string): Promise<OpenLog> {
  if (path === DEV_NULL) return null;
  const rel = relative(jobDir, path);
  if (rel === '' || isAbsolute(rel) || rel.split(sep)[0] === '..')
    throw new LogRefusedError("the log is outside the job's own folder; only that folder is served");
  // The job's folder itself is made by the executor in <data>/jobs, which the job cannot change.
  let realDir: string;
  try {
    const dir = await fsp.lstat(jobDir);
    if (!dir.isDirectory()) throw new LogRefusedError("the job's folder is not a folder");
    realDir = await fsp.realpath(jobDir);
  } catch (err) {
    if (missing(err)) return null;
    throw err;
  }
  // Every folder on the way, then the file (O_NOFOLLOW): a symbolic link anywhere is refused.
  const parts = rel.split(sep);
  let at = jobDir;
  for (const part of parts.slice(0, -1)) {
    at = join(at, part);
    let st: Stats;
    try {
      st = await fsp.lstat(at);
    } catch (err) {
      if (missing(err)) return null;
      throw err;
    }
    if (st.isSymbolicLink()) throw new LogRefusedError(`${relative(jobDir, at)} is a symbolic link; links are not followed`);
    if (!st.isDirectory()) throw new LogRefusedError(`${relative(jobDir, at)} is not a folder`);
  }
  let handle: FileHandle;
  try {
    handle = await fsp.open(path, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (missing(err)) return null;
    if (code === 'ELOOP' || code === 'EMLINK') throw new LogRefusedError(`${rel} is a symbolic link; links are not followed`);
    if (code === 'EACCES' || code === 'EPERM') throw new LogRefusedError(`${rel} cannot be read`);
    throw err;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new LogRefusedError(`${rel} is not a regular file (a folder, a FIFO or a device is not a log)`);
    if (stat.nlink > 1) throw new LogRefusedError(`${rel} has ${stat.nlink} hard links; a log has one`);
    await checkOpenedPath(handle, join(realDir, rel), path, stat);
    return { handle, stat };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * The descriptor is the file at `expected`: a folder on the way swapped for a link between the
 * checks above and the open is caught here. Linux names the opened file in /proc/self/fd; where
 * it cannot, the path's file must still be the opened one (same device and inode).
 */
async function checkOpenedPath(handle: FileHandle, expected: string, path: string, stat: Stats): Promise<void> {
  let actual: string | null = null;
  try {
    actual = await fsp.readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    actual = null;
  }
  if (actual !== null) {
    if (actual !== expected) throw new LogRefusedError("the log was moved out of the job's folder while it was opened");
    return;
  }
  const now = await fsp.lstat(path).catch(() => null);
  if (!now || now.dev !== stat.dev || now.ino !== stat.ino) throw new LogRefusedError('the log was replaced while it was opened');
}

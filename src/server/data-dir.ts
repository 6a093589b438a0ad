// The data folder holds every member's secrets: the store (job environments, token hashes,
// datasets), the operator token, the audit log's signing key and the jobs' folders. Any local
// user who can read it reads all of that, so the server keeps it to its own Unix user: the folder
// 0700, what the server writes 0600 (a umask of 077, set before anything is created), and a start
// refuses a folder or store that group or others can already read or write, rather than fixing
// the modes silently: whatever was readable may already have been read, and the operator should
// know (and rotate the operator token and the signing key if the host has other users).
import { chmodSync, lstatSync, mkdirSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KEY_FILE } from '../audit/checkpoint.js';
import { parseStoreUrl } from '../store/url.js';

/** The data folder or a file of the server's is open to group or others, or is not the server's own. */
export class DataDirError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'DataDirError';
  }
}

/** What group and others may never do to the data folder or the server's files in it. */
const OPEN_TO_OTHERS = 0o077;

/**
 * The files the server writes in the data folder itself (job folders, under jobs/, belong to the
 * jobs' own users once the executor runs jobs as them, and are checked by it, not here).
 */
export const SERVER_FILES = ['fabrik.db', 'fabrik.db-wal', 'fabrik.db-shm', 'operator-token', KEY_FILE];

export interface DataDirOptions {
  /** The store URL: a SQLite file outside the data folder is checked too. */
  readonly store?: string;
  /**
   * Jobs run as other Unix users and reach their own folder, <data>/jobs/<id>, by its path (the
   * Slurm executor: the job's user opens its log on the node): the data folder and jobs/ are
   * then 0711, which lets them pass through without listing or reading anything.
   */
  readonly jobsByPath?: boolean;
}

/**
 * Makes the data folder (0700, or 0711 with `jobsByPath`) if it is missing and sets this
 * process's umask to 077, so that the store, the logs and every file the server writes from now
 * on are 0600; then checks the folder and the store (and the other files the server keeps there)
 * and throws a DataDirError, naming the path, its mode and the chmod to run, for any that group
 * or others may read or write, or that another user owns.
 */
export function prepareDataDir(dataDir: string, o: DataDirOptions = {}): void {
  // Before the first file is created. The server runs on the main thread (process.umask cannot
  // be set in a worker).
  process.umask(0o077);
  const dir = resolve(dataDir);
  const folderMode = o.jobsByPath ? 0o711 : 0o700;
  const existing = statOrNull(dir);
  if (existing === null) {
    mkdirSync(dir, { recursive: true });
    // Parents made by `recursive` are the operator's business; the folder itself is ours.
    chmodSync(dir, folderMode);
  } else if (!existing.isDirectory()) {
    throw new DataDirError(dir, `data folder ${dir} is not a folder: give --data a folder (or remove the file)`);
  }
  checkPrivate(dir, o.jobsByPath ? 'traversable folder' : 'folder');
  if (o.jobsByPath) {
    // Made here, the server's: the Slurm executor gives the folders it makes to the job's user,
    // and jobs/ must not become the first job's.
    const jobs = join(dir, 'jobs');
    if (statOrNull(jobs) === null) {
      mkdirSync(jobs);
      chmodSync(jobs, 0o711);
    }
    checkPrivate(jobs, 'traversable folder');
  }
  for (const f of SERVER_FILES) checkPrivate(join(dir, f), 'file');
  const sqlite = sqliteFileOf(o.store);
  if (sqlite !== null && dirname(sqlite) !== dir)
    for (const f of [sqlite, `${sqlite}-wal`, `${sqlite}-shm`]) checkPrivate(f, 'file');
}

/** Refuses `path` (when it exists) if it is not this user's, or group or others may use it. */
export function checkPrivate(path: string, kind: 'folder' | 'traversable folder' | 'file'): void {
  const s = statOrNull(path);
  if (s === null) return;
  const what = kind === 'file' ? 'file' : 'folder';
  // A link could point the store anywhere (or at another user's file): the server's files are plain.
  if (s.isSymbolicLink())
    throw new DataDirError(path, `${what} ${path} is a symbolic link: the data folder holds only the server's own files`);
  const uid = process.getuid?.();
  if (uid !== undefined && s.uid !== uid)
    throw new DataDirError(
      path,
      `${what} ${path} belongs to user id ${s.uid}, not to the user Fabrik runs as (${uid}): run \`chown ${uid} ${path}\`, or start Fabrik as its owner`,
    );
  const mode = s.mode & 0o777;
  // Passing through (x) lists nothing and reads nothing: allowed where jobs reach their folder by path.
  const refused = kind === 'traversable folder' ? OPEN_TO_OTHERS & ~0o011 : OPEN_TO_OTHERS;
  if ((mode & refused) !== 0) {
    const wanted = kind === 'file' ? '600' : kind === 'folder' ? '700' : '711';
    throw new DataDirError(
      path,
      `${what} ${path} has mode ${octal(mode)}: other users of this host can ${verbs(mode)} it ` +
        `(job environments, tokens and the audit signing key live here); run \`chmod ${wanted} ${path}\` ` +
        '(and, if the host has other users, rotate the operator token and the signing key), then start again',
    );
  }
}

function verbs(mode: number): string {
  const read = (mode & 0o044) !== 0;
  const write = (mode & 0o022) !== 0;
  return read && write ? 'read and write' : read ? 'read' : write ? 'write' : 'pass through';
}

const octal = (mode: number) => '0' + mode.toString(8).padStart(3, '0');

function statOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The SQLite file of a store URL, absolute; null for PostgreSQL, memory, or a URL openStore will refuse. */
function sqliteFileOf(store: string | undefined): string | null {
  if (store === undefined) return null;
  try {
    const at = parseStoreUrl(store);
    return at.engine === 'sqlite' && at.path !== ':memory:' ? resolve(at.path) : null;
  } catch {
    return null;
  }
}

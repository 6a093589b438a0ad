// The local executor: runs jobs as real processes on this host, which it splits into node slots.
// Each rank runs under a small wrapper (see rank-wrapper.ts) in its own session and process
// group, so that a stop reaches everything the rank started and the server may restart without
// taking its jobs along. The handle names every rank by pid, process group and start time; a new
// executor instance finds the ranks again from it and watches them by polling /proc.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  type ExecutorLogger,
  ExecutorClosedError,
  InvalidJobError,
  JobAlreadyRunningError,
  Listeners,
  checkPlacement,
  defaultNow,
  realScheduler,
  silentLogger,
} from './common.js';
import type { ExecJob, ExecNode, Executor, ExecutorEvent, ExitReason, RecoveryResult } from './executor.js';
import { ensureUnixUser, lookUpUnixUser, unixUserOf } from './identity.js';
import { createJobCgroup, type JobCgroup, jobCgroupAt, removeJobCgroup } from './isolation/cgroup.js';
import { createNetns, deleteNetns, NETNS_DIR } from './isolation/netns.js';
import { type IsolationProbe, isInside, STAGE_DIR, sandboxPlan } from './isolation/sandbox.js';
import { bootId, isSameProcess, processStartTime } from './proc.js';
import { type ExitRecord, RANK_WRAPPER_SOURCE, type RankSpec } from './rank-wrapper.js';

/** The job's files could not be set up (its folder, its logs, its script): nothing was started. */
export class JobSetupError extends Error {
  override readonly name = 'JobSetupError';
  constructor(
    readonly job: string,
    readonly path: string,
    override readonly cause: unknown,
  ) {
    super(`job ${job}: cannot prepare ${path}: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export interface GpuDetection {
  readonly gpus: readonly number[];
  /** `configured`: given in the options; `nvidia-smi`: found on this host; `fallback`: virtual. */
  readonly source: 'configured' | 'nvidia-smi' | 'fallback';
  /** A sentence for operators: why these GPUs. */
  readonly detail: string;
}

/**
 * The GPUs of this host from `nvidia-smi`; without it (or when it fails) `fallbackGpus` virtual
 * ones numbered from 0, so that the control plane can be tried on a laptop.
 */
export function detectGpus(fallbackGpus = 4): GpuDetection {
  const fallback = (why: string): GpuDetection => ({
    gpus: Array.from({ length: fallbackGpus }, (_, i) => i),
    source: 'fallback',
    detail: `${why}: ${fallbackGpus} virtual GPUs`,
  });
  let out: string;
  try {
    out = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 15_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') return fallback('no nvidia-smi on this host');
    return fallback(`nvidia-smi failed (${(e.stderr ?? e.message).trim().split('\n')[0]})`);
  }
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const gpus = lines.map(Number);
  if (gpus.length === 0 || !gpus.every((g) => Number.isInteger(g) && g >= 0)) {
    return fallback(`nvidia-smi listed no usable GPU indices (${JSON.stringify(lines.slice(0, 3))})`);
  }
  return { gpus, source: 'nvidia-smi', detail: `${gpus.length} GPUs found by nvidia-smi` };
}

export interface LocalExecutorOptions {
  /** Jobs' folders go under `<dataDir>/jobs/<id>/`. */
  readonly dataDir: string;
  /** How many node slots this host is split into (default 1); the GPUs are shared out evenly. */
  readonly nodes?: number;
  /** Device indices (default: detected, see detectGpus). */
  readonly gpus?: readonly number[];
  /** Virtual GPUs when none are configured or detected (default 4). */
  readonly fallbackGpus?: number;
  readonly zone?: string;
  /** NVLink domain name of all slots (default `local`). */
  readonly domain?: string;
  /** Seconds since the epoch (default: the system clock). */
  readonly now?: () => number;
  readonly logger?: ExecutorLogger;
  /** Run every job isolated (its member's Unix user, namespaces, cgroup); null or absent: as this process's user. */
  readonly isolation?: LocalIsolation | null;
}

/** What an isolated job gets beyond its placement: its request's limits and the datasets it was admitted to. */
export interface JobResources {
  /** Per rank; default: the node slot's share of this host's CPUs. */
  readonly cpusPerTask?: number | null;
  /** Per rank; default: the node slot's share of this host's memory. */
  readonly memoryMb?: number | null;
  /**
   * Bound read-only at their location, when the person who registered it can read it there (see
   * readableBy): `owner` and `registeredBy` name that person as the job's member and user do.
   */
  readonly datasets?: readonly {
    readonly name: string;
    readonly location: string;
    readonly owner: string;
    readonly registeredBy: string;
  }[];
}

export interface LocalIsolation {
  /** What the host offers (probeIsolation): bubblewrap's path and the cgroup controllers. */
  readonly probe: IsolationProbe;
  /** A Fabrik user's Unix user, `{member}` and `{user}` replaced (default `{member}-{user}`, as on Slurm). */
  readonly userName?: string;
  /** Where the GPUs' device files are, `nvidia<N>` (default /dev; tests use fake ones). */
  readonly deviceDir?: string;
  /** Folders jobs may read besides /usr (default: the code of this Fabrik installation, FABRIK_CODE). */
  readonly readOnly?: readonly string[];
  /** Most processes a job may have (default 4096). */
  readonly pids?: number;
  /** The TCP port a job serves on that the server must reach (a model replica's engine), or null. */
  readonly servicePort?: (job: ExecJob) => number | null;
  /** The job's limits and datasets (the server reads them from its request and from governance). */
  readonly resources?: (job: ExecJob) => Promise<JobResources>;
}

/** The Fabrik installation (three folders above this file). */
const FABRIK_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * What of it jobs may read: what `fabrik engine` (a replica's bundled engine) runs from, and its corpus. Not the
 * whole folder: an operator's `fabrik.yaml` beside it may hold the store's password.
 */
const FABRIK_CODE = ['bin', 'src', 'node_modules', 'data/corpus', 'package.json', 'tsconfig.json'].map((p) =>
  path.join(FABRIK_ROOT, p),
);

export interface LocalExecutor extends Executor {
  /** Where the GPUs came from, for the server to show. */
  readonly gpuSource: GpuDetection;
}

/** How often ranks that are not our children (found again after a restart) are looked at. */
const POLL_MS = 200;

const HandleSchema = z.object({
  version: z.literal(1),
  /** This boot's id when the job started: after a reboot its pids name other processes. */
  boot: z.string().nullable(),
  startedAt: z.number(),
  dir: z.string(),
  ranks: z
    .array(
      z.object({
        rank: z.number().int().min(0),
        node: z.string(),
        /** 0: the wrapper could not even be spawned (its exit record says so). */
        pid: z.number().int().min(0),
        pgid: z.number().int().min(0),
        startTime: z.string().nullable(),
        exitFile: z.string(),
      }),
    )
    .min(1),
  /** Isolated jobs: what to clean up when they end, and where a replica is reached. */
  sandbox: z
    .object({
      netns: z.string(),
      cgroup: z.object({ procs: z.array(z.string()), dirs: z.array(z.string()) }).nullable(),
      forward: z.object({ socket: z.string(), port: z.number().int() }).nullable(),
    })
    .optional(),
});
type LocalHandle = z.infer<typeof HandleSchema>;
type SandboxHandle = NonNullable<LocalHandle['sandbox']>;

const ExitRecordSchema = z.object({ code: z.number().int().nullable(), signal: z.string().nullable(), at: z.number() });

interface Rank {
  readonly rank: number;
  readonly node: string;
  readonly pid: number;
  readonly pgid: number;
  readonly startTime: string | null;
  readonly exitFile: string;
  /** Our own child: its exit is reported by Node. Otherwise (found after a restart) it is polled. */
  readonly ours: boolean;
  gone: boolean;
  /** How it ended; null while it runs, or when it vanished without a record. */
  outcome: ExitRecord | null;
  /** When it was seen gone, to tell the rank that failed first from those stopped after it. */
  goneOrder: number;
  /**
   * The last signal we sent its group. A rank gone without an exit record was killed by it: by
   * SIGKILL, or by an earlier signal that came before the wrapper could catch it.
   */
  signalled: string | null;
}

interface Tracked {
  readonly job: ExecJob;
  readonly startedAt: number;
  ranks: Rank[];
  launched: boolean;
  finished: boolean;
  stopping: { readonly reason: ExitReason; readonly killAt: number } | null;
  /** A stop that came while the ranks were still being launched. */
  pendingStopGrace: number | null;
  cancelKill: (() => void) | null;
  cancelWalltime: (() => void) | null;
  /** An isolated job's network namespace, cgroup and replica socket, removed when it ends. */
  sandbox: SandboxHandle | null;
}

/** A job as the executor starts watching it: launched here, or found again after a restart. */
function tracked(
  job: ExecJob,
  startedAt: number,
  ranks: Rank[],
  launched: boolean,
  sandbox: SandboxHandle | null = null,
): Tracked {
  return {
    sandbox,
    job,
    startedAt,
    ranks,
    launched,
    finished: false,
    stopping: null,
    pendingStopGrace: null,
    cancelKill: null,
    cancelWalltime: null,
  };
}

export function createLocalExecutor(options: LocalExecutorOptions): LocalExecutor {
  const now = options.now ?? defaultNow;
  const logger = options.logger ?? silentLogger;
  const slots = options.nodes ?? 1;
  if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`nodes must be a positive integer, not ${slots}`);
  const gpuSource: GpuDetection = options.gpus
    ? { gpus: [...options.gpus], source: 'configured', detail: `${options.gpus.length} GPUs configured` }
    : detectGpus(options.fallbackGpus ?? 4);
  const nodes = splitIntoSlots(os.hostname(), slots, gpuSource.gpus, options.domain ?? 'local', options.zone ?? 'general');
  const dataDir = path.resolve(options.dataDir);
  const wrapperPath = path.join(dataDir, 'fabrik-rank.cjs');
  const boot = bootId();
  const isolation = options.isolation ?? null;
  // Names of this installation's namespaces and cgroups: two servers on one host (two data
  // folders) never clean up each other's.
  const tag = createHash('sha256').update(dataDir).digest('hex').slice(0, 8);
  if (isolation) fs.mkdirSync(STAGE_DIR, { recursive: true, mode: 0o755 });
  // The server's environment may hold secrets (database URLs, tokens): jobs get only these.
  const safeEnv: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG']) if (process.env[k] !== undefined) safeEnv[k] = process.env[k]!;

  const listeners = new Listeners(logger);
  const jobs = new Map<string, Tracked>();
  let closed = false;
  let wrapperWritten = false;
  let goneCounter = 0;
  let poller: NodeJS.Timeout | null = null;

  const emit = (e: ExecutorEvent) => {
    if (!closed) listeners.emit(e);
  };

  async function ensureWrapper(): Promise<void> {
    if (wrapperWritten) return;
    await fsp.mkdir(dataDir, { recursive: true });
    const current = await fsp.readFile(wrapperPath, 'utf8').catch(() => null);
    if (current !== RANK_WRAPPER_SOURCE) {
      // Renamed into place: a rank starting at this moment under another executor sees a whole file.
      const tmp = `${wrapperPath}.${randomUUID()}.tmp`;
      await fsp.writeFile(tmp, RANK_WRAPPER_SOURCE);
      await fsp.rename(tmp, wrapperPath);
    }
    wrapperWritten = true;
  }

  /** Signals the rank's process group if the rank is still the process we started. */
  function signalRank(r: Rank, signal: NodeJS.Signals): void {
    if (r.gone || r.pgid <= 0 || !isSameProcess(r.pid, r.startTime)) return;
    try {
      process.kill(-r.pgid, signal);
      r.signalled = signal.replace(/^SIG/, '');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') logger.warn({ err, pid: r.pid }, 'cannot signal rank');
      return;
    }
    // Noted beside the exit record, for an executor that finds the rank gone after a restart:
    // a wrapper killed by the signal (SIGKILL, or one that came before it could catch any) wrote
    // no record, and then this note says how the rank ended. A separate file, so that it can
    // never overwrite the wrapper's own record.
    try {
      const note: ExitRecord = { code: null, signal: r.signalled, at: now() };
      fs.writeFileSync(signalNoteOf(r.exitFile), JSON.stringify(note));
    } catch (err) {
      logger.warn({ err, file: signalNoteOf(r.exitFile) }, 'cannot note a signal');
    }
  }

  function beginStop(t: Tracked, reason: ExitReason, graceSeconds: number): void {
    const killAt = now() + Math.max(0, graceSeconds);
    if (t.stopping) {
      // A later, more urgent stop may shorten the grace period, never lengthen it.
      if (killAt >= t.stopping.killAt) return;
      t.stopping = { reason: t.stopping.reason, killAt };
    } else {
      t.stopping = { reason, killAt };
      const signal = `SIG${t.job.signal}` as NodeJS.Signals;
      logger.info({ job: t.job.id, reason, signal, graceSeconds }, 'stopping job');
      for (const r of t.ranks) signalRank(r, signal);
    }
    t.cancelKill?.();
    t.cancelKill = realScheduler(
      () => {
        t.cancelKill = null;
        for (const r of t.ranks) signalRank(r, 'SIGKILL');
      },
      Math.max(0, graceSeconds) * 1000,
    );
  }

  function rankGone(t: Tracked, r: Rank, outcome: ExitRecord | null): void {
    if (r.gone) return;
    r.gone = true;
    r.goneOrder = ++goneCounter;
    r.outcome = outcome ?? (r.signalled ? { code: null, signal: r.signalled, at: now() } : null);
    // Whatever the rank left running in its group (daemons, stray children) dies with it, as
    // Slurm ends a step: leftovers would hold GPUs that the next job is given. (pgid 0 would be
    // our own group.)
    if (r.pgid > 0) {
      try {
        process.kill(-r.pgid, 'SIGKILL');
      } catch {
        // ESRCH: the group is empty, as it should be.
      }
    }
    if (t.launched) settle(t);
  }

  /** After any change: ends the gang when all ranks are gone, stops it when one rank failed. */
  function settle(t: Tracked): void {
    if (t.finished) return;
    if (t.ranks.every((r) => r.gone)) return finish(t);
    const failed = t.ranks.some((r) => r.gone && (r.outcome === null || r.outcome.code !== 0));
    if (failed && !t.stopping) beginStop(t, 'completed', t.job.gracePeriodSeconds);
  }

  function finish(t: Tracked): void {
    t.finished = true;
    t.cancelKill?.();
    t.cancelWalltime?.();
    jobs.delete(t.job.id);
    stopPollingIfIdle();
    if (t.sandbox) void cleanUp(t.job.id, t.sandbox);
    const verdict = gangVerdict(t.ranks);
    const at = now();
    if (verdict.kind === 'lost') {
      logger.warn({ job: t.job.id, reason: verdict.reason }, 'job lost');
      emit({ kind: 'lost', job: t.job.id, at, reason: verdict.reason });
    } else {
      const reason = t.stopping?.reason ?? 'completed';
      logger.info({ job: t.job.id, exitCode: verdict.exitCode, signal: verdict.signal, reason }, 'job exited');
      emit({ kind: 'exited', job: t.job.id, at, exitCode: verdict.exitCode, signal: verdict.signal, reason });
    }
  }

  function armWalltime(t: Tracked): void {
    const left = t.startedAt + t.job.walltimeSeconds - now();
    t.cancelWalltime = realScheduler(
      () => {
        t.cancelWalltime = null;
        if (!t.finished) beginStop(t, 'timeout', t.job.gracePeriodSeconds);
      },
      Math.max(0, left) * 1000,
    );
  }

  function poll(): void {
    for (const t of [...jobs.values()]) {
      if (!t.launched) continue;
      for (const r of t.ranks) {
        if (!r.ours && !r.gone && !isSameProcess(r.pid, r.startTime)) rankGone(t, r, readOutcome(r.exitFile));
      }
    }
  }

  function startPolling(): void {
    if (poller || closed) return;
    poller = setInterval(poll, POLL_MS);
    poller.unref();
  }

  function stopPollingIfIdle(): void {
    if (poller && ![...jobs.values()].some((t) => t.ranks.some((r) => !r.ours && !r.gone))) {
      clearInterval(poller);
      poller = null;
    }
  }

  /** Creates the job's folder, logs and script; returns the open log descriptors. */
  async function prepare(job: ExecJob, dir: string): Promise<{ out: number; err: number; argv: string[] }> {
    const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw new JobSetupError(job.id, what, err);
      }
    };
    await step(dataDir, ensureWrapper);
    await step(dir, () => fsp.mkdir(dir, { recursive: true }));
    // A requeued job starts again in the same folder: its old exit records must not answer for it.
    for (const f of await step(dir, () => fsp.readdir(dir))) {
      if (/^rank-\d+\.(json|exit(\.tmp|\.signalled)?)$/.test(f)) await step(f, () => fsp.rm(path.join(dir, f), { force: true }));
    }
    let argv: string[];
    if (job.command !== null) {
      if (job.command.length === 0) throw new InvalidJobError(job.id, 'empty command');
      argv = [...job.command];
    } else if (job.script !== null) {
      const script = path.join(dir, 'script.sh');
      await step(script, () => fsp.writeFile(script, job.script!, { mode: 0o700 }));
      argv = ['bash', script];
    } else {
      throw new InvalidJobError(job.id, 'neither command nor script');
    }
    const output = path.resolve(dir, job.output);
    const error = path.resolve(dir, job.error);
    const openLog = (file: string) =>
      step(file, async () => {
        await fsp.mkdir(path.dirname(file), { recursive: true });
        return fs.openSync(file, 'a');
      });
    const out = await openLog(output);
    if (output === error) return { out, err: out, argv };
    try {
      return { out, err: await openLog(error), argv };
    } catch (e) {
      fs.closeSync(out);
      throw e;
    }
  }

  /** An isolated job's namespace and cgroup are gone; failures are logged (the next start of the id reuses them). */
  async function cleanUp(job: string, sb: SandboxHandle): Promise<void> {
    try {
      if (sb.cgroup) await removeJobCgroup(sb.cgroup);
      await deleteNetns(sb.netns);
      if (sb.forward) await fsp.rm(sb.forward.socket, { force: true });
    } catch (err) {
      logger.warn({ err, job }, 'cannot clean up the job’s sandbox');
    }
  }

  /**
   * After a restart: namespaces and cgroups of this installation that no job the server still
   * has names (their job ended while nobody watched, and its handle is gone) are removed.
   */
  async function sweepSandboxes(known: ReadonlySet<string>): Promise<void> {
    const prefix = `fabrik-${tag}-`;
    let names: string[] = [];
    try {
      names = (await fsp.readdir(NETNS_DIR)).filter((n) => n.startsWith(prefix));
    } catch {
      return;
    }
    for (const name of names) {
      const id = name.slice(prefix.length);
      if (known.has(id) || jobs.has(id)) continue;
      logger.info({ job: id, netns: name }, 'removing the sandbox of a job that is no longer known');
      const cg = jobCgroupAt(isolation!.probe.cgroups, name);
      await cleanUp(id, { netns: name, cgroup: cg && { procs: [...cg.procs], dirs: [...cg.dirs] }, forward: null });
    }
  }

  /**
   * An isolated launch: the job's folder belongs to its member's Unix user, its ranks run in one
   * network namespace and one cgroup of the job's own, each in a bubblewrap sandbox (see
   * rank-wrapper.ts). The wrapper's own files (specs, exit records) are in a root-only folder
   * beside the jobs', where the job cannot plant links for root to follow.
   */
  async function launchSandboxed(t: Tracked, iso: LocalIsolation): Promise<LocalHandle> {
    const { job } = t;
    const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw new JobSetupError(job.id, what, err);
      }
    };
    const jobsDir = path.join(dataDir, 'jobs');
    const dir = path.join(jobsDir, job.id);
    const control = path.join(dataDir, 'exec', job.id);
    const cwd = job.workdir ? path.resolve(dir, job.workdir) : dir;
    const output = path.resolve(dir, job.output);
    const error = path.resolve(dir, job.error);
    // An isolated job sees only its own folder: a log or working directory elsewhere would not exist for it.
    for (const [what, p] of [
      ['working directory', cwd],
      ['output', output],
      ['error log', error],
    ] as const)
      if (!isInside(p, dir))
        throw new InvalidJobError(
          job.id,
          `its ${what} ${p} is outside its folder ${dir}; an isolated job sees only its own folder`,
        );
    let argv: string[];
    if (job.command !== null) {
      if (job.command.length === 0) throw new InvalidJobError(job.id, 'empty command');
      argv = [...job.command];
    } else if (job.script !== null) argv = ['bash', path.join(dir, 'script.sh')];
    else throw new InvalidJobError(job.id, 'neither command nor script');

    const userName = unixUserOf(iso.userName ?? '{member}-{user}', job);
    const user = await step(`Unix user ${userName}`, () => ensureUnixUser(userName));
    const port = await freePort().catch((err) => {
      throw new JobSetupError(job.id, 'a free TCP port for MASTER_PORT', err);
    });
    await step(dataDir, ensureWrapper);
    await step(jobsDir, () => fsp.mkdir(jobsDir, { recursive: true, mode: 0o700 }));
    await step(dir, async () => {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      // lchown: a link the job left in its place (a requeue) must not hand root's files to it.
      await fsp.lchown(dir, user.uid, user.gid);
      await fsp.chmod(dir, 0o700);
    });
    await step(control, async () => {
      await fsp.rm(control, { recursive: true, force: true });
      await fsp.mkdir(control, { recursive: true, mode: 0o700 });
    });
    if (job.script !== null) {
      const script = argv[1];
      await step(script, async () => {
        // Removed and created anew (O_EXCL never follows a link): the folder is the job's, and a
        // link left there by an earlier run must not make root write through it.
        await fsp.rm(script, { force: true });
        const fh = await fsp.open(script, 'wx', 0o700);
        try {
          await fh.writeFile(job.script!);
          await fh.chown(user.uid, user.gid);
        } finally {
          await fh.close();
        }
      });
    }
    const resources = iso.resources ? await step('the job’s resources', () => iso.resources!(job)) : {};
    const notes: string[] = [];
    const datasets: string[] = [];
    for (const d of resources.datasets ?? []) {
      if (!fs.existsSync(d.location)) {
        notes.push(`dataset ${d.name}: its location ${d.location} is not on this host; it is not mounted`);
        continue;
      }
      // Root mounts it (a grantee's user may not reach the owner's storage), so the location must be
      // what its owner could lend: readable by the person who registered it, with their own rights.
      // Else a member would register another member's folder, or the data folder, and read it here.
      const registrant = unixUserOf(iso.userName ?? '{member}-{user}', { member: d.owner, user: d.registeredBy });
      if (await readableBy(registrant, d.location)) datasets.push(path.resolve(d.location));
      else notes.push(`dataset ${d.name}: ${registrant}, who registered it, cannot read ${d.location}; it is not mounted`);
    }
    const ranks = job.placement.length;
    const slotShare = 1 / nodes.length;
    const cpusPerRank = resources.cpusPerTask ?? Math.max(1, os.availableParallelism() * slotShare);
    const memoryPerRank = (resources.memoryMb ?? Math.floor((os.totalmem() * slotShare) / 2 ** 20)) * 2 ** 20;
    const servicePort = iso.servicePort?.(job) ?? null;
    const plans = job.placement.map((entry, rank) =>
      sandboxPlan({
        jobDir: dir,
        cwd,
        datasets,
        readOnly: iso.readOnly ?? FABRIK_CODE,
        hidden: [dataDir],
        deviceDir: iso.deviceDir ?? '/dev',
        gpus: entry.gpus,
        env: {
          ...safeEnv,
          HOME: dir,
          USER: user.name,
          LOGNAME: user.name,
          ...job.env,
          ...rankVariables(job, entry, rank, port),
        },
      }),
    );
    const name = `fabrik-${tag}-${job.id}`;
    const forward = servicePort === null ? null : { socket: path.join(control, 'service.sock'), port: servicePort };
    // A Unix socket's path has room for 107 bytes.
    if (forward && Buffer.byteLength(forward.socket) > 107)
      throw new JobSetupError(
        job.id,
        forward.socket,
        new Error('the path is too long for a Unix socket; use a shorter data folder'),
      );
    const netns = await step(`network namespace ${name}`, () => createNetns(name));
    let cgroup: JobCgroup | null = null;
    const sandbox: SandboxHandle = { netns: name, cgroup: null, forward };
    try {
      cgroup = await step(`cgroup ${name}`, () =>
        createJobCgroup(iso.probe.cgroups, name, {
          memoryBytes: memoryPerRank * ranks,
          cpus: cpusPerRank * ranks,
          pids: iso.pids ?? 4096,
          devices: [...new Set(plans.flatMap((p) => p.devices))],
        }),
      );
      (sandbox as { cgroup: SandboxHandle['cgroup'] }).cgroup = cgroup && { procs: [...cgroup.procs], dirs: [...cgroup.dirs] };
      const specs = plans.map((plan, rank) => {
        const argsFile = path.join(control, `rank-${rank}.args`);
        const spec: RankSpec = {
          title: `fabrik-rank job=${job.id} rank=${rank}`,
          argv,
          cwd,
          env: {},
          exitFile: path.join(control, `rank-${rank}.exit`),
          sandbox: {
            uid: user.uid,
            gid: user.gid,
            cgroupProcs: cgroup?.procs ?? [],
            oomEvents: cgroup?.oomEvents ?? null,
            stage: STAGE_DIR,
            mounts: plan.stage,
            bwrap: iso.probe.bwrap ?? 'bwrap',
            argsFile,
            infoFile: path.join(control, `rank-${rank}.info`),
            forward: rank === 0 ? forward : null,
            notes: rank === 0 ? notes : [],
          },
        };
        const specFile = path.join(control, `rank-${rank}.json`);
        try {
          // Root's only: bubblewrap's arguments hold the job's environment.
          fs.writeFileSync(argsFile, plan.bwrapArgs.map((a) => `${a}\0`).join(''), { mode: 0o600 });
          fs.writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
        } catch (e) {
          throw new JobSetupError(job.id, specFile, e);
        }
        return { specFile, exitFile: spec.exitFile };
      });
      const handleRanks: LocalHandle['ranks'] = [];
      // Opened here, before any rank runs: a rank already running could otherwise swap a folder
      // of the log's path for a link while the next rank's wrapper opens it.
      const out = await step(output, () => openJobLog(dir, output, user));
      const err =
        error === output
          ? out
          : await step(error, () => openJobLog(dir, error, user)).catch((e) => {
              fs.closeSync(out);
              throw e;
            });
      try {
        // From here on nothing awaits: the ranks' exits cannot be seen before all are launched.
        job.placement.forEach((entry, rank) => {
          const { specFile, exitFile } = specs[rank];
          // nsenter with only --net execs the wrapper in the job's network without forking: the
          // pid watched is the wrapper's.
          const child = spawn('nsenter', [`--net=${netns}`, '--', process.execPath, wrapperPath, specFile], {
            detached: true,
            stdio: ['ignore', out, err],
            cwd: control,
            env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
          });
          handleRanks.push(watchRank(t, child, rank, entry.node, exitFile, path.join(control, 'spawn-errors.log')));
        });
      } finally {
        fs.closeSync(out);
        if (err !== out) fs.closeSync(err);
      }
      t.sandbox = sandbox;
      return { version: 1, boot, startedAt: t.startedAt, dir, ranks: handleRanks, sandbox };
    } catch (err) {
      await cleanUp(job.id, { ...sandbox, cgroup: cgroup && { procs: [...cgroup.procs], dirs: [...cgroup.dirs] } });
      throw err;
    }
  }

  async function launch(t: Tracked): Promise<LocalHandle> {
    if (isolation) return launchSandboxed(t, isolation);
    const { job } = t;
    const dir = path.join(dataDir, 'jobs', job.id);
    const port = await freePort().catch((err) => {
      throw new JobSetupError(job.id, 'a free TCP port for MASTER_PORT', err);
    });
    const { out, err, argv } = await prepare(job, dir);
    const cwd = job.workdir ? path.resolve(dir, job.workdir) : dir;
    const handleRanks: LocalHandle['ranks'] = [];
    try {
      // Every rank's files first: a failure to write one must come before any process runs.
      const specFiles = job.placement.map((entry, rank) => {
        const spec: RankSpec = {
          title: `fabrik-rank job=${job.id} rank=${rank}`,
          argv,
          cwd,
          exitFile: path.join(dir, `rank-${rank}.exit`),
          env: { ...safeEnv, ...job.env, ...rankVariables(job, entry, rank, port) },
        };
        const specFile = path.join(dir, `rank-${rank}.json`);
        try {
          // Readable by the job's user only: the job's environment may hold its secrets.
          fs.writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });
        } catch (e) {
          throw new JobSetupError(job.id, specFile, e);
        }
        return { specFile, exitFile: spec.exitFile };
      });
      // From here on nothing awaits: the ranks' exits cannot be seen before all are launched.
      job.placement.forEach((entry, rank) => {
        const { specFile, exitFile } = specFiles[rank];
        const child = spawn(process.execPath, [wrapperPath, specFile], {
          detached: true,
          stdio: ['ignore', out, err],
          cwd: dir,
          env: {},
        });
        handleRanks.push(watchRank(t, child, rank, entry.node, exitFile, path.resolve(dir, job.error)));
      });
    } finally {
      fs.closeSync(out);
      if (err !== out) fs.closeSync(err);
    }
    return { version: 1, boot, startedAt: t.startedAt, dir, ranks: handleRanks };
  }

  /** Follows a wrapper just spawned; `errorLog`: where a failure to spawn it is told. */
  function watchRank(
    t: Tracked,
    child: ReturnType<typeof spawn>,
    rank: number,
    node: string,
    exitFile: string,
    errorLog: string,
  ): LocalHandle['ranks'][number] {
    const r: Rank = {
      rank,
      node,
      pid: child.pid ?? 0,
      pgid: child.pid ?? 0,
      startTime: child.pid ? processStartTime(child.pid) : null,
      exitFile,
      ours: true,
      gone: false,
      outcome: null,
      goneOrder: 0,
      signalled: null,
    };
    t.ranks.push(r);
    child.unref();
    child.on('error', (e) => {
      // Only a failed spawn of the wrapper itself (fork refused, node binary gone) ends up here.
      // The record is written for the wrapper, so that a recovery reads the same outcome.
      const record: ExitRecord = { code: 127, signal: null, at: now() };
      try {
        fs.appendFileSync(errorLog, `fabrik: cannot start rank ${rank}: ${e.message}\n`);
        fs.writeFileSync(exitFile, JSON.stringify(record));
      } catch (writeErr) {
        logger.error({ err: writeErr, job: t.job.id }, 'cannot record a failed rank');
      }
      if (!closed) rankGone(t, r, record);
    });
    child.on('exit', (code, signal) => {
      if (closed) return;
      const record = readExitRecord(exitFile);
      rankGone(t, r, record ?? { code, signal: signal === null ? null : signal.replace(/^SIG/, ''), at: now() });
    });
    return { rank, node, pid: r.pid, pgid: r.pgid, startTime: r.startTime, exitFile };
  }

  return {
    type: 'executor/local',
    gpuSource,

    nodes: () => nodes,

    endpoint(jobId, port) {
      const forward = jobs.get(jobId)?.sandbox?.forward;
      return forward && forward.port === port ? unixSocketUrl(forward.socket) : null;
    },

    async start(job) {
      if (closed) throw new ExecutorClosedError(job.id);
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(job.id)) throw new InvalidJobError(job.id, 'the id is not a safe folder name');
      checkPlacement(job, nodes);
      if (jobs.has(job.id)) throw new JobAlreadyRunningError(job.id);
      const t = tracked(job, now(), [], false);
      jobs.set(job.id, t);
      let handle: LocalHandle;
      try {
        handle = await launch(t);
      } catch (err) {
        jobs.delete(job.id);
        throw err;
      }
      t.launched = true;
      logger.info({ job: job.id, ranks: handle.ranks.map((r) => r.pid) }, 'job started');
      emit({ kind: 'running', job: job.id, at: t.startedAt });
      armWalltime(t);
      if (t.pendingStopGrace !== null) beginStop(t, 'stopped', t.pendingStopGrace);
      settle(t);
      return handle;
    },

    async stop(jobId, graceSeconds) {
      const t = jobs.get(jobId);
      if (!t || t.finished) return;
      if (!t.launched) t.pendingStopGrace = Math.min(t.pendingStopGrace ?? Infinity, graceSeconds);
      else beginStop(t, 'stopped', graceSeconds);
    },

    async recover(list) {
      const found: string[] = [];
      const exited: { job: string; exitCode: number | null; at: number }[] = [];
      const lost: string[] = [];
      const currentBoot = bootId();
      for (const { job, handle } of list) {
        if (jobs.has(job.id)) {
          found.push(job.id);
          continue;
        }
        const parsed = HandleSchema.safeParse(handle);
        if (!parsed.success) {
          // An empty handle: the server stopped before this executor answered; nothing to look for.
          if (Object.keys(handle).length > 0)
            logger.warn({ job: job.id, problem: parsed.error.message }, 'unreadable handle: job lost');
          lost.push(job.id);
          continue;
        }
        const h = parsed.data;
        const sameBoot = h.boot === currentBoot;
        const ranks: Rank[] = h.ranks.map((hr) => {
          const alive = sameBoot && isSameProcess(hr.pid, hr.startTime);
          return {
            ...hr,
            ours: false,
            gone: !alive,
            outcome: alive ? null : readOutcome(hr.exitFile),
            goneOrder: 0,
            signalled: null,
          };
        });
        if (ranks.every((r) => r.gone)) {
          // They ended unobserved: the exit records' own times say which rank failed first.
          ranks.sort((a, b) => (a.outcome?.at ?? Infinity) - (b.outcome?.at ?? Infinity) || a.rank - b.rank);
          ranks.forEach((r, i) => (r.goneOrder = i + 1));
          const verdict = gangVerdict(ranks);
          if (h.sandbox) await cleanUp(job.id, h.sandbox);
          if (verdict.kind === 'lost') {
            logger.warn({ job: job.id, reason: verdict.reason }, 'job lost');
            lost.push(job.id);
          } else {
            const at = Math.max(...ranks.map((r) => r.outcome?.at ?? -Infinity));
            exited.push({ job: job.id, exitCode: verdict.exitCode, at: Number.isFinite(at) ? at : now() });
          }
          continue;
        }
        for (const r of ranks) if (r.gone) r.goneOrder = ++goneCounter;
        const t = tracked(job, h.startedAt, ranks, true, h.sandbox ?? null);
        jobs.set(job.id, t);
        found.push(job.id);
        armWalltime(t);
        startPolling();
        // A rank that failed while nobody watched still brings the gang down.
        settle(t);
      }
      if (isolation) await sweepSandboxes(new Set(list.map((x) => x.job.id)));
      logger.info({ found: found.length, exited: exited.length, lost: lost.length }, 'recovered jobs');
      return { found, exited, lost } satisfies RecoveryResult;
    },

    onEvent(listener) {
      listeners.add(listener);
    },

    async close() {
      closed = true;
      if (poller) clearInterval(poller);
      poller = null;
      for (const t of jobs.values()) {
        t.cancelKill?.();
        t.cancelWalltime?.();
      }
      jobs.clear();
    },
  };
}

type Verdict = { kind: 'exited'; exitCode: number | null; signal: string | null } | { kind: 'lost'; reason: string };

/**
 * The gang's outcome from its ranks, all gone: the first rank (in the order they were seen to end)
 * that failed names it, since the others were stopped because of it; a rank that vanished without
 * a record before any failure leaves the job unaccounted for.
 */
function gangVerdict(ranks: readonly Rank[]): Verdict {
  const ordered = [...ranks].sort((a, b) => a.goneOrder - b.goneOrder);
  for (const r of ordered) {
    if (r.outcome === null) {
      return { kind: 'lost', reason: `rank ${r.rank} (pid ${r.pid}) ended without recording its exit status` };
    }
    if (r.outcome.code !== 0) return { kind: 'exited', exitCode: r.outcome.code, signal: r.outcome.signal };
  }
  return { kind: 'exited', exitCode: 0, signal: null };
}

/** Where the executor notes the last signal it sent a rank (see signalRank). */
function signalNoteOf(exitFile: string): string {
  return `${exitFile}.signalled`;
}

/** How a rank that is gone ended: its wrapper's record, else the signal that killed the wrapper too. */
function readOutcome(exitFile: string): ExitRecord | null {
  return readExitRecord(exitFile) ?? readExitRecord(signalNoteOf(exitFile));
}

function readExitRecord(file: string): ExitRecord | null {
  try {
    const parsed = ExitRecordSchema.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** `<host>-0 … <host>-(k-1)`, each with a contiguous share of the GPUs (the first slots take the remainder). */
function splitIntoSlots(host: string, k: number, gpus: readonly number[], domain: string, zone: string): ExecNode[] {
  const base = Math.floor(gpus.length / k);
  const extra = gpus.length % k;
  const slots: ExecNode[] = [];
  let next = 0;
  for (let i = 0; i < k; i++) {
    const count = base + (i < extra ? 1 : 0);
    slots.push({ name: `${host}-${i}`, gpus: gpus.slice(next, next + count), domain, zone });
    next += count;
  }
  return slots;
}

/**
 * Opens (appends to) a log inside the job's folder, which belongs to the job's user: as root, so
 * nothing on the way may be a link the job left there (a requeued job ran before), and a file
 * hard-linked from elsewhere is refused. A log it creates is the job's user's.
 */
async function openJobLog(dir: string, file: string, user: { uid: number; gid: number }): Promise<number> {
  const rel = path.relative(dir, file).split(path.sep);
  let at = dir;
  for (const part of rel.slice(0, -1)) {
    at = path.join(at, part);
    try {
      await fsp.mkdir(at, { mode: 0o700 });
      await fsp.chown(at, user.uid, user.gid);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!(await fsp.lstat(at)).isDirectory()) throw new Error(`${at} is not a folder (a link?)`);
  }
  const fd = fs.openSync(
    file,
    fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
    0o600,
  );
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.nlink !== 1) throw new Error(`${file} is not a plain file of its own (a link?)`);
    if (st.uid === 0) fs.fchownSync(fd, user.uid, user.gid);
    return fd;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** A URL for an HTTP server behind a Unix socket (the convention of requests-unixsocket and Docker's clients). */
export function unixSocketUrl(socket: string): string {
  return `http+unix://${encodeURIComponent(socket)}`;
}

/** What a rank is told about its gang (the names torchrun and most launchers read) and its GPUs. */
function rankVariables(job: ExecJob, entry: ExecJob['placement'][number], rank: number, port: number): Record<string, string> {
  return {
    // Exactly the GPUs placed here; an empty value hides all of them, which unset would not.
    CUDA_VISIBLE_DEVICES: entry.gpus.join(','),
    FABRIK_JOB_ID: job.id,
    FABRIK_JOB_NAME: job.name,
    RANK: String(rank),
    WORLD_SIZE: String(job.placement.length),
    LOCAL_RANK: String(job.placement.slice(0, rank).filter((e) => e.node === entry.node).length),
    NODE_RANK: String(rank),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
  };
}

/** A TCP port free right now on the loopback, for the gang's rendezvous (MASTER_PORT). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Whether Unix user `name` can read `location` (and enter it, for a folder) with its own rights,
 * tried as that user: `test` follows the real path with the user's permissions at every step. A
 * user that does not exist here can read nothing.
 */
async function readableBy(name: string, location: string): Promise<boolean> {
  const user = await lookUpUnixUser(name);
  if (!user) return false;
  const isDir = fs.statSync(location).isDirectory();
  const args = ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', 'test', '-r', location];
  if (isDir) args.push('-a', '-x', location);
  return new Promise((resolve) => execFile('setpriv', args, (err) => resolve(!err)));
}

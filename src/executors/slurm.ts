// The Slurm executor: Fabrik decides where a job runs, a real Slurm cluster runs it, through
// slurmrestd's v0.0.38 API. A job becomes one batch job on exactly the nodes Fabrik chose, tagged
// `fabrik:<installation>:<id>` in its comment so that a restart between Slurm's acceptance and
// Fabrik's record of the handle adopts the job instead of submitting a second one. One poll of
// `GET /jobs` (only while something is tracked) turns Slurm's states into events.
//
// What v0.0.38 cannot express, and how this file copes:
// - `required_nodes` is a disabled key there. Nodes are pinned with `constraints` instead, which
//   works when every node carries its own name as a feature (`Features=node2,...` in slurm.conf);
//   without those features the job gets the right node count but Slurm picks the nodes.
// - Per-node GPU counts must be equal (one `gres` for all nodes): the largest count is asked for.
//   Which GPU indices a rank gets is Slurm's choice (it sets CUDA_VISIBLE_DEVICES).
// - time limits are whole minutes: the walltime (in seconds) is enforced by this executor's own
//   timer from Slurm's start time; Slurm's limit, rounded up with the grace, is the backstop.
// - Signals go through `DELETE /job/{id}?signal=<number>` (names are not parsed by 22.05's
//   handler: the job is cancelled instead), which signals the whole job. A multi-node job runs
//   its ranks under srun, which kills its step at once on TERM, INT or HUP; those jobs are
//   signalled with `scancel` (steps only, not srun), so every rank gets its grace period.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  type ExecutorLogger,
  ExecutorClosedError,
  InvalidJobError,
  InvalidPlacementError,
  Listeners,
  checkPlacement,
  defaultNow,
  realScheduler,
  silentLogger,
} from './common.js';
import type { ExecHandle, ExecJob, ExecNode, Executor, ExecutorEvent, ExitReason, NodeHealth } from './executor.js';
import { type SlurmIdentities, type SlurmIdentity } from './slurm-identity.js';
import { API, ESLURM_INVALID_JOB_ID, ESLURM_TRANSITION_STATE_NO_UPDATE, SlurmRestClient, SlurmRestError } from './slurm-rest.js';

export { SlurmRestError } from './slurm-rest.js';

export interface SlurmExecutorOptions {
  readonly url?: string;
  readonly jwtKeyFile?: string;
  /**
   * Who a job runs as: the member's Unix user, its Slurm account and the project's wckey (made
   * when missing). Absent: every job runs as root under the cluster's default association.
   */
  readonly identity?: SlurmIdentities | null;
  readonly partition?: string | null;
  readonly pollMs?: number;
  readonly now?: () => number;
  readonly logger?: ExecutorLogger;
  /**
   * This Fabrik installation (the store's id): Slurm jobs are tagged `fabrik:<installation>:<job>`,
   * so that two Fabriks in front of one cluster, or a new data folder, never take each other's jobs
   * for their own. Absent: `fabrik:<job>`.
   */
  readonly installation?: string;
  /** Fabrik node name → Slurm node name; identity when absent. */
  readonly nodeMap?: Readonly<Record<string, string>>;
}

/** One Slurm job as v0.0.38 lists it, the fields this file reads. */
export interface SlurmJobInfo {
  readonly job_id: number;
  readonly job_state: string;
  readonly comment?: string;
  /** v0.0.38: the raw wait status (exit code << 8 | signal); later versions: an object. */
  readonly exit_code?: unknown;
  readonly start_time?: number;
  readonly end_time?: number;
  readonly nodes?: string;
  readonly user_name?: string;
}

export interface SlurmNodeInfo {
  readonly name: string;
  readonly gres?: string;
  readonly features?: string | readonly string[];
  /** v0.0.38: `idle`, `mixed`, `allocated`, `down`, … with flags such as DRAIN or NOT_RESPONDING apart. */
  readonly state?: string;
  readonly state_flags?: readonly string[];
  readonly reason?: string;
  /** NodeAddr: where the node is reached on the cluster network. */
  readonly address?: string;
}

/**
 * Slurm's view of a node in Fabrik's words. Drained, draining or not responding: no new work
 * (Fabrik's `draining`, which lets running jobs finish); down: failed (Slurm ends its jobs with
 * NODE_FAIL, Fabrik requeues them); maintenance reservations: `maintenance`.
 */
export function slurmNodeHealth(n: SlurmNodeInfo): NodeHealth['state'] {
  const state = (n.state ?? '').toLowerCase();
  const flags = new Set((n.state_flags ?? []).map((f) => f.toUpperCase()));
  if (state === 'down') return 'down';
  if (flags.has('MAINTENANCE')) return 'maintenance';
  if (
    state.startsWith('drain') ||
    flags.has('DRAIN') ||
    flags.has('DRAINING') ||
    flags.has('DRAINED') ||
    flags.has('NOT_RESPONDING')
  )
    return 'draining';
  return 'up';
}

const run = promisify(execFile);

const DEFAULT_URL = 'http://127.0.0.1:6820';
const DEFAULT_KEY = '/var/spool/slurm/ctld/jwt_hs256.key';

/** States after which Slurm will not run the job again. */
const FINISHED = new Set([
  'COMPLETED',
  'FAILED',
  'OUT_OF_MEMORY',
  'CANCELLED',
  'TIMEOUT',
  'DEADLINE',
  'NODE_FAIL',
  'BOOT_FAIL',
  'PREEMPTED',
  'SPECIAL_EXIT',
]);
/** Not started yet: no event. Anything else unfinished (RUNNING, COMPLETING, SUSPENDED…) counts as running. */
const WAITING = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD']);

const SIGNAL_NAMES = new Map(Object.entries(os.constants.signals).map(([name, num]) => [num, name.replace(/^SIG/, '')]));

/** What the comment of each Slurm job of this installation starts with (12 hex digits of its id suffice). */
export function jobTagPrefix(installation: string | undefined): string {
  return installation ? `fabrik:${installation.replace(/-/g, '').slice(0, 12)}:` : 'fabrik:';
}

/** The GPU count of a `gres` string: `gpu:8`, `gpu:a100:8`, `gpu:8(S:0-1)`, among other gres. */
export function parseGpuCount(gres: string | undefined): number {
  let total = 0;
  for (const item of (gres ?? '').split(',')) {
    const m = /^gpu(?::[^:(]+)?:(\d+)/.exec(item.trim());
    if (m) total += Number(m[1]);
  }
  return total;
}

/** Exit code and signal from v0.0.38's raw wait status, or a later version's `{status, return_code, signal}`. */
export function parseExitCode(raw: unknown): { exitCode: number | null; signal: string | null } {
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) {
    const sig = raw & 0x7f;
    if (sig !== 0) return { exitCode: null, signal: SIGNAL_NAMES.get(sig) ?? String(sig) };
    return { exitCode: (raw >> 8) & 0xff, signal: null };
  }
  if (raw && typeof raw === 'object') {
    const o = raw as { return_code?: unknown; signal?: { name?: unknown; id?: unknown } | unknown };
    const s = o.signal as { name?: unknown; id?: unknown } | undefined;
    const sigName = typeof s?.name === 'string' && s.name !== '' ? s.name.replace(/^SIG/, '') : null;
    const sigId = typeof s?.id === 'number' && s.id > 0 ? (SIGNAL_NAMES.get(s.id) ?? String(s.id)) : null;
    if (sigName ?? sigId) return { exitCode: null, signal: sigName ?? sigId };
    const rc = typeof o.return_code === 'number' ? o.return_code : Number((o.return_code as { number?: unknown })?.number);
    if (Number.isInteger(rc)) return { exitCode: rc, signal: null };
  }
  return { exitCode: null, signal: null };
}

/** POSIX single quotes: the only character to escape is the quote itself. */
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

const SIGNAL_NUMBERS: Record<ExecJob['signal'] | 'KILL', number> = {
  TERM: os.constants.signals.SIGTERM,
  USR1: os.constants.signals.SIGUSR1,
  USR2: os.constants.signals.SIGUSR2,
  INT: os.constants.signals.SIGINT,
  HUP: os.constants.signals.SIGHUP,
  KILL: os.constants.signals.SIGKILL,
};

/**
 * The batch script: sets the rank variables from the node it runs on (ranks in the placement's
 * order, not Slurm's sorted one), then runs the job. One node: directly in the batch shell, so
 * that the job's signal reaches it as it would locally. Several: one srun task per node.
 */
export function batchScript(job: ExecJob, slurmNodes: readonly string[]): string {
  const body = job.command ? `exec ${job.command.map(quote).join(' ')}` : (job.script ?? '');
  const rankCases = slurmNodes.map((n, i) => `  ${quote(n)}) RANK=${i} ;;`).join('\n');
  const program = [
    'case "$SLURMD_NODENAME" in',
    rankCases,
    '  *) RANK="${SLURM_PROCID:-0}" ;;',
    'esac',
    `export RANK NODE_RANK="$RANK" LOCAL_RANK=0 WORLD_SIZE=${slurmNodes.length}`,
    body,
  ].join('\n');
  const head = [
    '#!/bin/bash',
    `# Fabrik job ${job.id} (${slurmNodes.length} node(s)).`,
    `export FABRIK_JOB_ID=${quote(job.id)} MASTER_ADDR=${quote(slurmNodes[0])}`,
    // A port from the Slurm job id: ranks agree on it without talking, and concurrent jobs differ.
    'export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))',
  ];
  if (slurmNodes.length === 1) return `${head.join('\n')}\n${program}\n`;
  return [
    ...head,
    `export FABRIK_RANK_PROGRAM=${quote(program)}`,
    `exec srun --nodes=${slurmNodes.length} --ntasks=${slurmNodes.length} --ntasks-per-node=1 --kill-on-bad-exit=1 /bin/bash -c "$FABRIK_RANK_PROGRAM"`,
    '',
  ].join('\n');
}

interface Tracked {
  job: ExecJob;
  slurmJobId: number;
  user: string;
  runningReported: boolean;
  /** Set by stop or the walltime timer: how a later CANCELLED (or any end) is reported. */
  endReason: ExitReason | null;
  cancelTimers: (() => void)[];
  walltimeArmed: boolean;
}

export interface SlurmExecutor extends Executor {
  /** The Slurm jobs tagged with this Fabrik job, any state Slurm still lists (for checks and tests). */
  slurmJobsFor(jobId: string): Promise<SlurmJobInfo[]>;
}

/** Slurm's node list, to open several executors over one fetch (`openSlurmExecutor`). */
export async function fetchSlurmNodes(options: SlurmExecutorOptions = {}): Promise<SlurmNodeInfo[]> {
  const client = new SlurmRestClient({ url: options.url ?? DEFAULT_URL, jwtKeyFile: options.jwtKeyFile ?? DEFAULT_KEY });
  return (await client.request<{ nodes: SlurmNodeInfo[] }>('GET', `${API}/nodes`, 'root')).nodes;
}

/** Slurm's features, a comma-separated string in v0.0.38 (a list in later versions). */
export function featureList(f: string | readonly string[] | undefined): string[] {
  const list = typeof f === 'string' ? f.split(',') : [...(f ?? [])];
  return list.map((s) => s.trim()).filter((s) => s !== '' && s !== '(null)');
}

/** Fetches the nodes, then opens the executor. */
export async function createSlurmExecutor(options: SlurmExecutorOptions = {}): Promise<SlurmExecutor> {
  return openSlurmExecutor(options, await fetchSlurmNodes(options));
}

/** The executor over nodes already fetched (by `createSlurmExecutor`, or once for many instances). */
export function openSlurmExecutor(options: SlurmExecutorOptions, slurmNodes: readonly SlurmNodeInfo[]): SlurmExecutor {
  const client = new SlurmRestClient({ url: options.url ?? DEFAULT_URL, jwtKeyFile: options.jwtKeyFile ?? DEFAULT_KEY });
  const logger = options.logger ?? silentLogger;
  const now = options.now ?? defaultNow;
  const pollMs = options.pollMs ?? 500;
  const identity = options.identity ?? null;
  const tag = jobTagPrefix(options.installation);
  const tagOf = (jobId: string) => `${tag}${jobId}`;
  const userOf = (job: ExecJob) => identity?.userOf(job) ?? 'root';
  const nodeMap = options.nodeMap ?? {};
  const toSlurm = (fabrik: string) => nodeMap[fabrik] ?? fabrik;
  const toFabrik = new Map(Object.entries(nodeMap).map(([f, s]) => [s, f]));
  const selfFeatured = new Set(slurmNodes.filter((n) => featureList(n.features).includes(n.name)).map((n) => n.name));
  const nodes: ExecNode[] = slurmNodes.map((n) => {
    const count = parseGpuCount(n.gres);
    return {
      name: toFabrik.get(n.name) ?? n.name,
      gpus: Array.from({ length: count }, (_, i) => i),
      domain: featureList(n.features).filter((f) => f !== n.name)[0] ?? 'slurm',
      zone: 'general',
      ...(n.address ? { address: n.address } : {}),
    };
  });

  const listeners = new Listeners(logger);
  const tracked = new Map<string, Tracked>();
  let closed = false;
  let pollTimer: NodeJS.Timeout | null = null;
  let polling = false;

  const emit = (e: ExecutorEvent) => listeners.emit(e);

  async function listJobs(user = 'root'): Promise<SlurmJobInfo[]> {
    return (await client.request<{ jobs: SlurmJobInfo[] }>('GET', `${API}/jobs`, user)).jobs;
  }

  /** The job, or null when Slurm does not know it (never submitted, or purged after MinJobAge). */
  async function getJob(id: number, user: string): Promise<SlurmJobInfo | null> {
    try {
      const res = await client.request<{ jobs: SlurmJobInfo[] }>('GET', `${API}/job/${id}`, user);
      return res.jobs[0] ?? null;
    } catch (err) {
      if (err instanceof SlurmRestError && err.slurmErrorNumbers.includes(ESLURM_INVALID_JOB_ID)) return null;
      throw err;
    }
  }

  /** Signals (or with KILL, cancels) the job; false when Slurm no longer knows it or it already ended. */
  async function signalJob(t: Tracked, signal: keyof typeof SIGNAL_NUMBERS): Promise<void> {
    if (signal !== 'KILL' && t.job.placement.length > 1) return signalRanks(t, signal);
    const query = signal === 'KILL' ? '' : `?signal=${SIGNAL_NUMBERS[signal]}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await client.request('DELETE', `${API}/job/${t.slurmJobId}${query}`, t.user);
        return;
      } catch (err) {
        if (!(err instanceof SlurmRestError)) throw err;
        // A job that is still launching refuses signals for a moment: try again shortly.
        if (err.slurmErrorNumbers.includes(ESLURM_TRANSITION_STATE_NO_UPDATE) && attempt < 20 && !closed) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        // Already finished or purged: the poll reports how it ended.
        if (err.slurmErrorNumbers.some((n) => n === ESLURM_INVALID_JOB_ID || n === 2021 /* already done */)) return;
        throw err;
      }
    }
  }

  /**
   * A gang's ranks run in an srun step, and srun answers TERM, INT or HUP by killing that step at
   * once: no grace. slurmrestd v0.0.38 signals the whole job, srun included (it runs in the batch
   * step); `scancel` without `--full` signals the job's steps but not the batch step, so the ranks
   * get the signal and srun does not. (Needs Slurm's client on this host, as sacctmgr does.)
   */
  async function signalRanks(t: Tracked, signal: ExecJob['signal']): Promise<void> {
    try {
      await run('scancel', ['--signal', signal, String(t.slurmJobId)], { timeout: 30_000 });
    } catch (err) {
      const e = err as Error & { stderr?: string };
      // Already over: the poll reports how it ended.
      if (/already completing or completed|Invalid job id/i.test(e.stderr ?? '')) return;
      throw new Error(`scancel --signal ${signal} ${t.slurmJobId}: ${(e.stderr ?? '').trim() || e.message}`);
    }
  }

  /** Signal now, cancel after the grace period; what the end is reported as is fixed here. */
  function endJob(t: Tracked, reason: ExitReason, graceSeconds: number): Promise<void> {
    if (t.endReason !== null) return Promise.resolve();
    t.endReason = reason;
    const cancel = () =>
      signalJob(t, 'KILL').catch((err: unknown) => logger.error({ err, job: t.job.id }, 'slurm: cancel failed'));
    if (graceSeconds <= 0) return cancel();
    t.cancelTimers.push(realScheduler(() => void cancel(), graceSeconds * 1000));
    return signalJob(t, t.job.signal).catch((err: unknown) => {
      logger.warn({ err, job: t.job.id }, 'slurm: signal failed; cancelling now');
      return cancel();
    });
  }

  function armWalltime(t: Tracked, startTime: number): void {
    if (t.walltimeArmed) return;
    t.walltimeArmed = true;
    const delayMs = (startTime + t.job.walltimeSeconds - now()) * 1000;
    t.cancelTimers.push(
      realScheduler(() => {
        if (tracked.get(t.job.id) === t) void endJob(t, 'timeout', t.job.gracePeriodSeconds);
      }, delayMs),
    );
  }

  function untrack(t: Tracked): void {
    for (const c of t.cancelTimers) c();
    if (tracked.get(t.job.id) === t) tracked.delete(t.job.id);
  }

  /** Turns one observation of a tracked job into events; true when it ended. */
  function observe(t: Tracked, info: SlurmJobInfo | null): void {
    const at = now();
    if (info === null) {
      untrack(t);
      emit({ kind: 'lost', job: t.job.id, at, reason: `Slurm job ${t.slurmJobId} is unknown to Slurm (purged?)` });
      return;
    }
    const state = info.job_state;
    if (WAITING.has(state)) {
      if (!t.runningReported) return;
      // It ran and is waiting again: Slurm requeued it itself (a node failed). Fabrik decides where
      // it runs next, so Slurm's copy is cancelled and the job is reported lost (Fabrik requeues it).
      untrack(t);
      void signalJob(t, 'KILL').catch((err: unknown) =>
        logger.warn({ err, job: t.job.id }, 'slurm: cancel of a requeued job failed'),
      );
      emit({ kind: 'lost', job: t.job.id, at, reason: `Slurm requeued job ${t.slurmJobId} (${state}): a node failed` });
      return;
    }
    const startAt = info.start_time && info.start_time > 0 ? info.start_time : at;
    if (!t.runningReported) {
      t.runningReported = true;
      emit({ kind: 'running', job: t.job.id, at: startAt });
      logger.info({ job: t.job.id, slurmJobId: t.slurmJobId, nodes: info.nodes }, 'slurm: job running');
    }
    if (!FINISHED.has(state)) {
      armWalltime(t, startAt);
      return;
    }
    untrack(t);
    const endAt = Math.max(info.end_time && info.end_time > 0 ? info.end_time : at, startAt);
    if (state === 'NODE_FAIL' || state === 'BOOT_FAIL' || state === 'PREEMPTED' || state === 'SPECIAL_EXIT') {
      emit({ kind: 'lost', job: t.job.id, at: endAt, reason: `Slurm job ${t.slurmJobId} ended ${state}` });
      return;
    }
    const { exitCode, signal } = parseExitCode(info.exit_code);
    if (state === 'CANCELLED' || t.endReason !== null) {
      // Cancelled by hand (scancel) counts as stopped too: nobody here asked for it, but it did not end by itself.
      const reason = t.endReason ?? 'stopped';
      const code = state === 'COMPLETED' || state === 'FAILED' ? exitCode : null;
      emit({
        kind: 'exited',
        job: t.job.id,
        at: endAt,
        exitCode: code,
        signal: code === null ? (signal ?? 'TERM') : signal,
        reason,
      });
      return;
    }
    if (state === 'TIMEOUT' || state === 'DEADLINE') {
      emit({ kind: 'exited', job: t.job.id, at: endAt, exitCode: null, signal: signal ?? 'TERM', reason: 'timeout' });
      return;
    }
    emit({ kind: 'exited', job: t.job.id, at: endAt, exitCode, signal, reason: 'completed' });
  }

  async function poll(): Promise<void> {
    if (polling || closed || tracked.size === 0) return;
    polling = true;
    try {
      const byId = new Map((await listJobs()).map((j) => [j.job_id, j]));
      for (const t of [...tracked.values()]) {
        // Not listed: it may have been purged; ask once by id before declaring it lost.
        const info = byId.get(t.slurmJobId) ?? (await getJob(t.slurmJobId, t.user));
        if (!closed) observe(t, info);
      }
    } catch (err) {
      logger.warn({ err }, 'slurm: poll failed; trying again');
    } finally {
      polling = false;
      schedulePoll();
    }
  }

  function schedulePoll(): void {
    if (closed || pollTimer || tracked.size === 0) return;
    pollTimer = setTimeout(() => {
      pollTimer = null;
      void poll();
    }, pollMs);
    pollTimer.unref();
  }

  function track(job: ExecJob, slurmJobId: number, user: string): Tracked {
    const t: Tracked = { job, slurmJobId, user, runningReported: false, endReason: null, cancelTimers: [], walltimeArmed: false };
    tracked.set(job.id, t);
    schedulePoll();
    return t;
  }

  function submission(job: ExecJob, who: SlurmIdentity | null): { body: unknown; slurmNames: string[] } {
    const slurmNames = job.placement.map((p) => toSlurm(p.node));
    const gpus = Math.max(...job.placement.map((p) => p.gpus.length));
    if (new Set(job.placement.map((p) => p.gpus.length)).size > 1) {
      logger.warn({ job: job.id }, `slurm: unequal GPU counts per node; asking ${gpus} on each`);
    }
    const pinned = slurmNames.every((n) => selfFeatured.has(n));
    if (!pinned)
      logger.warn({ job: job.id, nodes: slurmNames }, 'slurm: nodes lack their own name as a feature; Slurm picks the nodes');
    const body = {
      job: {
        name: job.name,
        comment: tagOf(job.id),
        nodes: slurmNames.length,
        tasks: slurmNames.length,
        tasks_per_node: 1,
        ...(pinned ? { constraints: slurmNames.join('|') } : {}),
        ...(gpus > 0 ? { gres: `gpu:${gpus}` } : {}),
        // Minutes; a backstop behind this executor's own walltime timer, which allows the grace period.
        time_limit: Math.max(1, Math.ceil((job.walltimeSeconds + job.gracePeriodSeconds) / 60) + 1),
        environment: { ...job.env, PATH: '/usr/bin:/bin', FABRIK_JOB_ID: job.id },
        current_working_directory: job.workdir ?? path.dirname(job.output),
        standard_output: job.output,
        standard_error: job.error,
        ...(options.partition ? { partition: options.partition } : {}),
        ...(who ? { account: who.account, wckey: who.wckey, qos: who.qos } : {}),
      },
      script: batchScript(job, slurmNames),
    };
    return { body, slurmNames };
  }

  return {
    type: 'executor/slurm',
    nodes: () => nodes,

    async nodeHealth() {
      const fromSlurm = new Map(Object.entries(nodeMap).map(([fabrik, slurm]) => [slurm, fabrik]));
      const list = (await client.request<{ nodes: SlurmNodeInfo[] }>('GET', `${API}/nodes`, 'root')).nodes;
      return list.map((n) => ({ node: fromSlurm.get(n.name) ?? n.name, state: slurmNodeHealth(n), reason: n.reason || null }));
    },

    async slurmJobsFor(jobId) {
      return (await listJobs()).filter((j) => j.comment === tagOf(jobId));
    },

    async start(job) {
      if (closed) throw new ExecutorClosedError(job.id);
      if ((job.command === null) === (job.script === null))
        throw new InvalidJobError(job.id, 'exactly one of command and script');
      if (job.command?.length === 0) throw new InvalidJobError(job.id, 'empty command');
      checkPlacement(job, nodes);
      if (job.placement.length > 1 && new Set(job.placement.map((p) => p.node)).size !== job.placement.length) {
        throw new InvalidPlacementError(job.id, 'a node given twice (Slurm runs one task per node)');
      }
      const mine = tracked.get(job.id);
      if (mine) return { slurmJobId: mine.slurmJobId };
      const who = identity ? await identity.forJob(job) : null;
      const user = who?.user ?? 'root';
      // The duplicate guard: a restart may have lost the handle of a job Slurm accepted.
      const existing = (await listJobs(user)).find((j) => j.comment === tagOf(job.id) && !FINISHED.has(j.job_state));
      if (existing) {
        logger.info({ job: job.id, slurmJobId: existing.job_id }, 'slurm: adopting the job submitted before');
        track(job, existing.job_id, user);
        return { slurmJobId: existing.job_id };
      }
      // Slurm fails a batch job whose log folder is missing (FAILED, 0:53). Fabrik's host and the
      // nodes share the file system (a DGX SuperPOD's Lustre or NFS home; here one machine), so the
      // folders are made here; a path the server cannot create is left for Slurm to report.
      // The job's user writes its logs: folders made here for it are its own.
      for (const file of new Set([job.output, job.error])) {
        const dir = path.dirname(file);
        const first = await fs.promises.mkdir(dir, { recursive: true }).catch(() => undefined);
        if (first && who && process.getuid?.() === 0) await chownDown(first, dir, who.uid, who.gid);
      }
      const { body } = submission(job, who);
      let res: { job_id: number };
      try {
        res = await client.request<{ job_id: number }>('POST', `${API}/job/submit`, user, body);
      } catch (err) {
        // A refusal (nodes not available, a hold) may come with a job Slurm made and keeps
        // pending: it is cancelled, or it would run later on nodes Fabrik no longer chose.
        const made = err instanceof SlurmRestError ? Number(err.body?.job_id) : NaN;
        if (Number.isInteger(made) && made > 0)
          await client.request('DELETE', `${API}/job/${made}`, user).catch((e: unknown) => {
            logger.warn({ err: e, job: job.id, slurmJobId: made }, 'slurm: could not cancel the job of a refused submit');
          });
        throw err;
      }
      logger.info({ job: job.id, slurmJobId: res.job_id }, 'slurm: submitted');
      track(job, res.job_id, user);
      return { slurmJobId: res.job_id };
    },

    async stop(jobId, graceSeconds) {
      const t = tracked.get(jobId);
      if (!t) return;
      await endJob(t, 'stopped', graceSeconds);
    },

    async recover(list) {
      const result: { found: string[]; exited: { job: string; exitCode: number | null; at: number }[]; lost: string[] } = {
        found: [],
        exited: [],
        lost: [],
      };
      // Jobs without a handle: the server stopped between the placement and the executor's answer.
      // Slurm may have accepted them: the tag finds them, so they are not submitted a second time.
      let tagged: Map<string, SlurmJobInfo> | null = null;
      for (const { job, handle } of list) {
        let id = slurmJobIdOf(handle);
        if (id === null) {
          tagged ??= latestByTag(await listJobs(), tag);
          id = tagged.get(job.id)?.job_id ?? null;
        }
        if (id === null) {
          result.lost.push(job.id);
          continue;
        }
        const user = userOf(job);
        const info = await getJob(id, user);
        if (info === null || (info.comment !== undefined && info.comment !== tagOf(job.id))) {
          result.lost.push(job.id);
        } else if (FINISHED.has(info.job_state)) {
          if (['NODE_FAIL', 'BOOT_FAIL', 'PREEMPTED', 'SPECIAL_EXIT'].includes(info.job_state)) {
            result.lost.push(job.id);
          } else {
            // Only COMPLETED and FAILED carry the program's own exit code: a job cancelled or
            // timed out while nobody watched did not succeed, whatever its exit code field says.
            const exitCode =
              info.job_state === 'COMPLETED' || info.job_state === 'FAILED' ? parseExitCode(info.exit_code).exitCode : null;
            result.exited.push({ job: job.id, exitCode, at: info.end_time || now() });
          }
        } else {
          const t = track(job, id, user);
          if (!WAITING.has(info.job_state)) {
            // Its running event was reported by the instance that started it.
            t.runningReported = true;
            armWalltime(t, info.start_time || now());
          }
          result.found.push(job.id);
        }
      }
      return result;
    },

    onEvent: (listener) => listeners.add(listener),

    async close() {
      closed = true;
      if (pollTimer) clearTimeout(pollTimer);
      pollTimer = null;
      // Pending cancels stay undone: jobs keep running for the next instance, which stops them again.
      for (const t of tracked.values()) for (const c of t.cancelTimers) c();
      tracked.clear();
    },
  };
}

/** Gives `uid:gid` every folder from `first` (the first one mkdir made) down to `leaf`. */
async function chownDown(first: string, leaf: string, uid: number, gid: number): Promise<void> {
  for (let dir = leaf; ; dir = path.dirname(dir)) {
    await fs.promises.chown(dir, uid, gid);
    if (dir === first || path.dirname(dir) === dir) return;
  }
}

/** Fabrik job id → its newest Slurm job, from the comments that start with `tag`. */
function latestByTag(jobs: readonly SlurmJobInfo[], tag: string): Map<string, SlurmJobInfo> {
  const out = new Map<string, SlurmJobInfo>();
  for (const j of jobs) {
    if (!j.comment?.startsWith(tag)) continue;
    const id = j.comment.slice(tag.length);
    const seen = out.get(id);
    if (!seen || seen.job_id < j.job_id) out.set(id, j);
  }
  return out;
}

function slurmJobIdOf(handle: ExecHandle): number | null {
  const id = handle.slurmJobId;
  return typeof id === 'number' && Number.isInteger(id) && id > 0 ? id : null;
}

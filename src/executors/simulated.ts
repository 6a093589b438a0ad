// The simulated executor: a digital twin of a big site. It runs nothing: a job "runs" for the
// seconds its env asks for (FABRIK_SIMULATED_SECONDS, else its walltime), then ends with the exit
// code its env asks for (FABRIK_SIMULATED_EXIT_CODE, else 0). So the whole control plane (API,
// store, scheduler, recovery) can be exercised against 1,152 GPUs from a laptop, in virtual time
// when a test brings its own clock and scheduler.
import fs from 'node:fs';
import path from 'node:path';
import type { Site } from '../core/site.js';
import {
  type Scheduler,
  ExecutorClosedError,
  InvalidJobError,
  JobAlreadyRunningError,
  Listeners,
  checkPlacement,
  defaultNow,
  realScheduler,
  silentLogger,
} from './common.js';
import type { ExecJob, ExecNode, Executor, ExitReason, RecoveryResult } from './executor.js';

export interface SimulatedExecutorOptions {
  readonly nodes: readonly ExecNode[];
  /** Seconds since the epoch (default: the system clock). */
  readonly now?: () => number;
  /** Runs `fn` after `ms` of the same clock; returns a cancel function (default: setTimeout). */
  readonly schedule?: Scheduler;
}

/** The site's nodes as executor nodes: device indices 0…gpus-1, the rack as NVLink domain. */
export function simulatedNodesFor(site: Site): ExecNode[] {
  return site.nodes.map((n) => {
    const domain = site.domains[n.domain];
    return { name: n.name, gpus: Array.from({ length: n.gpus }, (_, i) => i), domain: domain.name, zone: domain.zone };
  });
}

interface Outcome {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly reason: ExitReason;
}

/** When a started job ends by itself, and how. */
interface Plan {
  readonly seconds: number;
  readonly outcome: Outcome;
}

interface Tracked {
  readonly job: ExecJob;
  readonly startedAt: number;
  readonly plan: Plan;
  /** Epoch seconds of the end now scheduled. */
  endsAt: number;
  outcome: Outcome;
  stopped: boolean;
  cancel: () => void;
}

export function createSimulatedExecutor(options: SimulatedExecutorOptions): Executor {
  const nodes = [...options.nodes];
  const now = options.now ?? defaultNow;
  const schedule = options.schedule ?? realScheduler;
  const listeners = new Listeners(silentLogger);
  const jobs = new Map<string, Tracked>();
  let closed = false;

  /** Each job's log lines in order, written off the event loop: a twin of 1,152 GPUs starts hundreds of jobs at once. */
  const writing = new Map<string, Promise<void>>();
  function log(job: ExecJob, at: number, line: string): void {
    const text = `${new Date(at * 1000).toISOString()} [simulated] ${line}\n`;
    const previous =
      writing.get(job.output) ?? fs.promises.mkdir(path.dirname(job.output), { recursive: true }).then(() => undefined);
    // The log only lets `fabrik logs` show something: a folder that cannot be made costs nothing.
    const next = previous
      .then(() => fs.promises.appendFile(job.output, text))
      .catch(() => undefined)
      .finally(() => {
        if (writing.get(job.output) === next) writing.delete(job.output);
      });
    writing.set(job.output, next);
  }

  function end(t: Tracked): void {
    if (closed || jobs.get(t.job.id) !== t) return;
    jobs.delete(t.job.id);
    const at = t.endsAt;
    const { exitCode, signal, reason } = t.outcome;
    log(t.job, at, `exited: exit code ${exitCode ?? '-'}, signal ${signal ?? '-'}, ${reason}`);
    listeners.emit({ kind: 'exited', job: t.job.id, at, exitCode, signal, reason });
  }

  /** (Re)schedules the job's end at `endsAt`; the clock may already be past it. */
  function arm(t: Tracked): void {
    t.cancel();
    t.cancel = schedule(() => end(t), Math.max(0, t.endsAt - now()) * 1000);
  }

  function track(job: ExecJob, startedAt: number, plan: Plan): Tracked {
    const t: Tracked = {
      job,
      startedAt,
      plan,
      endsAt: startedAt + plan.seconds,
      outcome: plan.outcome,
      stopped: false,
      cancel: () => {},
    };
    jobs.set(job.id, t);
    arm(t);
    return t;
  }

  return {
    type: 'executor/simulated',

    nodes: () => nodes,

    async start(job) {
      if (closed) throw new ExecutorClosedError(job.id);
      checkPlacement(job, nodes);
      if (jobs.has(job.id)) throw new JobAlreadyRunningError(job.id);
      const plan = planFor(job);
      const at = now();
      const where = job.placement.map((p) => `${p.node}[${p.gpus.join(',')}]`).join(' ');
      log(job, at, `running on ${where} for ${plan.seconds} s`);
      // Before the handle is returned, as the local executor does: the server sees one order.
      listeners.emit({ kind: 'running', job: job.id, at });
      track(job, at, plan);
      return { version: 1, startedAt: at };
    },

    async stop(jobId, graceSeconds) {
      const t = jobs.get(jobId);
      if (!t) return;
      const killAt = now() + Math.max(0, graceSeconds);
      if (!t.stopped) {
        t.stopped = true;
        log(t.job, now(), `stopping: SIG${t.job.signal}, SIGKILL in ${graceSeconds} s`);
      }
      // The job takes its whole grace period (it checkpoints), unless it would have ended sooner.
      if (killAt < t.endsAt) {
        t.endsAt = killAt;
        t.outcome = { exitCode: null, signal: t.job.signal, reason: 'stopped' };
        arm(t);
      } else {
        t.outcome = { ...t.outcome, reason: 'stopped' };
      }
    },

    async recover(list) {
      const found: string[] = [];
      const exited: { job: string; exitCode: number | null; at: number }[] = [];
      const lost: string[] = [];
      for (const { job, handle } of list) {
        const startedAt = handle.startedAt;
        if (handle.version !== 1 || typeof startedAt !== 'number' || !Number.isFinite(startedAt)) {
          lost.push(job.id);
          continue;
        }
        let plan: Plan;
        try {
          plan = planFor(job);
        } catch {
          lost.push(job.id);
          continue;
        }
        if (jobs.has(job.id) || startedAt + plan.seconds > now()) {
          if (!jobs.has(job.id)) track(job, startedAt, plan);
          found.push(job.id);
        } else {
          exited.push({ job: job.id, exitCode: plan.outcome.exitCode, at: startedAt + plan.seconds });
        }
      }
      return { found, exited, lost } satisfies RecoveryResult;
    },

    onEvent(listener) {
      listeners.add(listener);
    },

    async close() {
      closed = true;
      for (const t of jobs.values()) t.cancel();
      jobs.clear();
    },
  };
}

/** Reads the job's simulated run from its env; a value that is no number is the submitter's mistake. */
function planFor(job: ExecJob): Plan {
  const read = (name: string, integer: boolean): number | null => {
    const text = job.env[name];
    if (text === undefined) return null;
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
      throw new InvalidJobError(job.id, `${name}=${JSON.stringify(text)} is not a ${integer ? 'whole ' : ''}number ≥ 0`);
    }
    return value;
  };
  const seconds = read('FABRIK_SIMULATED_SECONDS', false) ?? job.walltimeSeconds;
  const exitCode = read('FABRIK_SIMULATED_EXIT_CODE', true) ?? 0;
  if (seconds > job.walltimeSeconds) {
    // Killed at its walltime by its signal (the twin skips the grace period a real job may use).
    return { seconds: job.walltimeSeconds, outcome: { exitCode: null, signal: job.signal, reason: 'timeout' } };
  }
  return { seconds, outcome: { exitCode, signal: null, reason: 'completed' } };
}

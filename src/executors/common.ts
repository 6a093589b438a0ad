// What the local and simulated executors share: their errors, the checks on what the server
// hands them, timers that survive walltimes longer than setTimeout can count, and event fan-out.
import type { ExecJob, ExecNode, ExecutorEvent } from './executor.js';

/** The placement names a node this executor does not offer, or GPUs that node does not have. */
export class InvalidPlacementError extends Error {
  override readonly name = 'InvalidPlacementError';
  constructor(
    readonly job: string,
    readonly problem: string,
  ) {
    super(`job ${job}: invalid placement: ${problem}`);
  }
}

/** The job cannot be run as given (an id that is no file name, a simulated outcome that is no number). */
export class InvalidJobError extends Error {
  override readonly name = 'InvalidJobError';
  constructor(
    readonly job: string,
    readonly problem: string,
  ) {
    super(`job ${job}: ${problem}`);
  }
}

/** `start` for a job this executor already runs: a second copy would share its folder and GPUs. */
export class JobAlreadyRunningError extends Error {
  override readonly name = 'JobAlreadyRunningError';
  constructor(readonly job: string) {
    super(`job ${job} is already running on this executor`);
  }
}

/** `start` after `close`: nobody would watch the job. */
export class ExecutorClosedError extends Error {
  override readonly name = 'ExecutorClosedError';
  constructor(readonly job: string) {
    super(`cannot start job ${job}: the executor is closed`);
  }
}

/** Enough of pino's logger for the executors; a pino logger fits. */
export interface ExecutorLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: ExecutorLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Schedules `fn` after `ms` milliseconds; returns what cancels it. */
export type Scheduler = (fn: () => void, ms: number) => () => void;

// setTimeout fires at once for delays beyond 2^31-1 ms (24.8 days), and walltimes may reach a year.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A real-time scheduler for any delay; its timers do not keep the process alive on their own. */
export const realScheduler: Scheduler = (fn, ms) => {
  let timer: NodeJS.Timeout;
  const arm = (left: number) => {
    timer = setTimeout(
      () => (left > MAX_TIMEOUT_MS ? arm(left - MAX_TIMEOUT_MS) : fn()),
      Math.min(Math.max(left, 0), MAX_TIMEOUT_MS),
    );
    timer.unref();
  };
  arm(ms);
  return () => clearTimeout(timer);
};

/** Checks that every entry names one of `nodes` and only GPUs it has, each at most once. */
export function checkPlacement(job: ExecJob, nodes: readonly ExecNode[]): void {
  if (job.placement.length === 0) throw new InvalidPlacementError(job.id, 'no nodes');
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const taken = new Set<string>();
  for (const entry of job.placement) {
    const node = byName.get(entry.node);
    if (!node) throw new InvalidPlacementError(job.id, `unknown node '${entry.node}'`);
    for (const gpu of entry.gpus) {
      if (!node.gpus.includes(gpu)) throw new InvalidPlacementError(job.id, `node '${entry.node}' has no GPU ${gpu}`);
      const key = `${entry.node}/${gpu}`;
      if (taken.has(key)) throw new InvalidPlacementError(job.id, `GPU ${gpu} of '${entry.node}' given twice`);
      taken.add(key);
    }
  }
}

/** Delivers events to every listener; one listener's exception must not starve the others or the executor. */
export class Listeners {
  private readonly listeners: ((e: ExecutorEvent) => void)[] = [];
  constructor(private readonly logger: ExecutorLogger) {}

  add(listener: (e: ExecutorEvent) => void): void {
    this.listeners.push(listener);
  }

  emit(e: ExecutorEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(e);
      } catch (err) {
        this.logger.error({ err, event: e }, 'executor event listener failed');
      }
    }
  }
}

export const defaultNow = (): number => Date.now() / 1000;

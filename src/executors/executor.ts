// The executor port: what the server needs from whatever runs jobs. The server decides where a
// job runs (node names and GPU indices); an executor starts it there, stops it with a grace
// period, reports when it runs and when it ends, and after a restart of the server finds its
// jobs again or says they are lost. `simulated` and `local` live here; `slurm` is its own issue.
import type { Placement } from '../api/contract.js';
import type { PriorityClass } from '../core/job.js';

/** A node the executor offers, with the device indices of its GPUs. */
export interface ExecNode {
  readonly name: string;
  /** Device indices (what CUDA_VISIBLE_DEVICES names), one per GPU. */
  readonly gpus: readonly number[];
  /** NVLink domain (rack) name: nodes of one domain share it. */
  readonly domain: string;
  readonly zone: string;
  /** Where services on the node are reached from the server (Slurm's NodeAddr); absent: this host. */
  readonly address?: string;
}

export interface NodeHealth {
  readonly node: string;
  readonly state: 'up' | 'draining' | 'down' | 'maintenance';
  readonly reason: string | null;
}

export interface ExecJob {
  readonly id: string;
  readonly name: string;
  readonly member: string;
  readonly project: string;
  readonly user: string;
  /** What the engine may account it under (Slurm: the QOS `fabrik-<class>`). */
  readonly priorityClass: PriorityClass;
  /** argv, run without a shell; or a batch script run with bash. Exactly one is set. */
  readonly command: readonly string[] | null;
  readonly script: string | null;
  readonly env: Readonly<Record<string, string>>;
  readonly workdir: string | null;
  /** One process per entry (a node of the gang), ranks in this order. */
  readonly placement: Placement;
  readonly walltimeSeconds: number;
  readonly gracePeriodSeconds: number;
  /** Sent first when the job is stopped; SIGKILL follows after the grace period. */
  readonly signal: 'TERM' | 'USR1' | 'USR2' | 'INT' | 'HUP';
  /** Absolute paths of its stdout and stderr logs (the same file for both is allowed). */
  readonly output: string;
  readonly error: string;
}

/**
 * What the executor needs to find a job again after the server restarts (process ids and start
 * times for `local`, the Slurm job id for `slurm`). Stored with the job; opaque to the server.
 */
export type ExecHandle = Readonly<Record<string, unknown>>;

export type ExitReason = 'completed' | 'stopped' | 'timeout';

export type ExecutorEvent =
  | { readonly kind: 'running'; readonly job: string; readonly at: number }
  /**
   * The job's processes are gone. `exitCode`: the gang's exit code (the first non-zero rank's,
   * else 0), null when killed by a signal. `reason`: it ended by itself, was stopped by `stop`,
   * or hit its walltime.
   */
  | {
      readonly kind: 'exited';
      readonly job: string;
      readonly at: number;
      readonly exitCode: number | null;
      readonly signal: string | null;
      readonly reason: ExitReason;
    }
  /** The executor cannot account for the job any more (its processes vanished unobserved). */
  | { readonly kind: 'lost'; readonly job: string; readonly at: number; readonly reason: string };

export interface RecoveryResult {
  /** Still running: watched again, their events will follow. */
  readonly found: readonly string[];
  /** Ended while nobody watched: with the exit code if the executor recorded one. */
  readonly exited: readonly { readonly job: string; readonly exitCode: number | null; readonly at: number }[];
  /** Neither running nor accounted for. */
  readonly lost: readonly string[];
}

export interface Executor {
  /** `executor/local`, `executor/simulated`, … */
  readonly type: string;
  /** The nodes jobs may be placed on. */
  nodes(): readonly ExecNode[];
  /**
   * Starts the job; resolves once it is launched, with what finds it again after a restart.
   * Rejects with an error whose `transient` is true when the engine cannot take it now (down,
   * restarting): the server queues the job again instead of failing it.
   */
  start(job: ExecJob): Promise<ExecHandle>;
  /** Sends the job's signal, then SIGKILL after `graceSeconds`; an `exited` event follows. */
  stop(job: string, graceSeconds: number): Promise<void>;
  /**
   * After a restart: which of these jobs still run (and are watched again), which ended, which are
   * lost. A job whose start the server never saw answered comes with an empty handle: an engine
   * that tags its jobs looks it up; others report it lost.
   */
  recover(jobs: readonly { readonly job: ExecJob; readonly handle: ExecHandle }[]): Promise<RecoveryResult>;
  /**
   * What the execution engine says about its nodes (Slurm: drained, down, not responding), for the
   * engines that have their own view; the scheduler keeps work off nodes that are not up.
   */
  nodeHealth?(): Promise<readonly NodeHealth[]>;
  /**
   * Where the server reaches a TCP port a running job serves on (a model replica's engine), for
   * executors that keep jobs off the host's network: a URL such as `http+unix://<socket>` that
   * only the server can use. Absent, or null for a job: at its node's address, on that port.
   */
  endpoint?(job: string, port: number): string | null;
  /** Subscribes to events; events are delivered in order per job. */
  onEvent(listener: (e: ExecutorEvent) => void): void;
  /** Stops watching; running jobs keep running (the server may be restarting). */
  close(): Promise<void>;
}

// What every executor must do for the server, as one suite that each executor's tests run: the
// order and content of events, stop and walltime, and recovery by a new instance after close().
// Executors differ in what a job is (a process, a timer) and in what time is (the wall clock, a
// virtual clock): the caller supplies jobs of four kinds and a way to let time pass.
import { afterEach, describe, expect, it } from 'vitest';
import type { ExecHandle, ExecJob, ExecNode, Executor, ExecutorEvent } from '../../src/executors/executor.js';

export type ConformanceJobKind =
  /** Ends by itself at once with exit code 0. */
  | 'succeeds'
  /** Ends by itself at once with exit code 3. */
  | 'fails'
  /** Runs about two seconds, then exit code 0. */
  | 'runs-briefly'
  /** Runs far longer than any test waits (a minute or more) unless stopped; dies of SIGTERM. */
  | 'runs-long';

/** A job of that kind on `nodes[0]`, with a walltime of an hour and a grace period of 1 s. */
export type ConformanceJobFactory = (kind: ConformanceJobKind, id: string, nodes: readonly ExecNode[]) => ExecJob;

export interface ConformanceClock {
  /** Lets `seconds` of the executor's time pass (sleeps, or advances a virtual clock). */
  elapse(seconds: number): Promise<void>;
}

export const wallClock: ConformanceClock = {
  elapse: (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000)),
};

/** The fields the suite does not care about, for factories to spread their job into. */
export function execJob(id: string, nodes: readonly ExecNode[], logDir: string, over: Partial<ExecJob>): ExecJob {
  const node = nodes[0];
  return {
    id,
    name: `conformance-${id}`,
    member: 'm',
    project: 'p',
    user: 'u',
    priorityClass: 'training',
    command: null,
    script: null,
    env: {},
    workdir: null,
    placement: [{ node: node.name, gpus: node.gpus.slice(0, 1) }],
    walltimeSeconds: 3600,
    gracePeriodSeconds: 1,
    signal: 'TERM',
    output: `${logDir}/${id}.out`,
    error: `${logDir}/${id}.err`,
    ...over,
  };
}

/** Generous: the machines that run the tests are shared and may be slow. */
const PATIENCE_SECONDS = 30;
const STEP_SECONDS = 0.05;

let counter = 0;

export function executorConformance(
  name: string,
  makeExecutor: () => Executor,
  jobFactory: ConformanceJobFactory,
  clock: ConformanceClock = wallClock,
): void {
  describe(`executor conformance: ${name}`, () => {
    const executors: Executor[] = [];
    const started: { job: ExecJob; handle: ExecHandle }[] = [];

    /** An executor whose events are kept; closed after the test. */
    function open(): { ex: Executor; events: ExecutorEvent[] } {
      const ex = makeExecutor();
      const events: ExecutorEvent[] = [];
      ex.onEvent((e) => events.push(e));
      executors.push(ex);
      return { ex, events };
    }

    async function start(ex: Executor, kind: ConformanceJobKind, over: Partial<ExecJob> = {}) {
      const job = { ...jobFactory(kind, `conf-${process.pid}-${++counter}`, ex.nodes()), ...over };
      const handle = await ex.start(job);
      started.push({ job, handle });
      return { job, handle };
    }

    async function until<T>(what: string, probe: () => T | undefined | null | false): Promise<T> {
      for (let waited = 0; ; waited += STEP_SECONDS) {
        const value = probe();
        if (value) return value;
        if (waited > PATIENCE_SECONDS) throw new Error(`waited ${PATIENCE_SECONDS} s for ${what}`);
        await clock.elapse(STEP_SECONDS);
      }
    }

    const of = (events: ExecutorEvent[], job: string) => events.filter((e) => e.job === job);
    const exitedOf = (events: ExecutorEvent[], job: string) =>
      events.find((e): e is Extract<ExecutorEvent, { kind: 'exited' }> => e.job === job && e.kind === 'exited');

    afterEach(async () => {
      // Whatever a test left running is found by a fresh instance and ended, so that no process
      // outlives the suite.
      const { ex, events } = open();
      const { found } = await ex.recover(started.splice(0));
      for (const id of found) await ex.stop(id, 0);
      await until('leftover jobs to end', () => found.every((id) => events.some((e) => e.job === id && e.kind !== 'running')));
      for (const e of executors.splice(0)) await e.close();
    });

    it('reports running, then exited with code 0 for a job that succeeds', async () => {
      const { ex, events } = open();
      const { job, handle } = await start(ex, 'succeeds');
      expect(typeof handle).toBe('object');
      const exited = await until('exited', () => exitedOf(events, job.id));
      expect(exited).toMatchObject({ exitCode: 0, signal: null, reason: 'completed' });
      expect(of(events, job.id).map((e) => e.kind)).toEqual(['running', 'exited']);
      const running = of(events, job.id)[0];
      expect(exited.at).toBeGreaterThanOrEqual(running.at);
    });

    it("reports a failing job's exit code", async () => {
      const { ex, events } = open();
      const { job } = await start(ex, 'fails');
      const exited = await until('exited', () => exitedOf(events, job.id));
      expect(exited).toMatchObject({ exitCode: 3, signal: null, reason: 'completed' });
      expect(of(events, job.id).map((e) => e.kind)).toEqual(['running', 'exited']);
    });

    it('stops a job: exited with reason stopped, once, however often stop is called', async () => {
      const { ex, events } = open();
      const { job } = await start(ex, 'runs-long');
      await until('running', () => of(events, job.id).length > 0);
      await ex.stop(job.id, 1);
      await ex.stop(job.id, 1);
      const exited = await until('exited', () => exitedOf(events, job.id));
      expect(exited.reason).toBe('stopped');
      expect(exited.exitCode).not.toBe(0);
      await ex.stop(job.id, 1);
      await clock.elapse(1.5);
      expect(of(events, job.id).map((e) => e.kind)).toEqual(['running', 'exited']);
    });

    it('ends a job at its walltime: exited with reason timeout', async () => {
      const { ex, events } = open();
      const { job } = await start(ex, 'runs-long', { walltimeSeconds: 1, gracePeriodSeconds: 1 });
      const exited = await until('exited', () => exitedOf(events, job.id));
      expect(exited.reason).toBe('timeout');
      expect(exited.exitCode).not.toBe(0);
      expect(exited.at - of(events, job.id)[0].at).toBeGreaterThanOrEqual(0.95);
    });

    it('finds a running job again after close() and a new instance, then reports its exit', async () => {
      const first = open();
      const { job, handle } = await start(first.ex, 'runs-briefly');
      await until('running', () => of(first.events, job.id).length > 0);
      await first.ex.close();

      const second = open();
      const result = await second.ex.recover([{ job, handle }]);
      expect(result).toEqual({ found: [job.id], exited: [], lost: [] });
      const exited = await until('exited', () => exitedOf(second.events, job.id));
      expect(exited).toMatchObject({ exitCode: 0, signal: null, reason: 'completed' });
      expect(of(second.events, job.id).map((e) => e.kind)).toEqual(['exited']);
      expect(of(first.events, job.id).map((e) => e.kind)).toEqual(['running']);
    });

    it('stops a job found again after a restart', async () => {
      const first = open();
      const { job, handle } = await start(first.ex, 'runs-long');
      await first.ex.close();
      const second = open();
      expect((await second.ex.recover([{ job, handle }])).found).toEqual([job.id]);
      await second.ex.stop(job.id, 1);
      const exited = await until('exited', () => exitedOf(second.events, job.id));
      expect(exited.reason).toBe('stopped');
    });

    it('reports a job that ended while nobody watched as exited, with its exit code', async () => {
      const first = open();
      const { job, handle } = await start(first.ex, 'fails');
      await first.ex.close();
      // Each look is a new instance, as after a restart; one that still finds the job running is closed again.
      for (let waited = 0; ; waited += STEP_SECONDS) {
        const look = open();
        const result = await look.ex.recover([{ job, handle }]);
        await look.ex.close();
        if (result.found.length === 0) {
          expect(result).toEqual({ found: [], exited: [{ job: job.id, exitCode: 3, at: expect.any(Number) }], lost: [] });
          return;
        }
        if (waited > PATIENCE_SECONDS) throw new Error(`waited ${PATIENCE_SECONDS} s for the job to end`);
        await clock.elapse(STEP_SECONDS);
      }
    });

    it('stops an unknown job quietly', async () => {
      const { ex, events } = open();
      await expect(ex.stop('no-such-job', 1)).resolves.toBeUndefined();
      await clock.elapse(0.2);
      expect(events).toEqual([]);
    });
  });
}

type Exited = Extract<ExecutorEvent, { kind: 'exited' }>;

/** Polls `probe` until it gives a value, for up to `seconds`. */
export async function waitUntil<T>(what: string, probe: () => T | undefined | null | false, seconds = 30): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`waited ${seconds} s for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The job's `exited` event, once the executor has emitted it. */
export const waitForExit = (events: readonly ExecutorEvent[], id: string) =>
  waitUntil(`job ${id} to exit`, () => events.find((e): e is Exited => e.job === id && e.kind === 'exited'));

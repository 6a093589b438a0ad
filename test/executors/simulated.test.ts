import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidJobError, InvalidPlacementError, JobAlreadyRunningError } from '../../src/executors/common.js';
import type { ExecJob, ExecNode, ExecutorEvent } from '../../src/executors/executor.js';
import { createSimulatedExecutor, simulatedNodesFor } from '../../src/executors/simulated.js';
import { site } from '../../src/testing/builders.js';
import { execJob, executorConformance, type ConformanceJobKind } from './conformance.js';
import { VirtualClock } from './virtual-clock.js';

const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-simulated-'));
afterAll(() => fs.rmSync(logDir, { recursive: true, force: true }));

const NODES: ExecNode[] = simulatedNodesFor(site().racksPerSuperpod(2).traysPerRack(2).gpusPerTray(4).build());

const SECONDS: Record<ConformanceJobKind, string> = { succeeds: '0', fails: '0', 'runs-briefly': '2', 'runs-long': '100000' };

function simJob(kind: ConformanceJobKind, id: string, nodes: readonly ExecNode[]): ExecJob {
  const env: Record<string, string> = { FABRIK_SIMULATED_SECONDS: SECONDS[kind] };
  if (kind === 'fails') env.FABRIK_SIMULATED_EXIT_CODE = '3';
  return execJob(id, nodes, logDir, { command: ['train'], env });
}

// One world for the whole file: executors come and go (restarts), the clock goes on.
const clock = new VirtualClock();
executorConformance(
  'simulated',
  () => createSimulatedExecutor({ nodes: NODES, now: clock.now, schedule: clock.schedule }),
  simJob,
  { elapse: (s) => clock.advance(s) },
);

describe('the simulated executor', () => {
  function world() {
    const clock = new VirtualClock();
    const ex = createSimulatedExecutor({ nodes: NODES, now: clock.now, schedule: clock.schedule });
    const events: ExecutorEvent[] = [];
    ex.onEvent((e) => events.push(e));
    return { clock, ex, events };
  }
  const job = (id: string, over: Partial<ExecJob> = {}) => execJob(id, NODES, logDir, { command: ['train'], ...over });

  it('turns a site into nodes: device indices from 0, the rack as NVLink domain, its zone', () => {
    const s = site().racksPerSuperpod(2).traysPerRack(2).gpusPerTray(4).zone('secure', 'sp1-r02').build();
    const nodes = simulatedNodesFor(s);
    expect(nodes).toHaveLength(4);
    expect(nodes[0]).toEqual({ name: 'sp1-r01-t01', gpus: [0, 1, 2, 3], domain: 'sp1-r01', zone: 'general' });
    expect(nodes[3]).toEqual({ name: 'sp1-r02-t02', gpus: [0, 1, 2, 3], domain: 'sp1-r02', zone: 'secure' });
  });

  it('runs a job for FABRIK_SIMULATED_SECONDS of virtual time, to the second', async () => {
    const { clock, ex, events } = world();
    const t0 = clock.now();
    await ex.start(job('a', { env: { FABRIK_SIMULATED_SECONDS: '90', FABRIK_SIMULATED_EXIT_CODE: '7' } }));
    await clock.advance(89.9);
    expect(events.map((e) => e.kind)).toEqual(['running']);
    await clock.advance(0.2);
    expect(events[1]).toEqual({ kind: 'exited', job: 'a', at: t0 + 90, exitCode: 7, signal: null, reason: 'completed' });
  });

  it('runs a job without FABRIK_SIMULATED_SECONDS for its walltime, and completes it', async () => {
    const { clock, ex, events } = world();
    await ex.start(job('b', { walltimeSeconds: 600 }));
    await clock.advance(600);
    expect(events[1]).toMatchObject({ kind: 'exited', exitCode: 0, reason: 'completed' });
  });

  it('times a job out at its walltime when it would run longer: killed by its signal', async () => {
    const { clock, ex, events } = world();
    const t0 = clock.now();
    await ex.start(job('c', { walltimeSeconds: 60, signal: 'USR1', env: { FABRIK_SIMULATED_SECONDS: '61' } }));
    await clock.advance(1000);
    expect(events[1]).toEqual({ kind: 'exited', job: 'c', at: t0 + 60, exitCode: null, signal: 'USR1', reason: 'timeout' });
  });

  it('stops a job after its grace period; a second stop cannot lengthen it, a shorter one shortens it', async () => {
    const { clock, ex, events } = world();
    const t0 = clock.now();
    await ex.start(job('d', { env: { FABRIK_SIMULATED_SECONDS: '1000' } }));
    await clock.advance(10);
    await ex.stop('d', 30);
    await ex.stop('d', 300);
    await clock.advance(5);
    await ex.stop('d', 10);
    await clock.advance(100);
    expect(events[1]).toEqual({ kind: 'exited', job: 'd', at: t0 + 25, exitCode: null, signal: 'TERM', reason: 'stopped' });
    expect(events).toHaveLength(2);
  });

  it('lets a stopped job that ends within its grace period end with its own exit code', async () => {
    const { clock, ex, events } = world();
    await ex.start(job('e', { env: { FABRIK_SIMULATED_SECONDS: '20', FABRIK_SIMULATED_EXIT_CODE: '2' } }));
    await ex.stop('e', 30);
    await clock.advance(100);
    expect(events[1]).toMatchObject({ exitCode: 2, signal: null, reason: 'stopped', at: events[0].at + 20 });
  });

  it('recovers from the start time in the handle: ended jobs with their code and time, running ones found', async () => {
    const { clock, ex } = world();
    const short = job('f', { env: { FABRIK_SIMULATED_SECONDS: '50', FABRIK_SIMULATED_EXIT_CODE: '4' } });
    const long = job('g', { env: { FABRIK_SIMULATED_SECONDS: '500' } });
    const hShort = await ex.start(short);
    const hLong = await ex.start(long);
    const t0 = clock.now();
    await ex.close();
    await clock.advance(100);
    const again = createSimulatedExecutor({ nodes: NODES, now: clock.now, schedule: clock.schedule });
    const events: ExecutorEvent[] = [];
    again.onEvent((e) => events.push(e));
    const result = await again.recover([
      { job: short, handle: hShort },
      { job: long, handle: hLong },
      { job: job('h'), handle: { what: 'nonsense' } },
    ]);
    expect(result).toEqual({ found: ['g'], exited: [{ job: 'f', exitCode: 4, at: t0 + 50 }], lost: ['h'] });
    await clock.advance(400);
    expect(events).toEqual([{ kind: 'exited', job: 'g', at: t0 + 500, exitCode: 0, signal: null, reason: 'completed' }]);
  });

  it('writes one line per event to the output log, creating its folder', async () => {
    const { clock, ex } = world();
    const output = path.join(logDir, 'nested', 'deeper', 'i.out');
    await ex.start(job('i', { output, env: { FABRIK_SIMULATED_SECONDS: '5' } }));
    await clock.advance(5);
    // Written off the event loop: wait for both lines.
    let lines: string[] = [];
    for (let i = 0; i < 200 && lines.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
      lines = fs.existsSync(output) ? fs.readFileSync(output, 'utf8').trim().split('\n') : [];
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/running on sp1-r01-t01\[0\]/);
    expect(lines[1]).toMatch(/exited: exit code 0/);
  });

  it('does not mind an output log it cannot write', async () => {
    const { clock, ex, events } = world();
    const blocker = path.join(logDir, 'a-file');
    fs.writeFileSync(blocker, '');
    await ex.start(job('j', { output: path.join(blocker, 'x.out'), env: { FABRIK_SIMULATED_SECONDS: '1' } }));
    await clock.advance(1);
    expect(events.map((e) => e.kind)).toEqual(['running', 'exited']);
  });

  it('refuses placements on nodes or GPUs it does not have, a job it already runs, and outcomes that are no numbers', async () => {
    const { ex } = world();
    await expect(ex.start(job('k', { placement: [{ node: 'nowhere', gpus: [0] }] }))).rejects.toThrow(InvalidPlacementError);
    await expect(ex.start(job('k', { placement: [{ node: NODES[0].name, gpus: [4] }] }))).rejects.toThrow(InvalidPlacementError);
    await expect(ex.start(job('k', { env: { FABRIK_SIMULATED_EXIT_CODE: 'three' } }))).rejects.toThrow(InvalidJobError);
    await ex.start(job('k'));
    await expect(ex.start(job('k'))).rejects.toThrow(JobAlreadyRunningError);
  });

  it('keeps no timers after close()', async () => {
    const { clock, ex, events } = world();
    await ex.start(job('l', { env: { FABRIK_SIMULATED_SECONDS: '5' } }));
    await ex.close();
    expect(clock.pending).toBe(0);
    await clock.advance(10);
    expect(events.map((e) => e.kind)).toEqual(['running']);
  });
});

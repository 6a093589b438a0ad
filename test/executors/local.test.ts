import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InvalidPlacementError, JobAlreadyRunningError } from '../../src/executors/common.js';
import type { ExecHandle, ExecJob, ExecNode, Executor, ExecutorEvent } from '../../src/executors/executor.js';
import { createLocalExecutor, detectGpus } from '../../src/executors/local.js';
import { bootId, isSameProcess, processStartTime } from '../../src/executors/proc.js';
import { execJob, executorConformance, waitForExit, waitUntil, type ConformanceJobKind } from './conformance.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-local-'));
const dataDir = path.join(root, 'data');
const logDir = path.join(root, 'logs');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const COMMANDS: Record<ConformanceJobKind, string[]> = {
  succeeds: ['sh', '-c', 'exit 0'],
  fails: ['sh', '-c', 'exit 3'],
  'runs-briefly': ['sleep', '2'],
  'runs-long': ['sleep', '60'],
};

executorConformance(
  'local',
  () => createLocalExecutor({ dataDir, gpus: [0, 1, 2, 3] }),
  (kind, id, nodes) => execJob(id, nodes, logDir, { command: COMMANDS[kind] }),
);

describe('the local executor', () => {
  const opened: Executor[] = [];
  const handles: ExecHandle[] = [];
  let seq = 0;

  afterEach(async () => {
    for (const ex of opened.splice(0)) await ex.close();
    // Tests that fail half-way must not leave processes behind.
    for (const h of handles.splice(0)) {
      for (const r of h.ranks as { pid: number; pgid: number; startTime: string | null }[]) {
        if (r.pid > 0 && isSameProcess(r.pid, r.startTime)) process.kill(-r.pgid, 'SIGKILL');
      }
    }
  });

  function open(o: { nodes?: number; gpus?: number[] } = {}) {
    const ex = createLocalExecutor({ dataDir, gpus: o.gpus ?? [0, 1, 2, 3], nodes: o.nodes ?? 1 });
    const events: ExecutorEvent[] = [];
    ex.onEvent((e) => events.push(e));
    opened.push(ex);
    return { ex, events };
  }

  function job(nodes: readonly ExecNode[], over: Partial<ExecJob>): ExecJob {
    const id = `local-${process.pid}-${++seq}`;
    return execJob(id, nodes, logDir, { output: path.join(logDir, `${id}.log`), error: path.join(logDir, `${id}.log`), ...over });
  }

  async function start(ex: Executor, j: ExecJob): Promise<ExecHandle> {
    const h = await ex.start(j);
    handles.push(h);
    return h;
  }

  const readLog = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
  const rankPids = (h: ExecHandle) => (h.ranks as { pid: number; startTime: string }[]).map((r) => r.pid);

  it('splits the host into slots with contiguous shares of the GPUs, the first slots taking the remainder', () => {
    const ex = createLocalExecutor({ dataDir, gpus: [0, 1, 2, 3, 4], nodes: 2, zone: 'lab', domain: 'rack' });
    opened.push(ex);
    const host = os.hostname();
    expect(ex.type).toBe('executor/local');
    expect(ex.nodes()).toEqual([
      { name: `${host}-0`, gpus: [0, 1, 2], domain: 'rack', zone: 'lab' },
      { name: `${host}-1`, gpus: [3, 4], domain: 'rack', zone: 'lab' },
    ]);
    expect(ex.gpuSource.source).toBe('configured');
  });

  it('detects GPUs with nvidia-smi, and falls back to virtual ones without it', () => {
    const bin = fs.mkdtempSync(path.join(root, 'bin-'));
    const savedPath = process.env.PATH;
    try {
      process.env.PATH = bin;
      expect(detectGpus(3)).toMatchObject({ gpus: [0, 1, 2], source: 'fallback' });
      fs.writeFileSync(path.join(bin, 'nvidia-smi'), '#!/bin/sh\nprintf "0\\n1\\n"\n', { mode: 0o755 });
      expect(detectGpus(3)).toMatchObject({ gpus: [0, 1], source: 'nvidia-smi' });
      fs.writeFileSync(path.join(bin, 'nvidia-smi'), '#!/bin/sh\necho "No devices were found" >&2\nexit 6\n', { mode: 0o755 });
      expect(detectGpus(2)).toMatchObject({ gpus: [0, 1], source: 'fallback', detail: expect.stringContaining('No devices') });
      const ex = createLocalExecutor({ dataDir, fallbackGpus: 2 });
      opened.push(ex);
      expect(ex.nodes()[0].gpus).toEqual([0, 1]);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('gives a rank exactly its GPUs in CUDA_VISIBLE_DEVICES, the job env, and not the server env', async () => {
    process.env.FABRIK_TEST_SECRET = 'hunter2';
    const { ex, events } = open();
    const node = ex.nodes()[0];
    const j = job(ex.nodes(), {
      placement: [{ node: node.name, gpus: [1, 2] }],
      env: { GREETING: 'hello' },
      command: [
        'sh',
        '-c',
        'echo "cvd=$CUDA_VISIBLE_DEVICES id=$FABRIK_JOB_ID greeting=$GREETING secret=${FABRIK_TEST_SECRET:-none}"',
      ],
    });
    await start(ex, j);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 0 });
    expect(readLog(j.output).trim()).toBe(`cvd=1,2 id=${j.id} greeting=hello secret=none`);
    delete process.env.FABRIK_TEST_SECRET;
  });

  it('runs a 2-node gang as 2 processes with RANK 0 and 1, WORLD_SIZE 2 and one MASTER_PORT', async () => {
    const { ex, events } = open({ nodes: 2 });
    const [a, b] = ex.nodes();
    const j = job(ex.nodes(), {
      placement: [
        { node: a.name, gpus: [0, 1] },
        { node: b.name, gpus: [2, 3] },
      ],
      command: [
        'sh',
        '-c',
        'echo "rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK node=$NODE_RANK addr=$MASTER_ADDR port=$MASTER_PORT cvd=$CUDA_VISIBLE_DEVICES pid=$$"',
      ],
    });
    const h = await start(ex, j);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 0, reason: 'completed' });
    const lines = readLog(j.output).trim().split('\n').sort();
    expect(lines).toHaveLength(2);
    const port = /port=(\d+)/.exec(lines[0])![1];
    expect(Number(port)).toBeGreaterThan(0);
    expect(lines[0]).toMatch(new RegExp(`^rank=0 world=2 local=0 node=0 addr=127.0.0.1 port=${port} cvd=0,1 pid=\\d+$`));
    expect(lines[1]).toMatch(new RegExp(`^rank=1 world=2 local=0 node=1 addr=127.0.0.1 port=${port} cvd=2,3 pid=\\d+$`));
    expect(new Set(lines.map((l) => /pid=(\d+)/.exec(l)![1])).size).toBe(2);
    expect(new Set(rankPids(h)).size).toBe(2);
  });

  it('stops the rest of the gang when one rank fails, and reports that rank’s exit code', async () => {
    const { ex, events } = open({ nodes: 2 });
    const [a, b] = ex.nodes();
    const j = job(ex.nodes(), {
      placement: [
        { node: a.name, gpus: [0] },
        { node: b.name, gpus: [2] },
      ],
      command: ['sh', '-c', 'if [ "$RANK" = 1 ]; then sleep 0.2; exit 4; fi; exec sleep 30'],
    });
    const h = await start(ex, j);
    const t0 = Date.now();
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 4, signal: null, reason: 'completed' });
    expect(Date.now() - t0).toBeLessThan(20_000);
    const ranks = h.ranks as { pid: number; startTime: string }[];
    expect(ranks.every((r) => !isSameProcess(r.pid, r.startTime))).toBe(true);
  });

  it('sends SIGTERM, then SIGKILL after the grace period to a process that traps SIGTERM', async () => {
    const { ex, events } = open();
    const j = job(ex.nodes(), {
      command: null,
      script: 'trap "echo got TERM" TERM\necho ready\nwhile true; do sleep 0.1; done\n',
    });
    await start(ex, j);
    await waitUntil('the trap to be set', () => readLog(j.output).includes('ready'));
    const t0 = Date.now();
    await ex.stop(j.id, 1);
    const exited = await waitForExit(events, j.id);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(exited).toMatchObject({ exitCode: null, signal: 'KILL', reason: 'stopped' });
    expect(readLog(j.output)).toContain('got TERM');
  });

  it('sends the job’s own signal: SIGINT reaches the rank (it is not ignored as in a background shell job)', async () => {
    const { ex, events } = open();
    const j = job(ex.nodes(), { command: ['sleep', '30'], signal: 'INT', gracePeriodSeconds: 20 });
    await start(ex, j);
    const t0 = Date.now();
    await ex.stop(j.id, 20);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: null, signal: 'INT', reason: 'stopped' });
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('tells exit code 143 from death by SIGTERM', async () => {
    const { ex, events } = open();
    const code = job(ex.nodes(), { command: ['sh', '-c', 'exit 143'] });
    const killed = job(ex.nodes(), { command: ['sh', '-c', 'kill -TERM $$'] });
    await start(ex, code);
    await start(ex, killed);
    expect(await waitForExit(events, code.id)).toMatchObject({ exitCode: 143, signal: null });
    expect(await waitForExit(events, killed.id)).toMatchObject({ exitCode: null, signal: 'TERM', reason: 'completed' });
  });

  it('finds a process again after close() and a server restart, and reports its exit code', async () => {
    const work = fs.mkdtempSync(path.join(root, 'work-'));
    const first = open();
    const j = job(first.ex.nodes(), { workdir: work, command: ['sh', '-c', 'while [ ! -e go ]; do sleep 0.05; done; exit 7'] });
    const handle = JSON.parse(JSON.stringify(await start(first.ex, j))) as ExecHandle;
    await first.ex.close();
    const [pid] = rankPids(handle);
    expect(isSameProcess(pid, processStartTime(pid))).toBe(true);

    const second = open();
    expect(await second.ex.recover([{ job: j, handle }])).toEqual({ found: [j.id], exited: [], lost: [] });
    fs.writeFileSync(path.join(work, 'go'), '');
    expect(await waitForExit(second.events, j.id)).toMatchObject({ exitCode: 7, signal: null, reason: 'completed' });
    expect(first.events.map((e) => e.kind)).toEqual(['running']);
  });

  it('lets a job outlive the server process that started it, and finds it again from another process', async () => {
    const work = fs.mkdtempSync(path.join(root, 'work-'));
    const id = `local-${process.pid}-${++seq}`;
    const script = fileURLToPath(new URL('./start-and-exit.ts', import.meta.url));
    const out = execFileSync(process.execPath, ['--import', 'tsx', script, dataDir, logDir, work, id], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const { job: j, handle } = JSON.parse(out) as { job: ExecJob; handle: ExecHandle };
    handles.push(handle);
    const { ex, events } = open({ gpus: [0, 1] });
    expect(await ex.recover([{ job: j, handle }])).toEqual({ found: [id], exited: [], lost: [] });
    fs.writeFileSync(path.join(work, 'go'), '');
    expect(await waitForExit(events, id)).toMatchObject({ exitCode: 9, signal: null, reason: 'completed' });
    expect(readLog(j.output)).toContain('ran to the end');
  });

  it('reports a rank killed by SIGKILL (which leaves no exit record of its own) as exited after a restart, not lost', async () => {
    const first = open();
    const j = job(first.ex.nodes(), { command: null, script: "trap '' TERM\necho ready\nsleep 30\n" });
    const handle = await start(first.ex, j);
    await waitUntil('the trap to be set', () => readLog(j.output).includes('ready'));
    await first.ex.stop(j.id, 0);
    expect(await waitForExit(first.events, j.id)).toMatchObject({ exitCode: null, signal: 'KILL', reason: 'stopped' });
    await first.ex.close();

    const second = open();
    const result = await second.ex.recover([{ job: j, handle }]);
    expect(result).toEqual({ found: [], exited: [{ job: j.id, exitCode: null, at: expect.any(Number) }], lost: [] });
  });

  it('does not mistake another process with the same pid for the job, nor trust a handle from another boot', async () => {
    const { ex } = open();
    const rank = (over: object) => ({
      rank: 0,
      node: ex.nodes()[0].name,
      pid: process.pid,
      pgid: process.pid,
      startTime: processStartTime(process.pid),
      exitFile: path.join(root, 'no-such.exit'),
      ...over,
    });
    const handle = (over: object, boot = bootId()) => ({
      version: 1,
      boot,
      startedAt: Date.now() / 1000,
      dir: root,
      ranks: [rank(over)],
    });
    const j = (id: string) => job(ex.nodes(), { id, command: ['true'] });
    const result = await ex.recover([
      { job: j('reused-pid'), handle: handle({ startTime: '1' }) },
      { job: j('other-boot'), handle: handle({}, 'another-boot') },
      { job: j('garbage'), handle: { pids: [1, 2, 3] } },
    ]);
    expect(result).toEqual({ found: [], exited: [], lost: ['reused-pid', 'other-boot', 'garbage'] });
  });

  it('ends a command that cannot be run with exit code 127 and says why in the error log', async () => {
    const { ex, events } = open();
    const missing = job(ex.nodes(), { command: ['/no/such/program', '--flag'] });
    const noDir = job(ex.nodes(), { command: ['true'], workdir: path.join(root, 'no-such-dir') });
    await expect(start(ex, missing)).resolves.toBeTypeOf('object');
    await start(ex, noDir);
    expect(await waitForExit(events, missing.id)).toMatchObject({ exitCode: 127, reason: 'completed' });
    expect(await waitForExit(events, noDir.id)).toMatchObject({ exitCode: 127 });
    expect(readLog(missing.error)).toMatch(/cannot run '\/no\/such\/program'.*ENOENT/);
    expect(readLog(noDir.error)).toContain('does not exist');
  });

  it('kills what a rank left running in its process group when it ends', async () => {
    const { ex, events } = open();
    const pidFile = path.join(root, `straggler-${seq}`);
    const j = job(ex.nodes(), { command: ['sh', '-c', `sleep 30 & echo $! > ${pidFile}; exit 0`] });
    await start(ex, j);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 0 });
    const straggler = Number(fs.readFileSync(pidFile, 'utf8'));
    await waitUntil('the straggler to die', () => !isSameProcess(straggler, processStartTime(straggler) ?? 'gone'), 10);
  });

  it('starts a job again in the same folder once it ended (requeue), but never twice at once', async () => {
    const { ex, events } = open();
    const first = job(ex.nodes(), { command: ['sh', '-c', 'exit 5'] });
    await start(ex, first);
    expect(await waitForExit(events, first.id)).toMatchObject({ exitCode: 5 });
    events.length = 0;
    const again = { ...first, command: ['sleep', '30'] };
    await start(ex, again);
    await expect(ex.start(again)).rejects.toThrow(JobAlreadyRunningError);
    await ex.stop(again.id, 1);
    expect(await waitForExit(events, again.id)).toMatchObject({ reason: 'stopped', signal: 'TERM' });
  });

  it('refuses a placement on a node or GPUs it does not have', async () => {
    const { ex } = open();
    await expect(ex.start(job(ex.nodes(), { command: ['true'], placement: [{ node: 'elsewhere', gpus: [0] }] }))).rejects.toThrow(
      InvalidPlacementError,
    );
    await expect(
      ex.start(job(ex.nodes(), { command: ['true'], placement: [{ node: ex.nodes()[0].name, gpus: [9] }] })),
    ).rejects.toThrow(InvalidPlacementError);
  });

  it('takes a pino logger', () => {
    const ex = createLocalExecutor({ dataDir, gpus: [0], logger: pino({ level: 'silent' }) });
    opened.push(ex);
    expect(ex.nodes()).toHaveLength(1);
  });
});

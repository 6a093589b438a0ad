// npm run bench:isolation — what isolating a job costs on the local executor: the time from
// start() to the job's exit event for a job that does nothing (`true`), isolated (its member's
// Unix user, bubblewrap namespaces, a network namespace and a cgroup) and plain (this process's
// user), alternated in one run on the same host, with the same warm-up. Needs root and bubblewrap
// (scripts/isolation/install.sh). Last line:
// {"isolated_start_to_exit_ms_p50":…,"plain_start_to_exit_ms_p50":…,"isolated_ms_max":…,"plain_ms_max":…,"runs":…}
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecJob, Executor, ExecutorEvent } from '../src/executors/executor.js';
import { describeIsolation, probeIsolation } from '../src/executors/isolation/sandbox.js';
import { createLocalExecutor } from '../src/executors/local.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const WARMUP = 3;

const probe = probeIsolation();
if (!probe.available) {
  console.error(`bench:isolation needs root and bubblewrap: ${describeIsolation(probe)}`);
  process.exit(2);
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-bench-iso-'));
const make = (name: string, isolated: boolean): Executor => {
  const dataDir = path.join(root, name);
  fs.mkdirSync(dataDir, { mode: 0o700 });
  return createLocalExecutor({ dataDir, gpus: [0, 1, 2, 3], isolation: isolated ? { probe } : null });
};
const executors = { isolated: make('isolated', true), plain: make('plain', false) };

let next = 1;
/** start() → exited, in ms, for one job that runs `true`. */
async function once(ex: Executor): Promise<number> {
  const id = String(next++);
  const node = ex.nodes()[0];
  const job: ExecJob = {
    id,
    name: 'bench',
    member: 'bench',
    project: 'p',
    user: 'u',
    priorityClass: 'batch',
    command: ['true'],
    script: null,
    env: {},
    workdir: null,
    placement: [{ node: node.name, gpus: node.gpus.slice(0, 1) }],
    walltimeSeconds: 60,
    gracePeriodSeconds: 1,
    signal: 'TERM',
    output: 'out.log',
    error: 'out.log',
  };
  const t0 = performance.now();
  const exited = new Promise<ExecutorEvent>((resolve) => waiting.set(id, resolve));
  await ex.start(job);
  const e = await exited;
  if (e.kind !== 'exited' || e.exitCode !== 0) throw new Error(`job ${id}: ${JSON.stringify(e)}`);
  return performance.now() - t0;
}
const waiting = new Map<string, (e: ExecutorEvent) => void>();
for (const ex of Object.values(executors))
  ex.onEvent((e) => {
    if (e.kind === 'running') return;
    waiting.get(e.job)?.(e);
    waiting.delete(e.job);
  });

// The executor's children and timers do not hold the event loop open (a server keeps it open).
const keepAlive = setInterval(() => undefined, 1000);
const times: Record<keyof typeof executors, number[]> = { isolated: [], plain: [] };
for (let i = 0; i < WARMUP + RUNS; i++) {
  // Alternated, so that a noisy spell on the shared machine falls on both.
  for (const kind of (i % 2 ? ['plain', 'isolated'] : ['isolated', 'plain']) as (keyof typeof executors)[]) {
    const ms = await once(executors[kind]);
    if (i >= WARMUP) times[kind].push(ms);
  }
}
await Promise.all(Object.values(executors).map((e) => e.close()));
clearInterval(keepAlive);
fs.rmSync(root, { recursive: true, force: true });

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const r1 = (x: number) => Math.round(x * 10) / 10;
console.log(`${RUNS} runs each, alternated, after ${WARMUP} warm-up runs`);
for (const [kind, xs] of Object.entries(times))
  console.log(`${kind.padEnd(9)} start→exit p50 ${r1(p50(xs))} ms, max ${r1(Math.max(...xs))} ms`);
console.log(`isolation adds ${r1(p50(times.isolated) - p50(times.plain))} ms at p50 (one job's start, not per request)`);
console.log(
  JSON.stringify({
    isolated_start_to_exit_ms_p50: r1(p50(times.isolated)),
    plain_start_to_exit_ms_p50: r1(p50(times.plain)),
    isolated_ms_max: r1(Math.max(...times.isolated)),
    plain_ms_max: r1(Math.max(...times.plain)),
    runs: RUNS,
  }),
);

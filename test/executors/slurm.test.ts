// The Slurm executor against the real cluster of scripts/slurm/up.sh (slurmrestd on :6820). Without
// the cluster the suite fails in CI and is skipped, with a notice, elsewhere.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecJob, ExecutorEvent } from '../../src/executors/executor.js';
import { type SlurmExecutor, SlurmRestError, openSlurmExecutor } from '../../src/executors/slurm.js';
import { SlurmIdentities } from '../../src/executors/slurm-identity.js';
import { slurmNodesOrSkip } from '../slurm-cluster.js';
import { execJob, executorConformance, type ConformanceJobKind } from './conformance.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-slurm-'));
fs.chmodSync(root, 0o755);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let slurmNodes = await slurmNodesOrSkip('the Slurm executor tests');

// Pinning needs each node to carry its own name as a feature (v0.0.38 has no required_nodes).
const savedFeatures = new Map<string, string>();
beforeAll(() => {
  if (!slurmNodes) return;
  for (const n of slurmNodes) {
    const f = typeof n.features === 'string' ? n.features : '';
    savedFeatures.set(n.name, f);
    const list = f.split(',').filter((x) => x !== '' && x !== n.name);
    const features = [n.name, ...list].join(',');
    execFileSync('scontrol', ['update', `nodename=${n.name}`, `availablefeatures=${features}`, `activefeatures=${features}`]);
  }
  slurmNodes = slurmNodes.map((n) => ({
    ...n,
    features: [
      n.name,
      ...String(n.features ?? '')
        .split(',')
        .filter((x) => x && x !== n.name),
    ].join(','),
  }));
});
afterAll(() => {
  for (const [name, f] of savedFeatures) {
    execFileSync('scontrol', ['update', `nodename=${name}`, `availablefeatures=${f}`, `activefeatures=${f}`]);
  }
});

const open = (): SlurmExecutor => openSlurmExecutor({ pollMs: 200 }, slurmNodes!);

const COMMANDS: Record<ConformanceJobKind, string[]> = {
  succeeds: ['sh', '-c', 'exit 0'],
  fails: ['sh', '-c', 'exit 3'],
  'runs-briefly': ['sleep', '2'],
  'runs-long': ['sleep', '60'],
};

describe.skipIf(!slurmNodes)('slurm', () => {
  executorConformance('slurm', open, (kind, id, nodes) => execJob(id, nodes, root, { command: COMMANDS[kind] }));

  type Exited = Extract<ExecutorEvent, { kind: 'exited' }>;
  let seq = 0;
  const job = (ex: SlurmExecutor, over: Partial<ExecJob>): ExecJob => {
    const id = `slurm-${process.pid}-${++seq}`;
    return execJob(id, ex.nodes(), root, { output: path.join(root, `${id}.log`), error: path.join(root, `${id}.log`), ...over });
  };
  async function until<T>(what: string, probe: () => T | undefined | null | false, seconds = 40): Promise<T> {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      const value = probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`waited ${seconds} s for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const events = (ex: SlurmExecutor) => {
    const list: ExecutorEvent[] = [];
    ex.onEvent((e) => list.push(e));
    return list;
  };
  const exitedOf = (list: ExecutorEvent[], id: string) =>
    until(`${id} to exit`, () => list.find((e): e is Exited => e.job === id && e.kind === 'exited'));
  const readLog = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');

  it('offers the nodes with their GPUs', () => {
    const ex = open();
    expect(ex.type).toBe('executor/slurm');
    expect(ex.nodes().find((n) => n.name === 'node2')).toEqual({
      name: 'node2',
      gpus: [0, 1, 2, 3, 4, 5, 6, 7],
      domain: 'slurm',
      zone: 'general',
      // NodeAddr: where the server reaches services on it (a deployment's replicas).
      address: '127.0.0.1',
    });
  });

  it('runs a 2-node gang with 8 GPUs per node on exactly the nodes chosen', async () => {
    const ex = open();
    const list = events(ex);
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    const j = job(ex, {
      placement: [
        { node: 'node4', gpus: all },
        { node: 'node2', gpus: all },
      ],
      command: [
        'sh',
        '-c',
        'echo "rank=$RANK world=$WORLD_SIZE host=$SLURMD_NODENAME master=$MASTER_ADDR cvd=$CUDA_VISIBLE_DEVICES"',
      ],
    });
    const t0 = Date.now();
    await ex.start(j);
    const running = await until('running', () => list.find((e) => e.job === j.id && e.kind === 'running'));
    console.info(`slurm: submit to running event ${Date.now() - t0} ms`, running.at);
    expect(await exitedOf(list, j.id)).toMatchObject({ exitCode: 0, reason: 'completed' });
    const lines = readLog(j.output)
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('rank='))
      .sort();
    expect(lines).toEqual([
      'rank=0 world=2 host=node4 master=node4 cvd=0,1,2,3,4,5,6,7',
      'rank=1 world=2 host=node2 master=node4 cvd=0,1,2,3,4,5,6,7',
    ]);
    await ex.close();
  });

  it('submits one Slurm job when start is called twice for the same job (a restart before the handle was kept)', async () => {
    const first = open();
    const j = job(first, { command: ['sleep', '30'] });
    const h1 = await first.start(j);
    await first.close();
    const second = open();
    const list = events(second);
    const h2 = await second.start(j);
    expect(h2).toEqual(h1);
    expect((await second.slurmJobsFor(j.id)).map((s) => s.job_id)).toEqual([h1.slurmJobId]);
    await second.stop(j.id, 0);
    expect(await exitedOf(list, j.id)).toMatchObject({ reason: 'stopped' });
    await second.close();
  });

  it('finds by its tag a job whose handle was never recorded (the server died while Slurm accepted it)', async () => {
    const first = open();
    const j = job(first, { command: ['sleep', '30'] });
    const { slurmJobId } = await first.start(j);
    await first.close();
    const second = open();
    const list = events(second);
    const never = job(second, { command: ['true'] });
    expect(
      await second.recover([
        { job: j, handle: {} },
        { job: never, handle: {} },
      ]),
    ).toEqual({
      found: [j.id],
      exited: [],
      lost: [never.id],
    });
    expect((await second.slurmJobsFor(j.id)).map((s) => s.job_id)).toEqual([slurmJobId]);
    await second.stop(j.id, 0);
    expect(await exitedOf(list, j.id)).toMatchObject({ reason: 'stopped' });
    await second.close();
  });

  it('stops with a grace period: the job traps its signal, writes a checkpoint, and is reported stopped', async () => {
    const ex = open();
    const list = events(ex);
    const ckpt = path.join(root, `ckpt-${seq}`);
    const j = job(ex, {
      command: null,
      script: `trap 'echo got TERM; echo step=42 > ${ckpt}; exit 0' TERM\necho ready\nwhile true; do sleep 0.1; done\n`,
    });
    await ex.start(j);
    await until('the trap to be set', () => readLog(j.output).includes('ready'));
    await ex.stop(j.id, 10);
    const exited = await exitedOf(list, j.id);
    expect(exited).toMatchObject({ reason: 'stopped', exitCode: 0 });
    expect(fs.readFileSync(ckpt, 'utf8').trim()).toBe('step=42');
    await ex.close();
  });

  it("runs a job as the member's Unix user, charged to the member's account, the project as wckey and the priority class as QOS", async () => {
    const identity = new SlurmIdentities({ createUnixUsers: true });
    const ex = openSlurmExecutor({ pollMs: 200, identity }, slurmNodes!);
    const list = events(ex);
    const id = `slurm-${process.pid}-${++seq}`;
    // A log folder that does not exist yet: made for the job's user, who writes into it.
    const out = path.join(root, `as-user-${seq}`, 'out.log');
    const j = execJob(id, ex.nodes(), root, {
      member: 'pharma',
      user: 'alice',
      project: 'protein-folding',
      command: ['sh', '-c', 'echo "user=$(id -un) account=$SLURM_JOB_ACCOUNT"'],
      output: out,
      error: out,
    });
    const { slurmJobId } = await ex.start(j);
    expect(await exitedOf(list, id)).toMatchObject({ exitCode: 0, reason: 'completed' });
    expect(readLog(out)).toBe('user=pharma-alice account=pharma\n');
    expect(fs.statSync(path.dirname(out)).uid).toBe(Number(execFileSync('id', ['-u', 'pharma-alice']).toString()));
    // slurmdbd learns of the job's end, and resolves its wckey, a moment later.
    const sacct = () =>
      execFileSync('sacct', ['-j', String(slurmJobId), '-X', '-n', '-P', '-o', 'User,Account,WCKey,QOS,State'])
        .toString()
        .trim();
    const expected = 'pharma-alice|pharma|protein-folding|fabrik-training|COMPLETED';
    await until('the job charged in sacct', () => sacct() === expected, 30).catch(() => undefined);
    expect(sacct()).toBe(expected);
    await ex.close();
  });

  it('refuses, with the reason, a job whose Unix user is missing when users are not to be created', async () => {
    const ex = openSlurmExecutor({ pollMs: 200, identity: new SlurmIdentities() }, slurmNodes!);
    const j = job(ex, { member: 'nobody-here', user: 'ghost', command: ['true'] });
    await expect(ex.start(j)).rejects.toThrow(/Unix user 'nobody-here-ghost' does not exist.*createUnixUsers/);
    expect(await ex.slurmJobsFor(j.id)).toEqual([]);
  });

  it('names slurmrestd failures', async () => {
    const ex = openSlurmExecutor({ url: 'http://127.0.0.1:1', pollMs: 200 }, slurmNodes!);
    await expect(ex.start(job(ex, { command: ['true'] }))).rejects.toThrow(SlurmRestError);
    await expect(ex.start(job(ex, { command: ['true'] }))).rejects.toThrow(/unreachable/);
  });
});

// The local executor with isolation on, as CI runs it (root, bubblewrap installed by
// scripts/isolation/install.sh): two members' jobs probe each other, the server's files and the
// host's network from inside, and find nothing; limits hold; gangs and replicas still work; a new
// executor instance finds an isolated job again and cleans up after it.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InvalidJobError } from '../../src/executors/common.js';
import type { ExecHandle, ExecJob, ExecNode, Executor, ExecutorEvent } from '../../src/executors/executor.js';
import { describeIsolation, probeIsolation } from '../../src/executors/isolation/sandbox.js';
import { createLocalExecutor, type JobResources } from '../../src/executors/local.js';
import { execJob, executorConformance, waitForExit, waitUntil, type ConformanceJobKind } from './conformance.js';

const probe = probeIsolation();
// Visible in the test report: these tests need root and bubblewrap, which CI has.
const reason = probe.available ? '' : ` (skipped: ${describeIsolation(probe)})`;
const suite = probe.available ? describe : describe.skip;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-iso-'));
const dataDir = path.join(root, 'data');
const devDir = path.join(root, 'dev');
// The test's folder is open like /dev (the fake devices are bound by the job's user); the data folder is root's.
fs.chmodSync(root, 0o755);
fs.mkdirSync(dataDir, { mode: 0o700 });
fs.mkdirSync(devDir);
// Fake GPUs, as for Slurm (../shared/docs/slurm-on-debian.md): links to /dev/null.
for (const n of ['nvidia0', 'nvidia1', 'nvidia2', 'nvidia3', 'nvidiactl']) fs.symlinkSync('/dev/null', path.join(devDir, n));
// What the server keeps in its data folder: no job may read it.
fs.writeFileSync(path.join(dataDir, 'operator-token'), 'fbk_operator_secret\n', { mode: 0o600 });
fs.writeFileSync(path.join(dataDir, 'fabrik.db'), 'the store\n', { mode: 0o600 });
afterAll(() => (process.env.KEEP_ISO ? undefined : fs.rmSync(root, { recursive: true, force: true })));

const jobDir = (id: string) => path.join(dataDir, 'jobs', id);
const resources = new Map<string, JobResources>();

function isolated(o: { nodes?: number; servicePort?: (j: ExecJob) => number | null } = {}) {
  return createLocalExecutor({
    dataDir,
    gpus: [0, 1, 2, 3],
    nodes: o.nodes ?? 1,
    isolation: {
      probe,
      deviceDir: devDir,
      servicePort: o.servicePort ?? ((j) => Number(j.env.FABRIK_ENGINE_PORT) || null),
      resources: async (j) => resources.get(j.id) ?? {},
    },
  });
}

const COMMANDS: Record<ConformanceJobKind, string[]> = {
  succeeds: ['sh', '-c', 'exit 0'],
  fails: ['sh', '-c', 'exit 3'],
  'runs-briefly': ['sleep', '2'],
  'runs-long': ['sleep', '60'],
};

if (probe.available)
  executorConformance(
    'local, isolated',
    () => isolated(),
    (kind, id, nodes) => {
      const log = path.join(jobDir(id), 'out.log');
      return execJob(id, nodes, root, { command: COMMANDS[kind], output: log, error: log });
    },
  );

suite(`the local executor, isolated${reason}`, () => {
  const opened: Executor[] = [];
  let seq = 0;

  afterEach(async () => {
    for (const ex of opened.splice(0)) await ex.close();
  });

  function open(o: Parameters<typeof isolated>[0] = {}) {
    const ex = isolated(o);
    const events: ExecutorEvent[] = [];
    ex.onEvent((e) => events.push(e));
    opened.push(ex);
    return { ex, events };
  }

  function job(nodes: readonly ExecNode[], over: Partial<ExecJob>): ExecJob {
    const id = `iso-${process.pid}-${++seq}`;
    const log = path.join(jobDir(id), 'out.log');
    return execJob(id, nodes, root, { output: log, error: log, ...over });
  }

  const logOf = (j: ExecJob) => (fs.existsSync(j.output) ? fs.readFileSync(j.output, 'utf8') : '');

  it('runs two members’ jobs as their own users, each blind to the server, the store and the other', async () => {
    const { ex, events } = open();
    const [node] = ex.nodes();
    // A TCP service of the host, like the Fabrik API: no job may reach it.
    const api = net.createServer((c) => c.end('api\n'));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const apiPort = (api.address() as net.AddressInfo).port;
    try {
      const pharma = job(ex.nodes(), {
        member: 'pharma',
        user: 'alice',
        env: { PHARMA_API_KEY: 'sk-pharma-secret' },
        placement: [{ node: node.name, gpus: [0] }],
        script: '#!/bin/bash\necho "pharma results" > results.txt\nsleep 31.5 &\ntouch started\nwait\n',
      });
      await ex.start(pharma);
      await waitUntil('pharma’s job to start', () => fs.existsSync(path.join(jobDir(pharma.id), 'started')));
      const pharmaPid = findPid('sleep 31.5');
      const telecom = job(ex.nodes(), {
        member: 'telecom',
        user: 'tom',
        placement: [{ node: node.name, gpus: [2, 3] }],
        script: [
          '#!/bin/bash',
          'echo "user=$(id -un) uid=$(id -u)"',
          `cat ${dataDir}/operator-token && echo LEAK-token || echo no-token`,
          `cat ${dataDir}/fabrik.db && echo LEAK-store || echo no-store`,
          `cat ${jobDir(pharma.id)}/results.txt && echo LEAK-output || echo no-output`,
          `cat /proc/${pharmaPid}/environ && echo LEAK-environ || echo no-environ`,
          `kill -9 ${pharmaPid} && echo LEAK-kill || echo no-kill`,
          'echo "processes=$(ls /proc | grep -c "^[0-9]")"',
          '(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo LEAK-postgres || echo no-postgres',
          `(exec 3<>/dev/tcp/127.0.0.1/${apiPort}) 2>/dev/null && echo LEAK-api || echo no-api`,
          'echo "gpus=$(ls /dev | grep nvidia | tr "\\n" " ")"',
          'echo "visible=$CUDA_VISIBLE_DEVICES"',
          'touch /usr/x 2>/dev/null && echo LEAK-usr || echo usr-read-only',
        ].join('\n'),
      });
      await ex.start(telecom);
      expect(await waitForExit(events, telecom.id)).toMatchObject({ exitCode: 0 });
      const log = logOf(telecom);
      expect(log).not.toMatch(/LEAK|fbk_operator_secret|the store|pharma results|sk-pharma-secret/);
      expect(log).toContain('user=telecom-tom uid=');
      for (const w of ['no-token', 'no-store', 'no-output', 'no-environ', 'no-kill', 'no-postgres', 'no-api', 'usr-read-only'])
        expect(log).toContain(w);
      // Its own PID namespace: bubblewrap's init, bash, its subshell, ls and grep.
      expect(Number(/processes=(\d+)/.exec(log)?.[1])).toBeLessThan(8);
      expect(log).toContain('gpus=nvidia2 nvidia3 nvidiactl');
      expect(log).toContain('visible=2,3');
      // The job's folder and what it wrote belong to its member's user, not to root.
      const owner = fs.statSync(jobDir(telecom.id)).uid;
      expect(owner).not.toBe(0);
      expect(fs.statSync(telecom.output).uid).toBe(owner);
      expect(fs.statSync(jobDir(pharma.id)).uid).not.toBe(owner);
      // Pharma's job was not killed.
      expect(events.find((e) => e.job === pharma.id && e.kind === 'exited')).toBeUndefined();
      await ex.stop(pharma.id, 1);
      expect(await waitForExit(events, pharma.id)).toMatchObject({ reason: 'stopped' });
    } finally {
      api.close();
    }
  }, 90_000);

  it('kills a job that allocates past its memory limit, and says so in its log', async () => {
    const { ex, events } = open();
    const j = job(ex.nodes(), { command: ['node', '-e', 'const b = []; for (;;) b.push(Buffer.alloc(16 << 20, 1));'] });
    resources.set(j.id, { memoryMb: 64 });
    await ex.start(j);
    const exited = await waitForExit(events, j.id);
    expect(exited).toMatchObject({ exitCode: null, signal: 'KILL', reason: 'completed' });
    expect(logOf(j)).toContain('exceeded its memory limit');
  }, 60_000);

  it('lets the ranks of a gang meet on 127.0.0.1:MASTER_PORT in their shared network', async () => {
    const { ex, events } = open({ nodes: 2 });
    const [a, b] = ex.nodes();
    const rendezvous = [
      "const net = require('node:net'); const port = Number(process.env.MASTER_PORT);",
      "if (process.env.RANK === '0') { const s = net.createServer((c) => { c.end('hello'); s.close(); }); s.listen(port, '127.0.0.1'); }",
      "else { const go = () => { const c = net.connect(port, '127.0.0.1'); c.on('data', (d) => { console.log('rank 1 got ' + d); process.exit(0); }); c.on('error', () => setTimeout(go, 50)); }; go(); }",
    ].join('\n');
    const j = job(ex.nodes(), {
      command: ['node', '-e', rendezvous],
      placement: [
        { node: a.name, gpus: [a.gpus[0]] },
        { node: b.name, gpus: [b.gpus[0]] },
      ],
    });
    await ex.start(j);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 0 });
    expect(logOf(j)).toContain('rank 1 got hello');
  }, 60_000);

  it('serves a replica to the server through the executor’s endpoint, and to nobody on the network', async () => {
    const { ex, events } = open();
    const port = await freePort();
    const replica = job(ex.nodes(), {
      env: { FABRIK_ENGINE_PORT: String(port) },
      command: ['node', '-e', `require('node:http').createServer((q, s) => s.end('ok ' + q.url)).listen(${port}, '127.0.0.1')`],
    });
    await ex.start(replica);
    const url = ex.endpoint!(replica.id, port);
    expect(url).toMatch(/^http\+unix:\/\//);
    const socketPath = decodeURIComponent(url!.slice('http+unix://'.length));
    const body = await getWhenUp(socketPath);
    expect(body).toBe('ok /health');
    // Not on the host's loopback…
    await expect(connects(port)).resolves.toBe(false);
    // …nor from another job (its own network namespace).
    const other = job(ex.nodes(), {
      member: 'telecom',
      script: `#!/bin/bash\n(exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && echo LEAK || echo refused\n`,
    });
    await ex.start(other);
    await waitForExit(events, other.id);
    expect(logOf(other)).toContain('refused');
    await ex.stop(replica.id, 1);
    await waitForExit(events, replica.id);
  }, 60_000);

  it('refuses a job whose working directory or log is outside its folder', async () => {
    const { ex } = open();
    await expect(ex.start(job(ex.nodes(), { command: ['true'], workdir: root }))).rejects.toThrow(InvalidJobError);
    await expect(ex.start(job(ex.nodes(), { command: ['true'], output: path.join(root, 'x.log') }))).rejects.toThrow(
      /outside its folder/,
    );
  });

  it('is found again by a new executor, whose report of its end comes with its namespace and cgroup removed', async () => {
    const first = open();
    const j = job(first.ex.nodes(), { command: ['sh', '-c', 'while [ ! -e go ]; do sleep 0.05; done; exit 9'] });
    const handle = (await first.ex.start(j)) as ExecHandle & {
      sandbox: { netns: string; cgroup: { dirs: string[] } };
    };
    await first.ex.close();
    expect(fs.existsSync(`/run/netns/${handle.sandbox.netns}`)).toBe(true);
    const second = open();
    expect(await second.ex.recover([{ job: j, handle }])).toEqual({ found: [j.id], exited: [], lost: [] });
    fs.writeFileSync(path.join(jobDir(j.id), 'go'), '');
    expect(await waitForExit(second.events, j.id)).toMatchObject({ exitCode: 9, reason: 'completed' });
    await waitUntil('the namespace and cgroup to be removed', () =>
      [`/run/netns/${handle.sandbox.netns}`, ...handle.sandbox.cgroup.dirs].every((p) => !fs.existsSync(p)),
    );
  }, 60_000);

  it('gives a stopped job its grace period: the signal reaches the job, not the sandbox', async () => {
    const { ex, events } = open();
    const j = job(ex.nodes(), {
      script: '#!/bin/bash\ntrap "sleep 0.5; echo checkpointed; exit 0" TERM\ntouch started\nsleep 30 & wait\n',
      gracePeriodSeconds: 20,
    });
    await ex.start(j);
    await waitUntil('the job to start', () => fs.existsSync(path.join(jobDir(j.id), 'started')));
    await ex.stop(j.id, 20);
    expect(await waitForExit(events, j.id)).toMatchObject({ exitCode: 0, reason: 'stopped' });
    expect(logOf(j)).toContain('checkpointed');
  }, 60_000);
});

/** The host pid of a process whose command line is exactly `cmd`. */
function findPid(cmd: string): number {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim() === cmd) return Number(d);
    } catch {
      // Gone.
    }
  }
  throw new Error(`no process '${cmd}'`);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => (c.destroy(), resolve(true)));
    c.on('error', () => resolve(false));
  });
}

/** GET /health through the socket, retried until the replica listens. */
async function getWhenUp(socketPath: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const body = await new Promise<string | null>((resolve) => {
      http
        .get({ socketPath, path: '/health' }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(res.statusCode === 200 ? b : null));
        })
        .on('error', () => resolve(null));
    });
    if (body !== null) return body;
    if (Date.now() > deadline) throw new Error('the replica never answered through its socket');
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The Slurm executor's mapping, in milliseconds and without Slurm: a fake slurmrestd on 127.0.0.1
// answers with responses recorded from the real cluster (fixtures/slurmrestd, see its README) and
// keeps the requests it receives. What these tests do not cover: the multi-node stop, which calls
// `scancel` (a process, not the API), and anything Slurm itself decides (test/executors/slurm.test.ts).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ExecJob, ExecutorEvent } from '../../src/executors/executor.js';
import {
  type SlurmExecutor,
  type SlurmExecutorOptions,
  type SlurmJobInfo,
  type SlurmNodeInfo,
  SlurmRestError,
  jobTagPrefix,
  openSlurmExecutor,
  parseExitCode,
  parseGpuCount,
  slurmNodeHealth,
} from '../../src/executors/slurm.js';
import { SlurmIdentities, type SlurmIdentity, slurmName } from '../../src/executors/slurm-identity.js';
import { API, SlurmRestClient } from '../../src/executors/slurm-rest.js';
import { execJob } from './conformance.js';

// ---- the recorded answers -------------------------------------------------------------------

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'slurmrestd');
const fixture = <T = Record<string, unknown>>(name: string): T =>
  JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8')) as T;

type Listing = { meta: unknown; errors: unknown[]; jobs: SlurmJobInfo[] };
const NODES = fixture<{ nodes: SlurmNodeInfo[] }>('nodes');
const JOBS = fixture<Listing>('jobs');
/** POST /job/submit accepted (HTTP 200). */
const SUBMITTED = fixture<{ job_id: number }>('job-submit');
/**
 * POST /job/submit with `constraints` naming a down node: HTTP 200, error 2068 (as `error_code`),
 * and a job id: Slurm queued the job all the same (PENDING, ReqNodeNotAvail; it is in jobs.json).
 */
const NODE_NOT_AVAILABLE = fixture<{ job_id: number }>('job-submit-node-not-available');
/** POST /job/submit while slurmctld cannot be reached: HTTP 500, error 1800 (as `error_code`). */
const SUBMIT_CONTROLLER_DOWN = fixture('job-submit-controller-down');
/** GET /jobs while slurmctld cannot be reached: HTTP 500, `Unspecified error`, error number -1 (not 1800). */
const JOBS_CONTROLLER_DOWN = fixture('jobs-controller-down');
/** DELETE /job/{id} (with or without ?signal=) accepted (HTTP 200). */
const SIGNALLED = fixture('job-signal');
/** DELETE /job/{id} of a job Slurm does not know: HTTP 500, error 2017. */
const SIGNAL_UNKNOWN_JOB = fixture('job-signal-unknown');
/** GET /job/{id} of a job Slurm does not know: HTTP 500, error 2017. */
const UNKNOWN_JOB = fixture('job-unknown');
/** GET /job/{id} of a job that Slurm requeued (its default) after NODE_FAIL: PENDING again, restart_cnt 1. */
const REQUEUED = fixture<Listing>('job-requeued').jobs[0];

/** The first recorded job in that state (and with that raw exit status). */
function recorded(state: string, exitCode?: number): SlurmJobInfo {
  const j = JOBS.jobs.find((x) => x.job_state === state && (exitCode === undefined || x.exit_code === exitCode));
  if (!j)
    throw new Error(`fixtures/slurmrestd/jobs.json has no ${state} job${exitCode === undefined ? '' : ` exiting ${exitCode}`}`);
  return j;
}

// ---- the fake slurmrestd ----------------------------------------------------------------------

interface Answer {
  readonly status: number;
  readonly body: unknown;
}
interface Seen {
  readonly method: string;
  /** Path and query. */
  readonly path: string;
  readonly user: string | undefined;
  readonly body: unknown;
  /** performance.now() when it arrived. */
  readonly at: number;
}

interface FakeSlurmrestd {
  readonly url: string;
  readonly requests: Seen[];
  /** What GET /jobs lists and GET /job/{id} finds. */
  jobs: SlurmJobInfo[];
  /** Answers the next call of `method path` (no query) with this, once. */
  answerNext(method: string, apiPath: string, answer: Answer): void;
  reset(): void;
  close(): Promise<void>;
}

async function startFake(): Promise<FakeSlurmrestd> {
  const requests: Seen[] = [];
  const next = new Map<string, Answer[]>();
  const ok = (body: unknown): Answer => ({ status: 200, body });
  const route = (method: string, p: string): Answer => {
    if (method === 'GET' && p === `${API}/nodes`) return ok(NODES);
    if (method === 'GET' && p === `${API}/jobs`) return ok({ ...JOBS, jobs: fake.jobs });
    if (method === 'POST' && p === `${API}/job/submit`) return ok(SUBMITTED);
    const one = new RegExp(`^${API.replace(/\./g, '\\.')}/job/(\\d+)$`).exec(p);
    if (one && method === 'DELETE') return ok(SIGNALLED);
    if (one && method === 'GET') {
      const j = fake.jobs.find((x) => x.job_id === Number(one[1]));
      return j ? ok({ ...JOBS, jobs: [j] }) : { status: 500, body: UNKNOWN_JOB };
    }
    return { status: 404, body: { errors: [{ error: `fake slurmrestd: no route for ${method} ${p}`, error_number: -1 }] } };
  };
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const method = req.method ?? 'GET';
      const user = req.headers['x-slurm-user-name'];
      requests.push({
        method,
        path: url.pathname + url.search,
        user: typeof user === 'string' ? user : undefined,
        body: text === '' ? undefined : JSON.parse(text),
        at: performance.now(),
      });
      const answer = !req.headers['x-slurm-user-token']
        ? { status: 401, body: { errors: [{ error: 'no token', error_number: -1 }] } }
        : (next.get(`${method} ${url.pathname}`)?.shift() ?? route(method, url.pathname));
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fake: FakeSlurmrestd = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    jobs: [],
    answerNext(method, apiPath, answer) {
      const key = `${method} ${API}${apiPath}`;
      next.set(key, [...(next.get(key) ?? []), answer]);
    },
    reset() {
      requests.length = 0;
      next.clear();
      fake.jobs = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}

// ---- the executor under test ------------------------------------------------------------------

const INSTALLATION = '7c1e5a0f-93d2-4b8e-a1f0-2d6c9e4b7a31';
const TAG = 'fabrik:7c1e5a0f93d2:';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-slurm-recorded-'));
const KEY = path.join(tmp, 'jwt_hs256.key');
fs.writeFileSync(KEY, randomBytes(32));

let fake: FakeSlurmrestd;
beforeAll(async () => {
  fake = await startFake();
});
afterAll(async () => {
  await fake.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The executor's clock (seconds): a minute after the recorded RUNNING job started. */
let clock = 0;
const opened: SlurmExecutor[] = [];
beforeEach(() => {
  fake.reset();
  clock = (recorded('RUNNING').start_time ?? 0) + 60;
});
afterEach(async () => {
  for (const ex of opened.splice(0)) await ex.close();
});

function open(over: Partial<SlurmExecutorOptions> = {}): { ex: SlurmExecutor; events: ExecutorEvent[] } {
  const ex = openSlurmExecutor(
    { url: fake.url, jwtKeyFile: KEY, pollMs: 5, now: () => clock, installation: INSTALLATION, ...over },
    NODES.nodes,
  );
  const events: ExecutorEvent[] = [];
  ex.onEvent((e) => events.push(e));
  opened.push(ex);
  return { ex, events };
}

let seq = 0;
/** A one-node job on node1 with one GPU; its log folder exists (no mkdir, no chown). */
const job = (ex: SlurmExecutor, over: Partial<ExecJob> = {}): ExecJob =>
  execJob(`job-${++seq}`, ex.nodes(), tmp, { command: ['sleep', '600'], ...over });

/** A recorded job as Slurm would list it for `jobId`'s Slurm job `slurmJobId`. */
const listed = (j: SlurmJobInfo, slurmJobId: number, jobId: string, tag = TAG): SlurmJobInfo => ({
  ...j,
  job_id: slurmJobId,
  comment: `${tag}${jobId}`,
});

async function until<T>(what: string, probe: () => T | undefined | null | false, ms = 1000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const calls = (method?: string) =>
  fake.requests
    .filter((r) => !method || r.method === method)
    .map(({ method: m, path: p, user }) => ({ method: m, path: p, user }));
const polls = () => fake.requests.filter((r) => r.method === 'GET' && r.path === `${API}/jobs`).length;

/** Stands in for SlurmIdentities without getent or sacctmgr: the identity it would make. */
class StubIdentities extends SlurmIdentities {
  readonly asked: string[] = [];
  override forJob(j: Pick<ExecJob, 'member' | 'user' | 'project' | 'priorityClass'>): Promise<SlurmIdentity> {
    const user = this.userOf(j);
    this.asked.push(user);
    return Promise.resolve({
      user,
      uid: 1001,
      gid: 1001,
      account: slurmName(j.member),
      wckey: slurmName(j.project),
      qos: `fabrik-${j.priorityClass}`,
    });
  }
}

// ---- the tests --------------------------------------------------------------------------------

describe('slurm executor against recorded slurmrestd answers', () => {
  it('parses gres and exit codes', () => {
    expect(parseGpuCount('gpu:8')).toBe(8);
    expect(parseGpuCount('gpu:a100:4(S:0-1),gpu:h100:2')).toBe(6);
    expect(parseGpuCount('')).toBe(0);
    expect(parseGpuCount(undefined)).toBe(0);
    expect(parseGpuCount('mps:100,gpu:2')).toBe(2);
    expect(parseExitCode(768)).toEqual({ exitCode: 3, signal: null });
    expect(parseExitCode(15)).toEqual({ exitCode: null, signal: 'TERM' });
    expect(parseExitCode(0)).toEqual({ exitCode: 0, signal: null });
    expect(parseExitCode(9)).toEqual({ exitCode: null, signal: 'KILL' });
    expect(parseExitCode({ status: 'COMPLETED', return_code: 0 })).toEqual({ exitCode: 0, signal: null });
    expect(parseExitCode({ status: 'SIGNALED', return_code: 0, signal: { id: 9, name: 'KILL' } })).toEqual({
      exitCode: null,
      signal: 'KILL',
    });
    expect(parseExitCode(undefined)).toEqual({ exitCode: null, signal: null });
    // What the recorded jobs say.
    expect(parseExitCode(recorded('FAILED', 768).exit_code)).toEqual({ exitCode: 3, signal: null });
    expect(parseExitCode(recorded('COMPLETED').exit_code)).toEqual({ exitCode: 0, signal: null });
  });

  it('offers the recorded nodes with their GPUs, renamed by the node map', () => {
    expect(NODES.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3', 'node4']);
    const { ex } = open({ nodeMap: { 'dgx-a01': 'node1' } });
    const gpus = [0, 1, 2, 3, 4, 5, 6, 7];
    expect(ex.nodes()).toEqual([
      { name: 'dgx-a01', gpus, domain: 'slurm', zone: 'general', address: '127.0.0.1' },
      { name: 'node2', gpus, domain: 'slurm', zone: 'general', address: '127.0.0.1' },
      { name: 'node3', gpus, domain: 'slurm', zone: 'general', address: '127.0.0.1' },
      { name: 'node4', gpus, domain: 'slurm', zone: 'general', address: '127.0.0.1' },
    ]);
  });

  it('submits a 2-node gang pinned to the nodes chosen, ranks in the placement order', async () => {
    const { ex } = open();
    const all = [0, 1, 2, 3, 4, 5, 6, 7];
    const j = job(ex, {
      name: 'llama-pretrain',
      env: { NCCL_DEBUG: 'INFO', PATH: '/opt/mine' },
      command: ['python', 'train.py', '--epochs=3'],
      placement: [
        { node: 'node4', gpus: all },
        { node: 'node2', gpus: all },
      ],
      walltimeSeconds: 7200,
      gracePeriodSeconds: 90,
    });
    expect(await ex.start(j)).toEqual({ slurmJobId: SUBMITTED.job_id });
    expect(calls()).toEqual([
      // The duplicate guard first, then the submission; both as root without an identity.
      { method: 'GET', path: `${API}/jobs`, user: 'root' },
      { method: 'POST', path: `${API}/job/submit`, user: 'root' },
    ]);
    const program = [
      `case "$SLURMD_NODENAME" in`,
      `  '\\''node4'\\'') RANK=0 ;;`,
      `  '\\''node2'\\'') RANK=1 ;;`,
      '  *) RANK="${SLURM_PROCID:-0}" ;;',
      'esac',
      'export RANK NODE_RANK="$RANK" LOCAL_RANK=0 WORLD_SIZE=2',
      `exec '\\''python'\\'' '\\''train.py'\\'' '\\''--epochs=3'\\''`,
    ].join('\n');
    expect(fake.requests[1].body).toEqual({
      job: {
        name: 'llama-pretrain',
        comment: `${TAG}${j.id}`,
        nodes: 2,
        tasks: 2,
        tasks_per_node: 1,
        constraints: 'node4|node2',
        gres: 'gpu:8',
        // (7200 + 90) s is 121.5 minutes: 122, and one more.
        time_limit: 123,
        // The job's PATH does not win: Slurm's batch shell gets a known one.
        environment: { NCCL_DEBUG: 'INFO', PATH: '/usr/bin:/bin', FABRIK_JOB_ID: j.id },
        current_working_directory: tmp,
        standard_output: j.output,
        standard_error: j.error,
      },
      script: [
        '#!/bin/bash',
        `# Fabrik job ${j.id} (2 node(s)).`,
        `export FABRIK_JOB_ID='${j.id}' MASTER_ADDR='node4'`,
        'export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))',
        `export FABRIK_RANK_PROGRAM='${program}'`,
        'exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1 /bin/bash -c "$FABRIK_RANK_PROGRAM"',
        '',
      ].join('\n'),
    });
  });

  it("submits as the member's user with account, wckey and QOS, on the Slurm name of a mapped node", async () => {
    const identity = new StubIdentities();
    const { ex } = open({ identity, nodeMap: { 'dgx-c03': 'node3' }, partition: 'gpu' });
    const j = job(ex, {
      member: 'pharma',
      user: 'alice',
      project: 'Protein Folding',
      priorityClass: 'inference',
      command: ['sh', '-c', "echo it's"],
      script: null,
      workdir: '/srv/work',
      placement: [{ node: 'dgx-c03', gpus: [2, 5] }],
      walltimeSeconds: 59,
      gracePeriodSeconds: 0,
    });
    await ex.start(j);
    expect(identity.asked).toEqual(['pharma-alice']);
    expect(calls()).toEqual([
      { method: 'GET', path: `${API}/jobs`, user: 'pharma-alice' },
      { method: 'POST', path: `${API}/job/submit`, user: 'pharma-alice' },
    ]);
    expect(fake.requests[1].body).toEqual({
      job: {
        name: j.name,
        comment: `${TAG}${j.id}`,
        nodes: 1,
        tasks: 1,
        tasks_per_node: 1,
        constraints: 'node3',
        gres: 'gpu:2',
        time_limit: 2,
        environment: { PATH: '/usr/bin:/bin', FABRIK_JOB_ID: j.id },
        current_working_directory: '/srv/work',
        standard_output: j.output,
        standard_error: j.error,
        partition: 'gpu',
        account: 'pharma',
        wckey: slurmName('Protein Folding'),
        qos: 'fabrik-inference',
      },
      script: [
        '#!/bin/bash',
        `# Fabrik job ${j.id} (1 node(s)).`,
        `export FABRIK_JOB_ID='${j.id}' MASTER_ADDR='node3'`,
        'export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))',
        'case "$SLURMD_NODENAME" in',
        "  'node3') RANK=0 ;;",
        '  *) RANK="${SLURM_PROCID:-0}" ;;',
        'esac',
        'export RANK NODE_RANK="$RANK" LOCAL_RANK=0 WORLD_SIZE=1',
        "exec 'sh' '-c' 'echo it'\\''s'",
        '',
      ].join('\n'),
    });
  });

  it('asks no gres for a job without GPUs, and pins nothing on nodes without their own name as a feature', async () => {
    const bare = NODES.nodes.map((n) => ({ ...n, features: '' }));
    const ex = openSlurmExecutor({ url: fake.url, jwtKeyFile: KEY, installation: INSTALLATION }, bare);
    opened.push(ex);
    const j = job(ex, { placement: [{ node: 'node2', gpus: [] }], script: 'true', command: null });
    await ex.start(j);
    const body = fake.requests[1].body as { job: Record<string, unknown>; script: string };
    expect(Object.keys(body.job)).not.toContain('constraints');
    expect(Object.keys(body.job)).not.toContain('gres');
    expect(body.job.comment).toBe(`${TAG}${j.id}`);
    expect(body.script.endsWith('WORLD_SIZE=1\ntrue\n')).toBe(true);
  });

  it('adopts the Slurm job of a start that was already submitted, and submits again after one that ended', async () => {
    const { ex } = open();
    const a = job(ex);
    const b = job(ex);
    fake.jobs = [listed(recorded('PENDING'), 4711, a.id), listed(recorded('COMPLETED', 0), 4712, b.id)];
    expect(await ex.start(a)).toEqual({ slurmJobId: 4711 });
    expect(await ex.start(a)).toEqual({ slurmJobId: 4711 });
    expect(await ex.start(b)).toEqual({ slurmJobId: SUBMITTED.job_id });
    expect(calls('POST')).toEqual([{ method: 'POST', path: `${API}/job/submit`, user: 'root' }]);
    expect((await ex.slurmJobsFor(a.id)).map((s) => s.job_id)).toEqual([4711]);
  });

  // Each recorded state, listed for a job this executor submitted: the events it becomes.
  type Expect = (j: SlurmJobInfo, slurmJobId: number, id: string) => ExecutorEvent[];
  const running: Expect = (j, _, id) => [{ kind: 'running', job: id, at: j.start_time! }];
  const exited =
    (exitCode: number | null, signal: string | null, reason: 'completed' | 'stopped' | 'timeout'): Expect =>
    (j, s, id) => [...running(j, s, id), { kind: 'exited', job: id, at: j.end_time!, exitCode, signal, reason }];
  const cases: [string, number | undefined, Expect][] = [
    ['PENDING', undefined, () => []],
    ['RUNNING', undefined, running],
    ['COMPLETED', 0, exited(0, null, 'completed')],
    ['FAILED', 768, exited(3, null, 'completed')],
    // Killed by a signal nobody here sent (the OOM killer, an admin's kill).
    ['FAILED', 15, exited(null, 'TERM', 'completed')],
    // scancel by hand: not asked for here, but it did not end by itself.
    ['CANCELLED', undefined, exited(null, 'TERM', 'stopped')],
    ['TIMEOUT', undefined, exited(null, 'TERM', 'timeout')],
    [
      'NODE_FAIL',
      undefined,
      (j, s, id) => [...running(j, s, id), { kind: 'lost', job: id, at: j.end_time!, reason: `Slurm job ${s} ended NODE_FAIL` }],
    ],
  ];
  it.each(cases)('maps Slurm state %s (exit status %s) to its events', async (state, status, expected) => {
    const { ex, events } = open();
    const j = job(ex);
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    const info = recorded(state, status);
    fake.jobs = [listed(info, slurmJobId, j.id)];
    const want = expected(info, slurmJobId, j.id);
    if (want.some((e) => e.kind !== 'running')) {
      await until('the end', () => events.length >= want.length);
      // Nothing tracked any more: the polls stop.
      const after = polls();
      await new Promise((r) => setTimeout(r, 25));
      expect(polls()).toBe(after);
    } else {
      // Still tracked: a few more polls, and no second running event.
      const before = polls();
      await until('three more polls', () => polls() >= before + 3);
    }
    expect(events).toEqual(want);
    expect(calls('DELETE')).toEqual([]);
  });

  it('reports running once from PENDING to RUNNING to COMPLETED', async () => {
    const { ex, events } = open();
    const j = job(ex);
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    fake.jobs = [listed(recorded('PENDING'), slurmJobId, j.id)];
    await until('two polls', () => polls() >= 3);
    expect(events).toEqual([]);
    const run = recorded('RUNNING');
    fake.jobs = [listed(run, slurmJobId, j.id)];
    await until('running', () => events.length === 1);
    const before = polls();
    await until('two polls', () => polls() >= before + 2);
    const done = { ...recorded('COMPLETED', 0), start_time: run.start_time };
    fake.jobs = [listed(done, slurmJobId, j.id)];
    await until('exited', () => events.length === 2);
    expect(events).toEqual([
      { kind: 'running', job: j.id, at: run.start_time },
      { kind: 'exited', job: j.id, at: done.end_time, exitCode: 0, signal: null, reason: 'completed' },
    ]);
  });

  it("reports lost, and cancels Slurm's copy, when Slurm requeues a running job after NODE_FAIL (its default)", async () => {
    const { ex, events } = open();
    const j = job(ex);
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    const run = recorded('RUNNING');
    fake.jobs = [listed(run, slurmJobId, j.id)];
    await until('running', () => events.length === 1);
    // Pending again after running: Fabrik, not Slurm, decides where it runs next.
    expect(REQUEUED).toMatchObject({ job_state: 'PENDING', restart_cnt: 1, requeue: true });
    fake.jobs = [listed(REQUEUED, slurmJobId, j.id)];
    await until('lost', () => events.length === 2);
    expect(events[1]).toMatchObject({
      kind: 'lost',
      job: j.id,
      reason: `Slurm requeued job ${slurmJobId} (PENDING): a node failed`,
    });
    await until('the cancel', () => calls('DELETE').length === 1);
    expect(calls('DELETE')).toEqual([{ method: 'DELETE', path: `${API}/job/${slurmJobId}`, user: 'root' }]);
  });

  it('keeps polling through an unreachable controller, and asks by id for a job the listing lacks before calling it lost', async () => {
    const { ex, events } = open();
    const j = job(ex);
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    fake.answerNext('GET', '/jobs', { status: 500, body: JOBS_CONTROLLER_DOWN });
    fake.answerNext('GET', '/jobs', { status: 500, body: JOBS_CONTROLLER_DOWN });
    await until('lost', () => events.length > 0);
    expect(events).toEqual([
      { kind: 'lost', job: j.id, at: clock, reason: `Slurm job ${slurmJobId} is unknown to Slurm (purged?)` },
    ]);
    expect(calls().slice(1)).toEqual([
      { method: 'POST', path: `${API}/job/submit`, user: 'root' },
      { method: 'GET', path: `${API}/jobs`, user: 'root' },
      { method: 'GET', path: `${API}/jobs`, user: 'root' },
      { method: 'GET', path: `${API}/jobs`, user: 'root' },
      { method: 'GET', path: `${API}/job/${slurmJobId}`, user: 'root' },
    ]);
  });

  it('stops a one-node job: its signal through DELETE ?signal=, the cancel after the grace period', async () => {
    const { ex, events } = open();
    const j = job(ex, { signal: 'USR1' });
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    fake.jobs = [listed(recorded('RUNNING'), slurmJobId, j.id)];
    await until('running', () => events.length === 1);
    await ex.stop(j.id, 0.05);
    expect(calls('DELETE')).toEqual([{ method: 'DELETE', path: `${API}/job/${slurmJobId}?signal=10`, user: 'root' }]);
    await until('the cancel', () => calls('DELETE').length === 2);
    const [signalled, cancelled] = fake.requests.filter((r) => r.method === 'DELETE');
    expect(cancelled.path).toBe(`${API}/job/${slurmJobId}`);
    expect(cancelled.at - signalled.at).toBeGreaterThanOrEqual(45);
    // The job caught its signal, wrote its checkpoint and exited 0: stopped, with its exit code.
    const done = recorded('COMPLETED', 0);
    fake.jobs = [listed(done, slurmJobId, j.id)];
    await until('exited', () => events.length === 2);
    expect(events[1]).toEqual({ kind: 'exited', job: j.id, at: done.end_time, exitCode: 0, signal: null, reason: 'stopped' });
    // A second stop changes nothing.
    await ex.stop(j.id, 0);
    expect(calls('DELETE')).toHaveLength(2);
  });

  it('stops at once without a grace period; a job Slurm already purged is no error', async () => {
    const { ex, events } = open();
    const j = job(ex);
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    fake.jobs = [listed(recorded('RUNNING'), slurmJobId, j.id)];
    await until('running', () => events.length === 1);
    fake.answerNext('DELETE', `/job/${slurmJobId}`, { status: 500, body: SIGNAL_UNKNOWN_JOB });
    await ex.stop(j.id, 0);
    expect(calls('DELETE')).toEqual([{ method: 'DELETE', path: `${API}/job/${slurmJobId}`, user: 'root' }]);
    const cancelled = recorded('CANCELLED');
    fake.jobs = [listed(cancelled, slurmJobId, j.id)];
    await until('exited', () => events.length === 2);
    expect(events[1]).toEqual({
      kind: 'exited',
      job: j.id,
      at: cancelled.end_time,
      exitCode: null,
      signal: 'TERM',
      reason: 'stopped',
    });
  });

  it("ends a job at its walltime, counted from Slurm's start time, and reports it timed out", async () => {
    const run = recorded('RUNNING');
    const { ex, events } = open();
    const j = job(ex, { walltimeSeconds: 60, gracePeriodSeconds: 0.05 });
    const { slurmJobId } = (await ex.start(j)) as { slurmJobId: number };
    clock = run.start_time! + 59.6;
    fake.jobs = [listed(run, slurmJobId, j.id)];
    await until('running', () => events.length === 1);
    const before = polls();
    await until('two polls', () => polls() >= before + 2);
    // Armed for 0.4 s from now (by the executor's clock): nothing yet.
    expect(calls('DELETE')).toEqual([]);
    await until('the signal and the cancel', () => calls('DELETE').length === 2, 2000);
    expect(calls('DELETE')).toEqual([
      { method: 'DELETE', path: `${API}/job/${slurmJobId}?signal=15`, user: 'root' },
      { method: 'DELETE', path: `${API}/job/${slurmJobId}`, user: 'root' },
    ]);
    const cancelled = recorded('CANCELLED');
    fake.jobs = [listed(cancelled, slurmJobId, j.id)];
    await until('exited', () => events.length === 2);
    expect(events[1]).toEqual({
      kind: 'exited',
      job: j.id,
      at: cancelled.end_time,
      exitCode: null,
      signal: 'TERM',
      reason: 'timeout',
    });
  });

  it('recovers by handle: running ones are watched again, ended ones reported, the rest lost', async () => {
    const identity = new StubIdentities();
    const { ex, events } = open({ identity });
    const js = Array.from({ length: 8 }, () => job(ex, { member: 'bank', user: 'bob' }));
    const run = recorded('RUNNING');
    const completed = recorded('COMPLETED', 0);
    const failed = recorded('FAILED', 768);
    // Cancelled while PENDING (here: after a NODE_FAIL requeue): raw exit status 0.
    const cancelledPending = recorded('CANCELLED', 0);
    fake.jobs = [
      listed(run, 501, js[0].id),
      listed(completed, 502, js[1].id),
      listed(failed, 503, js[2].id),
      listed(recorded('NODE_FAIL'), 504, js[3].id),
      // Slurm job 505 is another Fabrik job's (the handle is stale).
      listed(run, 505, 'someone-else'),
      listed(recorded('PENDING'), 507, js[6].id),
      listed(cancelledPending, 508, js[7].id),
    ];
    const handles = [501, 502, 503, 504, 505, 506, 507, 508].map((id, i) => ({ job: js[i], handle: { slurmJobId: id } }));
    expect(await ex.recover(handles)).toEqual({
      found: [js[0].id, js[6].id],
      exited: [
        { job: js[1].id, exitCode: 0, at: completed.end_time },
        { job: js[2].id, exitCode: 3, at: failed.end_time },
        // Cancelled before it ran: its exit code field says 0, but it did not succeed.
        { job: js[7].id, exitCode: null, at: cancelledPending.end_time },
      ],
      // 506: unknown to Slurm (2017).
      lost: [js[3].id, js[4].id, js[5].id],
    });
    // Asked by id, as the job's user; the identity is not made again (no sacctmgr on recovery).
    expect(calls().filter((c) => c.path !== `${API}/jobs`)).toEqual(
      [501, 502, 503, 504, 505, 506, 507, 508].map((id) => ({ method: 'GET', path: `${API}/job/${id}`, user: 'bank-bob' })),
    );
    expect(identity.asked).toEqual([]);
    // The running one was reported running before the restart: only its end follows.
    fake.jobs = [listed(completed, 501, js[0].id), listed(run, 507, js[6].id)];
    await until('exited', () => events.length === 2);
    expect(events).toEqual([
      { kind: 'exited', job: js[0].id, at: completed.end_time, exitCode: 0, signal: null, reason: 'completed' },
      { kind: 'running', job: js[6].id, at: run.start_time },
    ]);
  });

  it('recovers a job without a handle by its tag (the newest Slurm job), and calls lost one Slurm never saw', async () => {
    const { ex } = open();
    const [a, b] = [job(ex), job(ex)];
    fake.jobs = [
      listed(recorded('CANCELLED'), 610, a.id),
      listed(recorded('RUNNING'), 611, a.id),
      // Another installation's job of the same Fabrik id is not this one's.
      listed(recorded('RUNNING'), 612, b.id, jobTagPrefix('0000aaaa-0000-0000-0000-000000000000')),
    ];
    expect(
      await ex.recover([
        { job: a, handle: {} },
        { job: b, handle: {} },
      ]),
    ).toEqual({ found: [a.id], exited: [], lost: [b.id] });
    // One listing to find the tags, then the newest one by id; the poll of the job now watched may
    // already have listed again on a slow machine.
    expect(calls()[0]).toEqual({ method: 'GET', path: `${API}/jobs`, user: 'root' });
    expect(calls().filter((c) => c.path !== `${API}/jobs`)).toEqual([{ method: 'GET', path: `${API}/job/611`, user: 'root' }]);
  });

  it("reports Slurm's view of the recorded nodes: drained is draining, down is down, with Slurm's reason", async () => {
    const { ex } = open({ nodeMap: { 'dgx-b02': 'node2' } });
    const health = await ex.nodeHealth!();
    const byName = new Map(NODES.nodes.map((n) => [n.name, n]));
    expect(health).toEqual([
      { node: 'node1', state: 'up', reason: null },
      { node: 'dgx-b02', state: 'draining', reason: byName.get('node2')!.reason },
      { node: 'node3', state: 'up', reason: null },
      { node: 'node4', state: 'down', reason: byName.get('node4')!.reason },
    ]);
    expect(health[1].reason).toMatch(/\S/);
    expect(health[3].reason).toMatch(/\S/);
    expect(slurmNodeHealth({ name: 'x', state: 'idle', state_flags: ['MAINTENANCE', 'RESERVED'] })).toBe('maintenance');
    expect(slurmNodeHealth({ name: 'x', state: 'idle', state_flags: ['NOT_RESPONDING'] })).toBe('draining');
  });

  it('rejects a submission refused for an unavailable node as transient, and cancels the job Slurm queued anyway', async () => {
    const { ex } = open();
    const j = job(ex, { placement: [{ node: 'node4', gpus: [0] }] });
    fake.answerNext('POST', '/job/submit', { status: 200, body: NODE_NOT_AVAILABLE });
    const err = await ex.start(j).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SlurmRestError);
    expect(err).toMatchObject({ status: 200, method: 'POST', slurmErrorNumbers: [2068], transient: true });
    expect((err as Error).message).toMatch(/HTTP 200: Required node not available \(down, drained or reserved\)/);
    await new Promise((r) => setTimeout(r, 25));
    expect(polls()).toBe(1);
    // The refusal carried a job id, which Slurm would keep PENDING for node4: it is cancelled, so
    // that the job placed again elsewhere is submitted anew, not adopted from the old placement.
    const queued = JOBS.jobs.find((x) => x.job_id === NODE_NOT_AVAILABLE.job_id)!;
    expect(queued).toMatchObject({ job_state: 'PENDING', state_reason: 'ReqNodeNotAvail' });
    expect(calls('DELETE')).toEqual([{ method: 'DELETE', path: `${API}/job/${queued.job_id}`, user: 'root' }]);
    fake.jobs = [listed({ ...queued, job_state: 'CANCELLED' }, queued.job_id, j.id)];
    const again = await ex.start({ ...j, placement: [{ node: 'node1', gpus: [0] }] });
    expect(again).not.toEqual({ slurmJobId: queued.job_id });
    expect(calls('POST')).toHaveLength(2);
  });

  it('calls an unreachable controller or slurmrestd transient, and an unknown job not', async () => {
    const { ex } = open();
    fake.answerNext('POST', '/job/submit', { status: 500, body: SUBMIT_CONTROLLER_DOWN });
    const down = await ex.start(job(ex)).catch((e: unknown) => e);
    expect(down).toMatchObject({ status: 500, slurmErrorNumbers: [1800], transient: true });
    expect((down as Error).message).toMatch(/HTTP 500: Unable to contact slurm controller \(connect failure\)/);

    // The listing that start() asks first answers a down slurmctld with a bare -1: transient too.
    fake.answerNext('GET', '/jobs', { status: 500, body: JOBS_CONTROLLER_DOWN });
    const listing = await ex.start(job(ex)).catch((e: unknown) => e);
    expect(listing).toMatchObject({ status: 500, slurmErrorNumbers: [-1], transient: true });
    expect((listing as Error).message).toMatch(/HTTP 500: Unspecified error: Failed while looking for jobs/);

    const client = new SlurmRestClient({ url: fake.url, jwtKeyFile: KEY });
    const unknown = await client.request('GET', `${API}/job/999999`, 'root').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(SlurmRestError);
    expect(unknown).toMatchObject({ status: 500, slurmErrorNumbers: [2017], transient: false });
    expect((unknown as Error).message).toMatch(/Invalid job id specified: Unable to find JobId=999999/);

    // A port nobody listens on: a server that is closed again.
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const far = new SlurmRestClient({ url: `http://127.0.0.1:${port}`, jwtKeyFile: KEY });
    const unreachable = await far.request('GET', `${API}/nodes`, 'root').catch((e: unknown) => e);
    expect(unreachable).toMatchObject({ status: 0, slurmErrorNumbers: [], transient: true });
    expect((unreachable as Error).message).toMatch(/unreachable/);
  });
});

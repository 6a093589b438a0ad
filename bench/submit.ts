// npm run bench:submit — acknowledged, durable job submissions per second through the HTTP API,
// 50 concurrent clients, against a real `fabrik up` (its own process, simulated executor on
// se-factory, scheduling loop running) on SQLite and on PostgreSQL; and, in the same run,
// `sbatch` submissions per second against the local Slurm when one answers. Last line:
// {"sqlite_submits_per_s":…,"postgres_submits_per_s":…,"sbatch_submits_per_s":…|null,"p99_ms":…}
import { spawn, spawnSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import pg from 'pg';
import { memberAdminToken, startFabrik } from './fabrik-up.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const PG_URL = process.env.BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Run {
  perSecond: number;
  p50: number;
  p99: number;
  submitted: number;
}

async function load(url: string, operator: string): Promise<Run> {
  const latencies: number[] = [];
  const body = JSON.stringify({ name: 'bench', command: ['true'], gpus: 1, walltimeSeconds: 600 });
  // Each member's admin submits its member's jobs (an operator submits for no member), in turn.
  let member = 0;
  const members: string[] = [];
  for (const m of ['pharma', 'telecom', 'bank', 'invest']) members.push(await memberAdminToken(url, operator, m));
  const warmupEnd = performance.now() + 1000;
  const end = warmupEnd + SECONDS * 1000;
  let counted = 0;
  // node:http with keep-alive, not fetch: the load generator shares the 2 cores with the server,
  // and fetch costs it about twice the CPU per request.
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const target = new URL(`${url}/v1/jobs`);
  const post = (key: string, token: string, payload: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          agent,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'idempotency-key': key,
            'content-length': Buffer.byteLength(payload),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  const client = async (c: number) => {
    for (let i = 0; ; i++) {
      const t0 = performance.now();
      if (t0 >= end) return;
      const status = await post(`c${c}-${i}`, members[member++ % members.length], body);
      if (status !== 201) throw new Error(`submit answered ${status}`);
      const t1 = performance.now();
      if (t0 >= warmupEnd && t1 <= end) {
        latencies.push(t1 - t0);
        counted++;
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  return { perSecond: counted / SECONDS, p50: q(0.5), p99: q(0.99), submitted: counted };
}

async function fabrikRun(store: string | null): Promise<Run> {
  const f = await startFabrik(['--executor', 'simulated', ...(store ? ['--store', store] : [])]);
  try {
    return await load(f.url, f.token);
  } finally {
    await f.stop();
  }
}

/** A fresh database per run, so the PostgreSQL figure starts from the same empty store as SQLite. */
async function freshPostgres(): Promise<{ url: string; drop: () => Promise<void> } | null> {
  const name = `fabrik_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  try {
    await admin.connect();
  } catch {
    return null;
  }
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** sbatch against the local Slurm, the same number of concurrent clients; null when no Slurm answers. */
async function sbatchRun(): Promise<Run | null> {
  if (spawnSync('sinfo', ['-h'], { timeout: 5000 }).status !== 0) return null;
  const latencies: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  // One name for this run's jobs: they are held (never run) and removed together at the end.
  const benchName = `fabrik-bench-${process.pid}`;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const t0 = performance.now();
      const p = spawn('sbatch', ['--parsable', '--hold', '-t', '10', '-J', benchName, '--wrap', 'true'], {
        stdio: ['ignore', 'ignore', 'ignore'],
      });
      p.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`sbatch exited with ${code}`));
        latencies.push(performance.now() - t0);
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  // Remove them so the bench leaves Slurm as it found it.
  spawnSync('scancel', ['--name', benchName]);
  latencies.sort((a, b) => a - b);
  return {
    perSecond: latencies.length / SECONDS,
    p50: latencies[Math.floor(latencies.length / 2)],
    p99: latencies[Math.floor(latencies.length * 0.99)],
    submitted: latencies.length,
  };
}

const fmt = (r: Run) =>
  `${Math.round(r.perSecond)}/s (p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ${r.submitted} jobs)`;
const sqlite = await fabrikRun(null);
console.log(`sqlite:   ${fmt(sqlite)}`);
const db = await freshPostgres();
let postgres: Run | null = null;
if (db) {
  try {
    postgres = await fabrikRun(db.url);
    console.log(`postgres: ${fmt(postgres)}`);
  } finally {
    await db.drop();
  }
} else console.log(`postgres: not reachable at ${PG_URL}`);
const sbatch = await sbatchRun();
console.log(sbatch ? `sbatch:   ${fmt(sbatch)}` : 'sbatch:   no Slurm answers here (sinfo failed); see scripts/slurm');
if (sbatch) console.log(`fabrik(sqlite)/sbatch: ${(sqlite.perSecond / sbatch.perSecond).toFixed(1)}×`);
console.log(
  JSON.stringify({
    sqlite_submits_per_s: Math.round(sqlite.perSecond),
    postgres_submits_per_s: postgres ? Math.round(postgres.perSecond) : null,
    sbatch_submits_per_s: sbatch ? Math.round(sbatch.perSecond) : null,
    p99_ms: Math.round(sqlite.p99 * 10) / 10,
  }),
);

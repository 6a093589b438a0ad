// npm run bench:slurm — time from submission to the job running on Slurm: through Fabrik (the API,
// the scheduling loop, slurmrestd) and with `sbatch` straight to Slurm, alternated in one run on
// the local cluster (scripts/slurm/up.sh). Both are observed the same way: polling squeue until
// the Slurm job is R. Last line:
// {"fabrik_submit_to_running_ms_p50":…,"sbatch_submit_to_running_ms_p50":…,"fabrik_submit_to_running_ms_p99":…,"sbatch_submit_to_running_ms_p99":…,"overhead_ms_p50":…}
import { execFileSync, spawnSync } from 'node:child_process';
import { memberAdminToken, startFabrik } from './fabrik-up.js';

const TRIALS = Number(process.env.BENCH_TRIALS ?? 20);

if (spawnSync('sinfo', ['-h'], { timeout: 5000 }).status !== 0) {
  console.error('bench:slurm: no Slurm answers here; start it with scripts/slurm/up.sh');
  process.exit(1);
}

/** Polls squeue until `match` finds the job running; returns when it does. */
async function untilRunning(match: (line: string) => boolean, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    const out = execFileSync('squeue', ['-h', '-t', 'R', '-o', '%i %j %k'], { encoding: 'utf8' });
    if (out.split('\n').some(match)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the job did not start within 30 s');
}

// Jobs run as the member's Unix user (pharma-pharma-bench here, its admin's), made on the first job.
const f = await startFabrik(['--executor', 'slurm', '--slurm-create-users']);
const url = f.url;
// Pharma's admin submits (an operator submits for no member); the operator cancels.
const pharma = await memberAdminToken(f.url, f.token, 'pharma');
const headers = { authorization: `Bearer ${f.token}`, 'content-type': 'application/json' };

const fabrik: number[] = [];
const sbatch: number[] = [];
try {
  // One unmeasured trial first: the first Fabrik job makes its Unix user, Slurm account, wckey and QOS.
  for (let i = -1; i < TRIALS; i++) {
    let t0 = performance.now();
    const r = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${pharma}` },
      body: JSON.stringify({
        name: `bench-fabrik-${process.pid}`,
        script: '#!/bin/bash\nsleep 30\n',
        gpus: 1,
        gracePeriodSeconds: 1,
      }),
    });
    const id = ((await r.json()) as { jobs: { id: string }[] }).jobs[0].id;
    await untilRunning((line) => line.includes(` bench-fabrik-${process.pid} fabrik:`) && line.endsWith(`:${id}`));
    if (i >= 0) fabrik.push(performance.now() - t0);
    await fetch(`${url}/v1/jobs/${id}/cancel`, { method: 'POST', headers });

    t0 = performance.now();
    const jobId = execFileSync(
      'sbatch',
      ['--parsable', '--gres=gpu:1', '-J', 'bench-sbatch', '-o', '/dev/null', '--wrap', 'sleep 30'],
      {
        encoding: 'utf8',
      },
    )
      .trim()
      .split(';')[0];
    await untilRunning((line) => line.startsWith(`${jobId} `));
    if (i >= 0) sbatch.push(performance.now() - t0);
    spawnSync('scancel', [jobId]);
  }
} finally {
  await f.stop();
  // Jobs cancelled through Fabrik may still be in their grace period when it stops.
  spawnSync('scancel', ['--name', 'bench-sbatch']);
  spawnSync('scancel', ['--name', `bench-fabrik-${process.pid}`]);
}

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const ms = (x: number) => Math.round(x * 10) / 10;
console.log(`fabrik → running on Slurm: p50 ${ms(q(fabrik, 0.5))} ms, p99 ${ms(q(fabrik, 0.99))} ms (${TRIALS} jobs)`);
console.log(`sbatch → running:          p50 ${ms(q(sbatch, 0.5))} ms, p99 ${ms(q(sbatch, 0.99))} ms (${TRIALS} jobs)`);
console.log(
  JSON.stringify({
    fabrik_submit_to_running_ms_p50: ms(q(fabrik, 0.5)),
    sbatch_submit_to_running_ms_p50: ms(q(sbatch, 0.5)),
    fabrik_submit_to_running_ms_p99: ms(q(fabrik, 0.99)),
    sbatch_submit_to_running_ms_p99: ms(q(sbatch, 0.99)),
    overhead_ms_p50: ms(q(fabrik, 0.5) - q(sbatch, 0.5)),
  }),
);

// npm run bench:sim [-- TRACE] — replays a whole trace (default: the 82k-job Philly trace) on
// se-factory through fifo, slurm and fabrik, and prints, last, the summary JSON line with
// "sim_seconds_per_wall_second" and "wall_s".
import { loadConsortium, loadSite } from '../src/config/index.js';
import { runStudyInParallel, summaryLine } from '../src/sim/run.js';
import { readTrace } from '../src/sim/trace.js';

const root = new URL('../', import.meta.url).pathname;
const file = process.argv[2] ?? `${root}../shared/data/traces/philly.csv`;
const site = loadSite(`${root}sites/se-factory.yaml`);
const consortium = loadConsortium(`${root}consortia/demo.yaml`, site);
const started = performance.now();
const trace = readTrace(file);
let simulated = 0;
const results = await runStudyInParallel({ site, consortium, trace, policies: ['fifo', 'slurm', 'fabrik'], seed: 1, load: 0.9 });
const wall = (performance.now() - started) / 1000;
for (const [name, p] of Object.entries(results.policies)) {
  simulated += p.summary.makespan_s;
  const s = p.summary;
  console.log(
    `${name}: avg JCT ${Math.round(s.avg_jct_s)} s, p99 wait ${Math.round(s.p99_wait_s)} s, utilization ${s.utilization.toFixed(3)}, ` +
      `Jain ${s.jain.toFixed(3)}, makespan ${(s.makespan_s / 86400).toFixed(1)} d`,
  );
}
const f = results.policies.fabrik.summary;
const sl = results.policies.slurm.summary;
console.log(
  `fabrik/slurm: avg JCT ${(f.avg_jct_s / sl.avg_jct_s).toFixed(2)}×, p99 wait ${(f.p99_wait_s / sl.p99_wait_s).toFixed(2)}×, ` +
    `utilization ${(f.utilization / sl.utilization).toFixed(3)}×; fabrik's longest large-gang wait ` +
    `${(f.max_large_gang_wait_s / 3600).toFixed(1)} h (bound ${(results.largeGangBoundSeconds / 3600).toFixed(1)} h, ` +
    `${results.cycleSeconds} s rounds, load ${results.load})`,
);
console.log(
  summaryLine(results, { sim_seconds_per_wall_second: Math.round(simulated / wall), wall_s: Math.round(wall * 10) / 10 }),
);

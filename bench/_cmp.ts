import { readFileSync } from 'node:fs';
import { loadConsortium, loadSite } from '../src/config/index.js';
import { runStudy } from '../src/sim/run.js';
import { parseTrace } from '../src/sim/trace.js';
const site = loadSite('sites/se-factory.yaml');
const consortium = loadConsortium('consortia/demo.yaml', site);
const text = readFileSync('../shared/data/traces/philly-2017-10-02-to-10-15.csv', 'utf8');
const trace = parseTrace(text, 'w');
const t0 = performance.now();
const r = runStudy({ site, consortium, trace, policies: (process.argv[2] ?? 'slurm,fabrik').split(','), seed: 1, load: Number(process.argv[3] ?? 0.9) });
for (const [p, x] of Object.entries(r.policies)) { const s = x.summary; console.log(p, 'avgJCT', Math.round(s.avg_jct_s), 'avgWait', Math.round(s.avg_wait_s), 'p99wait', Math.round(s.p99_wait_s), 'util', s.utilization.toFixed(3), 'jain', s.jain.toFixed(3), 'lost', s.gpu_hours_lost.toFixed(0)); }
console.log(Math.round(performance.now() - t0), 'ms');

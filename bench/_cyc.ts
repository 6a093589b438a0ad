import { readFileSync } from 'node:fs';
import { loadConsortium, loadSite } from '../src/config/index.js';
import { simulate } from '../src/sim/engine.js';
import { summarize } from '../src/sim/metrics.js';
import { POLICIES } from '../src/sim/policies/index.js';
import { parseTrace, traceWorkload } from '../src/sim/trace.js';
const site = loadSite('sites/se-factory.yaml');
const consortium = loadConsortium('consortia/demo.yaml', site);
const trace = parseTrace(readFileSync('../shared/data/traces/philly-2017-10-02-to-10-15.csv', 'utf8'), 'w');
const wl = traceWorkload(trace, site, consortium, { load: 0.9, seed: 1 });
for (const [c, i] of [[30, 300], [60, 600], [120, 600]]) {
  const t0 = performance.now();
  const run = simulate({ site, consortium, jobs: wl.jobs, policy: POLICIES[process.argv[2] ?? 'fabrik'], cycleSeconds: c, idleCycleSeconds: i });
  const s = summarize(run, consortium, site).summary;
  console.log(c, i, Math.round(performance.now() - t0), 'ms cycles', run.cycles, 'avgJCT', Math.round(s.avg_jct_s), 'avgWait', Math.round(s.avg_wait_s), 'p99wait', Math.round(s.p99_wait_s));
}

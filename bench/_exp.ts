import { loadConsortium, loadSite } from '../src/config/index.js';
import { simulate } from '../src/sim/engine.js';
import { summarize } from '../src/sim/metrics.js';
import { POLICIES } from '../src/sim/policies/index.js';
import { readTrace, traceWorkload } from '../src/sim/trace.js';
const root = new URL('../', import.meta.url).pathname;
const site = loadSite(`${root}sites/se-factory.yaml`);
const consortium = loadConsortium(`${root}consortia/demo.yaml`, site);
const trace = readTrace(process.argv[2]);
const w = traceWorkload(trace, site, consortium, {
  load: Number(process.env.LOAD ?? 0.9),
  seed: 1,
  maxJobSeconds: process.env.CAP ? Number(process.env.CAP) * 3600 : null,
});
const t0 = performance.now();
const run = simulate({
  site,
  consortium,
  jobs: w.jobs,
  policy: POLICIES[process.argv[3]],
  queueDepth: Number(process.env.DEPTH ?? 128),
  cycleSeconds: Number(process.env.CYCLE ?? 60),
});
const res = summarize(run, consortium, site);
{
  let iw = 0,
    ie = 0,
    n = 0,
    ww = 0;
  for (const x of run.samples) {
    if (x.t < run.start || x.t > run.lastSubmit) continue;
    n++;
    const idle = x.upGpus - x.usedGpus;
    if (x.queueLength > 0) {
      iw += idle;
      ww++;
    } else ie += idle;
  }
  console.log('idle-with-queue', (iw / n).toFixed(1), 'idle-empty', (ie / n).toFixed(1), 'samples-with-queue', ww, '/', n);
}
const s = res.summary;
if (process.env.MEMBERS) for (const [k, v] of Object.entries(res.byMember)) console.log(k, JSON.stringify(v).slice(0, 300));
if (process.env.MEMBERS) for (const [k, v] of Object.entries(res.bySize)) console.log(k, JSON.stringify(v).slice(0, 300));
if (process.env.SERIES) {
  const se = res.series;
  const k = Math.ceil(se.t.length / 25);
  for (let i = 0; i < se.t.length; i += k)
    console.log(
      (se.t[i] / 86400).toFixed(1),
      se.utilization[i].toFixed(2),
      se.queueLength[i],
      Object.entries(se.memberShare)
        .map(([m, v]) => m.slice(0, 3) + ':' + Math.round(v[i] * 1152))
        .join(' '),
    );
}
const r = (x: number) => Math.round(x);
console.log(
  process.argv[3],
  process.env.TAG ?? '',
  `wall ${((performance.now() - t0) / 1000).toFixed(0)}s`,
  `jct ${r(s.avg_jct_s)} p99jct ${r(s.p99_jct_s)} wait ${r(s.avg_wait_s)} p99w ${r(s.p99_wait_s)} util ${s.utilization.toFixed(3)} jain ${s.jain.toFixed(3)} lg ${r(s.max_large_gang_wait_s)} lost ${r(s.gpu_hours_lost)} preempt ${s.preemptions}`,
);

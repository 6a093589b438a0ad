// `fabrik sim`: replay a job trace on a site through several policies, side by side.
import { Command, InvalidArgumentError } from 'commander';
import { MultiBar, Presets } from 'cli-progress';
import { existsSync } from 'node:fs';
import { loadConsortium, loadSite } from '../config/index.js';
import { writeReport } from '../sim/report.js';
import { DEFAULT_ROUND_SECONDS, runStudyInParallel, summaryLine } from '../sim/run.js';
import { readNodeEvents } from '../sim/node-events.js';
import { readTrace } from '../sim/trace.js';

const root = new URL('../../', import.meta.url).pathname;

/** `se-factory` names a shipped site; anything else is a path. */
function sitePath(v: string): string {
  const shipped = `${root}sites/${v}.yaml`;
  return existsSync(shipped) ? shipped : v;
}

function positive(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'.`);
    return n;
  };
}

export function simCommand(): Command {
  return new Command('sim')
    .description('replay a job trace on a site through scheduling policies, side by side')
    .requiredOption('--trace <file>', 'CSV job trace (see docs/simulation-traces.md)')
    .option('--site <name|file>', 'site: a shipped name (se-factory) or a YAML file', 'se-factory')
    .option('--consortium <file>', 'consortium description (YAML)', `${root}consortia/demo.yaml`)
    .option('--policies <list>', 'comma-separated policies', 'fifo,slurm,fabrik')
    .option('--seed <n>', 'seed of the walltime noise model', positive('--seed'), 1)
    .option('--load <x>', 'offered load as a multiple of the site capacity', positive('--load'), 0.9)
    .option('--max-job-hours <h>', 'cap on a job run time, hours', positive('--max-job-hours'))
    .option(
      '--cycle-seconds <s>',
      'scheduling round: a cycle runs at most this often',
      positive('--cycle-seconds'),
      DEFAULT_ROUND_SECONDS,
    )
    .option('--node-events <file>', 'what-if: racks or nodes down, draining or up at given hours (CSV)')
    .option('--report <dir>', 'write a self-contained HTML report into this folder')
    .option('--json', 'print the summary as one JSON line, last')
    .action(async (o) => {
      const site = loadSite(sitePath(o.site));
      const consortium = loadConsortium(o.consortium, site);
      const trace = readTrace(o.trace);
      // Rows left out are counted, never dropped silently: each reason with the first line to look at.
      const left = Object.entries(trace.rejected);
      if (left.length > 0)
        console.error(
          `${o.trace}: ${left.reduce((sum, [, k]) => sum + k, 0)} of ${trace.rows} rows left out: ` +
            left.map(([why, k]) => `${why} ${k} (first at line ${trace.firstRejectedLine[why]})`).join('; '),
        );
      const nodeEvents = o.nodeEvents ? readNodeEvents(o.nodeEvents, site) : undefined;
      const policies = String(o.policies)
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
      const bars = process.stderr.isTTY
        ? new MultiBar({ format: ' {policy} [{bar}] {value}/{total} jobs', hideCursor: true }, Presets.shades_classic)
        : null;
      const bar = new Map<string, ReturnType<MultiBar['create']>>();
      const started = performance.now();
      const results = await runStudyInParallel({
        site,
        consortium,
        trace,
        policies,
        seed: o.seed,
        load: o.load,
        maxJobSeconds: o.maxJobHours ? o.maxJobHours * 3600 : null,
        cycleSeconds: o.cycleSeconds,
        nodeEvents,
        onProgress: bars
          ? (policy, done, total) => {
              if (!bar.has(policy)) bar.set(policy, bars.create(total, 0, { policy: policy.padEnd(6) }));
              bar.get(policy)!.update(done);
            }
          : undefined,
      });
      bars?.stop();
      const wall = (performance.now() - started) / 1000;
      if (o.report) console.error(`report: ${writeReport(results, o.report)}`);
      if (!o.json) {
        for (const [name, p] of Object.entries(results.policies)) {
          const s = p.summary;
          console.log(
            `${name.padEnd(7)} avg JCT ${(s.avg_jct_s / 3600).toFixed(2)} h  p99 wait ${(s.p99_wait_s / 3600).toFixed(2)} h  ` +
              `utilization ${(s.utilization * 100).toFixed(1)}%  Jain ${s.jain.toFixed(3)}  ` +
              `max large-gang wait ${(s.max_large_gang_wait_s / 3600).toFixed(2)} h  lost ${s.gpu_hours_lost.toFixed(0)} GPU-h`,
          );
        }
        console.log(
          `${results.jobs} jobs from ${results.trace} on ${results.site} at load ${results.load}, ` +
            `${results.cycleSeconds} s rounds, large-gang wait bound ${(results.largeGangBoundSeconds / 3600).toFixed(1)} h; ` +
            `${wall.toFixed(1)} s`,
        );
      }
      if (o.json) console.log(summaryLine(results));
    });
}

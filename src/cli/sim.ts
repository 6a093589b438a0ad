// `fabrik sim`: replay a job trace, or a generated workload, on a site through several policies,
// side by side; `fabrik sim generate`: write a generated workload as a trace file.
import { Command, InvalidArgumentError, Option } from 'commander';
import { MultiBar, Presets } from 'cli-progress';
import { existsSync, writeFileSync } from 'node:fs';
import { loadConsortium, loadSite } from '../config/index.js';
import { DEFAULT_DAYS, generateWorkload, isShape, SHAPES, traceCsv, type Shape } from '../sim/generate.js';
import { describeLongestReclaim, writeReport } from '../sim/report.js';
import { DEFAULT_ROUND_SECONDS, runStudyInParallel, summaryLine } from '../sim/run.js';
import { readNodeEvents } from '../sim/node-events.js';
import { readReservations } from '../sim/reservations.js';
import { DEFAULT_LOAD, readTrace, type ParsedTrace } from '../sim/trace.js';
import type { NodeEvent } from '../sim/engine.js';

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

function nonNegative(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a number of seconds ≥ 0, got '${v}'.`);
    return n;
  };
}

/** A seed is a whole number: it seeds pure-rand's generators. */
function seedArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < 0)
    throw new InvalidArgumentError(`--seed must be a whole number ≥ 0, got '${v}'.`);
  return n;
}

function shapeArg(v: string): Shape {
  if (!isShape(v)) throw new InvalidArgumentError(`unknown shape '${v}' (known: ${SHAPES.join(', ')}).`);
  return v;
}

function daysArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 366)
    throw new InvalidArgumentError(`--days must be a number of days in (0, 366], got '${v}'.`);
  return n;
}

/** `--load 0.9`, or `--load trace`: the trace's own submission times (commander keeps no null). */
function loadArg(v: string): number | 'trace' {
  if (v === 'trace') return v;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError(`--load must be a positive number, or 'trace' for the trace's own times, got '${v}'.`);
  return n;
}

/** Every flag error is a usage error: a message and exit 2 (help and --version still exit 0). */
function usageExits(c: Command): Command {
  return c.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
}

function shapeList(): string {
  return SHAPES.map((s) => `${s} (${DEFAULT_DAYS[s]} d)`).join(', ');
}

export function simCommand(): Command {
  const sim = usageExits(
    new Command('sim')
      .description('replay a job trace (or a generated workload) on a site through scheduling policies, side by side')
      // `fabrik sim generate --seed 2`: options after `generate` are its own.
      .enablePositionalOptions()
      .option('--trace <file>', 'CSV job trace (see docs/simulation-traces.md)')
      .option('--shape <name>', `instead of --trace, a generated workload: ${shapeList()}`, shapeArg)
      .option('--days <d>', "with --shape: days of submissions (default: the shape's)", daysArg)
      .option(
        '--site <name|file>',
        'site: a shipped name (se-factory, se-superpod, se-superpod-gpu-count) or a YAML file',
        'se-factory',
      )
      .option('--consortium <file>', 'consortium description (YAML)', `${root}consortia/demo.yaml`)
      .option('--policies <list>', 'comma-separated policies', 'fifo,slurm,fabrik')
      .option('--seed <n>', 'seed of the walltime noise model (and of the generated workload)', seedArg, 1)
      .option(
        '--load <x>',
        "offered load as a multiple of the site capacity, or 'trace' to keep the trace's own submission times",
        loadArg,
        DEFAULT_LOAD,
      )
      .option('--max-job-hours <h>', 'cap on a job run time, hours', positive('--max-job-hours'))
      .option(
        '--cycle-seconds <s>',
        'scheduling round: a cycle runs at most this often',
        positive('--cycle-seconds'),
        DEFAULT_ROUND_SECONDS,
      )
      .addOption(
        new Option(
          '--preemption <mode>',
          'what a preempted job loses: checkpoint (the work since its last checkpoint) or resume (nothing; it restarts after --restart-overhead)',
        )
          .choices(['checkpoint', 'resume'])
          .default('checkpoint'),
      )
      .option(
        '--restart-overhead <s>',
        'seconds a preempted or requeued job spends restarting on its GPUs before it makes progress (default: 30 with resume, 0 with checkpoint)',
        nonNegative('--restart-overhead'),
      )
      .option('--node-events <file>', 'what-if: racks or nodes down, draining or up at given hours (CSV)')
      .option(
        '--reservations <file>',
        'capability runs: GPUs booked for a member at given hours (CSV start_hours,duration_hours,member,gpus)',
      )
      .option('--report <dir>', 'write a self-contained HTML report into this folder')
      .option('--json', 'print the summary as one JSON line, last'),
  ).action(async (o) => {
    if ((o.trace === undefined) === (o.shape === undefined))
      sim.error('error: give either --trace FILE or --shape NAME (one of them)', { exitCode: 2 });
    if (o.days !== undefined && o.shape === undefined) sim.error('error: --days applies with --shape only', { exitCode: 2 });
    const site = loadSite(sitePath(o.site));
    const consortium = loadConsortium(o.consortium, site);
    const load: number | null = o.load === 'trace' ? null : o.load;
    let trace: ParsedTrace;
    let nodeEvents: NodeEvent[] | undefined;
    if (o.shape !== undefined) {
      // Made for this site and load, so that the replay's load scaling keeps its clock.
      const generated = generateWorkload({ shape: o.shape, seed: o.seed, site, days: o.days, load: load ?? DEFAULT_LOAD });
      trace = generated.trace;
      if (generated.nodeEvents.length > 0) nodeEvents = generated.nodeEvents;
    } else {
      trace = readTrace(o.trace);
      // Rows left out are counted, never dropped silently: each reason with the first line to look at.
      const left = Object.entries(trace.rejected);
      if (left.length > 0)
        console.error(
          `${o.trace}: ${left.reduce((sum, [, k]) => sum + k, 0)} of ${trace.rows} rows left out: ` +
            left.map(([why, k]) => `${why} ${k} (first at line ${trace.firstRejectedLine[why]})`).join('; '),
        );
    }
    // A what-if file's events come on top of a generated shape's own.
    if (o.nodeEvents) nodeEvents = [...(nodeEvents ?? []), ...readNodeEvents(o.nodeEvents, site)];
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
      load,
      maxJobSeconds: o.maxJobHours ? o.maxJobHours * 3600 : null,
      cycleSeconds: o.cycleSeconds,
      preemption: o.preemption,
      restartOverheadSeconds: o.restartOverhead,
      nodeEvents,
      reservations: o.reservations ? readReservations(o.reservations, site, consortium) : undefined,
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
            `max large-gang wait ${(s.max_large_gang_wait_s / 3600).toFixed(2)} h  lost ${s.gpu_hours_lost.toFixed(0)} GPU-h  ` +
            `longest reclaim ${s.max_reclaim_latency_s === null ? '–' : `${(s.max_reclaim_latency_s / 3600).toFixed(2)} h`}`,
        );
      }
      // Why each policy's longest reclaim lasted, where it lasted long enough to be explained.
      for (const [name, p] of Object.entries(results.policies)) {
        const longest = p.summary.longest_reclaim;
        if (longest?.seen) console.log(`${name.padEnd(7)} longest reclaim: ${describeLongestReclaim(longest)}`);
      }
      const offered = load === null ? `its own times (load ${results.load.toFixed(3)})` : `load ${results.load}`;
      console.log(
        `${results.jobs} jobs from ${results.trace} on ${results.site} at ${offered}, ` +
          `${results.cycleSeconds} s rounds, preemption ${o.preemption}, ` +
          `large-gang wait bound ${(results.largeGangBoundSeconds / 3600).toFixed(1)} h; ${wall.toFixed(1)} s`,
      );
    }
    if (o.json) console.log(summaryLine(results));
  });
  sim.addCommand(generateCommand());
  return sim;
}

function generateCommand(): Command {
  const generate = usageExits(
    new Command('generate')
      .description('write a generated workload (a shape a shared factory meets) as a trace CSV, and its node events')
      .requiredOption('--shape <name>', `the workload: ${shapeList()}`, shapeArg)
      .option('--seed <n>', 'the same seed gives the same workload', seedArg, 1)
      .option('--days <d>', "days of submissions (default: the shape's)", daysArg)
      .option('--site <name|file>', 'the site it is made for: its GPUs, NVLink domains and racks', 'se-factory')
      .option('--load <x>', 'offered load on that site as a multiple of its capacity', positive('--load'), DEFAULT_LOAD)
      .requiredOption('--out <file>', 'the trace CSV (Philly columns, plus job_id and walltime)')
      .option('--node-events-out <file>', 'the node events CSV (rack-failures), as --node-events reads it'),
  ).action((o) => {
    const site = loadSite(sitePath(o.site));
    const g = generateWorkload({ shape: o.shape, seed: o.seed, site, days: o.days, load: o.load });
    if (g.nodeEventsCsv === null && o.nodeEventsOut)
      generate.error(`error: shape ${o.shape} has no node events (rack-failures has); --node-events-out is for it`, {
        exitCode: 2,
      });
    if (g.nodeEventsCsv !== null && !o.nodeEventsOut)
      generate.error(`error: shape ${o.shape} comes with node events: give --node-events-out FILE to write them`, {
        exitCode: 2,
      });
    writeFileSync(o.out, traceCsv(g));
    const groups = new Set(g.trace.records.map((r) => r.group)).size;
    let line = `${o.out}: ${g.trace.records.length} jobs of ${groups} groups over ${g.days} days, load ${o.load} on ${site.name}`;
    if (g.nodeEventsCsv !== null) {
      writeFileSync(o.nodeEventsOut, g.nodeEventsCsv);
      line += `; ${o.nodeEventsOut}: ${g.nodeEventsCsv.trim().split('\n').length - 1} node events`;
    }
    console.log(line);
  });
  return generate;
}

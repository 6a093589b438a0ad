// `fabrik demo`: the demo consortium on se-factory, driven through the real scheduler by the
// stepped twin, with a synthetic stream of jobs. What a member or an operator would watch.
// `fabrik validate`: a site file, and a consortium against it.
import { Command, InvalidArgumentError } from 'commander';
import { loadConsortium, loadSite } from '../config/index.js';
import type { Consortium } from '../core/consortium.js';
import { gangGpusOf } from '../core/job.js';
import type { Site } from '../core/site.js';
import { SteppedCluster } from '../sim/stepped.js';
import { Workload } from '../sim/workload.js';
import { table } from './table.js';

function positive(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'.`);
    return n;
  };
}

/** `fabrik demo` and `fabrik validate`: the site and consortium files, run and checked. */
export function demoCommands(defaults: { site: string; consortium: string }): Command[] {
  const demo = new Command('demo')
    .description('run the demo consortium on the site through the scheduler, with a synthetic stream of jobs')
    .option('--site <file>', 'site description (YAML)', defaults.site)
    .option('--consortium <file>', 'consortium description (YAML)', defaults.consortium)
    .option('--hours <n>', 'simulated hours', positive('--hours'), 24)
    .option('--step-minutes <n>', 'minutes between scheduling cycles', positive('--step-minutes'), 5)
    .option(
      '--arrivals-per-hour <n>',
      'jobs submitted per hour (16 is about the machine, fully used)',
      positive('--arrivals-per-hour'),
      16,
    )
    .option('--seed <n>', 'seed of the synthetic workload', positive('--seed'), 7)
    .option('--show <n>', 'waiting jobs to list at the end', positive('--show'), 15)
    .action((o) => {
      const site = loadSite(o.site);
      runDemo(site, loadConsortium(o.consortium, site), o, (line) => console.log(line));
    });
  const validate = new Command('validate')
    .description('check a site description, and a consortium against it')
    .requiredOption('--site <file>', 'site description (YAML)')
    .option('--consortium <file>', 'consortium description (YAML)')
    .action((o) => {
      const site = loadSite(o.site);
      console.log(
        `${o.site}: site ${site.name}, ${site.totalGpus} GPUs, ${site.domains.length} NVLink domains, ${site.nodes.length} nodes, zones ${site.zones.join(', ')}`,
      );
      if (o.consortium) {
        const c = loadConsortium(o.consortium, site);
        const entitled = c.members.reduce((s, m) => s + m.entitlementGpus, 0);
        console.log(`${o.consortium}: consortium ${c.name}, ${c.members.length} members entitled to ${entitled} GPUs`);
      }
    });
  return [demo, validate];
}

export interface DemoOptions {
  hours: number;
  stepMinutes: number;
  arrivalsPerHour: number;
  seed: number;
  show: number;
}

export function runDemo(site: Site, consortium: Consortium, o: DemoOptions, out: (line: string) => void): SteppedCluster {
  const cluster = new SteppedCluster(site, consortium);
  const w = new Workload(site, consortium, o.seed);
  const step = o.stepMinutes * 60;
  const perStep = (o.arrivalsPerHour * o.stepMinutes) / 60;
  let carry = 0;
  let preemptions = 0;
  let lost = 0;
  out(
    `Fabrik demo: ${site.name}, ${site.totalGpus} GPUs in ${site.domains.length} NVLink domains; consortium ${consortium.name}, ${consortium.members.length} members`,
  );
  out(`${o.hours} h of simulated time, a cycle every ${o.stepMinutes} min, ~${o.arrivalsPerHour} jobs/h (seed ${o.seed})`);
  out('');
  for (let t = 0; t <= o.hours * 3600; t += step) {
    carry += perStep;
    for (; carry >= 1; carry--) {
      const job = w.job(t);
      cluster.submit(job);
      // Users over-estimate: a job runs 30–100 % of the walltime it asked for.
      cluster.runFor(job.id, Math.max(60, Math.round(job.walltimeSeconds * (0.3 + 0.7 * w.float()))));
    }
    const r = cluster.step(t);
    for (const d of r.decisions) {
      if (d.kind !== 'preempt') continue;
      preemptions++;
      lost += d.lostGpuHours;
    }
    if (t % 3600 === 0) out(statusLine(cluster, preemptions, lost));
  }
  out('');
  out(membersTable(cluster).join('\n'));
  out('');
  out(queueTable(cluster, o.show).join('\n'));
  return cluster;
}

function statusLine(c: SteppedCluster, preemptions: number, lost: number): string {
  const used = c.running.reduce((s, j) => s + gangGpusOf(j), 0);
  const h = String(Math.floor(c.now / 3600)).padStart(2, '0');
  return `t=${h}:00  running ${c.running.length} jobs on ${used}/${c.site.totalGpus} GPUs (${pct(used / c.site.totalGpus)})  waiting ${c.pending.length}  finished ${c.finished.length}  preempted ${preemptions} (${Math.round(lost)} GPU-h lost)`;
}

function membersTable(c: SteppedCluster): string[] {
  const rows = c.consortium.members.map((m) => {
    const used = c.running.filter((j) => j.member === m.id).reduce((s, j) => s + gangGpusOf(j), 0);
    const waiting = c.pending.filter((j) => j.member === m.id).length;
    return [
      m.id,
      String(m.entitlementGpus),
      String(used),
      m.entitlementGpus ? pct(used / m.entitlementGpus) : '-',
      used > m.entitlementGpus ? 'borrowing' : '',
      String(waiting),
    ];
  });
  return table(['MEMBER', 'ENTITLED', 'RUNNING', 'OF SHARE', '', 'WAITING'], rows);
}

function queueTable(c: SteppedCluster, show: number): string[] {
  const byId = new Map(c.pending.map((j) => [j.id, j]));
  const rows = c.last.pending.slice(0, show).map((e) => {
    const j = byId.get(e.job)!;
    const gpus = 'gpus' in j.gang ? j.gang.gpus : j.gang.nodes * j.gang.gpusPerNode;
    const eta =
      e.estimatedStart === null ? 'never' : e.estimatedStart <= c.now ? 'now' : `+${duration(e.estimatedStart - c.now)}`;
    return [String(e.position), j.id, j.member, j.priorityClass, String(gpus), j.topology, e.reason, eta];
  });
  return [
    `Queue (first ${rows.length} of ${c.last.pending.length} waiting), as \`squeue --start\` would show it:`,
    ...table(['POS', 'JOB', 'MEMBER', 'CLASS', 'GPUS', 'TOPOLOGY', 'REASON', 'START'], rows),
  ];
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function duration(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}h${String(m).padStart(2, '0')}`;
}

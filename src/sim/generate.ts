// Workloads of our own for the digital twin: seeded generators for the shapes a shared factory
// meets, so that the scheduler is tried on more than the one trace (Philly) it was tuned on.
// A generator gives a `ParsedTrace` (and, for some shapes, node events), exactly what reading a
// trace file gives, so a generated workload goes through the same `traceWorkload` mapping
// (groups → members, walltime noise, load scaling) as Philly does.
//
// Every shape sizes its work to the site and load it is made for: the GPU-seconds asked between
// the first and the last submission are `load` × the site's GPUs × that span, so the replay's
// load scaling leaves the clock alone (time scale 1) and a day of the workload stays a day.
// Walltimes are mostly left to the trace model (noisy over-estimates); a fifth of the jobs ask
// for a partition's default limit (24 h, or 7 days for a run longer than a day), as users who
// never set `--time` do.
//
// The shapes (the names are the CLI's `--shape` values):
//
// - `diurnal`: teams in three time zones (groups `apac-N`, `emea-N`, `amer-N`), each submitting
//   8/9 of its jobs in its own 8-hour working window (UTC 00–08, 08–16, 16–24; weekends at 30 %
//   of a weekday), so every member's demand rises and falls daily and shares are lent and
//   reclaimed every day. Mixed sizes (1–144 GPUs), run times log-normal around 45 minutes.
// - `heavy-tail`: eight teams (`team-N`, Zipf-weighted) at a steady rate; three quarters of the
//   jobs are log-normal around 15 minutes, a quarter Pareto (α 1.2, from 2 h, up to 10 days):
//   a few jobs hold most of the work. Mixed sizes.
// - `gang-stream`: a stream of small jobs (1–8 GPUs, log-normal around 2.5 h; `stream-N`) and, evenly
//   spaced through the run, large gangs of whole NVLink domains: `scale` (1–2 domains) and
//   `frontier` (4–8 domains, 288–576 GPUs on se-factory), a few hours each.
// - `fragmenting`: long-lived 1–4-GPU jobs (about a day each; `resident-N`) that spread over the
//   NVLink domains, and frequent one-domain gangs (72 GPUs, a few hours; `gang-N`) that need a
//   whole domain free.
// - `reclaim-storm`: `steady-N` teams submit all the time and queue more than their share;
//   `storm-N` teams are idle for four days, then all return in the same hour (a quarter of their
//   week's jobs in it) and work for three days: the borrowed GPUs must be reclaimed at once.
// - `new-member`: five teams (`team-N`) for the whole run, and `new-member`, the largest team,
//   that submits nothing in the first half and a quarter of all the work in the second: a new
//   member's demand joining a full machine.
// - `rack-failures`: a mixed workload (`team-N`) and node events: a rack fails about every two
//   days (down for hours to days), a rack is drained for planned maintenance once a week, and a
//   few compute trays fail every day; never more than two racks out at once.
//
// GPU counts are sizes the site can hold: gang sizes are whole NVLink domains of the site, and a
// size larger than the site is left out of a shape's mix (a shape that would be left with none
// is refused).
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { InvalidDescriptionError } from '../core/errors.js';
import type { Site } from '../core/site.js';
import type { NodeEvent } from './engine.js';
import { parseNodeEvents } from './node-events.js';
import { DEFAULT_LOAD, type ParsedTrace, type TraceRecord } from './trace.js';

export const SHAPES = [
  'diurnal',
  'heavy-tail',
  'gang-stream',
  'fragmenting',
  'reclaim-storm',
  'new-member',
  'rack-failures',
] as const;
export type Shape = (typeof SHAPES)[number];

export function isShape(s: string): s is Shape {
  return (SHAPES as readonly string[]).includes(s);
}

/** The run's length when none is asked: 2–3 weeks, a few thousand to ~20,000 jobs on se-factory. */
export const DEFAULT_DAYS: Readonly<Record<Shape, number>> = {
  diurnal: 14,
  'heavy-tail': 14,
  'gang-stream': 14,
  fragmenting: 21,
  'reclaim-storm': 21,
  'new-member': 14,
  'rack-failures': 14,
};

/** Time zones of `diurnal`: the group prefix and the UTC hour its 8-hour working window starts. */
export const DIURNAL_ZONES: readonly { readonly prefix: string; readonly windowStartUtcHour: number }[] = [
  { prefix: 'apac', windowStartUtcHour: 0 },
  { prefix: 'emea', windowStartUtcHour: 8 },
  { prefix: 'amer', windowStartUtcHour: 16 },
];

/** Submission 0 of every generated trace is on this day (a Monday, 00:00 UTC) plus the first arrival. */
export const GENERATED_EPOCH_SECONDS = Date.UTC(2026, 0, 5) / 1000;

export interface GenerateOptions {
  readonly shape: Shape;
  readonly seed: number;
  /** The site the workload is for: its GPUs size the load, its domains the gangs, its racks the failures. */
  readonly site: Site;
  /** Days of submissions (default DEFAULT_DAYS[shape]). */
  readonly days?: number;
  /** GPU-seconds asked over GPU-seconds the site offers in the submission window (default 0.9). */
  readonly load?: number;
}

export interface GeneratedWorkload {
  readonly shape: Shape;
  readonly seed: number;
  readonly days: number;
  /** Named `<shape>-<seed>`; records sorted by submission, the first at 0. */
  readonly trace: ParsedTrace;
  /** UTC seconds since 1970 of submission 0 (what the CSV's timestamps are relative to). */
  readonly epochSeconds: number;
  /** The node events, one per node (empty for shapes without); what `nodeEventsCsv` parses to. */
  readonly nodeEvents: NodeEvent[];
  /** The node events as `src/sim/node-events.ts` reads them (racks and trays by name); null when none. */
  readonly nodeEventsCsv: string | null;
}

const HOUR = 3600;
const DAY = 24 * HOUR;

/**
 * A shape over too few days for one of its teams to submit anything (reclaim-storm's storm teams
 * are idle for four days): said, not generated as a workload without that team.
 */
export class WorkloadTooShortError extends Error {
  override readonly name = 'WorkloadTooShortError';
  constructor(
    readonly shape: Shape,
    readonly days: number,
    readonly team: string,
  ) {
    super(
      `the ${shape} shape over ${days} day${days === 1 ? '' : 's'} leaves team ${team} no hour to submit in: ` +
        `give more --days (its default is ${DEFAULT_DAYS[shape]})`,
    );
  }
}

/** Generates a shape's workload; the same options give the same workload. */
export function generateWorkload(o: GenerateOptions): GeneratedWorkload {
  const days = o.days ?? DEFAULT_DAYS[o.shape];
  if (!(days > 0 && days <= 366 && Number.isFinite(days)))
    throw new RangeError(`generateWorkload: days must be a number in (0, 366], got ${days}`);
  const load = o.load ?? DEFAULT_LOAD;
  if (!(load > 0 && Number.isFinite(load))) throw new RangeError(`generateWorkload: load must be positive, got ${load}`);
  if (!Number.isSafeInteger(o.seed)) throw new RangeError(`generateWorkload: seed must be an integer, got ${o.seed}`);
  const g = new Generator(o.shape, o.seed, o.site, days, load);
  const teams = SHAPE_TEAMS[o.shape](g);
  const drafts: Draft[] = [];
  for (const team of teams) drafts.push(...g.teamJobs(team));
  const events = o.shape === 'rack-failures' ? rackFailures(g) : null;
  return g.finish(drafts, events);
}

// ---------------------------------------------------------------------------------------------
// Teams: who submits what, and when.

/** One job as drawn, before the clock is set to the first arrival. */
interface Draft {
  group: string;
  at: number;
  gpus: number;
  duration: number;
}

interface Team {
  readonly group: string;
  /** Fraction of the whole workload's GPU-seconds. */
  readonly share: number;
  /** GPUs and run time of one job. */
  readonly job: () => { gpus: number; duration: number };
  /** Relative submission rate in each hour of the run (UTC hour index from the epoch); default steady. */
  readonly rate?: (hour: number) => number;
  /** Jobs evenly spaced through the run (with jitter) instead of arriving at random. */
  readonly periodic?: boolean;
}

/** GPU count → weight. */
type Mix = readonly (readonly [number, number])[];

const SMALL: Mix = [
  [1, 60],
  [2, 15],
  [4, 20],
  [8, 5],
];
/** Mixed sizes as domain fractions: 1 is one NVLink domain (72 GPUs on se-factory). */
const MIXED_GPUS: Mix = [
  [1, 45],
  [2, 10],
  [4, 15],
  [8, 12],
  [16, 7],
  [32, 5],
  [64, 3],
];
const MIXED_DOMAINS: Mix = [
  [1, 2],
  [2, 1],
];

class Generator {
  private readonly rng;
  readonly domainGpus: number;

  constructor(
    readonly shape: Shape,
    readonly seed: number,
    readonly site: Site,
    readonly days: number,
    readonly load: number,
  ) {
    this.rng = xoroshiro128plus(seed);
    // The largest NVLink domain: gangs are whole domains of it.
    this.domainGpus = Math.max(...site.domains.map((d) => d.gpus));
    if (!(this.domainGpus > 0))
      throw new InvalidDescriptionError(site.name, 'domains', 'the site has no GPUs: no workload can be made for it');
  }

  float(): number {
    return uniformFloat64(this.rng);
  }

  normal(): number {
    const u1 = this.float();
    const u2 = this.float();
    return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Log-normal around `median` seconds, clamped to [min, max]. */
  lognormal(median: number, sigma: number, min: number, max: number): number {
    return clamp(median * Math.exp(sigma * this.normal()), min, max);
  }

  /** Pareto from `xm` seconds with tail index `alpha`, clamped to at most `max`. */
  pareto(xm: number, alpha: number, max: number): number {
    return Math.min(xm * (1 - this.float()) ** (-1 / alpha), max);
  }

  pick(mix: Mix): number {
    const total = mix.reduce((s, [, w]) => s + w, 0);
    let x = this.float() * total;
    for (const [v, w] of mix) if ((x -= w) < 0) return v;
    return mix[mix.length - 1][0];
  }

  /** A mix without the sizes the site cannot hold; a mix left empty refuses the shape. */
  fit(mix: Mix): Mix {
    const fits = mix.filter(([gpus]) => gpus <= this.site.totalGpus);
    if (fits.length === 0)
      throw new InvalidDescriptionError(
        this.site.name,
        'totalGpus',
        `shape ${this.shape} needs a site of at least ${Math.min(...mix.map(([g]) => g))} GPUs; it has ${this.site.totalGpus}`,
      );
    return fits;
  }

  /** Whole NVLink domains: `domains` → GPUs. */
  domains(mix: Mix): Mix {
    return this.fit(mix.map(([n, w]) => [n * this.domainGpus, w] as const));
  }

  /** Mixed sizes: single GPUs to a few trays, mid-size gangs, and a few gangs of one or two domains. */
  mixed(): Mix {
    return this.fit([...MIXED_GPUS.filter(([g]) => g < this.domainGpus), ...this.domains(MIXED_DOMAINS)]);
  }

  /** Zipf-weighted teams `prefix-1…n` sharing `share` of the work. */
  zipf(prefix: string, n: number, share: number, team: Omit<Team, 'group' | 'share'>): Team[] {
    const h = Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((s, x) => s + x, 0);
    return Array.from({ length: n }, (_, i) => ({ ...team, group: `${prefix}-${i + 1}`, share: share / (i + 1) / h }));
  }

  /**
   * A team's jobs: drawn until they hold its share of the work, then given submission times
   * from its rate (a Poisson process given its count) or evenly spaced with jitter.
   */
  teamJobs(team: Team): Draft[] {
    const budget = team.share * this.load * this.site.totalGpus * this.days * DAY;
    const jobs: Draft[] = [];
    for (let work = 0; work < budget;) {
      const { gpus, duration } = team.job();
      const seconds = Math.max(1, Math.round(duration));
      jobs.push({ group: team.group, at: 0, gpus, duration: seconds });
      work += gpus * seconds;
    }
    const hours = Math.ceil(this.days * 24);
    if (team.periodic) {
      const period = (this.days * DAY) / jobs.length;
      jobs.forEach((j, i) => (j.at = (i + 0.5 + 0.4 * (2 * this.float() - 1)) * period));
    } else {
      const rate = team.rate ?? (() => 1);
      const cumulative = new Float64Array(hours);
      let total = 0;
      for (let h = 0; h < hours; h++) cumulative[h] = total += Math.max(0, rate(h)) * Math.min(1, this.days * 24 - h);
      if (!(total > 0)) throw new WorkloadTooShortError(this.shape, this.days, team.group);
      for (const j of jobs) {
        const h = upperBound(cumulative, this.float() * total);
        const within = Math.min(1, this.days * 24 - h);
        j.at = (h + this.float() * within) * HOUR;
      }
    }
    return jobs;
  }

  /** Sorts, sets the clock to the first arrival, and sizes the work to the load exactly. */
  finish(drafts: Draft[], events: FailureEvent[] | null): GeneratedWorkload {
    for (const d of drafts) d.at = Math.floor(d.at);
    drafts.sort((a, b) => a.at - b.at || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    const first = drafts[0].at;
    const span = drafts[drafts.length - 1].at - first;
    let work = 0;
    for (const d of drafts) work += d.gpus * d.duration;
    // The draws overshoot each team's budget by at most one job; stretching run times by a few
    // percent puts the offered load on the span exactly where it was asked.
    const stretch = span > 0 ? (this.load * this.site.totalGpus * span) / work : 1;
    const walltimes = drafts.map(() => this.float());
    const name = `${this.shape}-${this.seed}`;
    const records: TraceRecord[] = drafts.map((d, i) => {
      const duration = Math.max(1, Math.round(d.duration * stretch));
      // A fifth of the users ask for the partition's default limit when it covers the run.
      const limit = duration <= DAY ? DAY : 7 * DAY;
      return {
        id: String(i + 1),
        submitSeconds: d.at - first,
        durationSeconds: duration,
        gpus: d.gpus,
        group: d.group,
        walltimeSeconds: walltimes[i] < 0.2 && duration <= limit ? limit : null,
        status: null,
      };
    });
    const epochSeconds = GENERATED_EPOCH_SECONDS + first;
    let nodeEventsCsv: string | null = null;
    let nodeEvents: NodeEvent[] = [];
    if (events !== null) {
      // Node-event hours count from submission 0, as the replay's clock does.
      const lines = events
        .map((e) => ({ ...e, at: Math.max(0, e.at - first) }))
        .sort((a, b) => a.at - b.at || (a.target < b.target ? -1 : 1))
        .map((e) => `${Math.round((e.at / HOUR) * 100) / 100},${e.target},${e.state}`);
      nodeEventsCsv = ['at_hours,target,state', ...lines].join('\n') + '\n';
      nodeEvents = parseNodeEvents(nodeEventsCsv, `${name} node events`, this.site);
    }
    return {
      shape: this.shape,
      seed: this.seed,
      days: this.days,
      trace: { name, records, rows: records.length, rejected: {}, firstRejectedLine: {} },
      epochSeconds,
      nodeEvents,
      nodeEventsCsv,
    };
  }
}

function clamp(x: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, x));
}

/** The first index whose cumulative weight is above x. */
function upperBound(cumulative: Float64Array, x: number): number {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cumulative[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Hour of the week of a run hour, Monday 00:00 UTC = 0 (the epoch is a Monday). */
const weekday = (hour: number) => Math.floor(hour / 24) % 7;

const SHAPE_TEAMS: Readonly<Record<Shape, (g: Generator) => Team[]>> = {
  diurnal(g) {
    const mixed = g.mixed();
    const job = () => ({ gpus: g.pick(mixed), duration: g.lognormal(45 * 60, 1.6, 60, 3 * DAY) });
    const teams: Team[] = [];
    for (const zone of DIURNAL_ZONES) {
      const rate = (hour: number) => {
        const inWindow = (hour - zone.windowStartUtcHour + 24) % 24 < 8;
        const weekend = weekday(hour) >= 5 ? 0.3 : 1;
        // 16 hours at 1/16 against 8 at 1: 8/9 of a team's jobs in its window.
        return (inWindow ? 1 : 1 / 16) * weekend;
      };
      [0.5, 0.3, 0.2].forEach((w, i) => teams.push({ group: `${zone.prefix}-${i + 1}`, share: w / 3, job, rate }));
    }
    return teams;
  },

  'heavy-tail'(g) {
    const mixed = g.mixed();
    const job = () => ({
      gpus: g.pick(mixed),
      duration: g.float() < 0.75 ? g.lognormal(15 * 60, 1.2, 30, 2 * DAY) : g.pareto(2 * HOUR, 1.2, 10 * DAY),
    });
    return g.zipf('team', 8, 1, { job });
  },

  'gang-stream'(g) {
    const small = g.fit(SMALL);
    const scale = g.domains([
      [1, 2],
      [2, 1],
    ]);
    const frontier = g.domains([
      [4, 2],
      [8, 1],
    ]);
    const gang = (mix: Mix) => () => ({ gpus: g.pick(mix), duration: g.lognormal(4 * HOUR, 0.6, 30 * 60, 2 * DAY) });
    return [
      ...g.zipf('stream', 6, 0.55, { job: () => ({ gpus: g.pick(small), duration: g.lognormal(2.5 * HOUR, 1.2, 30, 2 * DAY) }) }),
      { group: 'scale', share: 0.25, job: gang(scale), periodic: true },
      { group: 'frontier', share: 0.2, job: gang(frontier), periodic: true },
    ];
  },

  fragmenting(g) {
    const small = g.fit([
      [1, 40],
      [2, 30],
      [4, 30],
    ]);
    const domain = g.domains([[1, 1]]);
    return [
      ...g.zipf('resident', 4, 0.6, {
        job: () => ({ gpus: g.pick(small), duration: g.lognormal(20 * HOUR, 0.8, HOUR, 7 * DAY) }),
      }),
      ...g.zipf('gang', 2, 0.4, { job: () => ({ gpus: g.pick(domain), duration: g.lognormal(3 * HOUR, 0.7, 20 * 60, DAY) }) }),
    ];
  },

  'reclaim-storm'(g) {
    const mixed = g.mixed();
    // A week of the storm teams: idle for days 0–3, back all at once in the first hour of day 4
    // (a quarter of the week's jobs in that hour), at work through day 6.
    const storm = (hour: number) => {
      const h = hour % (7 * 24);
      if (h < 4 * 24) return 0;
      return h === 4 * 24 ? 24 : 1;
    };
    return [
      ...g.zipf('steady', 3, 0.5, { job: () => ({ gpus: g.pick(mixed), duration: g.lognormal(3 * HOUR, 1.2, 60, 3 * DAY) }) }),
      ...g.zipf('storm', 4, 0.5, {
        job: () => ({ gpus: g.pick(mixed), duration: g.lognormal(2 * HOUR, 1.3, 60, 3 * DAY) }),
        rate: storm,
      }),
    ];
  },

  'new-member'(g) {
    const mixed = g.mixed();
    const job = () => ({ gpus: g.pick(mixed), duration: g.lognormal(HOUR, 1.5, 60, 3 * DAY) });
    const half = (g.days * 24) / 2;
    // The newcomer is the largest team, so it is mapped first, to the member furthest below
    // its share, which then has little other work: a member whose demand starts half-way.
    const old = [0.2, 0.18, 0.14, 0.13, 0.1].map((share, i): Team => ({ group: `team-${i + 1}`, share, job }));
    return [...old, { group: 'new-member', share: 0.25, job, rate: (hour) => (hour >= half ? 1 : 0) }];
  },

  'rack-failures'(g) {
    const mixed = g.mixed();
    return g.zipf('team', 6, 1, { job: () => ({ gpus: g.pick(mixed), duration: g.lognormal(HOUR, 1.5, 60, 3 * DAY) }) });
  },
};

// ---------------------------------------------------------------------------------------------
// Racks and trays that fail.

interface FailureEvent {
  at: number;
  target: string;
  state: 'down' | 'draining' | 'up';
}

/**
 * Failures over the run: a rack fails about every two days (down for a log-normal time around
 * 12 h, 2 h to 4 days), one rack a week is drained 4 h ahead of 8 h of planned maintenance,
 * and about three trays a day fail (around 6 h, 1 h to 2 days). An outage that would overlap
 * another of the same rack (or of a tray's rack), or take a third rack out, goes to the next
 * rack in order; where none is free, that outage does not happen.
 */
function rackFailures(g: Generator): FailureEvent[] {
  const racks = g.site.domains.map((d) => d.name);
  const span = g.days * DAY;
  type Outage = { rack: string; node: string | null; from: number; to: number };
  const outages: Outage[] = [];
  const overlaps = (a: { from: number; to: number }, b: { from: number; to: number }) => a.from < b.to && b.from < a.to;
  const rackFree = (rack: string, from: number, to: number) =>
    !outages.some((o) => o.rack === rack && overlaps(o, { from, to })) &&
    new Set(outages.filter((o) => o.node === null && overlaps(o, { from, to })).map((o) => o.rack)).size < 2;
  const events: FailureEvent[] = [];
  const rackOutage = (from: number, to: number, drainFirst: boolean) => {
    const start = Math.floor(g.float() * racks.length);
    for (let k = 0; k < racks.length; k++) {
      const rack = racks[(start + k) % racks.length];
      const begins = drainFirst ? from - 4 * HOUR : from;
      if (!rackFree(rack, begins, to)) continue;
      outages.push({ rack, node: null, from: begins, to });
      if (drainFirst) events.push({ at: begins, target: rack, state: 'draining' });
      events.push({ at: from, target: rack, state: 'down' }, { at: to, target: rack, state: 'up' });
      return;
    }
  };
  // Unplanned rack failures: a Poisson process, one every two days on average.
  for (let t = -Math.log(1 - g.float()) * 2 * DAY; t < span; t += -Math.log(1 - g.float()) * 2 * DAY)
    rackOutage(t, t + g.lognormal(12 * HOUR, 0.8, 2 * HOUR, 4 * DAY), false);
  // Planned maintenance: one rack a week, Tuesdays 08:00 UTC, drained from 04:00.
  for (let t = DAY + 8 * HOUR; t < span; t += 7 * DAY) rackOutage(t, t + 8 * HOUR, true);
  // Trays: about three a day.
  const domainOf = new Map<string, string>();
  for (const d of g.site.domains) for (const i of d.nodes) domainOf.set(g.site.nodes[i].name, d.name);
  for (let t = -Math.log(1 - g.float()) * (DAY / 3); t < span; t += -Math.log(1 - g.float()) * (DAY / 3)) {
    const node = g.site.nodes[Math.floor(g.float() * g.site.nodes.length)].name;
    const to = t + g.lognormal(6 * HOUR, 0.8, HOUR, 2 * DAY);
    const rack = domainOf.get(node)!;
    if (outages.some((o) => o.rack === rack && (o.node === null || o.node === node) && overlaps(o, { from: t, to }))) continue;
    outages.push({ rack, node, from: t, to });
    events.push({ at: t, target: node, state: 'down' }, { at: to, target: node, state: 'up' });
  }
  return events;
}

// ---------------------------------------------------------------------------------------------
// Files.

/**
 * The trace as CSV in the Philly column format (`timestamp,duration,num_gpus,gpu_time,cluster`,
 * UTC date-times), then `job_id` and `walltime` (empty: none), which `readTrace` reads back to
 * the same records.
 */
export function traceCsv(g: GeneratedWorkload): string {
  const lines = ['timestamp,duration,num_gpus,gpu_time,cluster,job_id,walltime'];
  for (const r of g.trace.records)
    lines.push(
      `${utcDateTime(g.epochSeconds + r.submitSeconds)},${r.durationSeconds},${r.gpus},${r.durationSeconds * r.gpus},` +
        `${r.group ?? ''},${r.id},${r.walltimeSeconds ?? ''}`,
    );
  return lines.join('\n') + '\n';
}

/** `2026-01-05 08:00:00` for a UTC time in whole seconds. */
function utcDateTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

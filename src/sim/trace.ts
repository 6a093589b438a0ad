// Workload traces for the digital twin: a CSV of jobs that really ran somewhere (Philly, a
// Slurm accounting dump, …) read into records, then mapped onto this factory's members and
// shaped into the jobs the scheduler sees. Nothing is dropped silently: every row that does not
// become a job is counted under the reason it was left out. Format and models:
// docs/simulation-traces.md.
import type { SimJob } from './engine.js';
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { Consortium, Member } from '../core/consortium.js';
import { InvalidDescriptionError } from '../core/errors.js';
import type { PendingJob, Topology } from '../core/job.js';
import type { Site } from '../core/site.js';
import { mostGpus } from '../scheduler/limits.js';

/** One job of a trace, as the trace tells it. */
export interface TraceRecord {
  /** From the id column, or the 1-based data row number when there is none. */
  id: string;
  /** Seconds after the earliest submission in the trace: the first job is at 0. */
  submitSeconds: number;
  /** Seconds the job actually ran. */
  durationSeconds: number;
  gpus: number;
  /** The team it belongs to (user, virtual cluster, …); null when the trace has none. */
  group: string | null;
  /** The user's estimate (the time limit), seconds; null when the trace has none. */
  walltimeSeconds: number | null;
  status: string | null;
}

export interface ParsedTrace {
  name: string;
  /** Accepted rows, in file order. */
  records: TraceRecord[];
  /** Data rows read (blank lines are not rows): records plus all rejected rows. */
  rows: number;
  /** Rows left out, per reason. */
  rejected: Record<string, number>;
  /** The file line (1-based, the header is line 1) of the first row left out for each reason. */
  firstRejectedLine: Record<string, number>;
}

/** Header names each field is found under, case-insensitive, the first present one wins. */
export const TRACE_COLUMNS = {
  submit: ['submit_time', 'submission_time', 'timestamp'],
  duration: ['duration'],
  gpus: ['gpus', 'num_gpus', 'num_gpu'],
  id: ['job_id', 'jobid', 'id'],
  group: ['user', 'vc', 'cluster', 'group'],
  walltime: ['walltime', 'time_limit', 'timelimit'],
  status: ['status', 'state'],
} as const;

type Field = keyof typeof TRACE_COLUMNS;
const REQUIRED: readonly [Field, string][] = [
  ['submit', 'submit time'],
  ['duration', 'duration'],
  ['gpus', 'GPU count'],
];

/** Why a row was left out; the keys of `rejected`. */
export const REJECT = {
  columns: 'wrong column count',
  quoting: 'unclosed quote',
  missingId: 'missing id',
  duplicateId: 'duplicate id',
  missingSubmit: 'missing submit time',
  badSubmit: 'bad submit time',
  badDate: 'unparseable date',
  mixedSubmit: 'mixed submit time formats',
  missingDuration: 'missing duration',
  badDuration: 'bad duration',
  zeroDuration: 'zero duration',
  missingGpus: 'missing GPU count',
  badGpus: 'bad GPU count',
  zeroGpus: 'zero GPUs',
  badWalltime: 'bad walltime',
  longDuration: 'duration over 366 days',
  longWalltime: 'walltime over 366 days',
  largerThanSite: 'larger than the site',
  largerThanMember: 'larger than the member may hold',
} as const;

/**
 * A trace line holds one job: a few short fields. A longer line is not a trace (a binary file, or
 * a quote left open by a broken export) and is refused before it is split, so that reading it
 * costs no more memory than the file itself (a 30 MB line once took 1.1 GB).
 */
export const MAX_LINE_CHARS = 65_536;
/**
 * Longest run time and time limit a row may have. Anything longer is a broken row, not a job:
 * a 1e308-second job made every day-by-day tally of the replay unbounded.
 */
export const MAX_JOB_SECONDS = 366 * 24 * 3600;
/** Submission times in seconds: at most this far from zero (a Unix time until the year 5138). */
export const MAX_SUBMIT_SECONDS = 1e11;

/** Reads a trace file; its name is the file name without the extension. */
export function readTrace(path: string): ParsedTrace {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem = code === 'ENOENT' ? 'file not found' : `cannot be read: ${(error as Error).message}`;
    throw new InvalidDescriptionError(path, '', problem);
  }
  return parseTrace(text, basename(path, extname(path)), path);
}

/**
 * Parses a trace CSV. A header without a required column is an InvalidDescriptionError naming
 * `file` (default: the trace name); bad data rows are counted in `rejected`, never thrown.
 */
export function parseTrace(text: string, name: string, file: string = name): ParsedTrace {
  const rows = new CsvRows(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  const header = rows.next(file);
  if (header === null) throw new InvalidDescriptionError(file, 'header', 'the trace is empty: expected a header line');
  if (header === UNCLOSED) throw new InvalidDescriptionError(file, 'header', 'the header has an unclosed quote');
  const col = columnsOf(header, file);

  const counted = new Counter();
  const firstRejectedLine: Record<string, number> = {};
  const rejected = {
    add(reason: string): void {
      counted.add(reason);
      firstRejectedLine[reason] ??= rows.line;
    },
  };
  const records: TraceRecord[] = [];
  const submits: number[] = [];
  const seen = new Set<string>();
  const days = new Map<string, number>();
  let submitKind: 'seconds' | 'date' | null = null;
  let n = 0;
  for (let fields = rows.next(file); fields !== null; fields = rows.next(file)) {
    n++;
    if (fields === UNCLOSED) {
      rejected.add(REJECT.quoting);
      continue;
    }
    if (fields.length !== header.length) {
      rejected.add(REJECT.columns);
      continue;
    }
    const id = col.id < 0 ? String(n) : fields[col.id];
    if (id === '') {
      rejected.add(REJECT.missingId);
      continue;
    }

    // Submission: seconds from the trace's start, or a UTC date-time; one form per trace.
    const rawSubmit = fields[col.submit];
    if (rawSubmit === '') {
      rejected.add(REJECT.missingSubmit);
      continue;
    }
    let submit = parseNumber(rawSubmit);
    let kind: 'seconds' | 'date' = 'seconds';
    if (Number.isNaN(submit)) {
      submit = parseUtcSeconds(rawSubmit, days);
      kind = 'date';
      if (Number.isNaN(submit)) {
        rejected.add(submitKind === 'seconds' ? REJECT.badSubmit : REJECT.badDate);
        continue;
      }
    }
    if (!(Math.abs(submit) <= MAX_SUBMIT_SECONDS)) {
      rejected.add(REJECT.badSubmit);
      continue;
    }
    if (submitKind !== null && kind !== submitKind) {
      rejected.add(REJECT.mixedSubmit);
      continue;
    }

    const rawDuration = fields[col.duration];
    const duration = parseSeconds(rawDuration);
    if (rawDuration === '' || !Number.isFinite(duration) || duration < 0) {
      rejected.add(rawDuration === '' ? REJECT.missingDuration : REJECT.badDuration);
      continue;
    }
    if (duration === 0) {
      rejected.add(REJECT.zeroDuration);
      continue;
    }
    if (duration > MAX_JOB_SECONDS) {
      rejected.add(REJECT.longDuration);
      continue;
    }

    const rawGpus = fields[col.gpus];
    const gpus = parseNumber(rawGpus);
    // A safe integer: 1e300 is an integer to Number.isInteger, and no GPU count.
    if (rawGpus === '' || !Number.isSafeInteger(gpus) || gpus < 0) {
      rejected.add(rawGpus === '' ? REJECT.missingGpus : REJECT.badGpus);
      continue;
    }
    if (gpus === 0) {
      rejected.add(REJECT.zeroGpus);
      continue;
    }

    let walltime: number | null = null;
    if (col.walltime >= 0) {
      const raw = fields[col.walltime];
      if (!NO_LIMIT.has(raw.toUpperCase())) {
        walltime = parseSeconds(raw);
        if (!(walltime > 0 && Number.isFinite(walltime))) {
          rejected.add(REJECT.badWalltime);
          continue;
        }
        if (walltime > MAX_JOB_SECONDS) {
          rejected.add(REJECT.longWalltime);
          continue;
        }
      }
    }

    // Last, so that a row rejected for another reason does not claim its id.
    if (seen.has(id)) {
      rejected.add(REJECT.duplicateId);
      continue;
    }
    seen.add(id);
    submitKind = kind;
    submits.push(submit);
    records.push({
      id,
      submitSeconds: 0,
      durationSeconds: duration,
      gpus,
      group: col.group < 0 || fields[col.group] === '' ? null : fields[col.group],
      walltimeSeconds: walltime,
      status: col.status < 0 || fields[col.status] === '' ? null : fields[col.status],
    });
  }

  let first = Infinity;
  for (const s of submits) if (s < first) first = s;
  records.forEach((r, i) => (r.submitSeconds = submits[i] - first));
  return { name, records, rows: n, rejected: counted.toRecord(), firstRejectedLine };
}

/** A walltime column holds one of these (or nothing) for a job without a limit. */
const NO_LIMIT = new Set(['', 'UNLIMITED', 'NONE', 'PARTITION_LIMIT', 'INFINITE']);

function columnsOf(header: readonly string[], file: string): Record<Field, number> {
  const names = header.map((h) => h.toLowerCase());
  const col = {} as Record<Field, number>;
  for (const field of Object.keys(TRACE_COLUMNS) as Field[]) {
    const accepted: readonly string[] = TRACE_COLUMNS[field];
    const name = accepted.find((a) => names.includes(a));
    col[field] = name === undefined ? -1 : names.indexOf(name);
  }
  const missing = REQUIRED.filter(([field]) => col[field] < 0).map(
    ([field, words]) => `no ${words} column (one of ${TRACE_COLUMNS[field].join(', ')})`,
  );
  if (missing.length > 0) throw new InvalidDescriptionError(file, 'header', missing.join('; '));
  return col;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A plain decimal number; NaN for anything else (Number() would take '', '0x1f', 'Infinity'). */
function parseNumber(s: string): number {
  return NUMBER.test(s) ? Number(s) : NaN;
}

/** Seconds, or Slurm's `[D-]HH:MM:SS`; NaN otherwise. */
function parseSeconds(s: string): number {
  const n = parseNumber(s);
  if (!Number.isNaN(n)) return n;
  const m = /^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$/.exec(s);
  return m ? ((Number(m[1] ?? 0) * 24 + Number(m[2])) * 60 + Number(m[3])) * 60 + Number(m[4]) : NaN;
}

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?(Z|[+-]\d{2}:?\d{2})?$/;

/** `2017-10-09 07:01:55` (UTC unless it names an offset) → seconds since 1970; NaN otherwise. */
function parseUtcSeconds(s: string, days: Map<string, number>): number {
  const m = DATE_TIME.exec(s);
  if (!m) return NaN;
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6] ?? 0);
  if (hour > 23 || minute > 59 || second >= 60) return NaN;
  // A trace has a few hundred distinct days and many thousand jobs.
  const date = s.slice(0, 10);
  let day = days.get(date);
  if (day === undefined) {
    day = utcDay(Number(m[1]), Number(m[2]), Number(m[3]));
    days.set(date, day);
  }
  let offset = 0;
  const zone = m[7];
  if (zone && zone !== 'Z') {
    const hh = Number(zone.slice(1, 3));
    const mm = Number(zone.slice(-2));
    offset = (zone[0] === '-' ? -1 : 1) * (hh * 60 + mm) * 60;
  }
  return day + hour * 3600 + minute * 60 + second - offset;
}

/** Seconds since 1970 at the start of a UTC day; NaN for a day that does not exist. */
function utcDay(year: number, month: number, day: number): number {
  if (month < 1 || month > 12 || day < 1) return NaN;
  const ms = Date.UTC(year, month - 1, day);
  // Date.UTC rolls 31 Sep over into October: a day past the month's end is not a date.
  return new Date(ms).getUTCDate() === day ? ms / 1000 : NaN;
}

const UNCLOSED = Symbol('unclosed quote');

/**
 * Lines of CSV split into trimmed fields; blank lines are skipped. A field in double quotes may
 * hold commas and doubled quotes (`""`); it may not span lines: a quote left open at the end of
 * the line makes the row UNCLOSED rather than swallowing the rest of the file. A line longer than
 * MAX_LINE_CHARS refuses the whole file (InvalidDescriptionError naming its line and column).
 */
class CsvRows {
  private pos = 0;
  /** The file line of the row `next` returned last (1-based). */
  line = 0;

  constructor(private readonly text: string) {}

  next(file: string): string[] | typeof UNCLOSED | null {
    const text = this.text;
    while (this.pos < text.length) {
      let end = text.indexOf('\n', this.pos);
      if (end < 0) end = text.length;
      this.line++;
      // Measured before the line is copied or split: the slice below is then always small.
      if (end - this.pos > MAX_LINE_CHARS + 1)
        throw new InvalidDescriptionError(
          file,
          `line ${this.line}, column ${MAX_LINE_CHARS + 1}`,
          `the line is longer than ${MAX_LINE_CHARS} characters (${end - this.pos} up to its end): ` +
            'a trace line holds one job; is a quote left open, or is this not a CSV file?',
        );
      let line = text.slice(this.pos, end);
      this.pos = end + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.includes('"')) return splitQuoted(line);
      const fields = line.split(',');
      let blank = true;
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i];
        if (f.length > 0 && (f.charCodeAt(0) <= 32 || f.charCodeAt(f.length - 1) <= 32)) fields[i] = f.trim();
        if (fields[i] !== '') blank = false;
      }
      if (blank && fields.length === 1) continue;
      return fields;
    }
    return null;
  }
}

function splitQuoted(line: string): string[] | typeof UNCLOSED {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      // The quoted text up to the next quote in one piece: bounded by the line, not one string per character.
      const close = line.indexOf('"', i);
      if (close < 0) return UNCLOSED;
      field += line.slice(i, close);
      i = close;
      if (line[i + 1] === '"') field += line[++i];
      else quoted = false;
    } else if (c === ',') {
      fields.push(field.trim());
      field = '';
    } else if (c === '"' && field.trim() === '') {
      field = '';
      quoted = true;
    } else {
      field += c;
    }
  }
  if (quoted) return UNCLOSED;
  fields.push(field.trim());
  return fields;
}

class Counter {
  private readonly counts = new Map<string, number>();
  add(reason: string, n = 1): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + n);
  }
  addAll(counts: Record<string, number>): void {
    for (const [reason, n] of Object.entries(counts)) this.add(reason, n);
  }
  toRecord(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}

// ---------------------------------------------------------------------------------------------
// From records to the factory's jobs.

export type { SimJob } from './engine.js';

export interface TraceWorkloadOptions {
  /**
   * Offered load to scale submission times to: GPU-seconds asked / GPU-seconds the site offers
   * (default 0.9). null keeps the trace's own submission times (time scale 1), as the published
   * replays of a trace on a given machine do.
   */
  readonly load?: number | null;
  /** Run times above this are cut to it (null or absent: no cap). Seconds. */
  readonly maxJobSeconds?: number | null;
  /** Seeds the walltime noise: the same seed and trace give the same walltimes. */
  readonly seed: number;
}

export interface TraceWorkload {
  /** Sorted by submission time, then id. */
  readonly jobs: SimJob[];
  /** Every submission time was multiplied by this (durations were not). */
  readonly timeScale: number;
  /** The trace's offered load on this site before scaling (Infinity when all jobs arrive at once). */
  readonly offeredLoad: number;
  /** Everything of the trace that did not become a job, per reason: the trace's own rejects included. */
  readonly rejected: Record<string, number>;
  /** Jobs whose run time was cut to `maxJobSeconds`. */
  readonly capped: number;
  /** Trace group → member id, for every group in the trace (jobs without a group are mapped by id, not listed). */
  readonly groups: Record<string, string>;
}

export const DEFAULT_LOAD = 0.9;
/** Walltime estimates are whole quarter hours, at most a week (a common partition limit). */
export const WALLTIME_STEP_SECONDS = 15 * 60;
export const MAX_WALLTIME_SECONDS = 7 * 24 * 3600;

/**
 * Every job of a trace checkpoints every this many seconds from the start of each run. The
 * traces do not say how often their jobs checkpoint; one period for all (the one ≥ 8-GPU jobs
 * had before) keeps small jobs from losing whole days of work to one preemption. A job that has
 * run less than this since its start has no checkpoint: a preemption then costs it that run
 * (with `--preemption checkpoint`).
 */
export const CHECKPOINT_INTERVAL_SECONDS = 1800;

/**
 * Maps a trace onto a site and its consortium: each group (or, without one, each job) goes to
 * a member by entitlement-weighted rendezvous hashing, GPU counts become gangs, submission times
 * are scaled to the requested load, and missing or impossible walltimes come from a seeded
 * model of users' over-estimates.
 */
export function traceWorkload(trace: ParsedTrace, site: Site, consortium: Consortium, o: TraceWorkloadOptions): TraceWorkload {
  const ownTimes = o.load === null;
  const load = o.load ?? DEFAULT_LOAD;
  if (!(load > 0 && Number.isFinite(load))) throw new RangeError(`traceWorkload: load must be a positive number, got ${load}`);
  const cap = o.maxJobSeconds ?? Infinity;
  if (!(cap > 0)) throw new RangeError(`traceWorkload: maxJobSeconds must be positive, got ${o.maxJobSeconds}`);
  const owners = new MemberHash(consortium);
  // The time scale as if every job that fits the site were kept: the mapping needs it first.
  const groupOwner = assignGroups(trace.records, consortium, site, ownTimes ? 1 : timeScaleFor(trace.records, site, load, cap));
  const canHold = new Map(consortium.members.map((m) => [m.id, mostGpus(m, site)]));

  // Sorted before any random draw, and every record draws, accepted or not: a job's walltime
  // depends only on the trace and the seed, not on the site or the cap.
  const records = [...trace.records].sort(
    (a, b) => a.submitSeconds - b.submitSeconds || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  const rng = xoroshiro128plus(o.seed);
  const rejected = new Counter();
  rejected.addAll(trace.rejected);
  const groups = new Map<string, string>();
  const accepted: { record: TraceRecord; member: Member; runtime: number; walltime: number }[] = [];
  let capped = 0;
  for (const record of records) {
    const noise = standardNormal(rng);
    let member: Member;
    if (record.group === null) member = owners.of(record.id);
    else {
      member = groupOwner.get(record.group)!;
      groups.set(record.group, member.id);
    }
    if (record.gpus > site.totalGpus) {
      rejected.add(REJECT.largerThanSite);
      continue;
    }
    if (record.gpus > canHold.get(member.id)!) {
      rejected.add(REJECT.largerThanMember);
      continue;
    }
    const runtime = Math.min(record.durationSeconds, cap);
    if (runtime < record.durationSeconds) capped++;
    const estimate =
      record.walltimeSeconds !== null && record.walltimeSeconds >= record.durationSeconds
        ? record.walltimeSeconds
        : noisyWalltime(record.durationSeconds, noise);
    // A capped job's limit is the cap too; it still covers the (capped) run time.
    const walltime = Math.max(runtime, Math.min(estimate, cap));
    accepted.push({ record, member, runtime, walltime });
  }

  const offeredLoad = offeredLoadOf(
    accepted.map((a) => ({ submitSeconds: a.record.submitSeconds, gpuSeconds: a.record.gpus * a.runtime })),
    site,
  );
  const timeScale = ownTimes ? 1 : scaleFor(offeredLoad, load);

  const jobs = accepted.map(({ record, member, runtime, walltime }): SimJob => {
    const large = record.gpus >= 8;
    const topology: Topology = large ? 'preferred' : 'none';
    const job: PendingJob = {
      id: `${trace.name}-${record.id}`,
      member: member.id,
      project: member.projects[0] ?? 'default',
      priorityClass: 'training',
      gang: { gpus: record.gpus },
      topology,
      isolation: { exclusive: false, zone: null },
      walltimeSeconds: walltime,
      minRuntimeSeconds: 0,
      checkpointIntervalSeconds: CHECKPOINT_INTERVAL_SECONDS,
      gracePeriodSeconds: 60,
      submittedAt: record.submitSeconds * timeScale,
      holdSince: null,
    };
    return { job, runtimeSeconds: runtime };
  });
  return { jobs, timeScale, offeredLoad, rejected: rejected.toRecord(), capped, groups: Object.fromEntries(groups) };
}

/** GPU-seconds asked over the GPU-seconds the site offers between the first and the last submission. */
function offeredLoadOf(jobs: readonly { submitSeconds: number; gpuSeconds: number }[], site: Site): number {
  let work = 0;
  let first = Infinity;
  let last = -Infinity;
  for (const j of jobs) {
    work += j.gpuSeconds;
    first = Math.min(first, j.submitSeconds);
    last = Math.max(last, j.submitSeconds);
  }
  if (jobs.length === 0) return 0;
  return last > first ? work / ((last - first) * site.totalGpus) : Infinity;
}

/** The time scale for `load`, counting every record that fits the site, with the cap applied. */
function timeScaleFor(records: readonly TraceRecord[], site: Site, load: number, cap: number): number {
  const fitting = records.filter((r) => r.gpus <= site.totalGpus);
  const offered = offeredLoadOf(
    fitting.map((r) => ({ submitSeconds: r.submitSeconds, gpuSeconds: r.gpus * Math.min(r.durationSeconds, cap) })),
    site,
  );
  return scaleFor(offered, load);
}

/** Submission times × this give `load`; a trace that arrives all at once stays as it is. */
function scaleFor(offeredLoad: number, load: number): number {
  return offeredLoad > 0 && Number.isFinite(offeredLoad) ? offeredLoad / load : 1;
}

/**
 * The walltime a user would have asked for. Users over-estimate, by a factor that varies a lot
 * from job to job: walltime = duration × (1 + e^Z), Z ~ N(0, 1) (median 2× the run time, mean
 * about 2.6×), rounded up to the next quarter hour, at most 7 days, but never below the run
 * time rounded up to a quarter hour (a job that ran longer than a week asked for that much).
 */
export function noisyWalltime(durationSeconds: number, z: number): number {
  const step = WALLTIME_STEP_SECONDS;
  const asked = Math.ceil((durationSeconds * (1 + Math.exp(z))) / step) * step;
  return Math.max(Math.min(asked, MAX_WALLTIME_SECONDS), Math.ceil(durationSeconds / step) * step);
}

/** Box–Muller; always two draws, so every job advances the generator the same way. */
function standardNormal(rng: ReturnType<typeof xoroshiro128plus>): number {
  const u1 = uniformFloat64(rng);
  const u2 = uniformFloat64(rng);
  return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
}

/** The most GPUs a member can ever hold: shared with the scheduler, which explains a job beyond it. */
export { mostGpus };

/**
 * Groups go to members so that each member's share of the trace's GPU-hours tracks its
 * entitlement, and no member gets a group it could not hold. The largest group first, each to
 * the member furthest below its entitlement share (ties by member order), among the members
 * whose daily demand, with the group added, stays within the most GPUs they may ever hold
 * (`mostGpus`: a zone, a borrowing limit). Demand is counted as if every job ran from its
 * submission for its duration, per day of the replay (`timeScale` applied). Without that
 * second rule a sovereign member bound to 144 GPUs would receive a group that asks for 185
 * GPUs a day for weeks, and its queue, not the policies, would decide every average. When no
 * member can hold a group, the one that overflows least takes it. Deterministic; a group is
 * never split.
 */
export function assignGroups(
  records: readonly TraceRecord[],
  consortium: Consortium,
  site: Site,
  timeScale: number,
): Map<string, Member> {
  const DAY = 86400;
  const work = new Map<string, number>();
  const daily = new Map<string, Float64Array>();
  let days = 1;
  for (const r of records)
    if (r.group !== null) days = Math.max(days, Math.ceil(((r.submitSeconds + r.durationSeconds) * timeScale) / DAY) + 1);
  for (const r of records) {
    if (r.group === null) continue;
    work.set(r.group, (work.get(r.group) ?? 0) + r.gpus * r.durationSeconds);
    let d = daily.get(r.group);
    if (!d) daily.set(r.group, (d = new Float64Array(days)));
    // Submission times are scaled; run times are not.
    const from = r.submitSeconds * timeScale;
    const to = from + r.durationSeconds;
    for (let day = Math.floor(from / DAY); day * DAY < to; day++) {
      d[day] += (r.gpus * (Math.min(to, (day + 1) * DAY) - Math.max(from, day * DAY))) / DAY;
    }
  }
  const members = consortium.members.filter((m) => m.entitlementGpus > 0);
  const entitled = members.reduce((s, m) => s + m.entitlementGpus, 0);
  const total = [...work.values()].reduce((s, w) => s + w, 0) || 1;
  const most = members.map((m) => Math.min(mostGpus(m, site), site.totalGpus));
  const assigned = members.map(() => 0);
  const demand = members.map(() => new Float64Array(days));
  const out = new Map<string, Member>();
  const order = [...work.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  for (const [group, w] of order) {
    const d = daily.get(group)!;
    // How far the member's busiest day would exceed what it can hold (≤ 1: it can hold it).
    const overflow = members.map((_, i) => {
      let peak = 0;
      for (let day = 0; day < days; day++) peak = Math.max(peak, demand[i][day] + d[day]);
      return peak / most[i];
    });
    // Among the members that can hold it, the one furthest below its share; else the least overflowed.
    const room = (i: number) => members[i].entitlementGpus / entitled - assigned[i] / total;
    const able = members.map((_, i) => i).filter((i) => overflow[i] <= 1);
    const best =
      able.length > 0
        ? able.reduce((b, i) => (room(i) > room(b) ? i : b))
        : overflow.reduce((b, o, i) => (o < overflow[b] ? i : b), 0);
    assigned[best] += w;
    for (let day = 0; day < days; day++) demand[best][day] += d[day];
    out.set(group, members[best]);
  }
  return out;
}

/**
 * Weighted rendezvous (highest-random-weight) hashing: each member scores a key with
 * -weight / ln(u), u a hash of (key, member) in (0, 1), and the highest score wins. A member
 * wins with probability weight / Σ weights, the same key always goes to the same member, and a
 * member that joins takes keys only from the others (no key moves between two old members).
 */
export class MemberHash {
  private readonly members: readonly Member[];
  private readonly cache = new Map<string, Member>();

  constructor(consortium: Consortium) {
    this.members = consortium.members.filter((m) => m.entitlementGpus > 0);
    if (this.members.length === 0)
      throw new InvalidDescriptionError(consortium.name, 'members', 'no member has an entitlement: a trace cannot be mapped');
  }

  of(key: string): Member {
    let member = this.cache.get(key);
    if (member) return member;
    const base = fnv1a(FNV_OFFSET, `${key}\u0000`);
    let best = -Infinity;
    for (const m of this.members) {
      // fnv1a(key + '\0' + member id), mixed: FNV alone lets similar keys score alike.
      const h = fmix32(fnv1a(base, m.id));
      const u = (h + 0.5) / 4294967296;
      const score = -m.entitlementGpus / Math.log(u);
      if (score > best) {
        best = score;
        member = m;
      }
    }
    this.cache.set(key, member!);
    return member!;
  }
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a, 32 bits, over UTF-16 code units, continuing from `h`. */
export function fnv1a(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME) >>> 0;
  return h;
}

/** MurmurHash3's finaliser: every input bit affects every output bit. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

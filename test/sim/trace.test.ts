import { descriptionError as failure } from '../../src/testing/errors.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import { gangGpus } from '../../src/core/job.js';
import { spawnSync } from 'node:child_process';
import {
  MAX_JOB_SECONDS,
  MAX_LINE_CHARS,
  MAX_WALLTIME_SECONDS,
  noisyWalltime,
  parseTrace,
  readTrace,
  TRACE_COLUMNS,
  traceWorkload,
  type ParsedTrace,
  type SimJob,
  type TraceRecord,
} from '../../src/sim/trace.js';
import { consortium, site } from '../../src/testing/builders.js';

const file = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const csv = (...lines: string[]) => lines.join('\n') + '\n';

/** 32 GPUs: two racks of four 4-GPU trays. */
const SMALL = site().build();
const THREE = consortium()
  .member('a', { entitlement: 16 })
  .member('b', { entitlement: 8 })
  .member('c', { entitlement: 8 })
  .build();

function trace(records: Partial<TraceRecord>[], name = 't'): ParsedTrace {
  return {
    name,
    rows: records.length,
    rejected: {},
    firstRejectedLine: {},
    records: records.map((r, i) => ({
      id: String(i + 1),
      submitSeconds: i * 60,
      durationSeconds: 3600,
      gpus: 1,
      group: null,
      walltimeSeconds: null,
      status: null,
      ...r,
    })),
  };
}

/** Σ GPU-seconds / (span of submissions × GPUs of the site), of the jobs as the simulator gets them. */
function offeredLoad(jobs: readonly SimJob[], gpus: number): number {
  const work = jobs.reduce((s, j) => s + gangGpus(j.job.gang) * j.runtimeSeconds, 0);
  const times = jobs.map((j) => j.job.submittedAt);
  return work / ((Math.max(...times) - Math.min(...times)) * gpus);
}

describe('trace headers', () => {
  it.each(TRACE_COLUMNS.submit)('finds the submit time under %s', (name) => {
    const t = parseTrace(csv(`${name},duration,gpus`, '100,60,1', '160,60,1'), 't');
    expect(t.records.map((r) => r.submitSeconds)).toEqual([0, 60]);
  });

  it.each(TRACE_COLUMNS.gpus)('finds the GPU count under %s', (name) => {
    expect(parseTrace(csv(`timestamp,duration,${name}`, '0,60,8'), 't').records[0].gpus).toBe(8);
  });

  it.each(TRACE_COLUMNS.id)('finds the job id under %s', (name) => {
    expect(parseTrace(csv(`timestamp,duration,gpus,${name}`, '0,60,1,job-42'), 't').records[0].id).toBe('job-42');
  });

  it.each(TRACE_COLUMNS.group)('finds the group under %s', (name) => {
    expect(parseTrace(csv(`timestamp,duration,gpus,${name}`, '0,60,1,team-7'), 't').records[0].group).toBe('team-7');
  });

  it.each(TRACE_COLUMNS.walltime)('finds the walltime under %s', (name) => {
    expect(parseTrace(csv(`timestamp,duration,gpus,${name}`, '0,60,1,7200'), 't').records[0].walltimeSeconds).toBe(7200);
  });

  it.each(TRACE_COLUMNS.status)('finds the status under %s', (name) => {
    expect(parseTrace(csv(`timestamp,duration,gpus,${name}`, '0,60,1,Pass'), 't').records[0].status).toBe('Pass');
  });

  it('reads the header case-insensitively, in any column order, and ignores unknown columns', () => {
    const t = parseTrace(csv('Num_GPUs,Extra,DURATION,Submit_Time,VC', '4,x,60.0,10,vc1'), 't');
    expect(t.records).toEqual([
      { id: '1', submitSeconds: 0, durationSeconds: 60, gpus: 4, group: 'vc1', walltimeSeconds: null, status: null },
    ]);
  });

  it('takes the first accepted name when a trace has several (user before vc)', () => {
    expect(parseTrace(csv('timestamp,duration,gpus,vc,user', '0,60,1,the-vc,the-user'), 't').records[0].group).toBe('the-user');
  });

  it('numbers data rows from 1 when there is no id column: rejected rows count, blank lines do not', () => {
    const t = parseTrace(csv('timestamp,duration,gpus', '0,60,1', '', '0,60,0', '  ', '5,60,1'), 't');
    expect(t.records.map((r) => r.id)).toEqual(['1', '3']);
    expect(t.rows).toBe(3);
  });

  it('reads Windows line ends, a byte-order mark, and a last line without a line end', () => {
    const t = parseTrace('\ufefftimestamp,duration,gpus\r\n0,60,1\r\n30,60,2', 't');
    expect(t.records.map((r) => [r.submitSeconds, r.gpus])).toEqual([
      [0, 1],
      [30, 2],
    ]);
  });

  it('throws an InvalidDescriptionError naming the file and the accepted names of a missing column', () => {
    const e = failure(() => parseTrace(csv('timestamp,duration,gpu', '0,60,1'), 'jobs', 'traces/jobs.csv'));
    expect(e.message).toBe('traces/jobs.csv: header: no GPU count column (one of gpus, num_gpus, num_gpu)');
    expect([e.file, e.path]).toEqual(['traces/jobs.csv', 'header']);
  });

  it('names every missing column at once', () => {
    const e = failure(() => parseTrace(csv('start,runtime,gpus', '0,60,1'), 'jobs'));
    expect(e.message).toBe(
      'jobs: header: no submit time column (one of submit_time, submission_time, timestamp); no duration column (one of duration)',
    );
  });

  it('throws on an empty trace', () => {
    expect(failure(() => parseTrace('\n\n', 'empty')).message).toBe('empty: header: the trace is empty: expected a header line');
  });

  it('readTrace names the trace after the file and errors after its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-trace-'));
    writeFileSync(join(dir, 'week.csv'), csv('timestamp,duration,gpus', '0,60,1'));
    writeFileSync(join(dir, 'bad.csv'), csv('timestamp,gpus', '0,1'));
    expect(readTrace(join(dir, 'week.csv')).name).toBe('week');
    expect(failure(() => readTrace(join(dir, 'bad.csv'))).message).toBe(
      `${join(dir, 'bad.csv')}: header: no duration column (one of duration)`,
    );
    expect(failure(() => readTrace(join(dir, 'none.csv'))).message).toBe(`${join(dir, 'none.csv')}: (top level): file not found`);
  });
});

describe('submission times', () => {
  it('takes plain numbers as seconds from the trace start, relative to the earliest', () => {
    const t = parseTrace(csv('submit_time,duration,gpus', '500,60,1', '200.5,60,1', '1e3,60,1'), 't');
    expect(t.records.map((r) => r.submitSeconds)).toEqual([299.5, 0, 799.5]);
  });

  it('takes date-times as UTC, across month ends', () => {
    const t = parseTrace(
      csv('timestamp,duration,gpus', '2017-10-01 00:00:01,60,1', '2017-09-30 23:59:59,60,1', '2017-10-09 07:01:55,60,1'),
      't',
    );
    expect(t.records.map((r) => r.submitSeconds)).toEqual([2, 0, 8 * 86400 + 7 * 3600 + 116]);
  });

  it('reads ISO 8601 with T, Z, offsets and fractions of a second', () => {
    const t = parseTrace(
      csv(
        'timestamp,duration,gpus',
        '2024-03-01T12:00:00Z,60,1',
        '2024-03-01T14:00:00+02:00,60,1',
        '2024-03-01 12:30,60,1',
        '2024-03-01T12:00:00.250,60,1',
      ),
      't',
    );
    expect(t.records.map((r) => r.submitSeconds)).toEqual([0, 0, 1800, 0.25]);
  });

  it('reads durations and walltimes as seconds or Slurm [D-]HH:MM:SS', () => {
    const t = parseTrace(csv('timestamp,duration,gpus,timelimit', '0,01:00:00,1,1-00:00:00', '0,90.5,1,UNLIMITED'), 't');
    expect(t.records.map((r) => [r.durationSeconds, r.walltimeSeconds])).toEqual([
      [3600, 86400],
      [90.5, null],
    ]);
  });
});

describe('quoted fields', () => {
  it('keeps commas and doubled quotes inside quotes, and unquotes numbers', () => {
    const t = parseTrace(
      csv('job_id,"submit_time",duration,gpus,user', '"a,1","0","60",2,"Smith, J."', '"b ""2""",10,60,1," spaced "'),
      't',
    );
    expect(t.records.map((r) => [r.id, r.submitSeconds, r.durationSeconds, r.gpus, r.group])).toEqual([
      ['a,1', 0, 60, 2, 'Smith, J.'],
      ['b "2"', 10, 60, 1, 'spaced'],
    ]);
  });

  it('rejects a row whose quote is never closed, without swallowing the next', () => {
    const t = parseTrace(csv('job_id,submit_time,duration,gpus', '"a,0,60,1', 'b,0,60,1'), 't');
    expect(t.records.map((r) => r.id)).toEqual(['b']);
    expect(t.rejected).toEqual({ 'unclosed quote': 1 });
  });
});

describe('numbers are strict: finite, in range, whole where a count is meant', () => {
  it('rejects 1e308 durations, submits and walltimes, and GPU counts past the safe integers, naming the first line', () => {
    const t = parseTrace(
      csv(
        'job_id,submit_time,duration,gpus,walltime,user',
        'ok,0,60,1,,u1',
        '',
        'dur-1e308,0,1e308,1,,u1',
        'dur-year,0,31622401,1,,u2',
        'dur-slurm,0,99999999999999999999-00:00:00,1,,u2',
        'submit-1e308,1e308,60,1,,u3',
        'submit-far,-100000000001,60,1,,u3',
        'gpus-1e300,0,60,1e300,,u4',
        'gpus-unsafe,0,60,9007199254740993,,u4',
        'gpus-frac,0,60,2.5,,u4',
        'wall-1e308,0,60,1,1e308,u5',
        'wall-year,0,60,1,367-00:00:00,u5',
        'ok-year,0,31622400,4.0,366-00:00:00,u6',
      ),
      't',
    );
    expect(t.records.map((r) => [r.id, r.gpus])).toEqual([
      ['ok', 1],
      ['ok-year', 4],
    ]);
    expect(t.rejected).toEqual({
      'duration over 366 days': 3,
      'bad submit time': 2,
      'bad GPU count': 3,
      'walltime over 366 days': 2,
    });
    // File lines: the header is line 1 and the blank line 3 counts.
    expect(t.firstRejectedLine).toEqual({
      'duration over 366 days': 4,
      'bad submit time': 7,
      'bad GPU count': 9,
      'walltime over 366 days': 12,
    });
    // The rows left are mapped and replayed without an unbounded day-by-day tally.
    const w = traceWorkload(t, SMALL, THREE, { seed: 1 });
    expect(w.jobs.map((j) => j.runtimeSeconds)).toEqual([60, MAX_JOB_SECONDS]);
  });
});

describe('a line longer than MAX_LINE_CHARS refuses the file', () => {
  it('naming the line and the column, before the line is split', () => {
    const long = 'a'.repeat(MAX_LINE_CHARS);
    const text = csv('job_id,submit_time,duration,gpus', 'ok,0,60,1', `x,0,60,"${long}`);
    const e = failure(() => parseTrace(text, 't', 'trace.csv'));
    expect([e.file, e.path]).toEqual(['trace.csv', `line 3, column ${MAX_LINE_CHARS + 1}`]);
    expect(e.problem).toContain(`the line is longer than ${MAX_LINE_CHARS} characters`);
    // A line of exactly the limit is a line (a long id), and a Windows line end does not count.
    const atLimit = csv('job_id,submit_time,duration,gpus', `${'i'.repeat(MAX_LINE_CHARS - 9)},0,60,1\r`);
    expect(parseTrace(atLimit, 't').records).toHaveLength(1);
  });

  it('a 30 MB line with an unclosed quote is refused in a process limited to 160 MB of heap', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-trace-'));
    const path = join(dir, 'huge.csv');
    writeFileSync(path, 'job_id,submit_time,duration,gpus\n1,0,60,"' + 'x,'.repeat(15_000_000) + '\n2,0,60,1\n');
    const script =
      `import { readTrace } from ${JSON.stringify(file('src/sim/trace.ts'))};` +
      `try { readTrace(${JSON.stringify(path)}); console.log('read'); } catch (e) { console.log(e.message); }` +
      `console.log('heap', Math.round(process.memoryUsage().heapUsed / 1e6));`;
    const run = spawnSync(
      process.execPath,
      ['--max-old-space-size=160', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(run.stderr).not.toMatch(/heap out of memory/i);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`line 2, column ${MAX_LINE_CHARS + 1}`);
    expect(Number(/heap (\d+)/.exec(run.stdout)?.[1])).toBeLessThan(160);
  });

  it('a quoted field is copied in pieces, not a character at a time: long quoted rows under the limit read the same', () => {
    const id = 'q'.repeat(MAX_LINE_CHARS - 20);
    const t = parseTrace(csv('job_id,submit_time,duration,gpus', `"${id}",0,"6""0",1`, `"${id}x",0,60,"1"`), 't');
    expect(t.records.map((r) => r.id.length)).toEqual([id.length + 1]);
    expect(t.rejected).toEqual({ 'bad duration': 1 });
  });
});

describe('bad rows are counted by reason, never dropped silently', () => {
  it('in a trace of seconds', () => {
    const t = parseTrace(
      csv(
        'job_id,submit_time,duration,gpus,walltime',
        'ok-1,0,60,1,',
        'ok-2,10,60,4,3600',
        'short,0,60,1',
        'long,0,60,1,3600,extra',
        ',0,60,1,',
        'ok-1,20,60,1,',
        'no-submit,,60,1,',
        'bad-submit,yesterday,60,1,',
        'huge-submit,1e400,60,1,',
        'huge-duration,0,1e400,1,',
        'mixed,2017-10-09 07:01:55,60,1,',
        'no-duration,0,,1,',
        'bad-duration,0,-5,1,',
        'bad-duration-2,0,1h,1,',
        'zero-duration,0,0,1,',
        'no-gpus,0,60,,',
        'bad-gpus,0,60,1.5,',
        'bad-gpus-2,0,60,-1,',
        'zero-gpus,0,60,0,',
        'bad-walltime,0,60,1,soon',
        'zero-walltime,0,60,1,0',
        '"unclosed,0,60,1,',
      ),
      't',
    );
    expect(t.records.map((r) => r.id)).toEqual(['ok-1', 'ok-2']);
    expect(t.rows).toBe(22);
    expect(t.rejected).toEqual({
      'wrong column count': 2,
      'missing id': 1,
      'duplicate id': 1,
      'missing submit time': 1,
      'bad submit time': 2,
      'mixed submit time formats': 1,
      'missing duration': 1,
      'bad duration': 3,
      'zero duration': 1,
      'missing GPU count': 1,
      'bad GPU count': 2,
      'zero GPUs': 1,
      'bad walltime': 2,
      'unclosed quote': 1,
    });
    expect(Object.values(t.rejected).reduce((a, b) => a + b, 0) + t.records.length).toBe(t.rows);
  });

  it('in a trace of date-times', () => {
    const t = parseTrace(
      csv(
        'timestamp,duration,gpus',
        '2017-10-09 07:01:55,60,1',
        '2017-02-30 00:00:00,60,1',
        '2017-13-01 00:00:00,60,1',
        '2017-10-09 24:00:00,60,1',
        '9 Oct 2017,60,1',
        '1507532515,60,1',
      ),
      't',
    );
    expect(t.records).toHaveLength(1);
    expect(t.rejected).toEqual({ 'unparseable date': 4, 'mixed submit time formats': 1 });
  });

  it('a duplicate id keeps the first row', () => {
    const t = parseTrace(csv('id,timestamp,duration,gpus', 'x,0,60,1', 'x,5,60,8'), 't');
    expect(t.records.map((r) => r.gpus)).toEqual([1]);
  });
});

describe('from trace records to jobs', () => {
  it('shapes a GPU count into a gang with the defaults of a training job', () => {
    const { jobs } = traceWorkload(
      trace([
        { id: 'small', gpus: 1 },
        { id: 'big', gpus: 8, submitSeconds: 3600 },
      ]),
      SMALL,
      THREE,
      { seed: 1 },
    );
    const [small, big] = jobs.map((j) => j.job);
    expect(big).toMatchObject({
      id: 't-big',
      priorityClass: 'training',
      gang: { gpus: 8 },
      topology: 'preferred',
      isolation: { exclusive: false, zone: null },
      minRuntimeSeconds: 0,
      checkpointIntervalSeconds: 1800,
      gracePeriodSeconds: 60,
    });
    expect(small).toMatchObject({ id: 't-small', gang: { gpus: 1 }, topology: 'none', checkpointIntervalSeconds: 1800 });
    expect(small.project).toBe(`${small.member}-default`);
  });

  it('sorts jobs by submission time, then id', () => {
    const { jobs } = traceWorkload(
      trace([
        { id: 'c', submitSeconds: 10 },
        { id: 'b', submitSeconds: 0 },
        { id: 'a', submitSeconds: 10 },
      ]),
      SMALL,
      THREE,
      { seed: 1 },
    );
    expect(jobs.map((j) => j.job.id)).toEqual(['t-b', 't-a', 't-c']);
  });

  it('rejects jobs larger than the site, and larger than their member can ever hold', () => {
    const capped = consortium().member('only', { entitlement: 8, borrowingLimit: 4 }).build();
    const zoned = consortium().member('vault', { entitlement: 8, isolation: 'required', zone: 'sovereign' }).build();
    const zonedSite = site().zone('sovereign', 'sp1-r02').build();
    const t = trace([{ gpus: 12 }, { gpus: 13 }, { gpus: 16 }, { gpus: 17 }, { gpus: 33 }]);
    t.rejected['zero GPUs'] = 2;
    expect(traceWorkload(t, SMALL, capped, { seed: 1 })).toMatchObject({
      rejected: { 'zero GPUs': 2, 'larger than the member may hold': 3, 'larger than the site': 1 },
    });
    const inZone = traceWorkload(t, zonedSite, zoned, { seed: 1 });
    expect(inZone.jobs.map((j) => gangGpus(j.job.gang))).toEqual([12, 13, 16]);
    expect(inZone.rejected).toEqual({ 'zero GPUs': 2, 'larger than the member may hold': 1, 'larger than the site': 1 });
  });

  it('caps run times at maxJobSeconds and counts the capped jobs', () => {
    const { jobs, capped } = traceWorkload(
      trace([{ durationSeconds: 100 }, { durationSeconds: 7200 }, { durationSeconds: 90_000, walltimeSeconds: 100_000 }]),
      SMALL,
      THREE,
      { seed: 1, maxJobSeconds: 3600 },
    );
    expect(capped).toBe(2);
    expect(jobs.map((j) => j.runtimeSeconds)).toEqual([100, 3600, 3600]);
    expect(jobs.map((j) => j.job.walltimeSeconds)).toEqual([expect.any(Number), 3600, 3600]);
  });
});

describe('walltimes', () => {
  const many = trace(Array.from({ length: 500 }, (_, i) => ({ durationSeconds: 60 + i * 97 })));
  const walltimes = (seed: number) => traceWorkload(many, SMALL, THREE, { seed }).jobs.map((j) => j.job.walltimeSeconds);

  it('uses the trace walltime when it covers the run, else the noise model', () => {
    const { jobs } = traceWorkload(
      trace([
        { id: 'given', durationSeconds: 600, walltimeSeconds: 601 },
        { id: 'overran', durationSeconds: 600, walltimeSeconds: 599 },
      ]),
      SMALL,
      THREE,
      { seed: 1 },
    );
    expect(jobs[0].job.walltimeSeconds).toBe(601);
    expect(jobs[1].job.walltimeSeconds % 900).toBe(0);
    expect(jobs[1].job.walltimeSeconds).toBeGreaterThanOrEqual(900);
  });

  it('are the same for the same seed and differ for another', () => {
    expect(walltimes(7)).toEqual(walltimes(7));
    const other = walltimes(8);
    const differ = walltimes(7).filter((w, i) => w !== other[i]).length;
    expect(differ).toBeGreaterThan(400);
  });

  it('do not depend on the site: a job another site rejects still draws its noise', () => {
    const withGiant = trace([...many.records, { ...many.records[0], id: 'giant', gpus: 40, submitSeconds: 1 }]);
    const on = (s: typeof SMALL) => traceWorkload(withGiant, s, THREE, { seed: 7 }).jobs.filter((j) => j.job.id !== 't-giant');
    const larger = site().racksPerSuperpod(4).build();
    expect(traceWorkload(withGiant, SMALL, THREE, { seed: 7 }).rejected).toEqual({ 'larger than the site': 1 });
    expect(on(SMALL).map((j) => j.job.walltimeSeconds)).toEqual(on(larger).map((j) => j.job.walltimeSeconds));
  });

  it('follow the model: duration × (1 + e^Z), quarter hours, at most 7 days, at least the run', () => {
    expect(noisyWalltime(3600, 0)).toBe(7200);
    expect(noisyWalltime(100, 0)).toBe(900);
    expect(noisyWalltime(3600, 10)).toBe(MAX_WALLTIME_SECONDS);
    expect(noisyWalltime(3600, -40)).toBe(3600);
    expect(noisyWalltime(10 * 86400 + 1, 3)).toBe(10 * 86400 + 900);
    // Over many ten-hour jobs the median over-estimate is twice the run.
    const ratios = traceWorkload(trace(Array.from({ length: 4001 }, () => ({ durationSeconds: 36_000 }))), SMALL, THREE, {
      seed: 3,
    })
      .jobs.map((j) => j.job.walltimeSeconds / j.runtimeSeconds)
      .sort((a, b) => a - b);
    expect(ratios[2000]).toBeGreaterThan(1.9);
    expect(ratios[2000]).toBeLessThan(2.1);
  });

  it('always cover the run time (property)', () => {
    const record = fc.record({
      durationSeconds: fc.double({ min: 1, max: 4e6, noNaN: true }),
      walltimeSeconds: fc.option(fc.double({ min: 1, max: 4e6, noNaN: true })),
      gpus: fc.integer({ min: 1, max: 32 }),
      submitSeconds: fc.integer({ min: 0, max: 1e6 }),
    });
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 40 }),
        fc.integer(),
        fc.option(fc.integer({ min: 1, max: 1e6 })),
        (records, seed, maxJobSeconds) => {
          const { jobs } = traceWorkload(trace(records), SMALL, THREE, { seed, maxJobSeconds });
          for (const j of jobs) {
            expect(j.job.walltimeSeconds).toBeGreaterThanOrEqual(j.runtimeSeconds);
            if (maxJobSeconds !== null) expect(j.runtimeSeconds).toBeLessThanOrEqual(maxJobSeconds);
          }
        },
      ),
    );
  });
});

describe('groups map to members by entitlement', () => {
  const WEIGHTED = consortium()
    .member('big', { entitlement: 400 })
    .member('mid', { entitlement: 200 })
    .member('small', { entitlement: 100 })
    .member('none', { entitlement: 0 })
    .build();
  const groups = trace(Array.from({ length: 1000 }, (_, i) => ({ group: `team-${i}` })));
  const mapOf = (c = WEIGHTED) => traceWorkload(groups, SMALL, c, { seed: 1 }).groups;

  it('deterministically, every job of a group to the same member', () => {
    const { jobs, groups: map } = traceWorkload(
      trace(Array.from({ length: 300 }, (_, i) => ({ group: `g${i % 20}` }))),
      SMALL,
      WEIGHTED,
      { seed: 1 },
    );
    expect(Object.keys(map)).toHaveLength(20);
    for (const j of jobs) expect(j.job.member).toBe(map[`g${(Number(j.job.id.slice(2)) - 1) % 20}`]);
    expect(mapOf()).toEqual(mapOf());
    expect(traceWorkload(groups, SMALL, WEIGHTED, { seed: 99 }).groups).toEqual(mapOf());
  });

  it('in proportion to entitlement over 1,000 groups, none to a member without one', () => {
    const counts: Record<string, number> = {};
    for (const m of Object.values(mapOf())) counts[m] = (counts[m] ?? 0) + 1;
    expect(counts.none).toBeUndefined();
    // Expected 571, 286, 143; three binomial standard deviations is about 47.
    expect(Math.abs(counts.big - 571)).toBeLessThan(47);
    expect(Math.abs(counts.mid - 286)).toBeLessThan(43);
    expect(Math.abs(counts.small - 143)).toBeLessThan(34);
  });

  it("gives each member a share of the trace's GPU-hours close to its entitlement share", () => {
    // 200 groups whose work differs by orders of magnitude, as Philly's do.
    const rows = Array.from({ length: 200 }, (_, g) => ({
      group: `g${g}`,
      gpus: 1 + (g % 7),
      duration: 60 * (1 + ((g * 7919) % 997)),
    }));
    const t = trace(rows);
    const c = consortium()
      .member('big', { entitlement: 400 })
      .member('mid', { entitlement: 200 })
      .member('small', { entitlement: 100 })
      .build();
    const { jobs } = traceWorkload(t, SMALL, c, { seed: 1 });
    const work: Record<string, number> = {};
    let total = 0;
    for (const j of jobs) {
      const w = (j.job.gang as { gpus: number }).gpus * j.runtimeSeconds;
      work[j.job.member] = (work[j.job.member] ?? 0) + w;
      total += w;
    }
    const largest = Math.max(...rows.map((r) => r.gpus * r.duration)) / total;
    expect(Math.abs(work.big / total - 4 / 7)).toBeLessThanOrEqual(largest);
    expect(Math.abs(work.mid / total - 2 / 7)).toBeLessThanOrEqual(largest);
    expect(Math.abs(work.small / total - 1 / 7)).toBeLessThanOrEqual(largest);
  });

  it('never gives a member a group whose daily demand it could not hold, when another member can', () => {
    // 'sovereign' has the largest entitlement but may never hold more than it (no borrowing).
    const c = consortium().member('sovereign', { entitlement: 20, borrowingLimit: 0 }).member('open', { entitlement: 8 }).build();
    const day = 86400;
    const rows = [
      ...Array.from({ length: 24 }, () => ({ group: 'burst', submitSeconds: 0, durationSeconds: day })),
      ...Array.from({ length: 2 }, () => ({ group: 'steady', submitSeconds: 60, durationSeconds: day })),
    ];
    // A high load keeps the submissions together: 24 GPUs asked at once for a day.
    const { groups } = traceWorkload(trace(rows), SMALL, c, { seed: 1, load: 1000 });
    expect(groups).toEqual({ burst: 'open', steady: 'sovereign' });
  });

  it('without a group, each job by its id, in proportion too', () => {
    const t = trace(Array.from({ length: 2000 }, () => ({})));
    const { jobs, groups: map } = traceWorkload(t, SMALL, WEIGHTED, { seed: 1 });
    expect(map).toEqual({});
    const big = jobs.filter((j) => j.job.member === 'big').length;
    expect(Math.abs(big - 1143)).toBeLessThan(70);
    expect(traceWorkload(t, SMALL, WEIGHTED, { seed: 2 }).jobs.map((j) => j.job.member)).toEqual(jobs.map((j) => j.job.member));
  });
});

describe('load scaling', () => {
  const t = trace(
    Array.from({ length: 200 }, (_, i) => ({ submitSeconds: i * 300, durationSeconds: 600 + (i % 7) * 1000, gpus: 1 + (i % 4) })),
  );

  it.each([0.5, 0.9, 1.5])('scales submission times so that the offered load is %s', (load) => {
    const w = traceWorkload(t, SMALL, THREE, { seed: 1, load });
    expect(offeredLoad(w.jobs, SMALL.totalGpus)).toBeCloseTo(load, 9);
    expect(w.timeScale).toBeCloseTo(w.offeredLoad / load, 12);
    expect(w.offeredLoad).toBeCloseTo(offeredLoad(traceWorkload(t, SMALL, THREE, { seed: 1, load: w.offeredLoad }).jobs, 32), 9);
    expect(w.jobs.map((j) => j.runtimeSeconds)).toEqual(
      [...t.records].sort((a, b) => a.submitSeconds - b.submitSeconds).map((r) => r.durationSeconds),
    );
  });

  it('defaults to 0.9, and leaves a trace that arrives all at once as it is', () => {
    expect(offeredLoad(traceWorkload(t, SMALL, THREE, { seed: 1 }).jobs, 32)).toBeCloseTo(0.9, 9);
    const once = traceWorkload(trace([{ submitSeconds: 0 }, { submitSeconds: 0 }]), SMALL, THREE, { seed: 1 });
    expect([once.offeredLoad, once.timeScale]).toEqual([Infinity, 1]);
  });
});

describe('the Philly trace on se-factory', () => {
  it('reads all 82,247 jobs, none rejected, in under 2 s', () => {
    const started = performance.now();
    const philly = readTrace(new URL('../../../shared/data/traces/philly.csv', import.meta.url).pathname);
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeLessThan(2);
    expect(philly.name).toBe('philly');
    expect([philly.rows, philly.records.length, philly.rejected]).toEqual([82_247, 82_247, {}]);
    expect(philly.records[0]).toEqual({
      id: '1',
      submitSeconds: Date.UTC(2017, 9, 9, 7, 1, 55) / 1000 - Date.UTC(2017, 8, 4, 10, 30, 41) / 1000,
      durationSeconds: 66,
      gpus: 1,
      group: '11cb48',
      walltimeSeconds: null,
      status: null,
    });

    const factory = loadSite(file('sites/se-factory.yaml'));
    const demo = loadConsortium(file('consortia/demo.yaml'), factory);
    const w = traceWorkload(philly, factory, demo, { seed: 1 });
    expect(w.jobs).toHaveLength(82_247);
    expect(w.rejected).toEqual({});
    expect(Object.keys(w.groups)).toHaveLength(15);
    // 978,078 GPU-hours over 109 days of 1,152 GPUs: about a third (README).
    const gpuHours = w.jobs.reduce((s, j) => s + gangGpus(j.job.gang) * j.runtimeSeconds, 0) / 3600;
    expect(gpuHours).toBeCloseTo(978_078, -1);
    expect(w.offeredLoad).toBeCloseTo(0.32486, 5);
    expect(w.timeScale).toBeCloseTo(0.36095, 5);
    expect(offeredLoad(w.jobs, factory.totalGpus)).toBeCloseTo(0.9, 9);
  });
});

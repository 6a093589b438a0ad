import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import {
  DEFAULT_DAYS,
  DIURNAL_ZONES,
  generateWorkload,
  SHAPES,
  traceCsv,
  WorkloadTooShortError,
  type GeneratedWorkload,
  type Shape,
} from '../../src/sim/generate.js';
import { parseNodeEvents, readNodeEvents } from '../../src/sim/node-events.js';
import { readTrace, traceWorkload, type TraceRecord } from '../../src/sim/trace.js';
import { site as siteBuilder } from '../../src/testing/builders.js';
import { descriptionError } from '../../src/testing/errors.js';

const file = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const FACTORY = loadSite(file('sites/se-factory.yaml'));
const DEMO = loadConsortium(file('consortia/demo.yaml'), FACTORY);
const HOUR = 3600;
const DAY = 24 * HOUR;

const generated = new Map<Shape, GeneratedWorkload>();
/** Seed 1 on se-factory, generated once per shape for all the tests. */
function workload(shape: Shape): GeneratedWorkload {
  let g = generated.get(shape);
  if (!g) generated.set(shape, (g = generateWorkload({ shape, seed: 1, site: FACTORY })));
  return g;
}

const byGroup = (records: readonly TraceRecord[]) => {
  const out = new Map<string, TraceRecord[]>();
  for (const r of records) {
    const list = out.get(r.group!) ?? [];
    list.push(r);
    out.set(r.group!, list);
  }
  return out;
};

describe('every shape', () => {
  it.each(SHAPES)('%s: the same seed gives the same workload, another seed another', (shape) => {
    const again = generateWorkload({ shape, seed: 1, site: FACTORY });
    expect(again).toEqual(workload(shape));
    const other = generateWorkload({ shape, seed: 2, site: FACTORY });
    expect(other.trace.records).not.toEqual(workload(shape).trace.records);
  });

  it.each(SHAPES)('%s: a few thousand to 20,000 jobs the site can hold, in its days, at exactly the load asked', (shape) => {
    const g = workload(shape);
    const records = g.trace.records;
    expect(records.length).toBeGreaterThanOrEqual(3000);
    expect(records.length).toBeLessThanOrEqual(20_000);
    expect(g.trace.rows).toBe(records.length);
    expect(records[0].submitSeconds).toBe(0);
    for (const r of records) {
      expect(Number.isSafeInteger(r.gpus) && r.gpus >= 1 && r.gpus <= FACTORY.totalGpus).toBe(true);
      expect(Number.isInteger(r.submitSeconds) && Number.isInteger(r.durationSeconds)).toBe(true);
      expect(r.durationSeconds).toBeGreaterThan(0);
      expect(r.submitSeconds).toBeLessThanOrEqual(DEFAULT_DAYS[shape] * DAY);
      if (r.walltimeSeconds !== null) expect(r.walltimeSeconds).toBeGreaterThanOrEqual(r.durationSeconds);
    }
    // Mostly left to the trace model's noisy estimates.
    expect(records.filter((r) => r.walltimeSeconds !== null).length / records.length).toBeLessThan(0.25);
    // Through the same mapping as Philly: nothing left out, and the load scaling keeps the clock.
    const mapped = traceWorkload(g.trace, FACTORY, DEMO, { seed: 1, load: 0.9 });
    expect(mapped.rejected).toEqual({});
    expect(mapped.jobs).toHaveLength(records.length);
    expect(mapped.timeScale).toBeCloseTo(1, 3);
  });

  it('a size larger than the site leaves the shape with none: refused, naming the site', () => {
    const tiny = siteBuilder().build(); // 32 GPUs, domains of 16
    const e = descriptionError(() => generateWorkload({ shape: 'gang-stream', seed: 1, site: tiny }));
    expect(e.message).toMatch(/gang-stream needs a site of at least 64 GPUs; it has 32/);
  });

  it('refuses a number of days or a load that is not one', () => {
    expect(() => generateWorkload({ shape: 'diurnal', seed: 1, site: FACTORY, days: 0 })).toThrow(/days/);
    expect(() => generateWorkload({ shape: 'diurnal', seed: 1, site: FACTORY, load: -1 })).toThrow(/load/);
    expect(() => generateWorkload({ shape: 'diurnal', seed: 1.5, site: FACTORY })).toThrow(/seed/);
  });

  it('refuses a span in which a team could submit nothing, rather than leave the team out', () => {
    expect(() => generateWorkload({ shape: 'reclaim-storm', seed: 1, site: FACTORY, days: 4 })).toThrow(WorkloadTooShortError);
    // Four days and an hour: the storm teams return in the first hour of day 5.
    expect(
      generateWorkload({ shape: 'reclaim-storm', seed: 1, site: FACTORY, days: 4 + 1 / 24 }).trace.records.length,
    ).toBeGreaterThan(0);
  });
});

describe('each shape has the property it claims', () => {
  it('diurnal: each group submits most of its jobs in its 8-hour window, three zones a third of the day apart', () => {
    const g = workload('diurnal');
    const groups = byGroup(g.trace.records);
    expect(groups.size).toBe(9);
    for (const [group, records] of groups) {
      const zone = DIURNAL_ZONES.find((z) => group.startsWith(`${z.prefix}-`))!;
      expect(zone).toBeDefined();
      const inWindow = records.filter((r) => {
        const hour = Math.floor(((g.epochSeconds + r.submitSeconds) % DAY) / HOUR);
        return (hour - zone.windowStartUtcHour + 24) % 24 < 8;
      }).length;
      expect(inWindow / records.length).toBeGreaterThan(0.8);
    }
  });

  it('heavy-tail: a few jobs hold most of the run time', () => {
    const durations = workload('heavy-tail')
      .trace.records.map((r) => r.durationSeconds)
      .sort((a, b) => b - a);
    const total = durations.reduce((s, d) => s + d, 0);
    const top = durations.slice(0, Math.ceil(durations.length / 20)).reduce((s, d) => s + d, 0);
    expect(top / total).toBeGreaterThan(0.5);
    expect(durations[0] / durations[Math.floor(durations.length / 2)]).toBeGreaterThan(100);
  });

  it('gang-stream: small jobs, and gangs of whole NVLink domains up to 576 GPUs, evenly spaced', () => {
    const groups = byGroup(workload('gang-stream').trace.records);
    for (const [group, records] of groups) {
      if (group.startsWith('stream-')) for (const r of records) expect(r.gpus).toBeLessThanOrEqual(8);
      else for (const r of records) expect(r.gpus % 72 === 0 && r.gpus >= 72 && r.gpus <= 576).toBe(true);
    }
    const gangs = [...groups.get('scale')!, ...groups.get('frontier')!];
    expect(gangs.some((r) => r.gpus === 576)).toBe(true);
    for (const group of ['scale', 'frontier']) {
      const at = groups.get(group)!.map((r) => r.submitSeconds);
      const period = (DEFAULT_DAYS['gang-stream'] * DAY) / at.length;
      for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeLessThanOrEqual(1.8 * period + 1);
    }
  });

  it('fragmenting: long-lived 1–4-GPU jobs and more than one 72-GPU gang an hour', () => {
    const g = workload('fragmenting');
    const groups = byGroup(g.trace.records);
    const residents = [...groups].filter(([k]) => k.startsWith('resident-')).flatMap(([, v]) => v);
    const gangs = [...groups].filter(([k]) => k.startsWith('gang-')).flatMap(([, v]) => v);
    for (const r of residents) expect(r.gpus).toBeLessThanOrEqual(4);
    for (const r of gangs) expect(r.gpus).toBe(72);
    const median = residents.map((r) => r.durationSeconds).sort((a, b) => a - b)[Math.floor(residents.length / 2)];
    expect(median).toBeGreaterThan(12 * HOUR);
    expect(gangs.length / (g.days * 24)).toBeGreaterThan(1);
  });

  it('reclaim-storm: storm teams are idle for four days, then all return in the same hour', () => {
    const g = workload('reclaim-storm');
    const groups = byGroup(g.trace.records);
    const storms = [...groups].filter(([k]) => k.startsWith('storm-'));
    expect(storms.length).toBe(4);
    for (const [, records] of storms) {
      const hourOfWeek = (r: TraceRecord) =>
        Math.floor((g.epochSeconds + r.submitSeconds - Date.UTC(2026, 0, 5) / 1000) / HOUR) % 168;
      expect(records.every((r) => hourOfWeek(r) >= 96)).toBe(true);
      // A quarter of each week's jobs in the hour they return.
      expect(records.filter((r) => hourOfWeek(r) === 96).length / records.length).toBeGreaterThan(0.2);
    }
    // Steady teams submit every day.
    for (const [group, records] of groups)
      if (group.startsWith('steady-')) {
        const days = new Set(records.map((r) => Math.floor(r.submitSeconds / DAY)));
        expect(days.size).toBeGreaterThanOrEqual(g.days - 1);
      }
  });

  it('new-member: the largest group submits nothing in the first half', () => {
    const g = workload('new-member');
    const groups = byGroup(g.trace.records);
    const work = (rs: TraceRecord[]) => rs.reduce((s, r) => s + r.gpus * r.durationSeconds, 0);
    const newcomer = groups.get('new-member')!;
    const half = g.trace.records[g.trace.records.length - 1].submitSeconds / 2;
    expect(Math.min(...newcomer.map((r) => r.submitSeconds))).toBeGreaterThanOrEqual(half - HOUR);
    for (const [group, records] of groups) if (group !== 'new-member') expect(work(records)).toBeLessThan(work(newcomer));
  });

  it('rack-failures: node events parse, every outage ends, and never more than two racks are out at once', () => {
    const g = workload('rack-failures');
    expect(g.nodeEventsCsv).not.toBeNull();
    expect(parseNodeEvents(g.nodeEventsCsv!, 'events.csv', FACTORY)).toEqual(g.nodeEvents);
    const lines = g.nodeEventsCsv!.trim().split('\n').slice(1);
    const racks = new Set(FACTORY.domains.map((d) => d.name));
    const rackEvents = lines.map((l) => l.split(',')).filter(([, target]) => racks.has(target));
    expect(rackEvents.filter(([, , state]) => state === 'down').length).toBeGreaterThanOrEqual(5);
    expect(rackEvents.some(([, , state]) => state === 'draining')).toBe(true);
    expect(lines.length - rackEvents.length).toBeGreaterThan(20); // trays
    const out = new Set<string>();
    let most = 0;
    for (const [, target, state] of rackEvents) {
      if (state === 'up') out.delete(target);
      else out.add(target);
      most = Math.max(most, out.size);
    }
    expect(out.size).toBe(0);
    expect(most).toBeLessThanOrEqual(2);
    for (const s of SHAPES) if (s !== 'rack-failures') expect(workload(s).nodeEventsCsv).toBeNull();
  });
});

describe('files', () => {
  it.each(['diurnal', 'rack-failures'] as const)('%s: the trace CSV reads back to the same records', (shape) => {
    const g = workload(shape);
    const dir = mkdtempSync(join(tmpdir(), 'generate-'));
    const path = join(dir, `${g.trace.name}.csv`);
    writeFileSync(path, traceCsv(g));
    expect(readTrace(path)).toEqual(g.trace);
  });

  it('fabrik sim generate writes the trace and the node events that readTrace and --node-events read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'generate-cli-'));
    const out = join(dir, 'storm.csv');
    const events = join(dir, 'events.csv');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', file('src/cli/main.ts'), 'sim', 'generate', ...args], {
        encoding: 'utf8',
        timeout: 60_000,
      });
    const ok = run('--shape', 'rack-failures', '--seed', '1', '--out', out, '--node-events-out', events);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    const g = workload('rack-failures');
    expect(readTrace(out).records).toEqual(g.trace.records);
    expect(readNodeEvents(events, FACTORY)).toEqual(g.nodeEvents);
    // Options are honoured or refused: exit 2 with the reason.
    const missing = run('--shape', 'rack-failures', '--out', out);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/give --node-events-out/);
    const bad = run('--shape', 'tidal', '--out', out);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown shape 'tidal'/);
  });
});

describe("the trace's own submission times", () => {
  it('load null keeps them: time scale 1, whatever load they offer', () => {
    const g = workload('new-member');
    const own = traceWorkload(g.trace, FACTORY, DEMO, { seed: 1, load: null });
    expect(own.timeScale).toBe(1);
    const byId = new Map(g.trace.records.map((r) => [`${g.trace.name}-${r.id}`, r.submitSeconds]));
    for (const j of own.jobs) expect(j.job.submittedAt).toBe(byId.get(j.job.id));
    // The same trace scaled to another load is stretched.
    expect(traceWorkload(g.trace, FACTORY, DEMO, { seed: 1, load: 0.45 }).timeScale).toBeCloseTo(2, 3);
  });
});

describe('fabrik sim', () => {
  const sim = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', file('src/cli/main.ts'), 'sim', ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });

  it('--shape replays a generated workload; --load trace keeps its own times', () => {
    const run = sim('--shape', 'new-member', '--days', '1', '--policies', 'fifo', '--load', 'trace', '--json');
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout.trim().split('\n').pop()!) as { trace: string; jobs: number };
    const g = generateWorkload({ shape: 'new-member', seed: 1, site: FACTORY, days: 1 });
    expect(summary).toMatchObject({ trace: 'new-member-1', jobs: g.trace.records.length });
  });

  it('says per policy how long its longest reclaim lasted, and why where it lasted an hour', () => {
    // The Slurm-like policy never takes lent GPUs back: a storm team's member waits for hours.
    const run = sim('--shape', 'reclaim-storm', '--days', '6', '--policies', 'slurm');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^slurm {3}avg JCT .* longest reclaim \d+\.\d\d h$/m);
    expect(run.stdout).toMatch(
      /^slurm {3}longest reclaim: \S+, .+ from day \d+ \d\d:\d\d: .+ in, it held \d+ of its \d+ GPUs while others borrowed \d+; its first job in line \(\d+ GPUs?[^)]*\) was [A-Za-z]+, /m,
    );
  });

  it('refuses what it cannot honour, with exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['--shape', 'diurnal', '--trace', 'x.csv'], /either --trace FILE or --shape NAME/],
      [[], /either --trace FILE or --shape NAME/],
      [['--trace', 'x.csv', '--days', '3'], /--days applies with --shape only/],
      [['--shape', 'diurnal', '--load', 'busy'], /--load must be a positive number, or 'trace'/],
      [['--shape', 'diurnal', '--preemption', 'kill'], /Allowed choices are checkpoint, resume/],
      [['--shape', 'diurnal', '--restart-overhead', '-5'], /--restart-overhead must be a number of seconds ≥ 0/],
      [['--shape', 'diurnal', '--seed', '-1'], /--seed must be a whole number/],
      // Its storm teams are idle for the first four days: three leave them nothing to submit.
      [
        ['--shape', 'reclaim-storm', '--days', '3'],
        /^fabrik: the reclaim-storm shape over 3 days leaves team storm-1 no hour to submit in: give more --days \(its default is 21\)$/m,
      ],
    ];
    for (const [args, message] of cases) {
      const run = sim(...args);
      expect(run.stderr).toMatch(message);
      expect(run.status).toBe(2);
    }
  });
});

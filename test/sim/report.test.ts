import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDuration, renderReport, writeReport } from '../../src/sim/report.js';
import { SIZE_CLASSES, type PolicyResult, type SimResults } from '../../src/sim/results.js';
import { sampleResults } from '../../src/sim/sample-results.js';

const CHROMIUM = '/usr/bin/chromium';
const ECHARTS = readFileSync(createRequire(import.meta.url).resolve('echarts/dist/echarts.min.js'), 'utf8');
const XSS = '</script><script>alert(1)</script>';

/** The sample with hostile strings wherever the page prints one. */
function hostileResults(): SimResults {
  const r = sampleResults();
  const rename = <T>(rec: Readonly<Record<string, T>>): Record<string, T> =>
    Object.fromEntries(Object.entries(rec).map(([k, v]) => [k === 'academy' ? '<img src=x onerror=alert(2)>' : k, v]));
  const policies = Object.fromEntries(
    Object.entries(r.policies).map(([name, p]) => [
      name === 'slurm' ? '<b onmouseover=alert(3)>slurm</b>' : name,
      { ...p, byMember: rename(p.byMember), series: { ...p.series, memberShare: rename(p.series.memberShare) } },
    ]),
  );
  return {
    ...r,
    trace: XSS,
    site: '<!-- <script>alert(4)</script>',
    rejected: { '</SCRIPT ><script>alert(5)</script>': 1, '\'"&<>': 2 },
    entitlements: rename(r.entitlements),
    policies,
  };
}

/** A run with nothing much in it: one policy, empty series and distributions, a missing figure. */
function emptyResults(): SimResults {
  const empty = {
    jobs: 0,
    avg_jct_s: NaN,
    median_jct_s: NaN,
    p99_jct_s: NaN,
    avg_wait_s: NaN,
    median_wait_s: NaN,
    p99_wait_s: NaN,
  };
  const policy: PolicyResult = {
    summary: {
      ...empty,
      utilization: 0,
      jain: NaN,
      max_large_gang_wait_s: 0,
      gpu_hours_lost: 0,
      stranded_gpu_hours: 0,
      preemptions: 0,
      makespan_s: 0,
      max_reclaim_latency_s: null,
      longest_reclaim: null,
      p99_wait_by_size_s: { '1': null, '2-8': null, '9-72': null, '>72': null },
      max_wait_s: 0,
      p99_bounded_slowdown: null,
      max_bounded_slowdown: null,
      gpu_hours_busy: 0,
    },
    byMember: {},
    bySize: Object.fromEntries(SIZE_CLASSES.map((c) => [c, empty])) as PolicyResult['bySize'],
    series: { t: [], utilization: [], queueLength: [], memberShare: {} },
    cdf: { jct: [], wait: [] },
  };
  return {
    trace: 'empty',
    jobs: 0,
    site: 's',
    gpus: 8,
    load: 0,
    usableLoad: 0,
    seed: 1,
    cycleSeconds: 60,
    largeGangBoundSeconds: 120,
    rejected: {},
    entitlements: { a: 1 },
    policies: { only: policy },
  };
}

/** The page without the inlined library (which has URLs, tags and NaN in its strings). */
const ours = (html: string): string => html.replace(ECHARTS, '');

/** The JSON blob the page carries. */
function embedded(html: string): unknown {
  const m = /<script type="application\/json" id="fabrik-data">([^<]*)<\/script>/.exec(html);
  expect(m, 'the data tag').not.toBeNull();
  return JSON.parse(m![1]);
}

describe('renderReport', () => {
  const results = sampleResults();
  const html = renderReport(results);

  it('is one HTML page with the echarts library inline', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html.includes(`<script>${ECHARTS}</script>`), 'echarts.min.js inline, unchanged').toBe(true);
    expect(html.match(/<script\b/gi)).toHaveLength(3);
  });

  it('loads nothing from the network', () => {
    // The library mentions a few namespace and licence URLs as strings; our own markup, none.
    const page = ours(html);
    expect(page).not.toMatch(/https?:\/\//i);
    expect(
      /\b(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?\/\//i.test(html),
      'a src= or href= to the network',
    ).toBe(false);
    expect(/url\(\s*["']?\s*(?:https?:)?\/\//i.test(html), 'a CSS url() to the network').toBe(false);
    expect(page).not.toMatch(/<link\b|<iframe\b|<img\b|@import|<script[^>]*\bsrc=/i);
    expect(page).toMatch(
      /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'sha256-[^']+' 'sha256-[^']+';/,
    );
  });

  it('embeds the results verbatim as JSON', () => {
    expect(embedded(html)).toEqual(JSON.parse(JSON.stringify(results)));
  });

  it('keeps hostile strings inside their tags', () => {
    const hostile = hostileResults();
    const html = renderReport(hostile);
    const page = ours(html);
    expect(page.match(/<script\b/gi)).toHaveLength(3);
    expect(page.match(/<\/script/gi)).toHaveLength(3);
    expect(page.match(/<!--/g)).toBeNull();
    expect(page).not.toContain('<img');
    expect(page).not.toContain('<b onmouseover');
    expect(page).toContain('&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(embedded(html)).toEqual(JSON.parse(JSON.stringify(hostile)));
  });

  it('shows the summary with one column per policy and the best value per row highlighted', () => {
    const head = /<table id="summary"[\s\S]*?<\/thead>/.exec(html)![0];
    for (const p of ['fifo', 'slurm', 'fabrik']) expect(head).toContain(`</span>${p}</th>`);
    const row = (label: string): string => new RegExp(`<tr><th scope="row">${label}[\\s\\S]*?</tr>`).exec(html)![0];
    // fabrik has the highest utilization and the lowest average JCT in the sample; fifo never preempts.
    expect(row('Utilization')).toMatch(/<td class="num">[^<]+<\/td><td class="num">[^<]+<\/td><td class="num best"/);
    expect(row('Average JCT')).toMatch(/<td class="num best"[^>]*>3 h 23 min</);
    expect(row('Preemptions')).toMatch(/<td class="num best"[^>]*>0</);
    expect(row('Longest reclaim')).toContain('<td class="num">—</td>');
    // No policy wins a row where all print the same.
    expect(row('Jobs completed')).not.toContain('best');
  });

  it('shows the tail figures: longest wait, bounded slowdown, busy GPU-hours, p99 wait by size', () => {
    const row = (label: string): string => new RegExp(`<tr><th scope="row">${label}[\\s\\S]*?</tr>`).exec(html)![0];
    // The sample's fabrik: p99 slowdown 40, worst 620, longest wait 180,877 s (2 d 2 h).
    expect(row('99th percentile slowdown')).toMatch(/<td class="num best"[^>]*>40\.0×</);
    expect(row('Worst slowdown')).toMatch(/<td class="num best"[^>]*>620×</);
    expect(row('Longest wait<')).toMatch(/<td class="num best"[^>]*>2 d 2 h</);
    // Busy GPU-hours is a quantity, not a score: nothing highlighted.
    expect(row('Busy GPU-hours')).toMatch(/>330,551 GPU-h</);
    expect(row('Busy GPU-hours')).not.toContain('best');
    const sizes = /<table id="sizes"[\s\S]*?<\/table>/.exec(html)![0];
    expect(sizes.match(/<th scope="col" class="sep">p99 wait<\/th>/g)).toHaveLength(3);
    // Over 72 GPUs: each policy's p99 is capped by its longest large-gang wait (fabrik's 9 h 30 min).
    const large = /<tr><th scope="row">over 72 GPUs[\s\S]*?<\/tr>/.exec(sizes)![0];
    expect(large).toMatch(/<td class="num sep best"[^>]*>9 h 30 min</);
  });

  it('shows a dash for results written before the tail figures existed', () => {
    const old = sampleResults();
    const policies = Object.fromEntries(
      Object.entries(old.policies).map(([name, p]) => {
        const {
          p99_wait_by_size_s: _a,
          max_wait_s: _b,
          p99_bounded_slowdown: _c,
          max_bounded_slowdown: _d,
          gpu_hours_busy: _e,
          ...summary
        } = p.summary;
        return [name, { ...p, summary }];
      }),
    ) as unknown as SimResults['policies'];
    const page = ours(renderReport({ ...old, policies }));
    expect(page).not.toContain('NaN');
    const tables = page.match(/<table[\s\S]*?<\/table>/g)!.join('');
    expect(tables).not.toContain('undefined');
    expect(/<tr><th scope="row">Worst slowdown[\s\S]*?<\/tr>/.exec(page)![0]).toContain('<td class="num">—</td>');
  });

  it('says why each policy’s longest reclaim lasted, the member named as text', () => {
    const r = sampleResults();
    const seen = {
      at: 3 * 86_400 + 7 * 3600 + 3600,
      heldGpus: 37,
      entitlementGpus: 172,
      borrowedGpus: 135,
      head: { job: 'j-gang', gpus: 144, reason: 'QuotaExhausted' as const, estimatedStart: 4 * 86_400, holding: true },
      owed: { job: 'j-small', gpus: 8, reason: 'BehindReservation' as const, estimatedStart: null, holding: false },
    };
    const longest = { member: '<img src=x onerror=alert(6)>', from: 3 * 86_400 + 7 * 3600, seconds: 17.5 * 3600, seen };
    const page = ours(
      renderReport({
        ...r,
        policies: {
          ...r.policies,
          fabrik: { ...r.policies.fabrik, summary: { ...r.policies.fabrik.summary, longest_reclaim: longest } },
        },
      }),
    );
    const notes = /<ul class="note" id="reclaims">[\s\S]*?<\/ul>/.exec(page)![0];
    // Only fabrik's: the sample's other policies never needed a reclaim.
    expect(notes.match(/<li>/g)).toHaveLength(1);
    expect(notes).toContain(
      '<li><strong>fabrik</strong>: &lt;img src=x onerror=alert(6)&gt;, 17 h 30 min from day 4 07:00: 1 h in, it held 37 of ' +
        'its 172 GPUs while others borrowed 135; its first job in line (144 GPUs, holding a reservation) was ' +
        'QuotaExhausted, estimated to start 16 h later; the first that fits what it is owed (8 GPUs) was ' +
        'BehindReservation, no estimated start.</li>',
    );
    expect(page).not.toContain('<img');
    // A run in which no policy needed a reclaim has no such section.
    expect(ours(html)).not.toContain('id="reclaims"');
  });

  it('has the header facts and a table per member and per job size', () => {
    const page = ours(html);
    for (const fact of ['synthetic-2w (sample)', '5,000', 'se-factory', '1,152', '42', 'missing gpus: 7'])
      expect(page).toContain(fact);
    expect(page).toContain('<dt>Load on the GPUs members can use</dt><dd>0.93</dd>');
    for (const m of Object.keys(results.entitlements)) expect(page).toContain(`<tr><th scope="row">${m}</th>`);
    for (const size of ['1 GPU', '2–8 GPUs', '9–72 GPUs', 'over 72 GPUs'])
      expect(page).toContain(`<tr><th scope="row">${size}</th>`);
    expect(page.match(/<div class="chart" id="/g)).toHaveLength(4 + 3);
  });

  it('renders a run with empty series and missing figures', () => {
    const page = ours(renderReport(emptyResults()));
    expect(page).toContain('<td class="num">—</td>');
    // No job of any size: every cell of the size table is a dash.
    const sizes = /<table id="sizes"[\s\S]*?<\/table>/.exec(page)![0];
    expect(sizes.match(/<td class="num(?: sep)?">([^<]*)<\/td>/g)!.map((td) => td.replace(/<[^>]+>/g, ''))).toEqual(
      SIZE_CLASSES.flatMap(() => ['0', '—', '—', '—']),
    );
    expect(page).not.toContain('NaN');
  });

  it('formats durations for people', () => {
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(12 * 60)).toBe('12 min');
    expect(formatDuration(3 * 3600 + 5 * 60)).toBe('3 h 05 min');
    expect(formatDuration(36 * 3600)).toBe('36 h');
    expect(formatDuration(52 * 3600 + 10)).toBe('2 d 4 h');
    expect(formatDuration(null)).toBe('—');
  });

  it('writes index.html into a new directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-report-'));
    try {
      const path = writeReport(results, join(dir, 'a', 'b'));
      expect(path).toBe(join(dir, 'a', 'b', 'index.html'));
      expect(readFileSync(path, 'utf8') === html, 'the file holds the rendered page').toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sampleResults', () => {
  it('is deterministic and plausible', () => {
    const r = sampleResults();
    expect(JSON.stringify(sampleResults())).toBe(JSON.stringify(r));
    expect(Object.keys(r.policies)).toEqual(['fifo', 'slurm', 'fabrik']);
    expect(Object.keys(r.entitlements)).toEqual(['pharma', 'telecom', 'defense', 'bank', 'invest', 'academy']);
    for (const p of Object.values(r.policies)) {
      const { t, utilization, queueLength, memberShare } = p.series;
      expect(t.length).toBeGreaterThan(200);
      expect(utilization).toHaveLength(t.length);
      expect(queueLength).toHaveLength(t.length);
      for (let i = 0; i < t.length; i++) {
        const held = Object.values(memberShare).reduce((a, s) => a + s[i], 0);
        expect(held).toBeLessThanOrEqual(utilization[i] + 1e-3);
        expect(utilization[i]).toBeLessThanOrEqual(1);
      }
      for (const cdf of [p.cdf.jct, p.cdf.wait]) {
        for (let i = 1; i < cdf.length; i++) {
          expect(cdf[i][0]).toBeGreaterThanOrEqual(cdf[i - 1][0]);
          expect(cdf[i][1]).toBeGreaterThanOrEqual(cdf[i - 1][1]);
        }
      }
      expect(p.summary.avg_wait_s).toBeLessThan(p.summary.avg_jct_s);
      expect(Object.values(p.byMember).reduce((a, m) => a + m.jobs, 0)).toBe(p.summary.jobs);
      expect(Object.values(p.bySize).reduce((a, s) => a + s.jobs, 0)).toBe(p.summary.jobs);
      const { summary: s } = p;
      expect(s.max_wait_s).toBeGreaterThanOrEqual(
        Math.max(s.max_large_gang_wait_s, ...Object.values(s.p99_wait_by_size_s).map(Number)),
      );
      expect(s.p99_wait_by_size_s['>72']).toBeLessThanOrEqual(s.max_large_gang_wait_s);
      expect(s.max_bounded_slowdown).toBeGreaterThanOrEqual(s.p99_bounded_slowdown!);
      expect(s.gpu_hours_busy).toBeGreaterThan(s.gpu_hours_lost);
    }
  });
});

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`report browser test skipped: ${CHROMIUM} not found (run scripts/install-chromium.sh)`);

describe.skipIf(!haveChromium)(`the report in headless Chromium (${CHROMIUM})`, () => {
  let browser: Browser;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fabrik-report-'));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a written report offline; returns the page and what went wrong on it. */
  async function open(results: SimResults, name: string) {
    const path = writeReport(results, join(dir, name));
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const blocked: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file://')) return route.continue();
      blocked.push(url);
      return route.abort();
    });
    await page.goto(pathToFileURL(path).href);
    try {
      await page.locator('html[data-rendered="true"]').waitFor({ timeout: 20_000 });
    } catch (e) {
      await page.close();
      throw new Error(`${name}: the report never finished drawing: ${problems.join('; ') || (e as Error).message}`);
    }
    return { page, problems, blocked };
  }

  /** Per chart container: series in its ECharts instance and painted pixels on its canvas. */
  const CHART_PROBE = `Array.from(document.querySelectorAll('.chart')).map((el) => {
    const chart = echarts.getInstanceByDom(el);
    const canvas = el.querySelector('canvas');
    let painted = 0;
    if (canvas) {
      const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) painted++;
    }
    return { id: el.id, series: chart ? chart.getOption().series.length : 0, svg: !!el.querySelector('svg'), canvas: !!canvas, painted };
  })`;
  interface Probe {
    id: string;
    series: number;
    svg: boolean;
    canvas: boolean;
    painted: number;
  }

  it('draws every chart, offline, without errors', async () => {
    const { page, problems, blocked } = await open(sampleResults(), 'sample');
    try {
      const charts = (await page.evaluate(CHART_PROBE)) as Probe[];
      expect(charts.map((c) => c.id)).toEqual([
        'chart-utilization',
        'chart-queue',
        'chart-cdf-jct',
        'chart-cdf-wait',
        'chart-share-0',
        'chart-share-1',
        'chart-share-2',
      ]);
      for (const c of charts) {
        expect(c.canvas || c.svg, `${c.id} has a canvas or svg`).toBe(true);
        expect(c.series, `${c.id} has series`).toBeGreaterThan(0);
        expect(c.painted, `${c.id} is painted`).toBeGreaterThan(5000);
      }
      expect(await page.locator('html').getAttribute('data-chart-failures')).toBe('0');
      const heads = await page.locator('#summary thead th').allTextContents();
      expect(heads.map((h) => h.trim())).toEqual(['Metric', 'fifo', 'slurm', 'fabrik']);
      expect(await page.locator('#summary td.best').count()).toBeGreaterThan(5);
      expect(problems).toEqual([]);
      expect(blocked).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('shows hostile strings as text and runs nothing from them', async () => {
    const { page, problems, blocked } = await open(hostileResults(), 'hostile');
    try {
      expect(await page.locator('h1 .trace').textContent()).toBe(XSS);
      expect(await page.title()).toContain(XSS);
      expect(await page.locator('script').count()).toBe(3);
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('html').getAttribute('data-charts')).toBe('7');
      expect(problems).toEqual([]);
      expect(blocked).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('survives a run with nothing in it', async () => {
    const { page, problems } = await open(emptyResults(), 'empty');
    try {
      expect(await page.locator('html').getAttribute('data-chart-failures')).toBe('0');
      expect(await page.locator('.chart canvas').count()).toBeGreaterThanOrEqual(5);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

// The report the consortium board reads: one self-contained HTML page per simulation run.
//
// Self-contained means it opens from a file, offline, years later: ECharts is inlined, there are
// no external fonts, styles or images, and a Content-Security-Policy lets only the page's own two
// scripts run (by hash) and forbids every network fetch. The tables are plain HTML rendered here,
// so the numbers read without JavaScript; the charts are drawn in the browser from the results,
// which the page carries verbatim as JSON (so the report is also an archive of the run).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  SIZE_CLASSES,
  type LongestReclaim,
  type PolicySummary,
  type SimResults,
  type TimeStats,
  type WaitingJob,
} from './results.js';

const POLICY_COLORS = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d'];
const MEMBER_COLORS = [
  '#1d4ed8',
  '#ea580c',
  '#15803d',
  '#b91c1c',
  '#7e22ce',
  '#0e7490',
  '#be185d',
  '#4d7c0f',
  '#a16207',
  '#475569',
];

let echartsSource: string | undefined;

/** ECharts' minified build, read once from node_modules. */
function echartsLibrary(): string {
  if (echartsSource === undefined) {
    const path = createRequire(import.meta.url).resolve('echarts/dist/echarts.min.js');
    // A literal "</script" inside the library would end the tag; "<\/script" means the same in JS.
    echartsSource = readFileSync(path, 'utf8').replace(/<\/(script)/gi, '<\\/$1');
  }
  return echartsSource;
}

// ---------------------------------------------------------------------------------------------
// Formatting for people

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const DASH = '—';

/** "42 s", "12 min", "3 h 05 min", "2 d 4 h". */
export function formatDuration(s: number | null | undefined): string {
  if (!isNum(s)) return DASH;
  if (s < 0) return `−${formatDuration(-s)}`;
  if (s < 59.5) return `${Math.round(s)} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m === 0 ? `${h} h` : `${h} h ${String(m).padStart(2, '0')} min`;
  }
  const hours = Math.round(s / 3600);
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h === 0 ? `${d} d` : `${d} d ${h} h`;
}

/** "day 3 07:05": a time in the run, counted from its first submission. */
function runTime(s: number): string {
  const minutes = Math.floor(s / 60);
  const hh = String(Math.floor(minutes / 60) % 24).padStart(2, '0');
  const mm = String(minutes % 60).padStart(2, '0');
  return `day ${Math.floor(minutes / 1440) + 1} ${hh}:${mm}`;
}

/**
 * Why the longest reclaim lasted, in a sentence: whose, when, what the member held and others
 * borrowed an hour in, and what its first job in line and the first job a reclaim would start
 * were waiting for (the policy's own explanation).
 */
export function describeLongestReclaim(r: LongestReclaim): string {
  const head = `${r.member}, ${formatDuration(r.seconds)} from ${runTime(r.from)}`;
  const seen = r.seen;
  if (!seen) return head;
  const gpus = (n: number) => `${grouped(n)} GPU${n === 1 ? '' : 's'}`;
  const job = (w: WaitingJob) => {
    const parts = [gpus(w.gpus)];
    if (w.holding) parts.push('holding a reservation');
    const when =
      w.estimatedStart === null ? 'no estimated start' : `estimated to start ${formatDuration(w.estimatedStart - seen.at)} later`;
    return `(${parts.join(', ')}) was ${w.reason}, ${when}`;
  };
  const held = `${formatDuration(seen.at - r.from)} in, it held ${grouped(seen.heldGpus)} of its ${gpus(seen.entitlementGpus)} while others borrowed ${grouped(seen.borrowedGpus)}`;
  if (!seen.head) return `${head}: ${held}`;
  if (!seen.owed || seen.owed.job === seen.head.job) return `${head}: ${held}; its first job in line ${job(seen.head)}`;
  return `${head}: ${held}; its first job in line ${job(seen.head)}; the first that fits what it is owed ${job(seen.owed)}`;
}

const grouped = (x: number, digits = 0): string =>
  x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const formatPercent = (x: number | null | undefined, digits = 1): string => (isNum(x) ? `${(x * 100).toFixed(digits)}%` : DASH);
const formatCount = (x: number | null | undefined): string => (isNum(x) ? grouped(Math.round(x)) : DASH);
const formatGpuHours = (x: number | null | undefined): string => (isNum(x) ? `${grouped(Math.round(x))} GPU-h` : DASH);
/** A load (offered work over capacity) to three places. */
const formatLoad = (x: number | null | undefined): string => (isNum(x) ? String(Math.round(x * 1000) / 1000) : DASH);
const formatIndex = (x: number | null | undefined): string => (isNum(x) ? x.toFixed(3) : DASH);
/** "1.00×", "12.3×", "2,400×": a ratio, with fewer decimals as it grows. */
const formatSlowdown = (x: number | null | undefined): string =>
  isNum(x) ? `${x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : grouped(Math.round(x))}×` : DASH;

// ---------------------------------------------------------------------------------------------
// Tables

type Better = 'low' | 'high' | null;

/**
 * The cells of one row, one per policy, with the best highlighted: the lowest or highest value,
 * ties (as printed) all highlighted, nothing highlighted when every policy prints the same.
 */
function rowCells(
  values: readonly (number | null | undefined)[],
  format: (x: number | null | undefined) => string,
  better: Better,
): string[] {
  const texts = values.map((v) => format(v));
  const numeric = values.filter(isNum);
  let bestText: string | undefined;
  if (better !== null && numeric.length > 0) {
    const best = better === 'low' ? Math.min(...numeric) : Math.max(...numeric);
    bestText = format(best);
    const distinct = new Set(values.map((v, i) => (isNum(v) ? texts[i] : null)).filter((t) => t !== null));
    if (distinct.size < 2) bestText = undefined;
  }
  return values.map((v, i) =>
    isNum(v) && texts[i] === bestText
      ? `<td class="num best" title="best of the policies">${escapeHtml(texts[i])}</td>`
      : `<td class="num">${escapeHtml(texts[i])}</td>`,
  );
}

interface SummaryRow {
  label: string;
  hint?: string;
  get: (s: PolicySummary) => number | null | undefined;
  format: (x: number | null | undefined) => string;
  better: Better;
}

const SUMMARY_GROUPS: { title: string; rows: SummaryRow[] }[] = [
  {
    title: 'Job completion time',
    rows: [
      { label: 'Average JCT', get: (s) => s.avg_jct_s, format: formatDuration, better: 'low' },
      { label: 'Median JCT', get: (s) => s.median_jct_s, format: formatDuration, better: 'low' },
      { label: '99th percentile JCT', get: (s) => s.p99_jct_s, format: formatDuration, better: 'low' },
    ],
  },
  {
    title: 'Waiting in the queue',
    rows: [
      { label: 'Average wait', get: (s) => s.avg_wait_s, format: formatDuration, better: 'low' },
      { label: 'Median wait', get: (s) => s.median_wait_s, format: formatDuration, better: 'low' },
      { label: '99th percentile wait', get: (s) => s.p99_wait_s, format: formatDuration, better: 'low' },
      {
        label: 'Longest wait',
        hint: 'any job; one that never started counts to the end',
        get: (s) => s.max_wait_s,
        format: formatDuration,
        better: 'low',
      },
      {
        label: 'Longest wait of a large gang',
        hint: 'jobs of more than 72 GPUs',
        get: (s) => s.max_large_gang_wait_s,
        format: formatDuration,
        better: 'low',
      },
    ],
  },
  {
    title: 'Bounded slowdown',
    rows: [
      {
        label: '99th percentile slowdown',
        hint: '(wait + run) / max(run, 10 s); the worst under 100 jobs',
        get: (s) => s.p99_bounded_slowdown,
        format: formatSlowdown,
        better: 'low',
      },
      {
        label: 'Worst slowdown',
        hint: 'work lost to preemption counts as wait',
        get: (s) => s.max_bounded_slowdown,
        format: formatSlowdown,
        better: 'low',
      },
    ],
  },
  {
    title: 'The machine',
    rows: [
      {
        label: 'Utilization',
        hint: 'busy / up GPUs while jobs arrive',
        get: (s) => s.utilization,
        format: formatPercent,
        better: 'high',
      },
      { label: 'Makespan', hint: 'until the last job finished', get: (s) => s.makespan_s, format: formatDuration, better: 'low' },
      {
        // Neither more nor less is better: lost work and restarts make it grow as work done does.
        label: 'Busy GPU-hours',
        hint: 'GPUs held by jobs: work done, lost and restarted',
        get: (s) => s.gpu_hours_busy,
        format: formatGpuHours,
        better: null,
      },
      {
        label: 'Stranded GPU-hours',
        hint: 'idle while jobs waited',
        get: (s) => s.stranded_gpu_hours,
        format: formatGpuHours,
        better: 'low',
      },
    ],
  },
  {
    title: 'Fairness and disruption',
    rows: [
      {
        label: "Jain's fairness index",
        hint: 'over share / fair share; 1 is perfectly fair',
        get: (s) => s.jain,
        format: formatIndex,
        better: 'high',
      },
      {
        label: 'Longest reclaim',
        hint: 'from a member’s demand returning to its share restored; — never needed',
        get: (s) => s.max_reclaim_latency_s,
        format: formatDuration,
        better: 'low',
      },
      { label: 'Preemptions', get: (s) => s.preemptions, format: formatCount, better: 'low' },
      {
        label: 'GPU-hours lost',
        hint: 'work redone after preemption',
        get: (s) => s.gpu_hours_lost,
        format: formatGpuHours,
        better: 'low',
      },
    ],
  },
];

function policyHeader(policies: readonly string[], colspan = 1): string {
  return policies
    .map(
      (p, i) =>
        `<th scope="col"${colspan > 1 ? ` colspan="${colspan}"` : ''} class="policy"><span class="swatch" style="background:${POLICY_COLORS[i % POLICY_COLORS.length]}"></span>${escapeHtml(p)}</th>`,
    )
    .join('');
}

function summaryTable(r: SimResults, policies: readonly string[]): string {
  const body = SUMMARY_GROUPS.map(({ title, rows }) => {
    const group = `<tr class="group"><th scope="rowgroup" colspan="${policies.length + 1}">${escapeHtml(title)}</th></tr>`;
    const lines = rows.map((row) => {
      const cells = rowCells(
        policies.map((p) => row.get(r.policies[p].summary)),
        row.format,
        row.better,
      );
      const hint = row.hint ? `<span class="hint">${escapeHtml(row.hint)}</span>` : '';
      return `<tr><th scope="row">${escapeHtml(row.label)}${hint}</th>${cells.join('')}</tr>`;
    });
    return group + lines.join('');
  }).join('');
  const jobs = `<tr><th scope="row">Jobs completed</th>${policies.map((p) => `<td class="num">${formatCount(r.policies[p].summary.jobs)}</td>`).join('')}</tr>`;
  return `<table id="summary" class="metrics">
<thead><tr><th scope="col">Metric</th>${policyHeader(policies)}</tr></thead>
<tbody>${jobs}${body}</tbody>
</table>`;
}

/** Members in the order the consortium lists them, then any that appear only in the results. */
function memberIds(r: SimResults): string[] {
  const ids = new Set(Object.keys(r.entitlements));
  for (const p of Object.values(r.policies)) {
    for (const m of Object.keys(p.byMember)) ids.add(m);
    for (const m of Object.keys(p.series.memberShare)) ids.add(m);
  }
  return [...ids];
}

/** A share against its fair share, flagged when the member got less than 80% of it. */
function shareCell(share: number | undefined, fair: number | undefined): string {
  if (!isNum(share)) return `<td class="num">${DASH}</td>`;
  const under = isNum(fair) && fair > 0 && share < 0.8 * fair;
  const fairText = isNum(fair) ? ` <span class="muted">/ ${formatPercent(fair)}</span>` : '';
  return `<td class="num${under ? ' under' : ''}"${under ? ' title="below 80% of its fair share"' : ''}>${formatPercent(share)}${fairText}</td>`;
}

/** Rows of [label cells, per-policy stats], with avg JCT and avg wait per policy and the best of each highlighted. */
function jctWaitCells(stats: readonly (TimeStats | undefined)[]): { jct: string[]; wait: string[] } {
  return {
    jct: rowCells(
      stats.map((s) => s?.avg_jct_s),
      formatDuration,
      'low',
    ),
    wait: rowCells(
      stats.map((s) => s?.avg_wait_s),
      formatDuration,
      'low',
    ),
  };
}

function memberTable(r: SimResults, policies: readonly string[]): string {
  const rows = memberIds(r).map((m) => {
    const stats = policies.map((p) => r.policies[p].byMember[m]);
    const { jct, wait } = jctWaitCells(stats);
    const cells = policies
      .map(
        (_, i) =>
          shareCell(stats[i]?.share, stats[i]?.fair_share) + jct[i] + wait[i].replace('<td class="num', '<td class="num sep'),
      )
      .join('');
    return `<tr><th scope="row">${escapeHtml(m)}</th><td class="num">${formatPercent(r.entitlements[m])}</td>${cells}</tr>`;
  });
  const sub = policies
    .map(() => '<th scope="col">Share / fair</th><th scope="col">Avg JCT</th><th scope="col" class="sep">Avg wait</th>')
    .join('');
  return `<table id="members" class="metrics grouped">
<thead><tr><th scope="col" rowspan="2">Member</th><th scope="col" rowspan="2">Entitled</th>${policyHeader(policies, 3)}</tr><tr class="sub">${sub}</tr></thead>
<tbody>${rows.join('')}</tbody>
</table>`;
}

const SIZE_LABELS: Record<string, string> = { '1': '1 GPU', '2-8': '2–8 GPUs', '9-72': '9–72 GPUs', '>72': 'over 72 GPUs' };

function sizeTable(r: SimResults, policies: readonly string[]): string {
  const rows = SIZE_CLASSES.map((c) => {
    const stats = policies.map((p) => r.policies[p].bySize?.[c]);
    const counts = [...new Set(stats.map((s) => formatCount(s?.jobs)))];
    // A class no job finished in has no average (its stats read 0): a dash, not "0 s".
    const { jct, wait } = jctWaitCells(stats.map((s) => (s && s.jobs > 0 ? s : undefined)));
    // Results written before the tail figures existed have no p99_wait_by_size_s: a dash, not a crash.
    const tail = rowCells(
      policies.map((p) => r.policies[p].summary.p99_wait_by_size_s?.[c]),
      formatDuration,
      'low',
    );
    const cells = policies.map((_, i) => jct[i] + wait[i] + tail[i].replace('<td class="num', '<td class="num sep')).join('');
    return `<tr><th scope="row">${escapeHtml(SIZE_LABELS[c] ?? c)}</th><td class="num">${escapeHtml(counts.join(' / '))}</td>${cells}</tr>`;
  });
  const sub = policies
    .map(() => '<th scope="col">Avg JCT</th><th scope="col">Avg wait</th><th scope="col" class="sep">p99 wait</th>')
    .join('');
  return `<table id="sizes" class="metrics grouped">
<thead><tr><th scope="col" rowspan="2">Job size</th><th scope="col" rowspan="2">Jobs</th>${policyHeader(policies, 3)}</tr><tr class="sub">${sub}</tr></thead>
<tbody>${rows.join('')}</tbody>
</table>`;
}

// ---------------------------------------------------------------------------------------------
// The page

function facts(r: SimResults, policies: readonly string[]): string {
  const rejected = Object.entries(r.rejected ?? {}).filter(([, n]) => n > 0);
  const rejectedTotal = rejected.reduce((a, [, n]) => a + n, 0);
  const rejectedText =
    rejected.length === 0
      ? 'none'
      : `${formatCount(rejectedTotal)} <span class="reasons">${rejected.map(([why, n]) => `${escapeHtml(why)}: ${formatCount(n)}`).join(' · ')}</span>`;
  const items: [string, string][] = [
    ['Trace', escapeHtml(r.trace)],
    ['Jobs', formatCount(r.jobs)],
    ['Site', escapeHtml(r.site)],
    ['GPUs', formatCount(r.gpus)],
    ['Load', formatLoad(r.load)],
    // Above 1, GPUs that owners never lend sit idle while the rest cannot keep up: queues grow all run.
    ['Load on the GPUs members can use', formatLoad(r.usableLoad)],
    ['Seed', escapeHtml(String(r.seed))],
    ['Scheduling round', isNum(r.cycleSeconds) ? `${formatCount(r.cycleSeconds)} s` : DASH],
    ['Large-gang wait bound', isNum(r.largeGangBoundSeconds) ? escapeHtml(formatDuration(r.largeGangBoundSeconds)) : DASH],
    ['Policies', policies.map(escapeHtml).join(', ') || 'none'],
    ['Rejected rows', rejectedText],
  ];
  return `<dl class="facts">${items.map(([k, v]) => `<div><dt>${k}</dt><dd>${v}</dd></div>`).join('')}</dl>`;
}

/** Per policy, why its longest reclaim lasted (nothing when no policy ever needed one). */
function reclaimNotes(r: SimResults, policies: readonly string[]): string {
  const items = policies.flatMap((p) => {
    const longest = r.policies[p].summary.longest_reclaim;
    return longest ? [`<li><strong>${escapeHtml(p)}</strong>: ${escapeHtml(describeLongestReclaim(longest))}.</li>`] : [];
  });
  if (items.length === 0) return '';
  return `<h3>Why the longest reclaim lasted</h3>
<ul class="note" id="reclaims">${items.join('')}</ul>`;
}

function chartPanel(id: string, title: string, caption: string, height?: number): string {
  const style = height === undefined ? '' : ` style="height:${height}px"`;
  return `<section class="panel">
<h3>${escapeHtml(title)}</h3>
<p class="caption">${escapeHtml(caption)}</p>
<div class="chart" id="${id}"${style} role="img" aria-label="${escapeHtml(title)}"></div>
</section>`;
}

/** Rows of the share small multiples: px per member, px above the first. */
const SHARE_ROW = 58;
const SHARE_TOP = 4;

const CSS = `
:root { color-scheme: light; --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc; --card: #fff; --best: #dcfce7; --best-fg: #166534; --under: #b45309; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1440px; margin: 0 auto; padding: 24px; }
header.top { margin-bottom: 20px; }
.eyebrow { margin: 0; color: var(--muted); font-size: 12px; letter-spacing: .06em; text-transform: uppercase; }
h1 { margin: 2px 0 14px; font-size: 24px; font-weight: 650; overflow-wrap: anywhere; }
h2 { margin: 28px 0 10px; font-size: 18px; font-weight: 650; }
h3 { margin: 0; font-size: 15px; font-weight: 600; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 10px; margin: 0; }
.facts div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; min-width: 0; }
.facts dt { color: var(--muted); font-size: 12px; }
.facts dd { margin: 2px 0 0; font-weight: 600; overflow-wrap: anywhere; }
.facts div:last-child { grid-column: span 2; }
.facts .reasons { display: block; color: var(--muted); font-weight: 400; font-size: 12.5px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 540px), 1fr)); gap: 16px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; min-width: 0; }
.grid.shares { grid-template-columns: repeat(auto-fit, minmax(min(100%, 380px), 1fr)); }
.overview { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 16px; align-items: start; }
.overview h2:first-child { margin-top: 0; }
.stack { display: grid; gap: 16px; }
.stack .chart { height: 300px; }
@media (max-width: 1100px) { .overview { grid-template-columns: minmax(0, 1fr); } .overview h2:first-child { margin-top: 28px; } }
.caption { margin: 2px 0 8px; color: var(--muted); font-size: 12.5px; }
.chart { width: 100%; height: 340px; }
.table-wrap { overflow-x: auto; background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
table.metrics { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.metrics th, .metrics td { padding: 7px 12px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
.metrics thead th { background: #f1f5f9; font-weight: 600; font-size: 13px; }
.metrics thead tr.sub th { font-weight: 500; color: var(--muted); font-size: 12px; }
.metrics td.num, .metrics thead th.policy, .metrics thead tr.sub th { text-align: right; }
.metrics.grouped thead th.policy { text-align: center; border-left: 1px solid var(--line); }
.metrics.grouped td.sep, .metrics.grouped th.sep { border-right: 1px solid var(--line); }
.metrics tbody th { font-weight: 500; }
.metrics tr.group th { background: #fafafa; color: var(--muted); font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; padding-top: 10px; }
.metrics .hint { display: block; color: var(--muted); font-size: 11.5px; font-weight: 400; white-space: normal; }
.metrics td.best { background: var(--best); color: var(--best-fg); font-weight: 650; }
.metrics td.under { color: var(--under); font-weight: 600; }
.muted { color: var(--muted); font-weight: 400; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
.note { color: var(--muted); font-size: 12.5px; margin: 6px 2px 0; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 620px), 1fr)); gap: 16px; align-items: start; }
.tables h2 { margin-top: 0; }
footer { margin: 28px 0 8px; color: var(--muted); font-size: 12px; }
.chart-error { color: #b91c1c; padding: 12px; }
@media (max-width: 640px) { main { padding: 14px; } .chart { height: 280px; } .facts div:last-child { grid-column: auto; } }
@media print { body { background: #fff; } .panel, .table-wrap, .facts div { break-inside: avoid; } }
`;

// The browser side: plain ES2017, no modules, no network. It reads the results from the JSON
// tag and draws one ECharts chart per .chart container, then marks <html data-rendered>.
const CLIENT = String.raw`(function () {
  'use strict';
  var POLICY_COLORS = __POLICY_COLORS__;
  var MEMBER_COLORS = __MEMBER_COLORS__;
  var R = JSON.parse(document.getElementById('fabrik-data').textContent);
  var root = document.documentElement;
  var policies = Object.keys(R.policies || {});
  var FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  var charts = [];
  var failures = 0;

  function isNum(x) { return typeof x === 'number' && isFinite(x); }
  function policyColor(i) { return POLICY_COLORS[i % POLICY_COLORS.length]; }

  var members = Object.keys(R.entitlements || {});
  policies.forEach(function (p) {
    Object.keys(R.policies[p].series.memberShare || {}).forEach(function (m) { if (members.indexOf(m) < 0) members.push(m); });
  });
  function memberColor(m) { return MEMBER_COLORS[members.indexOf(m) % MEMBER_COLORS.length]; }

  function duration(s) {
    if (!isNum(s)) return '—';
    if (s < 59.5) return Math.round(s) + ' s';
    var min = Math.round(s / 60);
    if (min < 60) return min + ' min';
    if (min < 48 * 60) { var h = Math.floor(min / 60), m = min % 60; return m ? h + ' h ' + (m < 10 ? '0' : '') + m + ' min' : h + ' h'; }
    var hours = Math.round(s / 3600), d = Math.floor(hours / 24), hh = hours % 24;
    return hh ? d + ' d ' + hh + ' h' : d + ' d';
  }
  function trimNumber(x) {
    if (x >= 1) return x.toLocaleString('en-US', { maximumFractionDigits: 1 });
    return String(Number(x.toPrecision(2)));
  }

  // Simulated time: days when the run is longer than three days, else hours.
  var maxT = 0;
  policies.forEach(function (p) { var t = R.policies[p].series.t || []; if (t.length && t[t.length - 1] > maxT) maxT = t[t.length - 1]; });
  var unit = maxT > 3 * 86400 ? { s: 86400, name: 'days' } : { s: 3600, name: 'hours' };

  function pairs(t, v, scale) {
    var out = [];
    for (var i = 0; i < t.length && i < v.length; i++) out.push([t[i] / unit.s, isNum(v[i]) ? v[i] * scale : null]);
    return out;
  }

  function base(extra) {
    var o = {
      animation: false,
      textStyle: { fontFamily: FONT, color: '#1f2937' },
      grid: { left: 64, right: 24, top: 44, bottom: 58 },
      legend: { top: 0, type: 'scroll', textStyle: { fontSize: 12 } },
      tooltip: { trigger: 'axis', confine: true },
    };
    for (var k in extra) o[k] = extra[k];
    return o;
  }

  function timeAxis() {
    return {
      type: 'value', name: 'simulated time (' + unit.name + ')', nameLocation: 'middle', nameGap: 32,
      min: 0, max: maxT > 0 ? Math.ceil(maxT / unit.s) : null,
      axisLabel: { formatter: function (v) { return trimNumber(v); } },
      splitLine: { show: false },
    };
  }
  function valueAxis(name, max, suffix) {
    return {
      type: 'value', name: name, nameLocation: 'middle', nameGap: 46, min: 0, max: max,
      axisLabel: { formatter: function (v) { return trimNumber(v) + (suffix || ''); } },
    };
  }
  function timeTooltip(valueFormat) {
    return {
      trigger: 'axis', confine: true,
      formatter: function (items) {
        if (!items.length) return '';
        var x = items[0].value[0];
        var head = unit.name === 'days' ? 'day ' + x.toFixed(2) + ' (' + duration(x * unit.s) + ')' : duration(x * unit.s);
        return [head].concat(items.map(function (it) {
          return it.marker + it.seriesName + ': <b>' + (it.value[1] === null ? '—' : valueFormat(it.value[1])) + '</b>';
        })).join('<br>');
      },
    };
  }
  var zoom = [{ type: 'inside', xAxisIndex: 0, filterMode: 'none' }];

  function lineSeries(name, data, color, extra) {
    var s = { name: name, type: 'line', data: data, showSymbol: false, sampling: 'lttb', color: color, lineStyle: { width: 1.6 } };
    for (var k in extra || {}) s[k] = extra[k];
    return s;
  }

  function draw(id, build) {
    var el = document.getElementById(id);
    if (!el) return;
    try {
      var chart = echarts.init(el, null, { renderer: 'canvas' });
      chart.setOption(build());
      charts.push(chart);
    } catch (e) {
      failures++;
      el.innerHTML = '';
      var msg = document.createElement('p');
      msg.className = 'chart-error';
      msg.textContent = 'This chart could not be drawn: ' + (e && e.message ? e.message : e);
      el.appendChild(msg);
      console.error('chart ' + id + ':', e);
    }
  }

  var pct = function (v) { return v.toFixed(1) + '%'; };

  draw('chart-utilization', function () {
    return base({
      tooltip: timeTooltip(pct), dataZoom: zoom, xAxis: timeAxis(), yAxis: valueAxis('GPUs busy (%)', 100, '%'),
      series: policies.map(function (p, i) { var s = R.policies[p].series; return lineSeries(p, pairs(s.t, s.utilization, 100), policyColor(i)); }),
    });
  });

  draw('chart-queue', function () {
    return base({
      tooltip: timeTooltip(function (v) { return Math.round(v).toLocaleString('en-US') + ' jobs'; }),
      dataZoom: zoom, xAxis: timeAxis(), yAxis: valueAxis('jobs waiting', null, ''),
      series: policies.map(function (p, i) { var s = R.policies[p].series; return lineSeries(p, pairs(s.t, s.queueLength, 1), policyColor(i)); }),
    });
  });

  // Distributions on a log axis in hours; a wait of 0 is drawn at the left edge. Every policy is
  // evaluated at the union of all policies' points (linearly in log time, which is how the line
  // is drawn anyway), so the tooltip compares all policies at one time.
  function valueAt(pts, x) {
    if (!pts.length || x < pts[0][0] || x > pts[pts.length - 1][0]) return null;
    var a = 0, b = pts.length - 1;
    while (a < b) { var mid = (a + b + 1) >> 1; if (pts[mid][0] <= x) a = mid; else b = mid - 1; }
    var p0 = pts[a], p1 = pts[a + 1];
    if (p0[0] === x || !p1) return p0[1];
    var f = (Math.log(x) - Math.log(p0[0])) / (Math.log(p1[0]) - Math.log(p0[0]));
    return p0[1] + f * (p1[1] - p0[1]);
  }
  function cdfChart(id, key, what, axisName) {
    draw(id, function () {
      var minPos = Infinity, maxX = 0;
      var raw = policies.map(function (p) {
        return (R.policies[p].cdf[key] || []).filter(function (pt) { return isNum(pt[0]) && isNum(pt[1]) && pt[0] >= 0; });
      });
      raw.forEach(function (pts) { pts.forEach(function (pt) { if (pt[0] > 0 && pt[0] < minPos) minPos = pt[0]; if (pt[0] > maxX) maxX = pt[0]; }); });
      if (!isFinite(minPos)) minPos = 1;
      if (maxX <= minPos) maxX = minPos * 10;
      var lo = Math.pow(10, Math.floor(Math.log10(minPos / 3600)));
      var hi = Math.pow(10, Math.ceil(Math.log10(maxX / 3600)));
      var curves = raw.map(function (pts) {
        return pts.map(function (pt) { return [Math.max(pt[0] / 3600, lo), pt[1] * 100]; })
          .sort(function (u, v) { return u[0] - v[0] || u[1] - v[1]; });
      });
      var xs = [];
      curves.forEach(function (c) { c.forEach(function (pt) { xs.push(pt[0]); }); });
      xs.sort(function (u, v) { return u - v; });
      xs = xs.filter(function (x, i) { return i === 0 || x !== xs[i - 1]; });
      return base({
        tooltip: {
          trigger: 'axis', confine: true,
          formatter: function (items) {
            if (!items.length) return '';
            var x = items[0].value[0];
            return ['jobs ' + what + ' within ' + (x <= lo && key === 'wait' ? duration(x * 3600) + ' (or no wait)' : duration(x * 3600))].concat(items.filter(function (it) {
              return isNum(it.value[1]);
            }).map(function (it) {
              return it.marker + it.seriesName + ': <b>' + it.value[1].toFixed(1) + '%</b>';
            })).join('<br>');
          },
        },
        xAxis: {
          type: 'log', logBase: 10, min: lo, max: hi, name: axisName + ' (hours, log scale)', nameLocation: 'middle', nameGap: 32,
          axisLabel: { formatter: function (v) { return trimNumber(v) + ' h'; } },
          splitLine: { show: true, lineStyle: { color: '#eef0f3' } },
        },
        yAxis: valueAxis('jobs (%)', 100, '%'),
        series: policies.map(function (p, i) {
          var data = xs.map(function (x) { return [x, valueAt(curves[i], x)]; });
          return lineSeries(p, data, policyColor(i), { sampling: undefined, connectNulls: false });
        }),
      });
    });
  }
  cdfChart('chart-cdf-jct', 'jct', 'completed', 'time from submission to finish');
  cdfChart('chart-cdf-wait', 'wait', 'started', 'time from submission to start');

  // Each member's share of the machine, one panel per policy: small multiples, one row per
  // member on a scale shared across policies, its entitlement dashed.
  var shareMembers = members.filter(function (m) {
    return isNum(R.entitlements[m]) || policies.some(function (p) { return R.policies[p].series.memberShare[m]; });
  });
  function niceCeil(v) { return v <= 5 ? Math.max(1, Math.ceil(v)) : v <= 20 ? Math.ceil(v / 5) * 5 : Math.min(100, Math.ceil(v / 10) * 10); }
  var shareTop = {};
  shareMembers.forEach(function (m) {
    var top = isNum(R.entitlements[m]) ? R.entitlements[m] : 0;
    policies.forEach(function (p) { (R.policies[p].series.memberShare[m] || []).forEach(function (v) { if (isNum(v) && v > top) top = v; }); });
    shareTop[m] = niceCeil(top * 100 * 1.08);
  });
  var ROW = __SHARE_ROW__, TOP = __SHARE_TOP__, TITLE = 17;
  policies.forEach(function (p, pi) {
    draw('chart-share-' + pi, function () {
      var s = R.policies[p].series;
      var n = shareMembers.length;
      var last = n - 1;
      var all = shareMembers.map(function (_, k) { return k; });
      return base({
        legend: { show: false },
        axisPointer: { link: [{ xAxisIndex: 'all' }] },
        dataZoom: [{ type: 'inside', xAxisIndex: all, filterMode: 'none' }],
        tooltip: {
          trigger: 'axis', confine: true,
          formatter: function (items) {
            if (!items.length) return '';
            var i = items[0].dataIndex, t = s.t[i];
            var head = unit.name === 'days' ? 'day ' + (t / unit.s).toFixed(2) + ' (' + duration(t) + ')' : duration(t);
            return [head].concat(shareMembers.map(function (m) {
              var v = (s.memberShare[m] || [])[i], e = R.entitlements[m];
              return '<span style="display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:5px;background:' + memberColor(m) + '"></span>' +
                m + ': <b>' + (isNum(v) ? (v * 100).toFixed(1) + '%' : '—') + '</b>' + (isNum(e) ? ' of ' + (e * 100).toFixed(1) + '% entitled' : '');
            })).join('<br>');
          },
        },
        title: shareMembers.map(function (m, k) {
          return { text: m, left: 58, top: TOP + k * ROW, padding: 0, textStyle: { fontSize: 12, fontWeight: 600, color: memberColor(m), fontFamily: FONT } };
        }).concat(shareMembers.map(function (m, k) {
          var e = R.entitlements[m];
          return {
            text: isNum(e) ? 'entitled ' + (e * 100).toFixed(1) + '% (dashed)' : 'no entitlement', right: 18, top: TOP + k * ROW + 1, padding: 0,
            textStyle: { fontSize: 11, fontWeight: 400, color: '#6b7280', fontFamily: FONT },
          };
        })),
        grid: shareMembers.map(function (_, k) { return { left: 58, right: 18, top: TOP + k * ROW + TITLE, height: ROW - TITLE - 10 }; }),
        xAxis: shareMembers.map(function (_, k) {
          var a = timeAxis();
          a.gridIndex = k;
          if (k !== last) { a.name = ''; a.axisLabel = { show: false }; a.axisTick = { show: false }; }
          return a;
        }),
        yAxis: shareMembers.map(function (m, k) {
          return {
            type: 'value', gridIndex: k, min: 0, max: shareTop[m], interval: shareTop[m],
            axisLabel: { fontSize: 10, formatter: function (v) { return v + '%'; } },
            splitLine: { lineStyle: { color: '#eef0f3' } },
          };
        }),
        series: shareMembers.map(function (m, k) {
          var c = memberColor(m), e = R.entitlements[m];
          return lineSeries(m, pairs(s.t, s.memberShare[m] || [], 100), c, {
            xAxisIndex: k, yAxisIndex: k, areaStyle: { color: c, opacity: 0.12 }, lineStyle: { width: 1.3 },
            markLine: isNum(e) ? {
              silent: true, symbol: ['none', 'none'], animation: false, label: { show: false },
              lineStyle: { type: 'dashed', color: '#111827', width: 1.2, opacity: 0.75 },
              data: [{ yAxis: e * 100, name: m + ' entitlement' }],
            } : undefined,
          });
        }),
      });
    });
  });

  function resize() { charts.forEach(function (c) { c.resize(); }); }
  if (typeof ResizeObserver === 'function') {
    var ro = new ResizeObserver(resize);
    Array.prototype.forEach.call(document.querySelectorAll('.chart'), function (el) { ro.observe(el); });
  } else {
    window.addEventListener('resize', resize);
  }
  root.setAttribute('data-charts', String(charts.length));
  root.setAttribute('data-chart-failures', String(failures));
  root.setAttribute('data-rendered', 'true');
})();`;

/** A JSON value safe inside a <script> element: "<" can never start a closing tag or comment. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** One self-contained HTML page comparing the policies of a simulation run. */
export function renderReport(results: SimResults): string {
  const policies = Object.keys(results.policies ?? {});
  const library = echartsLibrary();
  const client = CLIENT.replace('__POLICY_COLORS__', JSON.stringify(POLICY_COLORS))
    .replace('__MEMBER_COLORS__', JSON.stringify(MEMBER_COLORS))
    .replace('__SHARE_ROW__', String(SHARE_ROW))
    .replace('__SHARE_TOP__', String(SHARE_TOP));
  // Only these two scripts may run, and nothing may be fetched: a report opened from a mail
  // attachment or a file share neither phones home nor runs anything smuggled into its data.
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(library)} ${sha256(client)}`,
    "style-src 'unsafe-inline'",
    'img-src data: blob:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; '); // constants and base64 only: nothing to escape inside the double-quoted attribute

  const title = `Scheduling policies compared: ${results.trace}`;
  const shareHeight = SHARE_TOP + Math.max(1, memberIds(results).length) * SHARE_ROW + 40;
  const sharePanels = policies
    .map((p, i) => chartPanel(`chart-share-${i}`, p, 'Share of all GPUs held; dashed: its entitlement.', shareHeight))
    .join('\n');

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="Fabrik simulator">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header class="top">
<p class="eyebrow">Fabrik · simulation report</p>
<h1>Scheduling policies compared on <span class="trace">${escapeHtml(results.trace)}</span></h1>
${facts(results, policies)}
</header>

<div class="overview">
<section>
<h2>Summary</h2>
<div class="table-wrap">${summaryTable(results, policies)}</div>
<p class="note">Best value in each row highlighted. JCT: job completion time, from submission to finish.
Large-gang wait bound: what Fabrik promises a gang of a whole NVLink domain or more within its member's
entitlement, the longest walltime of the jobs in its way plus two scheduling rounds.</p>
${reclaimNotes(results, policies)}
</section>
<section>
<h2>Over time</h2>
<noscript><p class="note">The charts need JavaScript; the tables do not.</p></noscript>
<div class="stack">
${chartPanel('chart-utilization', 'Utilization', 'Share of all GPUs running jobs. Scroll on a chart to zoom.')}
${chartPanel('chart-queue', 'Queue length', 'Jobs submitted and waiting to start.')}
</div>
</section>
</div>

<h2>Distributions</h2>
<div class="grid">
${chartPanel('chart-cdf-jct', 'Job completion time (CDF)', 'Share of jobs finished within a given time of their submission.')}
${chartPanel('chart-cdf-wait', 'Wait before start (CDF)', 'Share of jobs started within a given time of submission; no wait: at the left edge.')}
</div>

<h2>Each member’s share of the machine, by policy</h2>
<div class="grid shares">
${sharePanels}
</div>

<div class="tables">
<section>
<h2>By member</h2>
<div class="table-wrap">${memberTable(results, policies)}</div>
<p class="note">Share: fraction of all GPU-hours delivered; fair: the entitlement capped by the member’s demand. Amber: below 80% of fair share. Best average per row highlighted.</p>
</section>
<section>
<h2>By job size</h2>
<div class="table-wrap">${sizeTable(results, policies)}</div>
<p class="note">Jobs: completed jobs of that size. p99 wait: over all jobs of that size, one that never started
waiting until the end of the run; where a size has fewer than 100 jobs, its longest wait. Best value per row highlighted.</p>
</section>
</div>

<footer>Generated by Fabrik's simulator. Self-contained: opens offline; the results are embedded in this page as JSON (element <code>#fabrik-data</code>).</footer>
</main>
<script type="application/json" id="fabrik-data">${scriptJson(results)}</script>
<script>${library}</script>
<script>${client}</script>
</body>
</html>
`;
}

/** Writes the report as `index.html` in `dir` (created if missing) and returns its path. */
export function writeReport(results: SimResults, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'index.html');
  writeFileSync(path, renderReport(results), 'utf8');
  return path;
}

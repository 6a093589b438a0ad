// A deterministic, plausible SimResults for tests and for previewing the report: three policies
// on the demo consortium over two simulated weeks. Everything comes from closed-form curves and
// an integer hash, so the same object comes back on every call (no Math.random, no clock).
import { SIZE_CLASSES, type MemberStats, type PolicyResult, type SimResults, type SizeClass, type TimeStats } from './results.js';

const GPUS = 1152;
const HOUR = 3600;
const DAY = 24 * HOUR;

const ENTITLEMENTS: Record<string, number> = {
  pharma: 0.3,
  telecom: 0.2,
  defense: 0.125,
  bank: 0.15,
  invest: 0.125,
  academy: 0.03,
};

/** How each member's demand moves: mean level (× entitlement), daily and multi-day swing, phase. */
const DEMAND: Record<string, { level: number; daily: number; slow: number; phase: number }> = {
  pharma: { level: 1.15, daily: 0.15, slow: 0.35, phase: 0.1 },
  telecom: { level: 0.95, daily: 0.3, slow: 0.2, phase: 0.35 },
  defense: { level: 0.8, daily: 0.05, slow: 0.1, phase: 0.6 },
  bank: { level: 0.9, daily: 0.35, slow: 0.25, phase: 0.8 },
  invest: { level: 1.05, daily: 0.25, slow: 0.3, phase: 0.2 },
  academy: { level: 1.5, daily: 0.4, slow: 0.4, phase: 0.5 },
};

interface PolicyShape {
  /** Mean utilization once warm. */
  util: number;
  /** Mean queue length. */
  queue: number;
  /** Demand exponent when splitting GPUs: > 1 favours whoever asks most, < 1 evens out. */
  skew: number;
  makespanDays: number;
  jct: { median_h: number; p99_h: number };
  wait: { zero: number; median_h: number; p99_h: number };
  maxLargeGangWait_h: number;
  gpuHoursLost: number;
  strandedGpuHours: number;
  preemptions: number;
  maxReclaimLatency_s: number | null;
  /** Bounded slowdown's p99 and max: short jobs that waited long make the tail. */
  boundedSlowdown: { p99: number; max: number };
  /** How much worse each member fares than the policy's average (JCT and wait multiplier). */
  memberFactor: Record<string, number>;
}

const POLICIES: Record<string, PolicyShape> = {
  fifo: {
    util: 0.71,
    queue: 210,
    skew: 1.6,
    makespanDays: 14,
    jct: { median_h: 2.2, p99_h: 48 },
    wait: { zero: 0.22, median_h: 0.8, p99_h: 18 },
    maxLargeGangWait_h: 19.5,
    gpuHoursLost: 0,
    strandedGpuHours: 9420,
    preemptions: 0,
    maxReclaimLatency_s: null,
    boundedSlowdown: { p99: 180, max: 2400 },
    memberFactor: { pharma: 0.85, telecom: 1.0, defense: 1.1, bank: 1.05, invest: 0.95, academy: 1.6 },
  },
  slurm: {
    util: 0.83,
    queue: 120,
    skew: 1.2,
    makespanDays: 13.8,
    jct: { median_h: 1.8, p99_h: 36 },
    wait: { zero: 0.34, median_h: 0.5, p99_h: 12 },
    maxLargeGangWait_h: 31.2,
    gpuHoursLost: 2150,
    strandedGpuHours: 5080,
    preemptions: 412,
    maxReclaimLatency_s: 2 * HOUR + 10 * 60,
    boundedSlowdown: { p99: 95, max: 1500 },
    memberFactor: { pharma: 0.9, telecom: 1.0, defense: 1.05, bank: 1.0, invest: 1.0, academy: 1.3 },
  },
  fabrik: {
    util: 0.91,
    queue: 64,
    skew: 0.8,
    makespanDays: 13.6,
    jct: { median_h: 1.6, p99_h: 28 },
    wait: { zero: 0.46, median_h: 0.35, p99_h: 7 },
    maxLargeGangWait_h: 9.5,
    gpuHoursLost: 640,
    strandedGpuHours: 1250,
    preemptions: 287,
    maxReclaimLatency_s: 14 * 60,
    boundedSlowdown: { p99: 40, max: 620 },
    memberFactor: { pharma: 1.0, telecom: 0.98, defense: 1.0, bank: 1.02, invest: 1.0, academy: 1.05 },
  },
};

const SIZE_JOBS: Record<SizeClass, number> = { '1': 2410, '2-8': 1780, '9-72': 705, '>72': 105 };
/** JCT and wait multipliers per size class (large gangs run longer and wait longer). */
const SIZE_FACTOR: Record<SizeClass, { jct: number; wait: number }> = {
  '1': { jct: 0.45, wait: 0.5 },
  '2-8': { jct: 0.9, wait: 0.8 },
  '9-72': { jct: 2.1, wait: 1.9 },
  '>72': { jct: 4.5, wait: 4.8 },
};

/** A fixed pseudo-random number in [0, 1) for (i, salt): an integer hash, not a generator. */
function hash01(i: number, salt: number): number {
  let h = Math.imul(i + 0x9e3779b9 * (salt + 1), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h / 2 ** 32;
}

const round = (x: number, digits = 4): number => Math.round(x * 10 ** digits) / 10 ** digits;
const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
const wave = (hours: number, periodHours: number, phase: number): number => Math.sin(2 * Math.PI * (hours / periodHours + phase));

/** Log-logistic distribution with a given median and 99th percentile, with a share of exact zeros. */
class Dist {
  readonly beta: number;
  constructor(
    readonly zero: number,
    readonly median_s: number,
    p99_s: number,
  ) {
    // Quantile of the positive part: median · (q / (1 − q))^(1/β); β is set so that q = 0.99 hits p99.
    this.beta = Math.log(99) / Math.log(p99_s / median_s);
  }
  /** The p-quantile of the whole distribution (zeros included). */
  quantile(p: number): number {
    if (p <= this.zero) return 0;
    const q = (p - this.zero) / (1 - this.zero);
    return this.median_s * (q / (1 - q)) ** (1 / this.beta);
  }
  cdf(x: number): number {
    if (x <= 0) return this.zero;
    return this.zero + (1 - this.zero) / (1 + (x / this.median_s) ** -this.beta);
  }
  mean(): number {
    const b = Math.PI / this.beta;
    return (1 - this.zero) * this.median_s * (b / Math.sin(b));
  }
  /** `n` points log-spaced between the 0.1% and 99.9% quantiles of the positive part, plus (0, zero) if any. */
  points(n: number): [number, number][] {
    const lo = Math.log(this.quantile(this.zero + (1 - this.zero) * 0.001));
    const hi = Math.log(this.quantile(this.zero + (1 - this.zero) * 0.999));
    const out: [number, number][] = this.zero > 0 ? [[0, round(this.zero)]] : [];
    for (let k = 0; k < n; k++) {
      const x = Math.exp(lo + ((hi - lo) * k) / (n - 1));
      out.push([Math.round(x), round(this.cdf(x))]);
    }
    return out;
  }
}

function timeStats(jobs: number, jct: Dist, wait: Dist, jctScale = 1, waitScale = 1): TimeStats {
  return {
    jobs,
    avg_jct_s: Math.round(jct.mean() * jctScale),
    median_jct_s: Math.round(jct.quantile(0.5) * jctScale),
    p99_jct_s: Math.round(jct.quantile(0.99) * jctScale),
    avg_wait_s: Math.round(wait.mean() * waitScale),
    median_wait_s: Math.round(wait.quantile(0.5) * waitScale),
    p99_wait_s: Math.round(wait.quantile(0.99) * waitScale),
  };
}

function policyResult(shape: PolicyShape, salt: number): PolicyResult {
  const members = Object.keys(ENTITLEMENTS);
  const makespan_s = Math.round(shape.makespanDays * DAY);
  const lastHour = Math.floor(makespan_s / HOUR);
  const t: number[] = [];
  const utilization: number[] = [];
  const queueLength: number[] = [];
  const memberShare: Record<string, number[]> = Object.fromEntries(members.map((m) => [m, []]));

  for (let i = 0; i <= lastHour; i++) {
    t.push(i * HOUR);
    const warm = Math.min(1, (i + 1) / 8);
    const drain = clamp((lastHour - i) / 14, 0.08, 1);
    const jitter = hash01(i, salt) - 0.5;
    const u = clamp((shape.util + 0.05 * wave(i, 24, -0.3) + 0.03 * wave(i, 84, 0.1) + 0.04 * jitter) * warm * drain, 0, 0.985);
    utilization.push(round(u));
    const q = shape.queue * (1 + 0.55 * wave(i, 24, -0.1) + 0.3 * wave(i, 84, 0.4) + 0.25 * jitter) * Math.min(1, (i + 1) / 4);
    queueLength.push(Math.max(0, Math.round(q * clamp((lastHour - i - 2) / 12, 0, 1))));

    // Split the busy GPUs among members by demand; the policy's skew decides how evenly.
    const raw = members.map((m, k) => {
      const d = DEMAND[m];
      const demand = clamp(
        d.level +
          d.daily * wave(i, 24, d.phase) +
          d.slow * wave(i, 60 + 17 * k, d.phase * 2) +
          0.1 * (hash01(i, salt * 31 + k) - 0.5),
        0.1,
        4,
      );
      return ENTITLEMENTS[m] * demand ** shape.skew;
    });
    const total = raw.reduce((a, b) => a + b, 0);
    const shares = raw.map((r) => (u * r) / total);
    // Defense runs only on its two sovereign racks: never more than its entitlement.
    const di = members.indexOf('defense');
    const excess = Math.max(0, shares[di] - ENTITLEMENTS.defense * 0.97);
    if (excess > 0) {
      shares[di] -= excess;
      const others = shares.reduce((a, s, k) => (k === di ? a : a + s), 0);
      for (let k = 0; k < shares.length; k++) if (k !== di) shares[k] += (excess * shares[k]) / others;
    }
    members.forEach((m, k) => memberShare[m].push(round(shares[k])));
  }

  const jct = new Dist(0, shape.jct.median_h * HOUR, shape.jct.p99_h * HOUR);
  const wait = new Dist(shape.wait.zero, shape.wait.median_h * HOUR, shape.wait.p99_h * HOUR);
  const jobs = SIZE_JOBS['1'] + SIZE_JOBS['2-8'] + SIZE_JOBS['9-72'] + SIZE_JOBS['>72'];
  const meanUtil = utilization.reduce((a, b) => a + b, 0) / utilization.length;
  const deliveredGpuHours = meanUtil * GPUS * (makespan_s / HOUR);

  const byMember: Record<string, MemberStats> = {};
  for (const m of members) {
    const share = memberShare[m].reduce((a, b) => a + b, 0) / utilization.reduce((a, b) => a + b, 0);
    // Entitlement capped by demand: defense asks for less than it owns.
    const fair_share = Math.min(ENTITLEMENTS[m], ENTITLEMENTS[m] * DEMAND[m].level);
    const f = shape.memberFactor[m];
    // Academy submits many small jobs: whatever the others did not (so the counts add up).
    const others = members.filter((o) => o !== 'academy').map((o) => Math.round(jobs * ENTITLEMENTS[o] * 0.97));
    const memberJobs = m === 'academy' ? jobs - others.reduce((a, b) => a + b, 0) : Math.round(jobs * ENTITLEMENTS[m] * 0.97);
    byMember[m] = {
      ...timeStats(memberJobs, jct, wait, f, f * f),
      share: round(share),
      fair_share: round(fair_share),
      gpu_hours: Math.round(share * deliveredGpuHours),
    };
  }
  const ratios = members.map((m) => byMember[m].share / byMember[m].fair_share);
  const jain = ratios.reduce((a, b) => a + b, 0) ** 2 / (ratios.length * ratios.reduce((a, b) => a + b * b, 0));

  const bySize = Object.fromEntries(
    SIZE_CLASSES.map((c) => [c, timeStats(SIZE_JOBS[c], jct, wait, SIZE_FACTOR[c].jct, SIZE_FACTOR[c].wait)]),
  ) as Record<SizeClass, TimeStats>;

  // Tails per size class: the p99, and the max as the quantile one job in 2n reaches; the largest
  // gangs' longest wait is the policy's figure, which their p99 cannot exceed.
  const largeMax = Math.round(shape.maxLargeGangWait_h * HOUR);
  const p99WaitBySize = Object.fromEntries(
    SIZE_CLASSES.map((c) => {
      const p99 = Math.round(wait.quantile(0.99) * SIZE_FACTOR[c].wait);
      return [c, c === '>72' ? Math.min(p99, largeMax) : p99];
    }),
  ) as Record<SizeClass, number>;
  const maxWait = Math.max(
    largeMax,
    ...SIZE_CLASSES.filter((c) => c !== '>72').map((c) =>
      Math.round(wait.quantile(1 - 1 / (2 * SIZE_JOBS[c])) * SIZE_FACTOR[c].wait),
    ),
  );

  return {
    summary: {
      ...timeStats(jobs, jct, wait),
      utilization: round(meanUtil),
      jain: round(jain),
      max_large_gang_wait_s: Math.round(shape.maxLargeGangWait_h * HOUR),
      gpu_hours_lost: shape.gpuHoursLost,
      stranded_gpu_hours: shape.strandedGpuHours,
      preemptions: shape.preemptions,
      makespan_s,
      max_reclaim_latency_s: shape.maxReclaimLatency_s,
      longest_reclaim: null,
      p99_wait_by_size_s: p99WaitBySize,
      max_wait_s: maxWait,
      p99_bounded_slowdown: shape.boundedSlowdown.p99,
      max_bounded_slowdown: shape.boundedSlowdown.max,
      gpu_hours_busy: Math.round(deliveredGpuHours),
    },
    byMember,
    bySize,
    series: { t, utilization, queueLength, memberShare },
    cdf: { jct: jct.points(160), wait: wait.points(160) },
  };
}

/** The example results: fifo, slurm and fabrik on se-factory, 5,000 jobs over two weeks. */
export function sampleResults(): SimResults {
  const policies: Record<string, PolicyResult> = {};
  Object.entries(POLICIES).forEach(([name, shape], k) => {
    policies[name] = policyResult(shape, k + 1);
  });
  return {
    trace: 'synthetic-2w (sample)',
    jobs: 5000,
    site: 'se-factory',
    gpus: GPUS,
    load: 0.9,
    usableLoad: 0.93,
    seed: 42,
    cycleSeconds: 300,
    largeGangBoundSeconds: 7 * 86400 + 600,
    rejected: { 'missing gpus': 7, 'unknown member': 3, 'runtime ≤ 0': 2 },
    entitlements: { ...ENTITLEMENTS },
    policies,
  };
}

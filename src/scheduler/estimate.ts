// Estimated start times for every waiting job, the jobs behind the queue depth included.
// Reserved jobs know theirs exactly (the GPUs they hold free up at that time). Beyond the
// reservations, the queue is played forward in queue order, every job lasting its walltime, on
// two resources: the machine's GPUs as one pool, and each member's limit (entitlement plus
// borrowing limit, its zone: what it may ever hold). List scheduling with a heap of releases per
// resource, O(n log n), so 100,000 waiting jobs each get an estimate in one cycle. It ignores
// topology and the lenders' current use, so it can err early for jobs that wait for those; it
// never errs early by the queue itself: a job's estimate is never earlier than that of a job of
// its member ahead of it and at least as large (which must start first; a smaller one ahead may
// legitimately start later, by backfill), unless running jobs are being stopped for it: it then
// starts when they stop. Jobs whose estimate is already null (they cannot fit the machine as it
// is) are skipped; a job larger than its member's limit gets null.
import FlatQueue from 'flatqueue';

/** The waiting jobs in queue order, as columns (one entry per job). */
export interface Waiting {
  readonly gpus: readonly number[];
  readonly walltimeSeconds: readonly number[];
  /** Start of its reservation, or NaN when it holds none. */
  readonly reservedStart: readonly number[];
  /**
   * Running jobs are being stopped for it (WaitingForReclaim): its reservation's start is when
   * they stop, whatever the jobs of its member ahead of it do.
   */
  readonly reclaiming: readonly boolean[];
  /** Its member's index; -1 for a job outside its member's limits (in an advance reservation). */
  readonly member: readonly number[];
}

/** A running job's expected release: when, how many GPUs, and whether they count to `member`'s limit. */
export interface Release {
  readonly end: number;
  readonly gpus: number;
  readonly member: number;
  /** False for a job being stopped: its GPUs are busy but no longer count to its member. */
  readonly counted: boolean;
}

/** Per member (by index): the most GPUs it may ever hold, and what it holds now. */
export interface MemberLimits {
  readonly most: ArrayLike<number>;
  readonly used: ArrayLike<number>;
}

/** Fills `out[i]` with job i's estimated start, or null when it cannot start on the machine as it is. */
export function estimateStarts(
  waiting: Waiting,
  out: { estimatedStart: number | null }[],
  releases: readonly Release[],
  freeNow: number,
  capacity: number,
  now: number,
  limits: MemberLimits,
): void {
  // GPUs released, ordered by the time they come free: FlatQueue's push is (item, priority).
  const pool = new FlatQueue<number>();
  for (const r of releases) pool.push(r.gpus, r.end);
  let free = freeNow;
  let clock = now;
  // Each member's own releases, built when one of its jobs first meets its limit.
  const members = limits.most.length;
  const held = Float64Array.from(limits.used);
  const memberClock = new Float64Array(members).fill(now);
  const memberReleases: (FlatQueue<number> | null)[] = new Array(members).fill(null);
  const releasesOf = (m: number): FlatQueue<number> => {
    let q = memberReleases[m];
    if (!q) {
      q = new FlatQueue<number>();
      for (const r of releases) if (r.member === m && r.counted) q.push(r.gpus, r.end);
      memberReleases[m] = q;
    }
    return q;
  };
  // The latest estimate so far per member and gang size: a later job may not start before them.
  // Kept as parallel arrays (a member has a handful of gang sizes): scanning them is cheaper than
  // iterating a Map's entries for each of 100,000 jobs.
  const latestSize: number[][] = Array.from({ length: members }, () => []);
  const latestStart: number[][] = Array.from({ length: members }, () => []);
  for (let i = 0; i < out.length; i++) {
    if (out[i].estimatedStart === null) continue;
    const gpus = waiting.gpus[i];
    const m = waiting.member[i];
    if (gpus > capacity || (m >= 0 && gpus > limits.most[m])) {
      out[i].estimatedStart = null;
      continue;
    }
    while (free < gpus && pool.length > 0) {
      clock = Math.max(clock, pool.peekValue()!);
      free += pool.pop()!;
    }
    if (free < gpus) {
      out[i].estimatedStart = null;
      continue;
    }
    // The member's limit: its own work must end first. Its releases are created lazily:
    // `held` counts the jobs the model starts, their releases join the member's heap below.
    let start = clock;
    const reserved = waiting.reservedStart[i];
    if (m < 0) {
      // In an advance reservation: its GPUs are set aside from the reservation's start.
      start = reserved === reserved ? Math.max(start, reserved) : start;
      free -= gpus;
      pool.push(gpus, start + waiting.walltimeSeconds[i]);
      out[i].estimatedStart = start;
      continue;
    }
    if (held[m] + gpus > limits.most[m]) {
      const q = releasesOf(m);
      while (held[m] + gpus > limits.most[m] && q.length > 0) {
        memberClock[m] = Math.max(memberClock[m], q.peekValue()!);
        held[m] -= q.pop()!;
      }
      start = Math.max(start, memberClock[m]);
    }
    if (reserved === reserved) start = reserved;
    const sizes = latestSize[m];
    const starts = latestStart[m];
    const exact = waiting.reclaiming[i] && reserved === reserved;
    let own = -1;
    for (let k = 0; k < sizes.length; k++) {
      if (!exact && sizes[k] >= gpus && starts[k] > start) start = starts[k];
      if (sizes[k] === gpus) own = k;
    }
    free -= gpus;
    pool.push(gpus, start + waiting.walltimeSeconds[i]);
    held[m] += gpus;
    releasesOf(m).push(gpus, start + waiting.walltimeSeconds[i]);
    if (own < 0) {
      sizes.push(gpus);
      starts.push(start);
    } else if (starts[own] < start) starts[own] = start;
    out[i].estimatedStart = start;
  }
}

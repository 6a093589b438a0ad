// Estimated start times for every waiting job. Reserved jobs know theirs exactly (the GPUs
// they hold free up at that time). Beyond the reservations, the queue is played forward on
// the machine's GPU count as one pool, in queue order, with every job lasting its walltime:
// list scheduling, O(n log n), so 100,000 waiting jobs each get an estimate in one cycle.
// It ignores topology and quota, so it errs early for jobs that wait for either. Jobs whose
// estimate is already null (they cannot fit the machine as it is) are skipped.
import FlatQueue from 'flatqueue';

/** The waiting jobs in queue order, as columns (one entry per job). */
export interface Waiting {
  readonly gpus: readonly number[];
  readonly walltimeSeconds: readonly number[];
  /** Start of its reservation, or NaN when it holds none. */
  readonly reservedStart: readonly number[];
}

/** Fills `out[i]` with job i's estimated start, or null when it cannot start on the machine as it is. */
export function estimateStarts(
  waiting: Waiting,
  out: { estimatedStart: number | null }[],
  releases: readonly { readonly end: number; readonly gpus: number }[],
  freeNow: number,
  capacity: number,
  now: number,
): void {
  // GPUs released, ordered by the time they come free.
  const heap = new FlatQueue<number>();
  for (const r of releases) heap.push(r.gpus, r.end);
  let free = freeNow;
  let clock = now;
  for (let i = 0; i < out.length; i++) {
    const gpus = waiting.gpus[i];
    if (gpus > capacity || out[i].estimatedStart === null) continue;
    while (free < gpus && heap.length > 0) {
      clock = Math.max(clock, heap.peekValue()!);
      free += heap.pop()!;
    }
    if (free < gpus) {
      out[i].estimatedStart = null;
      continue;
    }
    free -= gpus;
    heap.push(clock + waiting.walltimeSeconds[i], gpus);
    const reserved = waiting.reservedStart[i];
    out[i].estimatedStart = reserved === reserved ? reserved : clock;
  }
}

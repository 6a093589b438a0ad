// Estimated start times for every waiting job. Reserved jobs know theirs exactly (the GPUs
// they hold free up at that time). Beyond the reservations, the queue is played forward on
// the machine's GPU count as one pool, in queue order, with every job lasting its walltime:
// list scheduling, O(n log n), so 100,000 waiting jobs each get an estimate in one cycle.
// It ignores topology and quota, so it errs early for jobs that wait for either.
import { ReleaseHeap } from './heap.js';

export interface Waiting {
  readonly gpus: number;
  readonly walltimeSeconds: number;
  /** Start of its reservation, if it holds one. */
  readonly reservedStart: number | null;
  /** It cannot fit on the machine as it is: no estimate. */
  readonly never: boolean;
}

export function estimateStarts(
  waiting: readonly Waiting[],
  releases: readonly { readonly end: number; readonly gpus: number }[],
  freeNow: number,
  capacity: number,
  now: number,
): (number | null)[] {
  const heap = new ReleaseHeap();
  for (const r of releases) heap.push(r.end, r.gpus);
  const out = new Array<number | null>(waiting.length);
  const popped = { amount: 0 };
  let free = freeNow;
  let clock = now;
  for (let i = 0; i < waiting.length; i++) {
    const w = waiting[i];
    if (w.never || w.gpus > capacity) {
      out[i] = null;
      continue;
    }
    while (free < w.gpus && heap.size > 0) {
      clock = Math.max(clock, heap.pop(popped));
      free += popped.amount;
    }
    if (free < w.gpus) {
      out[i] = null;
      continue;
    }
    free -= w.gpus;
    heap.push(clock + w.walltimeSeconds, w.gpus);
    out[i] = w.reservedStart ?? clock;
  }
  return out;
}

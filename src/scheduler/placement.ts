// Where a gang goes. Small jobs are packed best-fit so that NVLink domains stay whole; a gang
// that fits in one domain lands in one (the tightest that holds it); larger gangs take as few
// domains as possible. Placement never mutates: it returns the GPUs to take, or null.
import type { Allocation, Topology } from '../core/job.js';
import type { Availability, Snapshot } from './snapshot.js';

export interface PlacementRequest {
  /** GPUs needed on each node of the gang, largest first. */
  readonly tasks: readonly number[];
  readonly gpus: number;
  readonly member: number;
  /** Isolation-required: its domains host no other member's work. */
  readonly exclusive: boolean;
  readonly topology: Topology;
  /** Domains it may use (zone); null: all. */
  readonly domains: Uint8Array | null;
}

export interface PlaceOptions {
  /** Only this domain (preemption tries domain by domain). */
  readonly onlyDomain?: number;
  /** Ignore isolation (used to tell "IsolationRequired" apart from "no room"). */
  readonly ignoreIsolation?: boolean;
}

export function place(snap: Snapshot, view: Availability, req: PlacementRequest, opts: PlaceOptions = {}): Allocation[] | null {
  if (req.gpus > view.total) return null;
  const { site } = snap;
  const eligible: number[] = [];
  const first = opts.onlyDomain ?? 0;
  const last = opts.onlyDomain ?? site.domains.length - 1;
  for (let d = first; d <= last; d++) {
    if (req.domains && !req.domains[d]) continue;
    if (!opts.ignoreIsolation && !snap.domainOpenTo(d, req.member, req.exclusive)) continue;
    if (view.domainAvail[d] > 0) eligible.push(d);
  }
  if (eligible.length === 0) return null;

  // 1. One domain: the tightest that holds the whole gang keeps the others whole.
  eligible.sort((a, b) => view.domainAvail[a] - view.domainAvail[b] || a - b);
  for (const d of eligible) {
    if (view.domainAvail[d] < req.gpus) continue;
    const fit = fitInDomain(snap, view.avail, d, req.tasks, req.tasks.length);
    if (fit.placed === req.tasks.length) return fit.allocation;
  }
  if (req.topology === 'required' && req.gpus <= snap.maxDomainGpus) return null;
  if (opts.onlyDomain !== undefined && req.topology === 'required') return null;

  // 2. Several domains: fill the emptiest first, then finish in the tightest that holds the rest.
  const allocation: Allocation[] = [];
  let remaining = req.tasks.slice();
  const unused = eligible.slice().reverse();
  let domainsUsed = 0;
  while (remaining.length > 0 && unused.length > 0) {
    const need = sum(remaining);
    let finish = -1;
    for (let i = unused.length - 1; i >= 0; i--) {
      const d = unused[i];
      if (view.domainAvail[d] < need) continue;
      const fit = fitInDomain(snap, view.avail, d, remaining, remaining.length);
      if (fit.placed === remaining.length) {
        finish = i;
        allocation.push(...fit.allocation);
        remaining = [];
        break;
      }
    }
    domainsUsed++;
    if (finish >= 0) break;
    const d = unused.shift()!;
    const fit = fitInDomain(snap, view.avail, d, remaining, remaining.length);
    allocation.push(...fit.allocation);
    remaining = fit.rest;
  }
  if (remaining.length > 0) return null;
  if (req.topology === 'required' && domainsUsed > Math.ceil(req.gpus / snap.maxDomainGpus)) return null;
  return allocation;
}

/**
 * Largest task first, each on the node with the fewest free GPUs that still holds it
 * (best fit keeps whole nodes whole). Each task of a gang takes a distinct node.
 */
function fitInDomain(
  snap: Snapshot,
  avail: Int32Array,
  d: number,
  tasks: readonly number[],
  limit: number,
): { placed: number; allocation: Allocation[]; rest: number[] } {
  const nodes = snap.site.domains[d].nodes;
  const taken = new Uint8Array(nodes.length);
  const allocation: Allocation[] = [];
  const rest: number[] = [];
  let placed = 0;
  for (const task of tasks) {
    if (placed >= limit) {
      rest.push(task);
      continue;
    }
    let best = -1;
    let bestFree = Infinity;
    for (let i = 0; i < nodes.length; i++) {
      const f = avail[nodes[i]];
      if (!taken[i] && f >= task && f < bestFree) {
        best = i;
        bestFree = f;
        if (f === task) break;
      }
    }
    if (best < 0) {
      rest.push(task);
      continue;
    }
    taken[best] = 1;
    allocation.push({ node: nodes[best], gpus: task });
    placed++;
  }
  return { placed, allocation, rest };
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

// When GPUs come free: running jobs end at their walltime (or when their grace period ends),
// and reservations take theirs. Earliest start = the first release after which the gang fits.
// Reserved GPUs are treated as gone for later reservations, so future capacity only grows
// with time and the first fit found is the earliest.
import type { Allocation } from '../core/job.js';
import { place, type PlacementRequest } from './placement.js';
import type { Snapshot, Undo } from './snapshot.js';

export interface Release {
  end: number;
  /** Its GPUs still count against its member's share (false once it is being stopped). */
  counted: boolean;
  readonly member: number;
  readonly isolated: boolean;
  readonly allocation: readonly Allocation[];
}

/** `releasedBy`'s member for all of them. */
export const ANY_MEMBER = -1;

export class ReleaseTimeline {
  private readonly releases: Release[] = [];
  private readonly byJob = new Map<string, Release>();
  private sorted = true;
  /** `releasedBy`, per member by time; emptied on every change. */
  private readonly releasedCache = new Map<number, Map<number, number>>();

  add(job: string, release: Release): void {
    this.releases.push(release);
    this.byJob.set(job, release);
    this.changed();
  }

  private changed(): void {
    this.sorted = false;
    this.releasedCache.clear();
  }

  /**
   * GPUs the member's running jobs (those counted to its share) will have released by time t;
   * `ANY_MEMBER`: every member's.
   */
  releasedBy(member: number, t: number): number {
    let cache = this.releasedCache.get(member);
    if (!cache) {
      cache = new Map();
      this.releasedCache.set(member, cache);
    }
    let g = cache.get(t);
    if (g === undefined) {
      g = 0;
      for (const r of this.ordered()) {
        if (r.end > t) break;
        if ((member === ANY_MEMBER || r.member === member) && r.counted) for (const a of r.allocation) g += a.gpus;
      }
      cache.set(t, g);
    }
    return g;
  }

  /** A preempted job releases at the end of its grace period, and no longer counts to its share. */
  stop(job: string, end: number): void {
    const r = this.byJob.get(job);
    if (r) {
      r.end = end;
      r.counted = false;
      this.changed();
    }
  }

  /** Releases in time order (running jobs' expected ends). */
  ordered(): readonly Release[] {
    if (!this.sorted) {
      this.releases.sort((a, b) => a.end - b.end);
      this.sorted = true;
    }
    return this.releases;
  }

  /**
   * The earliest time the gang fits, and where, if running jobs end when expected and no
   * reserved GPU is touched. Null when it does not fit even after every release.
   * Releases are played on the snapshot itself (so isolation sees domains empty out), then undone.
   */
  earliestStart(snap: Snapshot, req: PlacementRequest, now: number): { start: number; allocation: Allocation[] } | null {
    const future = snap.subtractReservations(snap.now, () => true, false);
    const version = snap.version;
    const undos: Undo[] = [];
    const releases = this.ordered();
    const nodes = snap.site.nodes;
    let found: { start: number; allocation: Allocation[] } | null = null;
    // Nodes with at least t free GPUs, per t: the gang's largest task must find enough of them
    // before a placement is worth trying.
    // Only nodes of the domains the request may use count (a zone, the unbound domains).
    const atLeast = new Int32Array(snap.site.maxGpusPerNode + 2);
    const allowed = (n: number) => snap.schedulable[n] === 1 && (!req.domains || req.domains[nodes[n].domain] === 1);
    let usable = 0;
    const count = (f: number, delta: number) => {
      for (let t = 1; t <= f && t < atLeast.length; t++) atLeast[t] += delta;
    };
    for (let n = 0; n < future.avail.length; n++) {
      if (!allowed(n)) continue;
      count(future.avail[n], 1);
      usable += future.avail[n];
    }
    const biggest = req.tasks[0];
    const enough = () => usable >= req.gpus && atLeast[biggest] >= countAtLeast(req.tasks, biggest);
    const fitNow = enough() ? place(snap, future, req) : null;
    if (fitNow) found = { start: now, allocation: fitNow };
    // Earlier reservations hold their GPUs from now on (conservative), until their jobs would end.
    const held = snap.reservations.slice().sort((a, b) => a.end - b.end);
    const free = (allocation: readonly Allocation[]) => {
      for (const { node: n, gpus } of allocation) {
        if (!snap.schedulable[n]) continue;
        if (allowed(n)) {
          count(future.avail[n], -1);
          count(future.avail[n] + gpus, 1);
          usable += gpus;
        }
        future.avail[n] += gpus;
        future.domainAvail[nodes[n].domain] += gpus;
        (future as { total: number }).total += gpus;
      }
    };
    for (let i = 0, j = 0; !found && (i < releases.length || j < held.length);) {
      const t = Math.min(i < releases.length ? releases[i].end : Infinity, j < held.length ? held[j].end : Infinity);
      for (; i < releases.length && releases[i].end === t; i++) {
        const r = releases[i];
        // Domain tenancy matters only to exclusive requests, or where isolated work leaves.
        if (req.exclusive || r.isolated) undos.push(snap.release(r.member, r.isolated, r.allocation));
        free(r.allocation);
      }
      for (; j < held.length && held[j].end === t; j++) free(held[j].allocation);
      if (!enough()) continue;
      const allocation = place(snap, future, req);
      if (allocation) found = { start: Math.max(now, t), allocation };
    }
    for (let u = undos.length - 1; u >= 0; u--) undos[u]();
    snap.version = version;
    return found;
  }
}

function countAtLeast(tasks: readonly number[], size: number): number {
  let c = 0;
  for (const t of tasks) if (t >= size) c++;
  return c;
}

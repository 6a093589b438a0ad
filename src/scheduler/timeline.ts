// When GPUs come free: running jobs end at their walltime (or when their grace period ends),
// and reservations take theirs. Earliest start = the first release after which the gang fits.
// Reserved GPUs are treated as gone for later reservations, so future capacity only grows
// with time and the first fit found is the earliest.
import type { Allocation } from '../core/job.js';
import { place, type PlacementRequest } from './placement.js';
import type { Snapshot, Undo } from './snapshot.js';

export interface Release {
  end: number;
  readonly member: number;
  readonly isolated: boolean;
  readonly allocation: readonly Allocation[];
}

export class ReleaseTimeline {
  private readonly releases: Release[] = [];
  private readonly byJob = new Map<string, Release>();
  private sorted = true;
  private readonly releasedCache = new Map<string, number>();

  add(job: string, release: Release): void {
    this.releases.push(release);
    this.byJob.set(job, release);
    this.changed();
  }

  private changed(): void {
    this.sorted = false;
    this.releasedCache.clear();
  }

  /** GPUs the member's running jobs will have released by time t. */
  releasedBy(member: number, t: number): number {
    const key = `${member}:${t}`;
    let g = this.releasedCache.get(key);
    if (g === undefined) {
      g = 0;
      for (const r of this.ordered()) {
        if (r.end > t) break;
        if (r.member === member) for (const a of r.allocation) g += a.gpus;
      }
      this.releasedCache.set(key, g);
    }
    return g;
  }

  /** A preempted job now releases at the end of its grace period. */
  move(job: string, end: number): void {
    const r = this.byJob.get(job);
    if (r && r.end !== end) {
      r.end = end;
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
  earliestStart(
    snap: Snapshot,
    req: PlacementRequest,
    now: number,
  ): { start: number; allocation: Allocation[] } | null {
    const future = snap.subtractReservations(snap.now, () => true, false);
    const version = snap.version;
    const undos: Undo[] = [];
    const releases = this.ordered();
    const nodes = snap.site.nodes;
    let found: { start: number; allocation: Allocation[] } | null = null;
    const fitNow = place(snap, future, req);
    if (fitNow) found = { start: now, allocation: fitNow };
    for (let i = 0; !found && i < releases.length; ) {
      const t = releases[i].end;
      for (; i < releases.length && releases[i].end === t; i++) {
        const r = releases[i];
        undos.push(snap.release(r.member, r.isolated, r.allocation));
        for (const { node: n, gpus } of r.allocation) {
          if (!snap.schedulable[n]) continue;
          future.avail[n] += gpus;
          future.domainAvail[nodes[n].domain] += gpus;
          (future as { total: number }).total += gpus;
        }
      }
      if (future.total < req.gpus) continue;
      const allocation = place(snap, future, req);
      if (allocation) found = { start: Math.max(now, t), allocation };
    }
    for (let u = undos.length - 1; u >= 0; u--) undos[u]();
    snap.version = version;
    return found;
  }
}

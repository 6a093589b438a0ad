// What every cycle, of any policy, starts from: the machine as a snapshot with the running jobs
// on it (gangs on failed nodes requeued), their expected releases, each member's usage, and the
// placement request of each job shape; and what every cycle ends with: an explanation for each
// waiting job and an estimated start for it. Fabrik's cycle and the simulator's baseline
// policies (FIFO, Slurm-like) build on it, so they differ only in how they decide.
import { UnknownReferenceError } from '../core/errors.js';
import {
  expectedEnd,
  gangGpus,
  gangTasks,
  remainingWalltime,
  type Allocation,
  type PendingJob,
  type RunningJob,
} from '../core/job.js';
import { isFailed } from '../core/site.js';
import { estimateStarts } from './estimate.js';
import { mostGpus } from './limits.js';
import { place, type PlacementRequest } from './placement.js';
import type { RunningEntry } from './preemption.js';
import { QuotaBook, QuotaFit } from './quota.js';
import { AdvanceReservations, liveReservations } from './reservations.js';
import { Snapshot, type Availability } from './snapshot.js';
import { ReleaseTimeline } from './timeline.js';
import type { ClusterState, CycleOptions, CycleResult, Decision, Explanation, PendingReason } from './types.js';

export interface Shape {
  readonly req: PlacementRequest;
  /** Small integer naming the shape in this cycle's caches. */
  readonly id: number;
  readonly never: boolean;
}

/** Explanations are built as the walk goes; the estimate is filled in at the end. */
type Pending = { -readonly [K in keyof Explanation]: Explanation[K] };

const TOPOLOGY_CODE = { required: 0, preferred: 1, none: 2 } as const;

export class CycleBase {
  readonly snap: Snapshot;
  readonly quota: QuotaBook;
  readonly timeline = new ReleaseTimeline();
  readonly decisions: Decision[] = [];
  /** Waiting jobs in queue order: their explanations, and the columns the estimate reads. */
  readonly waiting: Pending[] = [];
  private readonly waitingColumns = {
    gpus: [] as number[],
    walltimeSeconds: [] as number[],
    reservedStart: [] as number[],
    reclaiming: [] as boolean[],
    member: [] as number[],
  };
  protected readonly running: RunningEntry[] = [];
  protected readonly runningById = new Map<string, RunningEntry>();
  private readonly memberIdx = new Map<string, number>();
  private readonly zoneMasks = new Map<string, Uint8Array>();
  private readonly shapes = new Map<number, Shape>();
  /** "Did not fit" results, valid while the snapshot's version is unchanged. */
  private readonly noFit = new Map<number, number>();
  /** The most GPUs each member may ever hold (see limits.ts), by member index. */
  private readonly most: readonly number[];
  /** The empty machine (up nodes only): what "could it ever fit" is judged against. */
  protected readonly capacity: Availability;

  /** False when only the decisions matter (the simulator): waiting jobs get no explanation. */
  readonly explain: boolean;
  private readonly queueDepth: number;
  private readonly lookedAt: Uint32Array;

  constructor(
    readonly state: ClusterState,
    readonly now: number,
    options: CycleOptions = {},
  ) {
    const { site, consortium } = state;
    this.explain = options.explain ?? true;
    this.queueDepth = options.queueDepth ?? Infinity;
    this.lookedAt = new Uint32Array(consortium.members.length);
    this.most = consortium.members.map((m) => mostGpus(m, site));
    consortium.members.forEach((m, i) => this.memberIdx.set(m.id, i));
    this.snap = new Snapshot(site, consortium.members.length);
    this.quota = new QuotaBook(consortium, this.snap.now.total, (m, t) => this.timeline.releasedBy(m, t));
    const empty = this.snap.now;
    this.capacity = { avail: empty.avail.slice(), domainAvail: empty.domainAvail.slice(), total: empty.total };
    this.advance = new AdvanceReservations(liveReservations(state.reservations, now, state.running, state.pending), now);
  }

  /** Booked advance reservations (capability runs): see reservations.ts. */
  protected readonly advance: AdvanceReservations;

  /** Failures first: a gang that touched a failed node is requeued whole; the rest is the snapshot. */
  loadRunning(): void {
    const { site } = this.state;
    // Each field of a running job is read once: running jobs come in many object shapes (built
    // by spreads), which makes every property read of one slow.
    for (const job of this.state.running) {
      const allocation = job.allocation;
      if (allocation.some((a) => isFailed(site.nodes[a.node]))) {
        const failed = allocation.filter((a) => isFailed(site.nodes[a.node])).map((a) => a.node);
        this.decisions.push({ kind: 'requeue', job: job.id, reason: 'NodeFailure', nodes: failed });
        continue;
      }
      const id = job.id;
      const member = this.member(job.member, id);
      const isolated = this.exclusive(job, member);
      this.snap.occupy(member, isolated, allocation);
      // A job being stopped still holds its GPUs, but no longer counts against its member's share;
      // nor does one in an advance reservation: the reservation's GPUs are its own, never a victim's.
      const preempting = job.preempting;
      const booked = this.advance.any && this.advance.inActive(job);
      if (!preempting && !booked) this.quota.add(member, sumGpus(allocation));
      this.timeline.add(id, {
        end: expectedEnd(job, this.now),
        counted: !preempting && !booked,
        member,
        isolated,
        allocation,
      });
      if (booked) continue;
      const entry = { job, member, isolated, stopping: preempting !== null, fresh: false };
      this.running.push(entry);
      this.runningById.set(id, entry);
    }
    this.advance.hold(this.snap, (id) => this.member(id, 'an advance reservation'));
  }

  protected start(
    job: PendingJob,
    m: number,
    req: PlacementRequest,
    end: number,
    allocation: Allocation[],
    borrowing: boolean,
  ): void {
    this.snap.occupy(m, req.exclusive, allocation);
    this.quota.add(m, req.gpus);
    this.timeline.add(job.id, { end, counted: true, member: m, isolated: req.exclusive, allocation });
    this.running.push({
      job: asRunning(job, this.now, allocation),
      member: m,
      isolated: req.exclusive,
      stopping: false,
      fresh: true,
    });
    this.decisions.push({ kind: 'start', job: job.id, allocation, borrowing });
  }

  result(): CycleResult {
    if (!this.explain) return { decisions: this.decisions, pending: [] };
    const releases = this.timeline
      .ordered()
      .map((r) => ({ end: r.end, gpus: sumGpus(r.allocation), member: r.member, counted: r.counted }));
    const limits = { most: this.most, used: this.quota.used };
    estimateStarts(this.waitingColumns, this.waiting, releases, this.snap.now.total, this.capacity.total, this.now, limits);
    return { decisions: this.decisions, pending: this.waiting };
  }

  protected wait(job: PendingJob, reason: PendingReason, gpus: number, reservedStart: number | null): void {
    if (!this.explain) return;
    if (reason === 'BehindReservation' && this.advance.any) reason = this.blockedBy(job);
    // A job in an advance reservation runs on the reservation's GPUs, outside its member's
    // limits (-1: none). Any other job its member may never run says so, whatever else holds it.
    const m = job.reservation != null ? -1 : this.member(job.member, job.id);
    if (m >= 0 && gpus > this.most[m] && reason !== 'NodesUnavailable') reason = 'ExceedsMemberLimit';
    const position = this.waiting.length + 1;
    const never = reason === 'NodesUnavailable' || reason === 'ExceedsMemberLimit';
    this.waiting.push({ job: job.id, reason, position, estimatedStart: never ? null : this.now });
    this.waitingColumns.gpus.push(gpus);
    this.waitingColumns.walltimeSeconds.push(remainingWalltime(job));
    this.waitingColumns.reservedStart.push(reservedStart ?? NaN);
    this.waitingColumns.reclaiming.push(reason === 'WaitingForReclaim');
    this.waitingColumns.member.push(m);
  }

  /**
   * A job of an advance reservation: it starts only on the reservation's GPUs, inside its window,
   * and never counts against its member's quota (the reservation is its admission). Else it waits
   * with WaitingForReservation, until the start, or with no estimate when it can never run there.
   */
  private inReservation(job: PendingJob, m: number, req: PlacementRequest): null {
    const verdict = this.advance.consider(this.snap, job, req);
    if (verdict.kind === 'start') {
      this.snap.occupy(m, req.exclusive, verdict.allocation);
      this.timeline.add(job.id, {
        end: verdict.end,
        counted: false,
        member: m,
        isolated: req.exclusive,
        allocation: verdict.allocation,
      });
      this.decisions.push({ kind: 'start', job: job.id, allocation: verdict.allocation, borrowing: false });
      return null;
    }
    this.wait(job, 'WaitingForReservation', req.gpus, verdict.from);
    if (verdict.from === null && this.explain) this.waiting[this.waiting.length - 1].estimatedStart = null;
    return null;
  }

  /** BehindReservation, or WaitingForReservation when what it runs into is an advance reservation. */
  private blockedBy(job: PendingJob): PendingReason {
    const m = this.member(job.member, job.id);
    const { req } = this.request(job, m);
    return this.advance.blocks(this.snap, job.id, req, this.now + job.walltimeSeconds)
      ? 'WaitingForReservation'
      : 'BehindReservation';
  }

  /**
   * Where the gang fits now without delaying a reservation it would still be running at `end`;
   * null if nowhere. Jobs of one shape fail alike until the snapshot changes: a queue of
   * thousands of identical blocked jobs costs one placement attempt, not thousands.
   */
  protected placeNow(req: PlacementRequest, shape: number, end: number, guaranteed = false): Allocation[] | null {
    const k = this.fitKey(shape, end, guaranteed, req.member);
    if (this.noFit.get(k) === this.snap.version) return null;
    const allocation = place(this.snap, this.snap.availableUntil(end, guaranteed, req.member), req);
    if (!allocation) this.noFit.set(k, this.snap.version);
    return allocation;
  }

  /** Jobs of one shape that would collide with the same reservations share one "did not fit". */
  protected fitKey(shape: number, end: number, guaranteed = false, member = -1): number {
    const key = shape * 65536 + this.snap.blockingReservations(end, guaranteed, member);
    return guaranteed ? -1 - key : key;
  }

  /**
   * The consortium's hard limits, for policies without guarantees: the member stays within
   * what it may hold, and takes no GPU its owner does not lend. Otherwise the job waits
   * (QuotaExhausted) and blocks no one.
   */
  protected withinLimits(job: PendingJob, m: number, gpus: number, end: number): boolean {
    if (this.quota.fit(m, gpus, end) !== QuotaFit.Exhausted) return true;
    this.wait(job, 'QuotaExhausted', gpus, null);
    return false;
  }

  /**
   * Whether the cycle looks at this job of member `m`, asked in the member's own order: only
   * its first `queueDepth` are; the others wait behind them (reason Priority).
   */
  protected withinDepth(job: PendingJob, m: number): boolean {
    if (this.lookedAt[m]++ < this.queueDepth) return true;
    this.wait(job, 'Priority', gangGpus(job.gang), null);
    return false;
  }

  /**
   * The job's member and placement request; null, with the job explained as NodesUnavailable,
   * when it cannot fit even on an empty machine with today's up nodes and zones, or as
   * ExceedsMemberLimit when it is larger than its member may ever hold.
   */
  protected admissible(job: PendingJob): { m: number; req: PlacementRequest; shape: number } | null {
    const m = this.member(job.member, job.id);
    const { req, id, never } = this.request(job, m);
    if (never) {
      this.wait(job, 'NodesUnavailable', req.gpus, null);
      return null;
    }
    if (job.reservation != null) return this.inReservation(job, m, req);
    // Beyond what its member may ever hold: waiting would never end, and no start time is true.
    if (req.gpus > this.most[m]) {
      this.wait(job, 'ExceedsMemberLimit', req.gpus, null);
      return null;
    }
    return { m, req, shape: id };
  }

  /**
   * The placement request of a job, shared by every job of the same member and shape; `never`:
   * it cannot fit even on an empty machine with today's up nodes and zones.
   */
  protected request(job: PendingJob, m: number): Shape {
    // A numeric key: building a string per job is what a 100,000-job queue would pay for.
    const g = job.gang;
    const gang = 'gpus' in g ? g.gpus : -(g.nodes * 4096 + g.gpusPerNode);
    const zone = job.isolation.zone === null ? 0 : 1 + this.zoneIndex(job.isolation.zone);
    const sig = ((gang * 3 + TOPOLOGY_CODE[job.topology]) * 2 + (job.isolation.exclusive ? 1 : 0)) * 64 * 1024 + zone * 1024 + m;
    let shape = this.shapes.get(sig);
    if (!shape) {
      const zone = this.zoneOf(job, m);
      const req: PlacementRequest = {
        tasks: gangTasks(job.gang, this.state.site.maxGpusPerNode),
        gpus: gangGpus(job.gang),
        member: m,
        exclusive: this.exclusive(job, m),
        topology: job.topology,
        domains: zone === null ? this.unboundDomains() : this.zoneMask(zone),
      };
      const never = place(this.snap, this.capacity, req, { ignoreIsolation: true }) === null;
      shape = { req, id: this.shapes.size, never };
      this.shapes.set(sig, shape);
    }
    return shape;
  }

  /** The job keeps its NVLink domains to itself: it asks to, or its member (index `m`) must. */
  protected exclusive(job: { isolation: { exclusive: boolean } }, m: number): boolean {
    return job.isolation.exclusive || this.state.consortium.members[m].isolation === 'required';
  }

  /**
   * Where work not bound to a zone may run: every domain except those of zones that members are
   * bound to. A sovereign zone is its members' own, like a Slurm partition with AllowAccounts:
   * nobody else's work is ever placed there, even within their entitlement. Null: anywhere.
   */
  private unboundDomains(): Uint8Array | null {
    if (this.unbound === undefined) {
      const bound = new Set(this.state.consortium.members.map((m) => m.zone).filter((z) => z !== null));
      const { domains } = this.state.site;
      this.unbound = domains.some((d) => bound.has(d.zone)) ? Uint8Array.from(domains, (d) => (bound.has(d.zone) ? 0 : 1)) : null;
    }
    return this.unbound;
  }

  private unbound: Uint8Array | null | undefined;

  protected zoneOf(job: PendingJob, m: number): string | null {
    return job.isolation.zone ?? this.state.consortium.members[m].zone;
  }

  /**
   * A zone this site lacks (a consortium written for a bigger site, on a workstation) has no
   * domains: its jobs wait with NodesUnavailable instead of stopping every member's cycle.
   */
  private zoneIndex(zone: string): number {
    const i = this.state.site.zones.indexOf(zone);
    return i < 0 ? this.state.site.zones.length : i;
  }

  private zoneMask(zone: string): Uint8Array {
    let mask = this.zoneMasks.get(zone);
    if (!mask) {
      mask = Uint8Array.from(this.state.site.domains, (d) => (d.zone === zone ? 1 : 0));
      this.zoneMasks.set(zone, mask);
    }
    return mask;
  }

  protected member(id: string, where: string): number {
    const m = this.memberIdx.get(id);
    if (m === undefined) throw new UnknownReferenceError('member', id, where);
    return m;
  }
}

function sumGpus(allocation: readonly { gpus: number }[]): number {
  let g = 0;
  for (const a of allocation) g += a.gpus;
  return g;
}

function asRunning(job: PendingJob, now: number, allocation: RunningJob['allocation']): RunningJob {
  return { ...job, startedAt: now, allocation, lastCheckpointAt: null, preempting: null };
}

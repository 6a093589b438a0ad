// The digital twin: a discrete-event simulation on a virtual clock. Jobs arrive, run for their
// real duration, finish, get preempted (a grace period, then the work since their last
// checkpoint is lost and they queue again), and nodes fail, come back or drain. Every decision
// is made by a policy's cycle with the virtual time passed in: for `fabrik`, exactly the code
// the server runs. No randomness here: the same jobs give the same run.
import type { Consortium } from '../core/consortium.js';
import {
  gangGpus,
  lastCheckpoint,
  PRIORITY_CLASSES,
  PRIORITY_RANK,
  requeued,
  type PendingJob,
  type RunningJob,
} from '../core/job.js';
import { isSchedulable, withNodeStates, type NodeState, type Site } from '../core/site.js';
import { decayUsage } from '../core/usage.js';
import { agingKey } from '../scheduler/cycle.js';
import { applyDecisions } from '../scheduler/apply.js';
import { chargedGpus } from '../scheduler/reservations.js';
import type { AdvanceReservation } from '../core/reservation.js';
import { DEFAULT_CONFIG, type CycleResult, type Decision } from '../scheduler/types.js';
import type { LongestReclaim, ReclaimSnapshot, WaitingJob } from './results.js';
import FlatQueue from 'flatqueue';
import type { Policy } from './policy.js';

/** A job of the workload: what it asks for, and how long it really runs. */
export interface SimJob {
  readonly job: PendingJob;
  readonly runtimeSeconds: number;
}

export interface NodeEvent {
  readonly at: number;
  readonly node: string;
  readonly state: NodeState;
}

export interface SimOptions {
  readonly site: Site;
  readonly consortium: Consortium;
  readonly jobs: readonly SimJob[];
  readonly policy: Policy;
  /** A cycle runs at most this often, at the first event after the previous one (Slurm's sched_min_interval). */
  readonly cycleSeconds?: number;
  /** While jobs wait, a cycle runs at least this often even if nothing happened (minimum runtimes expire). */
  readonly idleCycleSeconds?: number;
  /**
   * Each cycle looks at this many waiting jobs of each member, in the member's order (default:
   * DEFAULT_CONFIG.queueDepth, as the server; see CycleOptions.queueDepth). The engine hands the
   * policy only those (and one more), the jobs that hold a reservation and the gangs of a whole
   * NVLink domain or more: a member with 20,000 queued jobs costs a cycle no more than one with
   * a queue as deep as the depth.
   */
  readonly queueDepth?: number;
  /** Time series sampling interval (default: a few hundred samples over the run). */
  readonly sampleSeconds?: number;
  readonly nodeEvents?: readonly NodeEvent[];
  /** Capability runs booked for the replay (sim/reservations.ts); their jobs carry `reservation`. */
  readonly reservations?: readonly AdvanceReservation[];
  readonly onProgress?: (finished: number, total: number) => void;
  /**
   * What a preempted (or requeued) job keeps. `checkpoint` (default): the work up to its last
   * checkpoint, the rest is lost. `resume`: all of it, as the peer simulators assume: it
   * checkpoints when signalled and resumes where it stopped.
   */
  readonly preemption?: PreemptionMode;
  /**
   * Seconds a job spends restarting after a preemption or requeue before it does work again (it
   * holds its GPUs meanwhile). Default: 30 s with `resume` (RESUME_OVERHEAD_SECONDS), 0 with `checkpoint`.
   */
  readonly restartOverheadSeconds?: number;
}

export type PreemptionMode = 'checkpoint' | 'resume';

/**
 * The restart overhead of `resume` by default (docs/simulation.md): a restarted job reloads its
 * checkpoint, its data loaders and its communicators before it makes progress again; 30 s keeps
 * `resume` optimistic, as the peer simulators' assumption is, without making a restart free.
 */
export const RESUME_OVERHEAD_SECONDS = 30;

/** What happened to one job. */
export interface JobOutcome {
  readonly id: string;
  readonly member: string;
  readonly gpus: number;
  readonly submittedAt: number;
  readonly runtimeSeconds: number;
  /** Null when it never finished (it could not fit the machine). */
  finishedAt: number | null;
  /** Seconds spent waiting in the queue, over all its waits (requeues included). */
  waitSeconds: number;
  preemptions: number;
  lostGpuSeconds: number;
  /** GPU-seconds spent restarting after preemptions and requeues (see SimOptions.restartOverheadSeconds). */
  overheadGpuSeconds?: number;
}

export interface Sample {
  readonly t: number;
  readonly usedGpus: number;
  readonly upGpus: number;
  readonly queueLength: number;
  readonly strandedGpus: number;
  readonly memberGpus: readonly number[];
  /** GPUs each member wants: running plus waiting. */
  readonly memberDemand: readonly number[];
}

export interface SimRun {
  readonly policy: string;
  readonly outcomes: readonly JobOutcome[];
  readonly samples: readonly Sample[];
  readonly sampleSeconds: number;
  /** GPU-seconds delivered per member (index as in the consortium). */
  readonly memberGpuSeconds: readonly number[];
  readonly start: number;
  /** The last submission: [start, lastSubmit] is the window in which the trace offers its load. */
  readonly lastSubmit: number;
  readonly end: number;
  readonly preemptions: number;
  /** Longest time a member with unmet demand below its entitlement waited while others borrowed. */
  readonly maxReclaimLatency: number | null;
  /** That stretch: whose, when, and what its queue waited for (null: never needed). */
  readonly longestReclaim: LongestReclaim | null;
  readonly cycles: number;
}

/** An hour: the longest reclaim issue 18 allows. A shorter stretch is not worth explaining. */
export const RECLAIM_SEEN_AFTER_SECONDS = 3600;

const enum Kind {
  Finish,
  GraceEnd,
  Node,
}

interface Event {
  readonly at: number;
  readonly kind: Kind;
  /** The job (or, for node events, the index of the node event). */
  readonly job: number;
  /** The job's run this event belongs to: a preempted run's finish is stale. */
  readonly run: number;
}

interface Live {
  readonly index: number;
  readonly sim: SimJob;
  readonly gpus: number;
  readonly member: number;
  /** Work still to do, seconds: its run time less the work kept so far (its attainedSeconds). */
  remaining: number;
  /** Restart overhead its next run pays first (after a preemption or requeue), seconds. */
  overheadDue: number;
  /** Restart overhead of its current run, seconds. */
  runOverhead: number;
  run: number;
  queuedSince: number;
  /** The cycle that last got it (a job is handed over once per cycle). */
  given: number;
  running: RunningJob | null;
  pending: PendingJob | null;
  outcome: JobOutcome;
}

/** The scheduler's default queue depth, as the server uses it (DEFAULT_CONFIG.queueDepth). */
export const DEFAULT_QUEUE_DEPTH = DEFAULT_CONFIG.queueDepth ?? Infinity;

/** Where `l` is, or goes, in a list sorted by `before` (a strict order: no two jobs tie). */
function position(list: readonly Live[], l: Live, before: (a: Live, b: Live) => boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(list[mid], l)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function byAge(a: Live, b: Live): boolean {
  const x = a.sim.job.submittedAt;
  const y = b.sim.job.submittedAt;
  return x < y || (x === y && a.index < b.index);
}

/** Fabrik's order within a member (aged expected work, with its default aging). */
function byWork(a: Live, b: Live): boolean {
  const x = agingKey(a.pending ?? a.sim.job, DEFAULT_CONFIG);
  const y = agingKey(b.pending ?? b.sim.job, DEFAULT_CONFIG);
  return x < y || (x === y && byAge(a, b));
}

export function simulate(o: SimOptions): SimRun {
  return new Simulation(o).run();
}

class Simulation {
  private site: Site;
  private now = 0;
  private readonly events = new FlatQueue<Event>();
  private readonly live: Live[];
  private readonly pending = new Map<number, Live>();
  /**
   * The waiting jobs of each member and priority class (index member × classes + rank), each
   * kept in two orders: by submission, and by aged expected work (Fabrik's order). The first
   * `queueDepth` of both, with every waiting gang of a whole NVLink domain or more, contain the
   * first `queueDepth` of the member in any order the policies use (age; or large gangs, then
   * expected work).
   */
  private readonly queues: { byAge: Live[]; byWork: Live[] }[];
  /** Waiting gangs of a whole NVLink domain or more: every cycle sees them. */
  private readonly large = new Set<Live>();
  private readonly largeGpus: number;
  /** Waiting jobs that hold a reservation (holdSince set). */
  private readonly holders = new Set<Live>();
  /** GPUs each member has waiting. */
  private readonly memberWaiting: number[];
  /** Waiting jobs per gang size, for the smallest waiting gang. */
  private readonly waitingBySize = new Map<number, number>();
  /** The same per member: whether its smallest waiting job fits within its entitlement. */
  private readonly memberWaitingBySize: Map<number, number>[];
  private readonly queueDepth: number;
  private readonly preemption: PreemptionMode;
  private readonly restartOverhead: number;
  private readonly running = new Map<number, Live>();
  private readonly memberIdx = new Map<string, number>();
  private readonly byId: Map<string, Live>;
  private readonly memberGpus: number[];
  private readonly usage: number[];
  private readonly delivered: number[];
  private accruedAt = 0;
  private upGpus = 0;
  private preemptions = 0;
  private finished = 0;
  private cycles = 0;
  private gathered = 0;
  private readonly samples: Sample[] = [];
  private readonly deficitSince: (number | null)[];
  private readonly memberZoneGpus: Float64Array;
  /** Zone index of each node. */
  private readonly nodeZone: Int32Array;
  private maxReclaimLatency: number | null = null;
  private longestReclaim: LongestReclaim | null = null;
  /** The first submission: times in the run's figures count from it. */
  private runStart = 0;
  /** Per member, its open deficit as seen once it had lasted an hour. */
  private readonly deficitSeen: (ReclaimSnapshot | null)[];

  constructor(private readonly o: SimOptions) {
    this.site = o.site;
    o.consortium.members.forEach((m, i) => this.memberIdx.set(m.id, i));
    const members = o.consortium.members.length;
    this.memberGpus = new Array(members).fill(0);
    this.usage = new Array(members).fill(0);
    this.delivered = new Array(members).fill(0);
    this.deficitSince = new Array(members).fill(null);
    this.deficitSeen = new Array(members).fill(null);
    this.memberWaiting = new Array(members).fill(0);
    this.memberWaitingBySize = Array.from({ length: members }, () => new Map<number, number>());
    this.memberZoneGpus = new Float64Array(members * o.site.zones.length);
    this.nodeZone = Int32Array.from(o.site.nodes, (n) => o.site.zones.indexOf(o.site.domains[n.domain].zone));
    this.queues = Array.from({ length: members * PRIORITY_CLASSES.length }, () => ({ byAge: [], byWork: [] }));
    this.queueDepth = o.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    this.preemption = o.preemption ?? 'checkpoint';
    this.restartOverhead = o.restartOverheadSeconds ?? (this.preemption === 'resume' ? RESUME_OVERHEAD_SECONDS : 0);
    if (!(this.restartOverhead >= 0 && Number.isFinite(this.restartOverhead)))
      throw new RangeError(`restartOverheadSeconds must be a non-negative number, got ${o.restartOverheadSeconds}`);
    this.largeGpus = o.site.domains.reduce((max, d) => Math.max(max, d.gpus), 0);
    this.live = o.jobs.map((sim, index) => {
      const member = this.memberIdx.get(sim.job.member);
      if (member === undefined) throw new Error(`job ${sim.job.id}: unknown member ${sim.job.member}`);
      const gpus = gangGpus(sim.job.gang);
      return {
        index,
        sim,
        gpus,
        member,
        remaining: Math.max(0, sim.runtimeSeconds - (sim.job.attainedSeconds ?? 0)),
        overheadDue: 0,
        runOverhead: 0,
        run: 0,
        queuedSince: sim.job.submittedAt,
        given: -1,
        running: null,
        pending: null,
        outcome: {
          id: sim.job.id,
          member: sim.job.member,
          gpus,
          submittedAt: sim.job.submittedAt,
          runtimeSeconds: sim.runtimeSeconds,
          finishedAt: null,
          waitSeconds: 0,
          preemptions: 0,
          lostGpuSeconds: 0,
          overheadGpuSeconds: 0,
        },
      };
    });
    (o.nodeEvents ?? []).forEach((e, i) => this.push(e.at, Kind.Node, i, 0));
    this.byId = new Map(this.live.map((l) => [l.sim.job.id, l]));
    this.upGpus = this.countUpGpus();
  }

  run(): SimRun {
    const o = this.o;
    const bySubmit = this.live.slice().sort((a, b) => a.sim.job.submittedAt - b.sim.job.submittedAt || a.index - b.index);
    const start = bySubmit.length > 0 ? bySubmit[0].sim.job.submittedAt : 0;
    this.runStart = start;
    const lastSubmit = bySubmit.length > 0 ? bySubmit[bySubmit.length - 1].sim.job.submittedAt : 0;
    const cycleSeconds = o.cycleSeconds ?? 60;
    const idleSeconds = o.idleCycleSeconds ?? 600;
    const sampleSeconds = o.sampleSeconds ?? Math.max(60, Math.ceil((lastSubmit - start) / 400));
    this.now = start;
    this.accruedAt = start;
    let next = 0;
    let lastCycle = -Infinity;
    let dirty = false;
    let nextSample = start;
    const total = this.live.length;
    let progressAt = 0;
    for (;;) {
      // The next thing to happen: an arrival, a finish, a grace period's end, a node event, a cycle.
      const arrival = next < bySubmit.length ? bySubmit[next].sim.job.submittedAt : Infinity;
      const event = this.events.peekValue() ?? Infinity;
      const cycleAt = dirty
        ? Math.max(this.now, lastCycle + cycleSeconds)
        : this.pending.size > 0
          ? Math.max(this.now, lastCycle + idleSeconds)
          : Infinity;
      const t = Math.min(arrival, event, cycleAt);
      if (t === Infinity) break;
      // Jobs that can never start would keep the clock going: stop when only they are left.
      if (arrival === Infinity && event === Infinity && this.running.size === 0 && !dirty && lastCycle >= this.now) break;
      while (nextSample <= t) {
        this.advance(nextSample);
        this.sample();
        nextSample += sampleSeconds;
      }
      this.advance(t);
      if (t === arrival) {
        for (; next < bySubmit.length && bySubmit[next].sim.job.submittedAt === t; next++) this.enqueue(bySubmit[next], t);
        dirty = true;
      } else if (t === event) {
        while (this.events.peekValue() === t) dirty = this.handle(this.events.pop()!) || dirty;
      } else {
        this.cycle();
        lastCycle = t;
        dirty = false;
      }
      if (o.onProgress && this.finished >= progressAt) {
        o.onProgress(this.finished, total);
        progressAt = this.finished + Math.max(1, Math.floor(total / 200));
      }
    }
    this.sample();
    const end = Math.max(start, ...this.live.map((l) => l.outcome.finishedAt ?? start));
    o.onProgress?.(this.finished, total);
    return {
      policy: o.policy.name,
      outcomes: this.live.map((l) => l.outcome),
      samples: this.samples,
      sampleSeconds,
      memberGpuSeconds: this.delivered,
      start,
      lastSubmit,
      end,
      preemptions: this.preemptions,
      maxReclaimLatency: this.maxReclaimLatency,
      longestReclaim: this.longestReclaim,
      cycles: this.cycles,
    };
  }

  private enqueue(l: Live, t: number): void {
    l.queuedSince = t;
    l.pending = l.pending ?? { ...l.sim.job, holdSince: null };
    this.pending.set(l.index, l);
    const q = this.queueOf(l);
    q.byAge.splice(position(q.byAge, l, byAge), 0, l);
    q.byWork.splice(position(q.byWork, l, byWork), 0, l);
    if (l.gpus >= this.largeGpus) this.large.add(l);
    this.memberWaiting[l.member] += l.gpus;
    count(this.waitingBySize, l.gpus, 1);
    count(this.memberWaitingBySize[l.member], l.gpus, 1);
  }

  private dequeue(l: Live): void {
    this.pending.delete(l.index);
    this.holders.delete(l);
    const q = this.queueOf(l);
    q.byAge.splice(position(q.byAge, l, byAge), 1);
    q.byWork.splice(position(q.byWork, l, byWork), 1);
    this.large.delete(l);
    this.memberWaiting[l.member] -= l.gpus;
    count(this.waitingBySize, l.gpus, -1);
    count(this.memberWaitingBySize[l.member], l.gpus, -1);
  }

  private queueOf(l: Live): { byAge: Live[]; byWork: Live[] } {
    return this.queues[l.member * PRIORITY_CLASSES.length + PRIORITY_RANK[l.sim.job.priorityClass]];
  }

  /** Returns whether the cluster changed in a way a cycle should look at. */
  private handle(e: Event): boolean {
    if (e.kind === Kind.Node) {
      const ne = this.o.nodeEvents![e.job];
      this.site = withNodeStates(this.site, { [ne.node]: ne.state });
      this.upGpus = this.countUpGpus();
      return true;
    }
    const l = this.live[e.job];
    if (e.run !== l.run || !l.running) return false;
    if (e.kind === Kind.Finish) {
      l.outcome.overheadGpuSeconds! += l.gpus * l.runOverhead;
      this.stop(l);
      l.remaining = 0;
      l.outcome.finishedAt = this.now;
      this.finished++;
      return true;
    }
    // Grace period over: the work since the last checkpoint is lost; the job queues again whole.
    this.interrupt(l);
    return true;
  }

  private cycle(): void {
    this.cycles++;
    const result = this.decide(false);
    this.apply(result.decisions, result.pending, result.running);
    this.watchReclaim();
  }

  /** The policy's cycle on the state now; pure, so `explain` may ask it again without deciding. */
  private decide(explain: boolean): {
    decisions: CycleResult['decisions'];
    explained: CycleResult['pending'];
    pending: PendingJob[];
    running: RunningJob[];
  } {
    // Holders, then the heads of every queue: all any policy looks at within its queue depth.
    const pending: PendingJob[] = [];
    // Each call its own stamp: a second call in the same cycle (to explain) gives every job again.
    const stamp = ++this.gathered;
    const give = (l: Live) => {
      if (l.given === stamp) return;
      l.given = stamp;
      pending.push(l.pending!);
    };
    for (const l of this.holders) give(l);
    for (const l of this.large) give(l);
    for (const q of this.queues) {
      for (const list of [q.byAge, q.byWork]) {
        let taken = 0;
        // One past the depth: FIFO must see that a member has more, or it would skip ahead of it.
        for (let i = 0; i < list.length && taken <= this.queueDepth; i++) {
          if (this.holders.has(list[i])) continue;
          give(list[i]);
          taken++;
        }
      }
    }
    const running: RunningJob[] = [];
    for (const l of this.running.values()) running.push(l.running!);
    const usageGpuHours: Record<string, number> = {};
    this.o.consortium.members.forEach((m, i) => (usageGpuHours[m.id] = this.usage[i]));
    const result = this.o.policy.cycle(
      { site: this.site, consortium: this.o.consortium, running, pending, usageGpuHours, reservations: this.o.reservations },
      this.now,
      { explain, queueDepth: this.queueDepth, preemption: this.preemption, restartOverheadSeconds: this.restartOverhead },
    );
    return { decisions: result.decisions, explained: result.pending, pending, running };
  }

  /** The records come from the scheduling layer's applier; the engine keeps its indexes and events. */
  private apply(decisions: readonly Decision[], pending: readonly PendingJob[], running: readonly RunningJob[]): void {
    const a = applyDecisions({ pending, running }, decisions, this.now);
    for (const r of a.started) {
      const l = this.find(r.id);
      this.dequeue(l);
      l.outcome.waitSeconds += this.now - l.queuedSince;
      l.pending = null;
      l.running = r;
      l.run++;
      l.runOverhead = l.overheadDue;
      l.overheadDue = 0;
      this.running.set(l.index, l);
      this.memberGpus[l.member] += l.gpus;
      this.countZones(l.member, r.allocation, 1);
      this.push(this.now + l.runOverhead + l.remaining, Kind.Finish, l.index, l.run);
    }
    for (const r of a.preempting) {
      const l = this.find(r.id);
      this.preemptions++;
      l.outcome.preemptions++;
      l.running = r;
      this.push(r.preempting!.graceEndsAt, Kind.GraceEnd, l.index, l.run);
    }
    for (const p of a.requeued) this.interrupt(this.find(p.id), p);
    // A job keeps its hold while it keeps a reservation.
    for (const p of a.holds) {
      const l = this.find(p.id);
      l.pending = p;
      if (p.holdSince != null) this.holders.add(l);
      else this.holders.delete(l);
    }
  }

  /**
   * Stops a running job now and queues it again (`requeue`: its pending record, by default the
   * one a preemption makes). It keeps its work up to its last checkpoint, or all of it with
   * `resume`; what it keeps is its attained service, and its next run starts with the restart
   * overhead. A checkpoint at time t keeps the work done by t: the run's time less its overhead.
   */
  private interrupt(l: Live, requeue: PendingJob = requeued(l.running!)): void {
    const job = l.running!;
    const elapsed = this.now - job.startedAt;
    const overhead = Math.min(elapsed, l.runOverhead);
    const worked = elapsed - overhead;
    const kept =
      this.preemption === 'resume'
        ? worked
        : Math.min(worked, Math.max(0, lastCheckpoint(job, this.now) - job.startedAt - l.runOverhead));
    l.outcome.lostGpuSeconds += l.gpus * (worked - kept);
    l.outcome.overheadGpuSeconds! += l.gpus * overhead;
    l.remaining = Math.max(0, l.remaining - kept);
    l.overheadDue = this.restartOverhead;
    l.pending = { ...requeue, attainedSeconds: l.sim.runtimeSeconds - l.remaining };
    this.stop(l);
    this.enqueue(l, this.now);
  }

  private stop(l: Live): void {
    this.running.delete(l.index);
    this.memberGpus[l.member] -= l.gpus;
    this.countZones(l.member, l.running!.allocation, -1);
    l.running = null;
    l.run++;
  }

  /** Moves the clock, accruing decayed usage (fair share) and delivered GPU-seconds. */
  private advance(t: number): void {
    const dt = t - this.accruedAt;
    if (dt > 0) {
      const half = this.o.consortium.fairShare.halfLifeHours;
      const charged = this.reservedCharge();
      for (let m = 0; m < this.usage.length; m++) {
        this.usage[m] = decayUsage(this.usage[m], dt, half, charged ? charged[m] : this.memberGpus[m]);
        this.delivered[m] += this.memberGpus[m] * dt;
      }
      this.accruedAt = t;
    }
    this.now = t;
  }

  /**
   * With capability runs booked: each member's GPUs for fair share, where a reservation that is on
   * is charged whole in place of its jobs, used or not (null: none booked, the GPUs its jobs hold).
   */
  private reservedCharge(): number[] | null {
    const booked = this.o.reservations;
    if (!booked || booked.length === 0) return null;
    const jobs = [...this.running.values()].map((l) => ({
      member: l.running!.member,
      gpus: gangGpus(l.running!.gang),
      reservation: l.running!.reservation,
    }));
    // Read only when a reservation may be released for want of jobs (see liveReservations).
    const pending = this.pending;
    const waiting = {
      *[Symbol.iterator]() {
        for (const l of pending.values()) yield l.pending!;
      },
    };
    const by = chargedGpus(jobs, booked, this.accruedAt, waiting);
    return this.o.consortium.members.map((m) => by[m.id] ?? 0);
  }

  private sample(): void {
    let used = 0;
    for (const g of this.memberGpus) used += g;
    const demand = this.memberGpus.map((g, m) => g + this.memberWaiting[m]);
    this.samples.push({
      t: this.now,
      usedGpus: used,
      upGpus: this.upGpus,
      queueLength: this.pending.size,
      strandedGpus: this.stranded(),
      memberGpus: this.memberGpus.slice(),
      memberDemand: demand,
    });
  }

  /** Free GPUs in partly used NVLink domains that no waiting gang is small enough to use. */
  private stranded(): number {
    if (this.pending.size === 0) return 0;
    let smallest = Infinity;
    for (const g of this.waitingBySize.keys()) smallest = Math.min(smallest, g);
    const used = new Int32Array(this.site.nodes.length);
    for (const l of this.running.values()) for (const a of l.running!.allocation) used[a.node] += a.gpus;
    let stranded = 0;
    for (const d of this.site.domains) {
      let free = 0;
      let busy = 0;
      for (const n of d.nodes) {
        const node = this.site.nodes[n];
        busy += used[n];
        if (isSchedulable(node)) free += Math.max(0, node.gpus - used[n]);
      }
      if (busy > 0 && free > 0 && free < smallest) stranded += free;
    }
    return stranded;
  }

  /**
   * Reclaim latency: a member with a waiting job that fits within its entitlement (it holds
   * less than its entitlement by at least that job's GPUs) while others borrow where it could
   * run (in its zone, for a member bound to one) is in deficit until no waiting job of it fits
   * any more. A job that would take it beyond its entitlement borrows; it is not owed a reclaim.
   * Borrowing elsewhere is nothing it could take back: a sovereign member waiting on its own
   * racks is not waiting for a reclaim.
   */
  private watchReclaim(): void {
    const members = this.o.consortium.members;
    const zones = this.site.zones.length;
    const borrowing = members.map((m, i) => this.memberGpus[i] > m.entitlementGpus);
    members.forEach((m, i) => {
      let smallest = Infinity;
      for (const g of this.memberWaitingBySize[i].keys()) smallest = Math.min(smallest, g);
      const z = m.zone === null ? -1 : this.site.zones.indexOf(m.zone);
      const othersBorrow = borrowing.some((b, k) => b && k !== i && (z < 0 || this.memberZoneGpus[k * zones + z] > 0));
      const short = this.memberGpus[i] + smallest <= m.entitlementGpus && othersBorrow;
      const since = this.deficitSince[i];
      if (short && since === null) this.deficitSince[i] = this.now;
      else if (short && since !== null && this.deficitSeen[i] === null && this.now - since >= RECLAIM_SEEN_AFTER_SECONDS)
        this.deficitSeen[i] = this.seeDeficit(i, borrowing);
      else if (!short && since !== null) {
        const seconds = this.now - since;
        if (seconds > (this.maxReclaimLatency ?? 0))
          this.longestReclaim = { member: m.id, from: since - this.runStart, seconds, seen: this.deficitSeen[i] };
        this.maxReclaimLatency = Math.max(this.maxReclaimLatency ?? 0, seconds);
        this.deficitSince[i] = null;
        this.deficitSeen[i] = null;
      }
    });
  }

  /**
   * A member's deficit as the policy explains it now: what its first waiting job waits for, and
   * what the first one that fits what it is owed waits for. One explained cycle per stretch that
   * lasts an hour (the cycle is pure: asking again decides nothing).
   */
  private seeDeficit(i: number, borrowing: readonly boolean[]): ReclaimSnapshot {
    const m = this.o.consortium.members[i];
    const { explained, pending } = this.decide(true);
    const byId = new Map(pending.map((p) => [p.id, p]));
    const owedGpus = m.entitlementGpus - this.memberGpus[i];
    let head: WaitingJob | null = null;
    let owed: WaitingJob | null = null;
    for (const e of explained) {
      const job = byId.get(e.job);
      if (job?.member !== m.id) continue;
      const gpus = gangGpus(job.gang);
      const seen = {
        job: e.job,
        gpus,
        reason: e.reason,
        estimatedStart: e.estimatedStart === null ? null : e.estimatedStart - this.runStart,
        holding: job.holdSince != null,
      };
      head ??= seen;
      if (gpus <= owedGpus) {
        owed = seen;
        break;
      }
    }
    let borrowedGpus = 0;
    this.o.consortium.members.forEach((x, k) => {
      if (k !== i && borrowing[k]) borrowedGpus += this.memberGpus[k] - x.entitlementGpus;
    });
    return {
      at: this.now - this.runStart,
      heldGpus: this.memberGpus[i],
      entitlementGpus: m.entitlementGpus,
      borrowedGpus,
      head,
      owed,
    };
  }

  /** GPUs each member holds per zone (index member × zones + zone). */
  private countZones(member: number, allocation: readonly { node: number; gpus: number }[], sign: 1 | -1): void {
    const zones = this.site.zones.length;
    for (const a of allocation) this.memberZoneGpus[member * zones + this.nodeZone[a.node]] += sign * a.gpus;
  }

  private find(id: string): Live {
    const l = this.byId.get(id);
    if (!l) throw new Error(`policy ${this.o.policy.name} decided about an unknown job ${id}`);
    return l;
  }

  private countUpGpus(): number {
    let g = 0;
    for (const n of this.site.nodes) if (isSchedulable(n)) g += n.gpus;
    return g;
  }

  private push(at: number, kind: Kind, job: number, run: number): void {
    this.events.push({ at, kind, job, run }, at);
  }
}

/** Adds `delta` to the count of `key`, dropping keys that reach zero. */
function count(counts: Map<number, number>, key: number, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n === 0) counts.delete(key);
  else counts.set(key, n);
}

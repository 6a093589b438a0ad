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
import { DEFAULT_CONFIG, type Decision } from '../scheduler/types.js';
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
   * Each cycle looks at this many waiting jobs of each member, in the member's order (default
   * 128; see CycleOptions.queueDepth). The engine hands the policy only those (and one more), the
   * jobs that hold a reservation and the gangs of a whole NVLink domain or more: a member with
   * 20,000 queued jobs costs a cycle no more than one with 128.
   */
  readonly queueDepth?: number;
  /** Time series sampling interval (default: a few hundred samples over the run). */
  readonly sampleSeconds?: number;
  readonly nodeEvents?: readonly NodeEvent[];
  readonly onProgress?: (finished: number, total: number) => void;
}

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
  readonly cycles: number;
}

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
  /** Work still to do, seconds (restarts from the last checkpoint). */
  remaining: number;
  run: number;
  queuedSince: number;
  /** The cycle that last got it (a job is handed over once per cycle). */
  given: number;
  running: RunningJob | null;
  pending: PendingJob | null;
  outcome: JobOutcome;
}

export const DEFAULT_QUEUE_DEPTH = 128;

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
  private readonly queueDepth: number;
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
  private readonly samples: Sample[] = [];
  private readonly deficitSince: (number | null)[];
  private readonly memberZoneGpus: Float64Array;
  /** Zone index of each node. */
  private readonly nodeZone: Int32Array;
  private maxReclaimLatency: number | null = null;

  constructor(private readonly o: SimOptions) {
    this.site = o.site;
    o.consortium.members.forEach((m, i) => this.memberIdx.set(m.id, i));
    const members = o.consortium.members.length;
    this.memberGpus = new Array(members).fill(0);
    this.usage = new Array(members).fill(0);
    this.delivered = new Array(members).fill(0);
    this.deficitSince = new Array(members).fill(null);
    this.memberWaiting = new Array(members).fill(0);
    this.memberZoneGpus = new Float64Array(members * o.site.zones.length);
    this.nodeZone = Int32Array.from(o.site.nodes, (n) => o.site.zones.indexOf(o.site.domains[n.domain].zone));
    this.queues = Array.from({ length: members * PRIORITY_CLASSES.length }, () => ({ byAge: [], byWork: [] }));
    this.queueDepth = o.queueDepth ?? DEFAULT_QUEUE_DEPTH;
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
        remaining: sim.runtimeSeconds,
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
    this.waitingBySize.set(l.gpus, (this.waitingBySize.get(l.gpus) ?? 0) + 1);
  }

  private dequeue(l: Live): void {
    this.pending.delete(l.index);
    this.holders.delete(l);
    const q = this.queueOf(l);
    q.byAge.splice(position(q.byAge, l, byAge), 1);
    q.byWork.splice(position(q.byWork, l, byWork), 1);
    this.large.delete(l);
    this.memberWaiting[l.member] -= l.gpus;
    const n = this.waitingBySize.get(l.gpus)! - 1;
    if (n === 0) this.waitingBySize.delete(l.gpus);
    else this.waitingBySize.set(l.gpus, n);
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
    // Holders, then the heads of every queue: all any policy looks at within its queue depth.
    const pending: PendingJob[] = [];
    const stamp = this.cycles;
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
      { site: this.site, consortium: this.o.consortium, running, pending, usageGpuHours },
      this.now,
      { explain: false, queueDepth: this.queueDepth },
    );
    this.apply(result.decisions);
    this.watchReclaim();
  }

  private apply(decisions: readonly Decision[]): void {
    const reserved = new Set<string>();
    const byId = new Map<string, Live>();
    for (const d of decisions) if (d.kind !== 'reserve') byId.set(d.job, this.find(d.job));
    for (const d of decisions) {
      switch (d.kind) {
        case 'start': {
          const l = byId.get(d.job)!;
          this.dequeue(l);
          l.outcome.waitSeconds += this.now - l.queuedSince;
          const { holdSince: _h, ...spec } = l.pending!;
          l.pending = null;
          l.running = { ...spec, startedAt: this.now, allocation: d.allocation, lastCheckpointAt: null, preempting: null };
          l.run++;
          this.running.set(l.index, l);
          this.memberGpus[l.member] += l.gpus;
          this.countZones(l.member, d.allocation, 1);
          this.push(this.now + l.remaining, Kind.Finish, l.index, l.run);
          break;
        }
        case 'preempt': {
          const l = byId.get(d.job)!;
          this.preemptions++;
          l.outcome.preemptions++;
          l.running = { ...l.running!, preempting: { since: this.now, graceEndsAt: this.now + d.graceSeconds, by: d.for } };
          this.push(this.now + d.graceSeconds, Kind.GraceEnd, l.index, l.run);
          break;
        }
        case 'requeue':
          this.interrupt(byId.get(d.job)!);
          break;
        case 'reserve':
          reserved.add(d.job);
          break;
      }
    }
    // A job keeps its hold while it keeps a reservation.
    for (const l of this.holders) {
      if (reserved.has(l.sim.job.id)) continue;
      l.pending = { ...l.pending!, holdSince: null };
      this.holders.delete(l);
    }
    for (const id of reserved) {
      const l = this.find(id);
      if (this.holders.has(l) || !l.pending) continue;
      l.pending = { ...l.pending, holdSince: this.now };
      this.holders.add(l);
    }
  }

  /** Stops a running job now: it keeps the work up to its last checkpoint and queues again. */
  private interrupt(l: Live): void {
    const job = l.running!;
    const kept = Math.max(0, lastCheckpoint(job, this.now) - job.startedAt);
    l.outcome.lostGpuSeconds += l.gpus * (this.now - job.startedAt - kept);
    l.remaining = Math.max(0, l.remaining - kept);
    l.pending = requeued(job);
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
      for (let m = 0; m < this.usage.length; m++) {
        this.usage[m] = decayUsage(this.usage[m], dt, half, this.memberGpus[m]);
        this.delivered[m] += this.memberGpus[m] * dt;
      }
      this.accruedAt = t;
    }
    this.now = t;
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
   * Reclaim latency: a member whose demand is below its entitlement, not fully served while
   * others borrow where it could run (in its zone, for a member bound to one), is in deficit
   * until it holds min(entitlement, demand) again. Borrowing elsewhere is nothing it could take
   * back: a sovereign member waiting on its own racks is not waiting for a reclaim.
   */
  private watchReclaim(): void {
    const members = this.o.consortium.members;
    const zones = this.site.zones.length;
    const demand = this.memberGpus.map((g, m) => g + this.memberWaiting[m]);
    const borrowing = members.map((m, i) => this.memberGpus[i] > m.entitlementGpus);
    members.forEach((m, i) => {
      const target = Math.min(m.entitlementGpus, demand[i]);
      const z = m.zone === null ? -1 : this.site.zones.indexOf(m.zone);
      const othersBorrow = borrowing.some((b, k) => b && k !== i && (z < 0 || this.memberZoneGpus[k * zones + z] > 0));
      const short = this.memberGpus[i] < target && othersBorrow;
      const since = this.deficitSince[i];
      if (short && since === null) this.deficitSince[i] = this.now;
      else if (!short && since !== null) {
        this.maxReclaimLatency = Math.max(this.maxReclaimLatency ?? 0, this.now - since);
        this.deficitSince[i] = null;
      }
    });
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

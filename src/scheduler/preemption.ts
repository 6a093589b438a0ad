// Which running jobs to stop so that a blocked job can start. Only three kinds of victim exist:
// borrowed work of another member (reclaim), lower-class work of the job's own member
// (priority), and longer work of the job's own member and class, right after its checkpoint
// (service: shortest remaining work first). A victim must have run its minimum runtime. Among the sets that make the gang
// fit, the one that loses the fewest GPU-hours since the victims' last checkpoints wins, then
// the one with the fewest jobs; a set is never larger than needed (each victim is necessary).
import {
  checkpointAt,
  gangGpusOf as gpusOfJob,
  PRIORITY_RANK,
  remainingWalltime,
  type Allocation,
  type PriorityClass,
  type RunningJob,
} from '../core/job.js';
import { memberOrderKey, type Aging } from './cycle.js';
import { place, type PlacementRequest } from './placement.js';
import type { QuotaBook } from './quota.js';
import type { Snapshot, Undo } from './snapshot.js';
import type { CycleOptions, PreemptionReason, SchedulerConfig } from './types.js';

export interface Victim {
  readonly job: RunningJob;
  readonly member: number;
  readonly isolated: boolean;
  readonly reason: PreemptionReason;
  readonly lostGpuHours: number;
  /** Seconds until it stops (see `stopCost`). */
  readonly stopAfterSeconds: number;
  /** Taking it would push its member below its entitlement: a last resort. */
  readonly overshoot: boolean;
  /** Its GPUs, and the distinct NVLink domains they are in (in allocation order). */
  readonly gpus: number;
  readonly domains: Int32Array;
}

export interface PreemptionPlan {
  readonly victims: readonly Victim[];
  /** Where the preemptor goes once the victims are gone. */
  readonly allocation: Allocation[];
  readonly lostGpuHours: number;
  /** When the last victim stops. */
  readonly readyAt: number;
}

export interface Preemptor {
  readonly request: PlacementRequest;
  readonly priorityClass: PriorityClass;
  /** When it would end if started now: it must not run over other jobs' reservations. */
  readonly end: number;
  /** May it take back lent GPUs (it is within its entitlement), or only its member's lower classes? */
  readonly reclaim: boolean;
  /** GPUs of its own member's lower-class work that must stop for it to fit its entitlement. */
  readonly ownToFree: number;
  /** Jobs that preempted it before: they are never its victims (no preemption loops). */
  readonly preemptedBy: readonly string[] | undefined;
  /**
   * Its expected remaining work, GPU-seconds: a job of its own class yields to it only if that
   * job has more left to do. A victim requeued for it has more left than it had, so it never
   * takes its GPUs back: service preemption makes no loops either.
   */
  readonly work: number;
  /** Its place in its member's order (`memberOrderKey`): only work behind it yields to it for service. */
  readonly order: number;
}

/** What the oracle needs of the cycle's settings. */
export type PreemptionSettings = Pick<SchedulerConfig, 'checkpointSlackSeconds' | 'serviceMargin'> &
  Aging &
  Pick<CycleOptions, 'preemption' | 'restartOverheadSeconds'>;

/** Expected remaining work of a running job, GPU-seconds (from its walltime less attained service). */
export function remainingWork(job: RunningJob, now: number): number {
  return gpusOfJob(job) * Math.max(0, remainingWalltime(job) - (now - job.startedAt));
}

/** The small port the cycle asks; it does not know how victims are chosen. */
export interface PreemptionOracle {
  /** A cheap upper bound: could stopping every eligible job free enough? */
  mayFree(preemptor: Preemptor): boolean;
  plan(preemptor: Preemptor): PreemptionPlan | null;
  stopped(entry: RunningEntry): void;
}

export interface RunningEntry {
  readonly job: RunningJob;
  readonly member: number;
  readonly isolated: boolean;
  /** Already told to stop (earlier, or by this cycle): not a candidate again. */
  stopping: boolean;
  /** Started by this cycle: never preempted in the cycle that started it. */
  readonly fresh: boolean;
}

export class LeastLostWork implements PreemptionOracle {
  constructor(
    private readonly snap: Snapshot,
    private readonly quota: QuotaBook,
    private readonly running: readonly RunningEntry[],
    private readonly now: number,
    private readonly settings: PreemptionSettings,
  ) {}

  /** GPUs of preemptible work (past its minimum runtime, not stopping) per member and class rank. */
  private eligible: Float64Array | null = null;
  /** Of those, the GPUs of jobs that may yield to shorter work of their class now (see `stopCost`). */
  private yielding: Float64Array | null = null;

  mayFree(preemptor: Preemptor): boolean {
    const ranks = PRIORITY_RANK.inference + 1;
    if (!this.eligible || !this.yielding) {
      this.eligible = new Float64Array(this.quota.used.length * ranks);
      this.yielding = new Float64Array(this.quota.used.length * ranks);
      // From the victim table's columns: every running job not started by this cycle is in it.
      const t = this.victimTable();
      for (let i = 0; i < t.entries.length; i++) {
        const e = t.entries[i];
        if (e.stopping || !t.ripe[i]) continue;
        const k = e.member * ranks + t.rank[i];
        this.eligible[k] += t.gpus[i];
        if (t.atCheckpoint[i]) this.yielding[k] += t.gpus[i];
      }
    }
    const m = preemptor.request.member;
    const rank = PRIORITY_RANK[preemptor.priorityClass];
    let own = this.yielding[m * ranks + rank];
    for (let r = 0; r < rank; r++) own += this.eligible[m * ranks + r];
    if (own < preemptor.ownToFree) return false;
    let all = own;
    if (preemptor.reclaim) {
      for (let k = 0; k < this.quota.used.length; k++) {
        if (k === m || !this.quota.borrowing(k)) continue;
        for (let r = 0; r < ranks; r++) all += this.eligible[k * ranks + r];
      }
    }
    return all > 0 && this.snap.now.total + all >= preemptor.request.gpus;
  }

  /** The cycle tells the oracle which jobs it has told to stop. */
  stopped(entry: RunningEntry): void {
    // The counts exist once mayFree built them from the victim table; a victim is in the table.
    if (!this.eligible || !this.yielding) return;
    const t = this.victimTable();
    const i = t.index.get(entry)!;
    const k = entry.member * (PRIORITY_RANK.inference + 1) + t.rank[i];
    this.eligible[k] -= t.gpus[i];
    if (t.atCheckpoint[i]) this.yielding[k] -= t.gpus[i];
  }

  plan(preemptor: Preemptor): PreemptionPlan | null {
    const candidates = this.candidates(preemptor);
    if (candidates.length === 0) return null;
    const { request } = preemptor;
    // Bounds first: all candidates together must free enough, or no subset will.
    let own = 0;
    let all = 0;
    for (const v of candidates) {
      all += v.gpus;
      if (v.member === request.member) own += v.gpus;
    }
    if (own < preemptor.ownToFree || this.snap.now.total + all < request.gpus) return null;
    // A gang that fits in one domain is tried domain by domain, so victims in other domains
    // are never taken in vain; larger gangs search the whole machine at once.
    const { site } = this.snap;
    const maxDomain = this.snap.maxDomainGpus;
    let best: PreemptionPlan | null = null;
    // A job on one node needs no domain-by-domain search: victims whose GPUs it does not take
    // are given back by the minimal-set pass anyway.
    if (request.tasks.length === 1) return this.greedy(preemptor, candidates, undefined);
    if (request.gpus <= maxDomain) {
      // Candidates by domain; work that frees quota counts anywhere, so own victims go everywhere.
      const byDomain: Victim[][] = site.domains.map(() => []);
      const inDomainGpus = new Float64Array(site.domains.length);
      for (const v of candidates) {
        const everywhere = preemptor.ownToFree > 0 && v.member === request.member;
        if (everywhere) for (const list of byDomain) list.push(v);
        for (const d of v.domains) {
          if (!everywhere) byDomain[d].push(v);
          inDomainGpus[d] += v.gpus;
        }
      }
      // No plan can lose less than the cheapest victim alone: once one does, stop looking.
      let cheapest = Infinity;
      for (const v of candidates) if (!v.overshoot) cheapest = Math.min(cheapest, v.lostGpuHours);
      for (let d = 0; d < site.domains.length; d++) {
        if (request.domains && !request.domains[d]) continue;
        if (this.snap.now.domainAvail[d] + inDomainGpus[d] < request.gpus) continue;
        const plan = this.greedy(preemptor, byDomain[d], d);
        if (plan && better(plan, best)) best = plan;
        if (best && best.victims.length === 1 && !best.victims[0].overshoot && best.lostGpuHours <= cheapest) break;
      }
    }
    if (!best && (request.gpus > maxDomain || request.topology !== 'required')) {
      best = this.greedy(preemptor, candidates, undefined);
    }
    return best;
  }

  /**
   * The running jobs that may be victims, cheapest to stop first, with every fact about them that
   * does not change within the cycle (`now` is fixed): built once, on the first plan. A cycle right
   * after a flood makes dozens of plans over a thousand running jobs; each plan then only reads
   * these columns and checks what can change (stopping, who is borrowing).
   */
  private table: VictimTable | null = null;

  private victimTable(): VictimTable {
    if (this.table) return this.table;
    const entries = this.running.filter((e) => !e.fresh);
    const n = entries.length;
    const t: VictimTable = {
      entries,
      lost: new Float64Array(n),
      stopAfter: new Float64Array(n),
      gpus: new Float64Array(n),
      atCheckpoint: new Uint8Array(n),
      rank: new Uint8Array(n),
      ripe: new Uint8Array(n),
      remainingWork: new Float64Array(n),
      order: new Float64Array(n),
      domains: new Array<Int32Array>(n),
      victims: new Array<Victim | undefined>(n * VARIANTS),
      index: new Map(),
    };
    const startedAt = new Float64Array(n);
    const { now } = this;
    const { nodes } = this.snap.site;
    const ds: number[] = [];
    // Each job's fields are read once: running jobs come in many object shapes (built by spreads),
    // so every property read of one is slow.
    for (let i = 0; i < n; i++) {
      const job = entries[i].job;
      const start = job.startedAt;
      let g = 0;
      ds.length = 0;
      for (const a of job.allocation) {
        g += a.gpus;
        // The distinct domains of its nodes, in allocation order.
        const d = nodes[a.node].domain;
        if (!ds.includes(d)) ds.push(d);
      }
      const cost = stopCost(
        g,
        start,
        job.lastCheckpointAt,
        job.checkpointIntervalSeconds,
        job.gracePeriodSeconds,
        now,
        this.settings,
      );
      t.gpus[i] = g;
      t.domains[i] = Int32Array.from(ds);
      startedAt[i] = start;
      t.stopAfter[i] = cost.stopAfterSeconds;
      t.lost[i] = cost.lostGpuHours;
      t.atCheckpoint[i] = cost.atCheckpoint ? 1 : 0;
      t.rank[i] = PRIORITY_RANK[job.priorityClass];
      t.ripe[i] = now - start < job.minRuntimeSeconds ? 0 : 1;
      // Read only for service preemption, which only takes jobs at a checkpoint.
      if (t.atCheckpoint[i]) {
        t.remainingWork[i] = remainingWork(job, now);
        t.order[i] = memberOrderKey(job, this.snap.maxDomainGpus, this.settings);
      }
    }
    // The least work lost first; for equal loss, bigger jobs (fewer victims), then the newest.
    const { lost, gpus } = t;
    const idx = Array.from({ length: n }, (_, i) => i);
    idx.sort(
      (a, b) =>
        lost[a] - lost[b] || gpus[b] - gpus[a] || startedAt[b] - startedAt[a] || (entries[a].job.id < entries[b].job.id ? -1 : 1),
    );
    const permute = <T>(col: { [i: number]: T; slice(): { [i: number]: T } }) => {
      const copy = col.slice();
      for (let i = 0; i < n; i++) col[i] = copy[idx[i]];
    };
    permute(t.entries);
    permute(t.lost);
    permute(t.stopAfter);
    permute(t.gpus);
    permute(t.atCheckpoint);
    permute(t.rank);
    permute(t.ripe);
    permute(t.remainingWork);
    permute(t.order);
    permute(t.domains);
    t.entries.forEach((e, i) => t.index.set(e, i));
    this.table = t;
    return t;
  }

  private candidates(preemptor: Preemptor): Victim[] {
    const m = preemptor.request.member;
    const rank = PRIORITY_RANK[preemptor.priorityClass];
    const t = this.victimTable();
    const { quota } = this;
    const ownBorrowing = quota.borrowing(m);
    const minService = this.settings.serviceMargin * preemptor.work;
    const preemptedBy = preemptor.preemptedBy;
    // In cheapest-first order; purely borrowed work (its member stays at or above its
    // entitlement without it) before work whose loss would take its member below it.
    const out: Victim[] = [];
    const last: Victim[] = [];
    for (let i = 0; i < t.entries.length; i++) {
      const e = t.entries[i];
      if (e.stopping || !t.ripe[i]) continue;
      let variant: number;
      if (e.member !== m) {
        if (!preemptor.reclaim || !quota.borrowing(e.member)) continue;
        const overshoot = quota.used[e.member] - t.gpus[i] < quota.nominal[e.member];
        variant = overshoot ? RECLAIM_OVERSHOOT : RECLAIM;
      } else if (t.rank[i] < rank) variant = PRIORITY;
      else if (
        !ownBorrowing &&
        t.rank[i] === rank &&
        t.atCheckpoint[i] &&
        t.remainingWork[i] >= minService &&
        t.order[i] > preemptor.order
      )
        variant = SERVICE;
      else continue;
      if (preemptedBy?.includes(e.job.id)) continue;
      const v = this.victim(t, i, variant);
      (v.overshoot ? last : out).push(v);
    }
    for (const v of last) out.push(v);
    return out;
  }

  /** Victims are read, never changed: one object per running job and reason, for the cycle. */
  private victim(t: VictimTable, i: number, variant: number): Victim {
    const k = i * VARIANTS + variant;
    let v = t.victims[k];
    if (!v) {
      const e = t.entries[i];
      v = {
        job: e.job,
        member: e.member,
        isolated: e.isolated,
        reason: variant === PRIORITY ? 'Priority' : variant === SERVICE ? 'Service' : 'Reclaim',
        lostGpuHours: t.lost[i],
        stopAfterSeconds: t.stopAfter[i],
        overshoot: variant === RECLAIM_OVERSHOOT,
        gpus: t.gpus[i],
        domains: t.domains[i],
      };
      t.victims[k] = v;
    }
    return v;
  }

  /** Take victims cheapest first until the gang fits, then give back every one not needed. */
  private greedy(preemptor: Preemptor, candidates: readonly Victim[], domain: number | undefined): PreemptionPlan | null {
    const { snap, quota } = this;
    const { request, end } = preemptor;
    const opts = domain === undefined ? {} : { onlyDomain: domain };
    let ownFreed = 0;
    // What the preemptor may use, kept up to date as victims are taken out and put back.
    const reserved = snap.reservedBefore(end, preemptor.reclaim, request.member);
    const view = { avail: new Int32Array(reserved.length), domainAvail: new Int32Array(snap.site.domains.length), total: 0 };
    const nodes = snap.site.nodes;
    // Nodes the request may use with room for its largest task: place() cannot succeed with
    // fewer than it has tasks of that size, so it is not called (most victims taken one by one
    // free too little). (A gang of no GPUs needs no room: its count stays 0 ≥ 0.)
    const biggest = Math.max(1, request.tasks[0] ?? 0);
    let needBig = 0;
    for (const t of request.tasks) if (t >= biggest) needBig++;
    let big = 0;
    const refreshNode = (n: number) => {
      const a = snap.schedulable[n] ? Math.max(0, snap.now.avail[n] - reserved[n]) : 0;
      const was = view.avail[n];
      const delta = a - was;
      const d = nodes[n].domain;
      if ((domain === undefined || d === domain) && (!request.domains || request.domains[d]))
        big += (a >= biggest ? 1 : 0) - (was >= biggest ? 1 : 0);
      view.avail[n] = a;
      view.domainAvail[d] += delta;
      view.total += delta;
    };
    const refresh = (allocation: readonly Allocation[]) => {
      for (const { node } of allocation) refreshNode(node);
    };
    for (let n = 0; n < nodes.length; n++) refreshNode(n);
    const fits = () => {
      if (ownFreed < preemptor.ownToFree) return null;
      return view.total >= request.gpus && big >= needBig ? place(snap, view, request, opts) : null;
    };
    const undos: Undo[] = [];
    const chosen: Victim[] = [];
    const stillBorrowing = (v: Victim) => v.reason !== 'Reclaim' || quota.borrowing(v.member);
    /** Takes the victim's GPUs out of the picture (`out`) or puts them back; undone at the end. */
    const move = (v: Victim, out: boolean) => {
      const u = out
        ? snap.release(v.member, v.isolated, v.job.allocation)
        : snap.allocate(v.member, v.isolated, v.job.allocation);
      refresh(v.job.allocation);
      const freed = out ? v.gpus : -v.gpus;
      const own = v.member === request.member;
      quota.add(v.member, -freed);
      if (own) ownFreed += freed;
      undos.push(() => {
        u();
        quota.add(v.member, freed);
        if (own) ownFreed -= freed;
      });
    };
    const remove = (v: Victim) => move(v, true);
    const restore = (v: Victim) => move(v, false);
    /** Would taking the victim give the preemptor a GPU it may use (not held for a reservation)? */
    const freesAny = (v: Victim) =>
      v.job.allocation.some(
        ({ node, gpus }) =>
          snap.schedulable[node] === 1 && Math.max(0, snap.now.avail[node] + gpus - reserved[node]) > view.avail[node],
      );
    const take = (v: Victim) => {
      remove(v);
      chosen.push(v);
      return fits();
    };
    const version = snap.version;
    let allocation: Allocation[] | null = null;
    // A victim whose GPUs are all held for reservations the preemptor must respect frees nothing
    // it can use: it is taken only after every victim that does (else a one-GPU job took the job
    // about to end anyway and then its neighbour, where one victim elsewhere was enough).
    const deferred: Victim[] = [];
    for (const v of candidates) {
      // Reclaim stops as soon as the lender is no longer borrowing: a member at or under its
      // entitlement is never preempted for someone else.
      if (!stillBorrowing(v)) continue;
      if (preemptor.ownToFree === 0 && !freesAny(v)) {
        deferred.push(v);
        continue;
      }
      allocation = take(v);
      if (allocation) break;
    }
    for (let i = 0; !allocation && i < deferred.length; i++) if (stillBorrowing(deferred[i])) allocation = take(deferred[i]);
    let plan: PreemptionPlan | null = null;
    if (allocation) {
      let target: Allocation[] = allocation;
      // Minimal set: try to keep each victim, most expensive first.
      for (let i = chosen.length - 1; i >= 0; i--) {
        const v = chosen[i];
        if (v.member === request.member && ownFreed - v.gpus < preemptor.ownToFree) continue;
        restore(v);
        // Cheap case: the placement found does not need this victim's GPUs.
        const without = stillValid(target, view.avail) ? target : fits();
        if (without) {
          target = without;
          chosen.splice(i, 1);
        } else {
          remove(v);
        }
      }
      let lost = 0;
      let readyAt = this.now;
      for (const v of chosen) {
        lost += v.lostGpuHours;
        readyAt = Math.max(readyAt, this.now + v.stopAfterSeconds);
      }
      plan = { victims: chosen, allocation: target, lostGpuHours: lost, readyAt };
    }
    for (let u = undos.length - 1; u >= 0; u--) undos[u]();
    snap.version = version;
    return plan;
  }
}

/**
 * What stopping a running job now costs. `stopAfterSeconds`: its grace period, after its next
 * checkpoint when it checkpoints periodically and the last one is older than
 * `checkpointSlackSeconds` (stopping right after a checkpoint loses almost no work; waiting for it
 * costs the preemptor at most one interval). `lostGpuHours`: the work since its last checkpoint
 * when it stops; where preempted jobs resume, only the restart. `atCheckpoint`: it checkpointed
 * moments ago (or resumes anyway), so it may yield to shorter work of its class now.
 */
function stopCost(
  gpus: number,
  startedAt: number,
  reportedAt: number | null,
  every: number | null,
  grace: number,
  now: number,
  settings: PreemptionSettings,
): { stopAfterSeconds: number; lostGpuHours: number; atCheckpoint: boolean } {
  if (settings.preemption === 'resume')
    return { stopAfterSeconds: grace, lostGpuHours: (gpus * (settings.restartOverheadSeconds ?? 0)) / 3600, atCheckpoint: true };
  const last = checkpointAt(reportedAt, startedAt, every, now);
  const atCheckpoint = now - last <= settings.checkpointSlackSeconds;
  const stopAfterSeconds = !every || every <= 0 ? grace : Math.max(0, atCheckpoint ? 0 : last + every - now) + grace;
  const stop = now + stopAfterSeconds;
  return {
    stopAfterSeconds,
    lostGpuHours: (gpus * Math.max(0, stop - checkpointAt(reportedAt, startedAt, every, stop))) / 3600,
    atCheckpoint,
  };
}

/** Kinds of victim object per running job: reclaim (as a last resort or not), priority, service. */
const RECLAIM = 0;
const RECLAIM_OVERSHOOT = 1;
const PRIORITY = 2;
const SERVICE = 3;
const VARIANTS = 4;

/** Columns in cheapest-first order: see `LeastLostWork.victimTable`. */
interface VictimTable {
  readonly entries: readonly RunningEntry[];
  readonly lost: Float64Array;
  readonly stopAfter: Float64Array;
  readonly gpus: Float64Array;
  readonly rank: Uint8Array;
  /** Past its minimum runtime. */
  readonly ripe: Uint8Array;
  readonly atCheckpoint: Uint8Array;
  readonly remainingWork: Float64Array;
  readonly order: Float64Array;
  /** The NVLink domains its GPUs are in. */
  readonly domains: Int32Array[];
  readonly victims: (Victim | undefined)[];
  /** Each entry's row. */
  readonly index: Map<RunningEntry, number>;
}

/** Does the allocation still fit in what is available (after a victim was put back)? */
function stillValid(allocation: readonly Allocation[], avail: Int32Array): boolean {
  for (const a of allocation) if (avail[a.node] < a.gpus) return false;
  return true;
}

function better(a: PreemptionPlan, b: PreemptionPlan | null): boolean {
  if (!b) return true;
  const over = (p: PreemptionPlan) => p.victims.filter((v) => v.overshoot).length;
  if (over(a) !== over(b)) return over(a) < over(b);
  if (a.lostGpuHours !== b.lostGpuHours) return a.lostGpuHours < b.lostGpuHours;
  return a.victims.length < b.victims.length;
}

// One scheduling cycle: cycle(state, now) → decisions and an explanation for every waiting job.
// Pure: no clock, no I/O, no randomness. The server runs it on events and a timer against
// live state; the simulator runs it on a virtual clock against a trace.
import {
  gangGpus,
  gangGpusOf,
  PRIORITY_RANK,
  remainingWalltime,
  type Allocation,
  type JobSpec,
  type PendingJob,
} from '../core/job.js';
import type { Member } from '../core/consortium.js';
import { decayedAverageGpus } from '../core/usage.js';
import { CycleBase } from './base.js';
import { place, type PlacementRequest } from './placement.js';
import { LeastLostWork, type PreemptionOracle, type PreemptionPlan } from './preemption.js';
import { QuotaFit } from './quota.js';
import { ANY_MEMBER } from './timeline.js';
import { DEFAULT_CONFIG, type ClusterState, type CycleResult, type PendingReason, type SchedulerConfig } from './types.js';

export function cycle(state: ClusterState, now: number, config: SchedulerConfig = DEFAULT_CONFIG): CycleResult {
  const c = new CycleContext(state, now, config);
  // 1. Failures: a gang that touched a failed node is requeued whole; the rest is the snapshot.
  c.loadRunning();
  // 2. Order: jobs promised capacity first, then members interleaved by fair share, each
  //    member's jobs by priority class, then age.
  const queue = c.order();
  // 3. For each job: quota → place now → preempt (reclaim or priority) → reserve → explain.
  for (const job of queue) c.consider(job);
  c.explainBehindDepth();
  // 4. Estimated start for everything still waiting.
  return c.result();
}

/** Fabrik's decisions on top of the shared base: quota, fair-share order, preemption, reservations. */
class CycleContext extends CycleBase {
  private readonly oracle: PreemptionOracle;
  private readonly preemptors: Uint32Array;
  /** Searches for victims that found none worth taking, per member, this cycle: to displace its own work, to reclaim. */
  private readonly failedPlans: Uint32Array;
  private readonly failedReclaims: Uint32Array;
  /** GPUs of the member's jobs within its entitlement left waiting this cycle without reclaiming. */
  private readonly waitingGuaranteed: Float64Array;
  private reservationsMade = 0;
  private readonly noPlan = new Set<string>();
  private readonly diagnosis = new Map<number, { version: number; reason: PendingReason }>();
  /** Jobs for which running jobs are being stopped (their grace is running). */
  private readonly awaitingVictims = new Set<string>();
  /** Jobs behind their member's queue depth: not looked at this cycle. */
  private readonly behindDepth: PendingJob[] = [];

  constructor(
    state: ClusterState,
    now: number,
    readonly config: SchedulerConfig,
  ) {
    super(state, now, config);
    const members = state.consortium.members.length;
    this.preemptors = new Uint32Array(members);
    this.failedPlans = new Uint32Array(members);
    this.failedReclaims = new Uint32Array(members);
    this.waitingGuaranteed = new Float64Array(members);
    this.oracle = new LeastLostWork(this.snap, this.quota, this.running, now, config);
    for (const j of state.running) if (j.preempting) this.awaitingVictims.add(j.preempting.by);
    this.quota.lendClaimed = config.lendClaimedQuota;
  }

  order(): PendingJob[] {
    const members = this.state.consortium.members;
    const holders: PendingJob[] = [];
    const queues: PendingJob[][] = members.map(() => []);
    for (const job of this.state.pending) {
      if (job.holdSince != null) holders.push(job);
      else queues[this.member(job.member, job.id)].push(job);
    }
    holders.sort((a, b) => a.holdSince! - b.holdSince! || byClassThenAge(a, b));
    const large = this.snap.maxDomainGpus;
    for (let i = 0; i < queues.length; i++) queues[i] = sortMemberQueue(queues[i], large, this.config);
    // Jobs behind a member's queue depth are not looked at; they are explained last.
    const depth = this.config.queueDepth ?? Infinity;
    for (let i = 0; i < queues.length; i++) {
      if (queues[i].length <= depth) continue;
      if (this.explain) for (let j = depth; j < queues[i].length; j++) this.behindDepth.push(queues[i][j]);
      queues[i].length = depth;
    }
    // Weighted fair queueing: each member's position advances by the GPUs of the jobs it puts in
    // line, divided by its entitlement, starting from its decayed recent usage. Members with
    // less use than their share come first, and shares interleave in proportion to entitlement.
    const halfLife = this.state.consortium.fairShare.halfLifeHours;
    const weights = members.map(weight);
    const virtual = members.map((m, i) => decayedAverageGpus(this.state.usageGpuHours[m.id] ?? 0, halfLife) / weights[i]);
    const heads = new Int32Array(members.length);
    const out = holders;
    for (;;) {
      let pick = -1;
      for (let i = 0; i < members.length; i++) {
        if (heads[i] >= queues[i].length) continue;
        if (pick < 0 || virtual[i] < virtual[pick]) pick = i;
      }
      if (pick < 0) break;
      const job = queues[pick][heads[pick]++];
      out.push(job);
      virtual[pick] += gangGpus(job.gang) / weights[pick];
    }
    return out;
  }

  explainBehindDepth(): void {
    for (const job of this.behindDepth) this.wait(job, 'Priority', gangGpus(job.gang), null);
  }

  consider(job: PendingJob): void {
    const admissible = this.admissible(job);
    if (!admissible) return;
    const { m, req, shape: sig } = admissible;
    const end = this.now + remainingWalltime(job);
    const fit = this.quota.fit(m, req.gpus, end);

    if (fit !== QuotaFit.Exhausted) {
      // Work within an entitlement is not kept off GPUs held for work beyond one (see `hold`).
      const allocation = this.placeNow(req, sig, end, fit === QuotaFit.Guaranteed);
      if (allocation) return this.start(job, m, req, end, allocation, fit === QuotaFit.Borrowing);
    }

    // Blocked. Jobs already promised capacity keep a reservation (of quota: its member's own jobs
    // must end first; and of GPUs); while fewer than `reservationDepth` hold one, the first
    // blocked job gets one, as EASY backfill. Every other GPU is backfill.
    const mayReserve = job.holdSince != null || this.reservationsMade < this.config.reservationDepth;
    const reservation = mayReserve ? this.earliestStart(m, req, fit) : null;
    let reason: PendingReason | null = fit === QuotaFit.Exhausted ? 'QuotaExhausted' : null;

    // Preemption: reclaim lent GPUs for work within its entitlement, as much of the member's
    // deficit as this cycle can (reclaim is not rationed); and, a few jobs a cycle, displace its
    // own member's lower classes or longer work of its class. Only when it pays: the GPU-time the
    // job saves by not waiting must exceed the work the preemption destroys.
    // A job whose victims are still stopping waits for them: it never preempts a second time
    // (each cycle found a sooner plan among the rest, and one job took down dozens).
    const reclaim = fit === QuotaFit.Guaranteed;
    if (
      !this.awaitingVictims.has(job.id) &&
      (reclaim
        ? this.failedReclaims[m] < this.config.reclaimAttemptsPerMember
        : this.preemptors[m] < this.config.preemptorsPerMember && this.failedPlans[m] < this.config.preemptionAttemptsPerMember)
    ) {
      const ownToFree = fit === QuotaFit.Exhausted ? this.quota.peak(m, end) + req.gpus - this.quota.nominal[m] : 0;
      const work = req.gpus * remainingWalltime(job);
      const order = memberOrderKey(job, this.snap.maxDomainGpus, this.config);
      const preemptor = {
        request: req,
        priorityClass: job.priorityClass,
        end,
        reclaim,
        ownToFree,
        preemptedBy: job.preemptedBy,
        work,
        order,
      };
      // Within a cycle, preemption options only shrink (victims stop, free GPUs get taken), so a
      // shape that found no victims will find none later in the same cycle (for as much work).
      const planKey = `${sig}|${job.priorityClass}|${fit}|${ownToFree}|${work}|${order}|${job.preemptedBy?.join(',') ?? ''}`;
      if (!this.noPlan.has(planKey) && this.oracle.mayFree(preemptor)) {
        const plan = this.oracle.plan(preemptor);
        if (plan && this.worthIt(m, req, plan, () => (mayReserve ? reservation : this.earliestStart(m, req, fit))?.start)) {
          this.preempt(job, plan);
          return this.hold(job, m, req, { start: plan.readyAt, allocation: plan.allocation }, 'WaitingForReclaim');
        }
        // A reclaim turned down because the member is served soon anyway is no vain search: its
        // next job needs more than turnover brings, and may find it worth it.
        if (!plan || !reclaim) {
          this.noPlan.add(planKey);
          if (reclaim) this.failedReclaims[m]++;
          else this.failedPlans[m]++;
        }
      }
    }
    if (reclaim) this.waitingGuaranteed[m] += req.gpus;
    if (!reservation) {
      if (this.explain) this.wait(job, reason ?? this.diagnose(req, end, this.fitKey(sig, end), false), req.gpus, null);
      return;
    }
    if (this.explain)
      reason ??= this.onStoppingNodes(reservation.allocation)
        ? 'WaitingForReclaim'
        : this.diagnose(req, end, this.fitKey(sig, end), true);
    this.hold(job, m, req, reservation, reason ?? 'WaitingForResources');
  }

  /**
   * Whether to preempt for a plan. Lent GPUs are taken back only when the member would otherwise
   * wait longer than `reclaimWithinSeconds` for its entitlement: when the job's own earliest start
   * is further away, or when the jobs ending by then do not free enough GPUs for it and for the
   * member's jobs within its entitlement already left waiting this cycle (each of a thousand
   * one-GPU jobs would otherwise be told, one after the other, that the next GPU to free up is
   * its). Natural turnover serves it sooner than that, and each reclaim costs its victims a new
   * wait. Other preemptions must pay for themselves: the GPU-time the preemptor saves (it starts
   * when the victims stop instead of when it could start without them) must exceed the work the
   * victims lose.
   */
  private worthIt(m: number, req: PlacementRequest, plan: PreemptionPlan, earliest: () => number | undefined): boolean {
    const within = this.config.reclaimWithinSeconds;
    if (plan.victims.some((v) => v.reason === 'Reclaim'))
      return !this.turnoverServes(m, req.gpus, this.now + within) || (earliest() ?? Infinity) - this.now > within;
    const saved = (earliest() ?? Infinity) - plan.readyAt;
    return saved > 0 && req.gpus * saved > plan.lostGpuHours * 3600;
  }

  /**
   * Do the running jobs that end by `horizon` (those not being stopped) free GPUs enough for
   * `gpus` more of the member's work within its entitlement, on top of what its jobs left
   * waiting this cycle need?
   */
  private turnoverServes(m: number, gpus: number, horizon: number): boolean {
    // Counted releases only: a job being stopped frees its GPUs for the job it was stopped for.
    return this.timeline.releasedBy(ANY_MEMBER, horizon) >= this.waitingGuaranteed[m] + gpus;
  }

  /**
   * The earliest start of a blocked job without preempting anyone: when its GPUs free up, and,
   * if its member's quota is the obstacle, when its member's own jobs will have given back
   * enough of it. Null: not with the machine and the jobs as they are.
   */
  private earliestStart(m: number, req: PlacementRequest, fit: QuotaFit): { start: number; allocation: Allocation[] } | null {
    const quotaFrom = fit === QuotaFit.Exhausted ? this.quotaFreesAt(m, req.gpus) : this.now;
    if (quotaFrom === null) return null;
    const reservation = this.timeline.earliestStart(this.snap, req, this.now);
    if (reservation && reservation.start < quotaFrom) reservation.start = quotaFrom;
    return reservation;
  }

  /**
   * The job holds a reservation of GPUs and of its member's quota from `start`. A job beyond its
   * member's entitlement holds GPUs that other members' work within theirs may still take: else
   * a borrower's reservation on the GPUs a reclaim just freed kept the member that reclaimed them
   * off them, its victims restarted there, and it reclaimed again, round after round. Its quota
   * claim is soft too until it is promoted (see `QuotaBook.fit`).
   */
  private hold(
    job: PendingJob,
    m: number,
    req: PlacementRequest,
    reservation: { start: number; allocation: Allocation[] },
    reason: PendingReason,
  ): void {
    const end = reservation.start + job.walltimeSeconds;
    // Soft while the job is not within its entitlement now, its member's earlier reserved jobs counted.
    const soft = this.quota.fit(m, req.gpus, end) !== QuotaFit.Guaranteed;
    // Its quota claim is firm once it is promoted: then none of its member's later work goes first.
    const promoted = memberOrderKey(job, this.snap.maxDomainGpus, this.config) <= this.now;
    this.snap.reserve({
      job: job.id,
      member: m,
      start: reservation.start,
      end,
      allocation: reservation.allocation,
      yields: soft,
    });
    this.quota.claim(m, reservation.start, end, req.gpus, soft && !promoted);
    this.reservationsMade++;
    this.decisions.push({ kind: 'reserve', job: job.id, start: reservation.start, allocation: reservation.allocation });
    this.wait(job, reason, req.gpus, reservation.start);
  }

  private preempt(job: PendingJob, plan: PreemptionPlan): void {
    this.preemptors[this.member(job.member, job.id)]++;
    for (const v of plan.victims) {
      const entry = this.runningById.get(v.job.id)!;
      entry.stopping = true;
      this.oracle.stopped(entry);
      this.quota.add(v.member, -gangGpusOf(v.job));
      this.timeline.stop(v.job.id, this.now + v.stopAfterSeconds);
      this.decisions.push({
        kind: 'preempt',
        job: v.job.id,
        for: job.id,
        reason: v.reason,
        graceSeconds: v.stopAfterSeconds,
        lostGpuHours: v.lostGpuHours,
      });
    }
  }

  /**
   * When the member's own running jobs, and its reserved jobs, will have given back enough of its
   * entitlement for `gpus` more (null: never).
   */
  private quotaFreesAt(m: number, gpus: number): number | null {
    const nominal = this.quota.nominal[m];
    if (gpus > nominal) return null;
    let used = this.quota.used[m] + this.quota.claimed(m);
    if (used + gpus <= nominal) return this.now;
    const back: { end: number; gpus: number }[] = this.quota.claimEnds(m);
    for (const r of this.timeline.ordered())
      if (r.member === m && r.counted) back.push({ end: r.end, gpus: sumGpus(r.allocation) });
    back.sort((a, b) => a.end - b.end);
    for (const r of back) {
      used -= r.gpus;
      if (used + gpus <= nominal) return Math.max(this.now, r.end);
    }
    return null;
  }

  private diagnose(req: PlacementRequest, end: number, key: number, reserved: boolean): PendingReason {
    const cached = this.diagnosis.get(key);
    let reason: PendingReason;
    if (cached && cached.version === this.snap.version) reason = cached.reason;
    else {
      const view = this.snap.availableUntil(end);
      reason = 'Priority';
      if (view !== this.snap.now && place(this.snap, this.snap.now, req)) reason = 'BehindReservation';
      else if (place(this.snap, view, req, { ignoreIsolation: true })) reason = 'IsolationRequired';
      else if (view.total >= req.gpus) reason = 'NoTopologyFit';
      this.diagnosis.set(key, { version: this.snap.version, reason });
    }
    return reason === 'Priority' && reserved ? 'WaitingForResources' : reason;
  }

  private onStoppingNodes(allocation: readonly { node: number }[]): boolean {
    for (const e of this.running) {
      if (!e.stopping) continue;
      for (const a of e.job.allocation) if (allocation.some((b) => b.node === a.node)) return true;
    }
    return false;
  }
}

/** A member's own order: priority class; within a class, by `memberOrderKey`, then age. */
export function sortMemberQueue(jobs: readonly PendingJob[], largeGpus: number, aging: Aging): PendingJob[] {
  const group = new Uint8Array(jobs.length);
  const key = new Float64Array(jobs.length);
  const idx = new Uint32Array(jobs.length);
  for (let i = 0; i < jobs.length; i++) {
    idx[i] = i;
    group[i] = 3 - PRIORITY_RANK[jobs[i].priorityClass];
    key[i] = memberOrderKey(jobs[i], largeGpus, aging);
  }
  idx.sort((a, b) => group[a] - group[b] || key[a] - key[b] || byClassThenAge(jobs[a], jobs[b]));
  return Array.from(idx, (i) => jobs[i]);
}

/**
 * A job's place within its member and class (lower first): its promotion time (`agingKey`); a
 * gang of a whole NVLink domain or more is promoted `gangAgingSeconds` after its submission at
 * the latest, whatever its work (first in line once it has waited that long, it is the one
 * blocked job that gets the reservation, so none starves behind a stream of small jobs).
 * Preemption for service follows the same order: a running job yields only to work ahead of it.
 */
export function memberOrderKey(job: JobSpec, largeGpus: number, aging: Aging): number {
  const key = agingKey(job, aging);
  return gangGpus(job.gang) >= largeGpus ? Math.min(key, job.submittedAt + aging.gangAgingSeconds) : key;
}

export type Aging = Pick<SchedulerConfig, 'agingGpus' | 'slowdownBound' | 'maxAgingSeconds' | 'gangAgingSeconds'>;

/**
 * The job's promotion time: its submission plus the least of its expected remaining work
 * (walltime less attained service, × GPUs) ÷ `agingGpus`, `slowdownBound` × its remaining
 * walltime, and `maxAgingSeconds`. Shortest expected work first among fresh jobs; a job whose
 * promotion time has passed is ahead of every job submitted after it. A job that `keepsPlace`
 * (stopped for another member, a higher class or a failed node) is promoted at its submission:
 * it lost its GPUs through no fault of its order, so it does not wait its aging again. It never
 * changes while the job waits, so a caller can keep its queue sorted by it (the simulator does).
 */
export function agingKey(job: JobSpec, aging: Aging): number {
  if (job.keepsPlace) return job.submittedAt;
  const remaining = remainingWalltime(job);
  const delay = Math.min(
    (remaining * gangGpus(job.gang)) / aging.agingGpus,
    aging.slowdownBound * remaining,
    aging.maxAgingSeconds,
  );
  return job.submittedAt + delay;
}

function byClassThenAge(a: PendingJob, b: PendingJob): number {
  return (
    PRIORITY_RANK[b.priorityClass] - PRIORITY_RANK[a.priorityClass] ||
    a.submittedAt - b.submittedAt ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

/** Members with no entitlement still get a turn, after everyone with one. */
function weight(m: Member): number {
  return m.entitlementGpus > 0 ? m.entitlementGpus : 1e-6;
}

function sumGpus(allocation: readonly { gpus: number }[]): number {
  let g = 0;
  for (const a of allocation) g += a.gpus;
  return g;
}

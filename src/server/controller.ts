// The scheduling loop: the server's side of "two loops, one scheduler". It keeps the active jobs
// in memory (the store is the truth; this is its mirror), runs the scheduler's cycle on every
// submission, every job end and on a timer, writes each decision to the store before telling the
// executor, and turns the executor's reports into job states. Every change goes through one
// queue, so cycles, cancels and executor events never interleave.
import { join, isAbsolute } from 'node:path';
import type { Logger } from 'pino';
import type { JobState, Placement } from '../api/contract.js';
import { DEV_NULL, FINAL_STATES, logPathProblem } from '../api/contract.js';
import type { AuditSink } from '../core/audit.js';
import type { Consortium } from '../core/consortium.js';
import type { Allocation, GangRequest, PendingJob, RunningJob } from '../core/job.js';
import { withNodeStates, type NodeState, type Site } from '../core/site.js';
import { decayUsage } from '../core/usage.js';
import { applyDecisions } from '../scheduler/apply.js';
import { cycle } from '../scheduler/cycle.js';
import { chargedGpus } from '../scheduler/reservations.js';
import type { AdvanceReservation } from '../core/reservation.js';
import { DEFAULT_CONFIG, type Decision, type Explanation, type SchedulerConfig } from '../scheduler/types.js';
import type { ExecJob, Executor, ExecutorEvent, ExecNode } from '../executors/executor.js';
import type { JobUpdate, NodeStateRecord, StoredJob, Store } from '../store/store.js';
import { SecretBox, SecretKeyError, SecretOpenError } from './secrets.js';

const ACTIVE: readonly JobState[] = ['pending', 'starting', 'running', 'preempting'];
const ON_GPUS: readonly JobState[] = ['starting', 'running', 'preempting'];
const EXPLAIN_SECONDS = 2;
const HEALTH_SECONDS = 2;
const SEVERITY: Readonly<Record<NodeState, number>> = { up: 0, draining: 1, maintenance: 2, down: 3 };
const EXPLAIN_ALWAYS_BELOW = 500;
/** Reasons the server (not the scheduler) gives a waiting job. */
export type ServerReason = 'Dependency' | 'JobArrayTaskLimit' | 'ExecutorUnavailable';

/** After the engine could not take a job (slurmctld restarting), it is not offered it again sooner than this. */
const ENGINE_RETRY_SECONDS = 2;

export interface ControllerOptions {
  readonly store: Store;
  readonly executor: Executor;
  readonly site: Site;
  readonly consortium: Consortium;
  readonly dataDir: string;
  readonly now: () => number;
  readonly log: Logger;
  /** Seconds between cycles when nothing happens (reservations and grace periods move on time). */
  readonly cycleSeconds: number;
  readonly config?: SchedulerConfig;
  /** Least time between two cycles (default 200 ms). */
  readonly minCycleGapMs?: number;
  /** Where placements, preemptions, requeues, ends and node changes are recorded, after the store has them. */
  readonly audit?: AuditSink;
  /** Advance reservations on or to come, read every cycle (routes/reservations.ts books them). */
  readonly reservations?: () => Promise<readonly AdvanceReservation[]>;
  /**
   * Asked before a job that declares datasets starts on the nodes chosen: their zone and the other
   * members on their NVLink domains. A refusal (its reason) fails the job instead of starting it:
   * an agreement revoked since the submission stops the job here.
   */
  readonly admitPlacement?: (job: StoredJob, zone: string, cotenants: string[]) => Promise<string | null>;
  /**
   * The key that seals jobs' secret environment (see secrets.ts): an operator's file (32 bytes,
   * base64, mode 0600), or by default `<dataDir>/secrets.key`, made on first use.
   */
  readonly secretsKeyFile?: string;
}

export interface CycleStats {
  cycles: number;
  lastCycleSeconds: number;
  lastDecisions: number;
}

export class Controller {
  private readonly active = new Map<string, StoredJob>();
  private explanations = new Map<
    string,
    Explanation | { job: string; reason: ServerReason; position: null; estimatedStart: null }
  >();
  /** Jobs told to stop for another: who took their GPUs, when their grace ends, and why (Reclaim, Service, NodeFailure, …). */
  private readonly preempting = new Map<string, { since: number; graceEndsAt: number; by: string; reason?: string }>();
  private readonly cancelRequested = new Set<string>();
  /** Jobs the engine could not take for now (transient), and when to offer them again. */
  private readonly engineRetryAt = new Map<string, number>();
  /** Final states of jobs others depend on (afterok), read from the store once. */
  private readonly endedStates = new Map<string, JobState | null>();
  /** Executor reports not yet written (see `report`). */
  private readonly inbox: ExecutorEvent[] = [];
  private usage: Record<string, number> = {};
  private usageAt: number;
  /** The advance reservations the last cycle read: held for others, charged to their members. */
  private booked: readonly AdvanceReservation[] = [];
  private nodeStates: Record<string, NodeState> = {};
  /** What the execution engine reports (see refreshNodeHealth). */
  private engineStates: Record<string, NodeState> = {};
  private healthAt = -Infinity;
  private site: Site;
  private readonly nodeIndex: Map<string, number>;
  private readonly execNodes: Map<string, ExecNode>;
  private queue: Promise<unknown> = Promise.resolve();
  private kicked = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastCycleEndMs = -Infinity;
  private explainedAt = -Infinity;
  readonly stats: CycleStats = { cycles: 0, lastCycleSeconds: 0, lastDecisions: 0 };
  /** Seals secretEnv at submission, opens it only to start the job. */
  readonly secrets: SecretBox;

  constructor(private readonly o: ControllerOptions) {
    this.secrets = o.secretsKeyFile
      ? new SecretBox(o.secretsKeyFile, false)
      : new SecretBox(join(o.dataDir, 'secrets.key'), true);
    this.site = o.site;
    this.nodeIndex = new Map(o.site.nodes.map((n, i) => [n.name, i]));
    this.execNodes = new Map(o.executor.nodes().map((n) => [n.name, n]));
    this.usageAt = o.now();
    o.executor.onEvent((e) => this.report(e));
  }

  /** Loads the active jobs and usage, finds the executor's jobs again, and starts the loop. */
  async start(): Promise<void> {
    const saved = await this.o.store.usage();
    if (saved) {
      this.usage = { ...saved.gpuHours };
      this.usageAt = saved.at;
    }
    this.applyNodeStates(await this.o.store.nodeStates());
    for (const j of await this.o.store.activeJobs()) this.active.set(j.id, j);
    await this.serial(() => this.recover());
    this.timer = setInterval(() => this.kick(), this.o.cycleSeconds * 1000);
    this.timer.unref();
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.queue;
    await this.o.store.saveUsage(this.o.now(), this.decayedUsage(this.o.now()));
    await this.o.executor.close();
  }

  /** Newly stored jobs: they join the queue, and a cycle follows soon. */
  submitted(jobs: readonly StoredJob[]): void {
    for (const j of jobs) this.active.set(j.id, j);
    this.kick();
  }

  activeJob(id: string): StoredJob | undefined {
    return this.active.get(id);
  }

  explanation(id: string) {
    return this.explanations.get(id);
  }

  /** GPUs held per member right now. */
  runningGpus(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const j of this.active.values()) if (ON_GPUS.includes(j.state)) out[j.member] = (out[j.member] ?? 0) + j.gpus;
    return out;
  }

  /** Jobs holding GPUs (starting, running, or stopping). */
  onGpus(): StoredJob[] {
    return [...this.active.values()].filter((j) => ON_GPUS.includes(j.state));
  }

  pendingCount(): number {
    let n = 0;
    for (const j of this.active.values()) if (j.state === 'pending') n++;
    return n;
  }

  currentSite(): Site {
    return this.site;
  }

  /** Cancels a job: at once if it waits; a running one is signalled and ends as cancelled. */
  cancel(id: string, actor: string): Promise<StoredJob | undefined> {
    return this.serial(async () => {
      const job = this.active.get(id);
      if (!job) return undefined;
      const now = this.o.now();
      if (job.state === 'pending') {
        await this.update([
          {
            id,
            from: ['pending'],
            set: { state: 'cancelled', endedAt: now, reason: 'Cancelled' },
            event: this.ev('cancelled', actor, now, 'Cancelled'),
          },
        ]);
        this.kick();
        return this.active.get(id) ?? (await this.o.store.job(id));
      }
      this.cancelRequested.add(id);
      await this.update([
        { id, from: ON_GPUS, set: { reason: 'CancelRequested' }, event: this.ev('cancel-requested', actor, now, null) },
      ]);
      await this.o.executor.stop(id, job.request.gracePeriodSeconds);
      return this.active.get(id);
    });
  }

  /**
   * A job on its GPUs reported a checkpoint: from now on a preemption destroys only the work
   * after it (the scheduler's `lastCheckpoint`). Undefined when the job is not on its GPUs.
   */
  checkpoint(id: string, actor: string): Promise<StoredJob | undefined> {
    return this.serial(async () => {
      const job = this.active.get(id);
      if (!job || !ON_GPUS.includes(job.state)) return undefined;
      const now = this.o.now();
      await this.update([{ id, from: ON_GPUS, set: { lastCheckpointAt: now }, event: this.ev('checkpoint', actor, now, null) }]);
      return this.active.get(id);
    });
  }

  /** Drain, resume, down or maintenance for a node: the next cycle plans with it. */
  setNodeState(record: NodeStateRecord): Promise<void> {
    return this.serial(async () => {
      await this.o.store.setNodeState(record);
      this.applyNodeStates([record]);
      await this.o.audit?.append({
        kind: 'node.state',
        actor: record.by,
        member: null,
        subject: record.node,
        data: { state: record.state, reason: record.reason },
      });
      this.kick();
    });
  }

  /**
   * Asks for a cycle soon; many asks in one moment make one cycle, and cycles are at least
   * `minCycleGapMs` apart (Slurm's sched_min_interval): a burst of submissions is scheduled
   * in batches instead of starving the API of CPU.
   */
  kick(): void {
    if (this.kicked || this.closed) return;
    this.kicked = true;
    const wait = Math.max(0, this.lastCycleEndMs + (this.o.minCycleGapMs ?? 200) - performance.now());
    setTimeout(() => {
      this.kicked = false;
      void this.serial(() => this.runCycle());
    }, wait).unref();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch((err) => this.o.log.error({ err }, 'scheduling loop step failed'));
    return next;
  }

  private applyNodeStates(records: readonly NodeStateRecord[]): void {
    for (const r of records) if (this.nodeIndex.has(r.node)) this.nodeStates[r.node] = r.state;
    this.mergeNodeStates();
  }

  /** A node is as unavailable as the worse of what the operator set and what the execution engine reports. */
  private mergeNodeStates(): void {
    const merged: Record<string, NodeState> = { ...this.nodeStates };
    for (const [node, state] of Object.entries(this.engineStates))
      if (SEVERITY[state] > SEVERITY[merged[node] ?? 'up']) merged[node] = state;
    this.site = withNodeStates(this.o.site, merged);
  }

  /** Slurm's drained, down and not-responding nodes, fetched at most every HEALTH_SECONDS. */
  private async refreshNodeHealth(now: number): Promise<void> {
    if (!this.o.executor.nodeHealth || now - this.healthAt < HEALTH_SECONDS) return;
    this.healthAt = now;
    try {
      const states: Record<string, NodeState> = {};
      for (const h of await this.o.executor.nodeHealth())
        if (this.nodeIndex.has(h.node) && h.state !== 'up') states[h.node] = h.state;
      this.engineStates = states;
      this.mergeNodeStates();
    } catch (err) {
      // The engine did not answer: keep planning with what it said last.
      this.o.log.warn({ err }, 'node health from the executor failed');
    }
  }

  private decayedUsage(now: number): Record<string, number> {
    const half = this.o.consortium.fairShare.halfLifeHours;
    // A reservation that is on is charged whole to its member, in place of the jobs inside it.
    const jobs = this.onGpus().map((j) => ({ member: j.member, gpus: j.gpus, reservation: j.request.reservation }));
    // Jobs waiting for a reservation keep it from being released for want of jobs.
    const waiting =
      this.booked.length === 0 ? [] : [...this.active.values()].filter((j) => j.state === 'pending').map((j) => j.request);
    const held = chargedGpus(jobs, this.booked, now, waiting);
    const out: Record<string, number> = {};
    for (const m of this.o.consortium.members)
      out[m.id] = decayUsage(this.usage[m.id] ?? 0, Math.max(0, now - this.usageAt), half, held[m.id] ?? 0);
    return out;
  }

  // ---- the cycle -------------------------------------------------------------------------

  private async runCycle(): Promise<void> {
    if (this.closed) return;
    const started = performance.now();
    const now = this.o.now();
    await this.refreshNodeHealth(now);
    this.usage = this.decayedUsage(now);
    this.usageAt = now;
    this.booked = (await this.o.reservations?.()) ?? [];
    // 1. Jobs the scheduler must not see yet: unmet dependencies, array tasks over their throttle.
    const held = await this.holdBack(now);
    // 2. The cycle, on the mirror of the store.
    const pending: PendingJob[] = [];
    const running: RunningJob[] = [];
    for (const j of this.active.values()) {
      if (j.state === 'pending' && !held.has(j.id)) pending.push(toPending(j));
      else if (ON_GPUS.includes(j.state) && j.placement) running.push(this.toRunning(j, now));
    }
    // Explaining every waiting job (reason, position, estimated start) costs more than deciding;
    // under a burst it is done every EXPLAIN_SECONDS, as Slurm refreshes reasons on its backfill
    // cycle, and `fabrik explain` shows the latest.
    const explain = pending.length <= EXPLAIN_ALWAYS_BELOW || now - this.explainedAt >= EXPLAIN_SECONDS;
    const result = cycle(
      { site: this.site, consortium: this.o.consortium, running, pending, usageGpuHours: this.usage, reservations: this.booked },
      now,
      {
        queueDepth: DEFAULT_CONFIG.queueDepth,
        ...(this.o.config ?? DEFAULT_CONFIG),
        explain,
      },
    );
    // 3. Decisions: stored first, then carried out.
    await this.apply(result.decisions, now, { pending, running });
    if (explain) {
      this.explainedAt = now;
      const explanations: typeof this.explanations = new Map();
      for (const e of result.pending) explanations.set(e.job, e);
      for (const [id, reason] of held) explanations.set(id, { job: id, reason, position: null, estimatedStart: null });
      this.explanations = explanations;
    }
    this.stats.cycles++;
    this.stats.lastDecisions = result.decisions.length;
    this.lastCycleEndMs = performance.now();
    this.stats.lastCycleSeconds = (this.lastCycleEndMs - started) / 1000;
  }

  /** Dependencies (afterok) and array throttles; a dependency that failed cancels the job, as Slurm's kill_invalid_depend. */
  private async holdBack(now: number): Promise<Map<string, ServerReason>> {
    const held = new Map<string, ServerReason>();
    const arrayRunning = new Map<string, number>();
    for (const j of this.active.values())
      if (j.arrayJobId && ON_GPUS.includes(j.state)) arrayRunning.set(j.arrayJobId, (arrayRunning.get(j.arrayJobId) ?? 0) + 1);
    const doomed: JobUpdate[] = [];
    for (const j of [...this.active.values()].sort((a, b) => Number(a.id) - Number(b.id))) {
      if (j.state !== 'pending') continue;
      const retryAt = this.engineRetryAt.get(j.id);
      if (retryAt !== undefined) {
        if (retryAt > now) {
          held.set(j.id, 'ExecutorUnavailable');
          continue;
        }
        this.engineRetryAt.delete(j.id);
      }
      const deps = j.request.afterOk;
      if (deps.length > 0) {
        let waiting = false;
        let failed: string | null = null;
        for (const d of deps) {
          const a = this.active.get(d);
          if (a) waiting = true;
          else {
            // A job out of the mirror has ended for good: its state is read once.
            let ended = this.endedStates.get(d);
            if (ended === undefined) {
              ended = (await this.o.store.job(d))?.state ?? null;
              this.endedStates.set(d, ended);
            }
            if (ended !== 'succeeded') failed = d;
          }
        }
        if (failed) {
          doomed.push({
            id: j.id,
            from: ['pending'],
            set: { state: 'cancelled', endedAt: now, reason: 'DependencyNeverSatisfied' },
            event: this.ev('cancelled', 'scheduler', now, 'DependencyNeverSatisfied', { dependency: failed }),
          });
          continue;
        }
        if (waiting) {
          held.set(j.id, 'Dependency');
          continue;
        }
      }
      if (j.arrayJobId && j.arrayThrottle !== null) {
        const n = arrayRunning.get(j.arrayJobId) ?? 0;
        if (n >= j.arrayThrottle) held.set(j.id, 'JobArrayTaskLimit');
        else arrayRunning.set(j.arrayJobId, n + 1); // counts toward the throttle if it starts now
      }
    }
    if (doomed.length > 0) await this.update(doomed);
    return held;
  }

  /**
   * The decisions as job records (the scheduling layer's applier defines every transition, as in
   * the simulators), stored first; then the executor is told.
   */
  private async apply(
    decisions: readonly Decision[],
    now: number,
    given: { pending: readonly PendingJob[]; running: readonly RunningJob[] },
  ): Promise<void> {
    const applied = applyDecisions(given, decisions, now);
    const byJob = new Map(decisions.map((d) => [d.job, d]));
    const updates: JobUpdate[] = [];
    const toStart: StoredJob[] = [];
    const toStop: { id: string; grace: number }[] = [];
    const devices = this.devicesInUse();
    for (const r of applied.started) {
      const job = this.active.get(r.id);
      const d = byJob.get(r.id);
      if (!job || d?.kind !== 'start') continue;
      const placement = this.placementFor(r.allocation, devices);
      updates.push({
        id: job.id,
        from: ['pending'],
        set: { state: 'starting', placement, startedAt: r.startedAt, holdSince: null, lastCheckpointAt: null, reason: null },
        event: this.ev('started', 'scheduler', now, null, { placement, borrowing: d.borrowing }),
      });
      toStart.push(job);
    }
    for (const r of applied.preempting) {
      const job = this.active.get(r.id);
      const d = byJob.get(r.id);
      if (!job || d?.kind !== 'preempt' || !r.preempting) continue;
      this.preempting.set(job.id, r.preempting);
      updates.push({
        id: job.id,
        from: ['starting', 'running'],
        set: { state: 'preempting', reason: `Preempted (${d.reason}) for job ${d.for}` },
        event: this.ev('preempting', 'scheduler', now, d.reason, {
          for: d.for,
          graceSeconds: d.graceSeconds,
          lostGpuHours: d.lostGpuHours,
        }),
      });
      toStop.push({ id: job.id, grace: d.graceSeconds });
    }
    // A gang on a failed node: what is left of it stops at once, and it queues again when the
    // executor reports it gone (`ended`), as the applier's record says: whole, without a hold.
    for (const p of applied.requeued) {
      const job = this.active.get(p.id);
      const d = byJob.get(p.id);
      if (!job || d?.kind !== 'requeue') continue;
      this.preempting.set(job.id, { since: now, graceEndsAt: now, by: 'NodeFailure', reason: 'NodeFailure' });
      updates.push({
        id: job.id,
        from: ['starting', 'running'],
        set: { state: 'preempting', reason: 'NodeFailure' },
        event: this.ev('node-failure', 'scheduler', now, 'NodeFailure', {
          nodes: d.nodes.map((n) => this.o.site.nodes[n].name),
        }),
      });
      toStop.push({ id: job.id, grace: 0 });
    }
    // A job keeps its hold (first claim on capacity) only while each cycle renews its reservation.
    for (const p of applied.holds) {
      if (!this.active.has(p.id)) continue;
      const start = applied.reservedStart.get(p.id);
      updates.push({
        id: p.id,
        from: ['pending'],
        set: { holdSince: p.holdSince ?? null },
        event: start === undefined ? null : this.ev('reserved', 'scheduler', now, null, { start }),
      });
    }
    const skipped = new Set(await this.update(updates));
    const handles: JobUpdate[] = [];
    for (const job of toStart) {
      if (skipped.has(job.id)) continue;
      const current = this.active.get(job.id)!;
      const refused = await this.placementRefusal(current);
      if (refused !== null) {
        handles.push({
          id: job.id,
          from: ON_GPUS,
          set: { state: 'failed', endedAt: now, reason: `AdmissionDenied: ${refused}` },
          event: this.ev('failed', 'admission', now, 'AdmissionDenied', { refusal: refused }),
        });
        continue;
      }
      try {
        const handle = await this.o.executor.start(this.execJob(current, { secrets: true }));
        handles.push({ id: job.id, from: ON_GPUS, set: { handle }, event: null });
      } catch (err) {
        if (err instanceof SecretKeyError || err instanceof SecretOpenError) {
          // Nothing started: the job cannot have its secrets here, and waiting will not bring them.
          this.o.log.error({ err, job: job.id }, "the job's secret environment cannot be opened");
          handles.push({
            id: job.id,
            from: ON_GPUS,
            set: { state: 'failed', endedAt: now, reason: `SecretsUnavailable: ${err.message}` },
            event: this.ev('failed', 'executor', now, 'SecretsUnavailable'),
          });
          continue;
        }
        if ((err as { transient?: unknown }).transient === true) {
          // The engine is down or restarting (slurmctld): the job waits for it, it did not fail,
          // and is not offered again at once (each refused Slurm submit leaves a cancelled job).
          this.engineRetryAt.set(job.id, now + ENGINE_RETRY_SECONDS);
          this.o.log.warn({ err, job: job.id }, 'executor unavailable; the job goes back to the queue');
          handles.push(this.ended(current, now, null, null, 'unstarted', `ExecutorUnavailable: ${(err as Error).message}`));
          continue;
        }
        this.o.log.error({ err, job: job.id }, 'executor could not start the job');
        handles.push({
          id: job.id,
          from: ON_GPUS,
          set: { state: 'failed', endedAt: now, reason: `ExecutorError: ${(err as Error).message}` },
          event: this.ev('failed', 'executor', now, 'ExecutorError'),
        });
      }
    }
    await this.update(handles);
    for (const s of toStop) if (!skipped.has(s.id)) await this.o.executor.stop(s.id, s.grace);
  }

  // ---- executor reports --------------------------------------------------------------------

  /**
   * Reports are written in batches: every report that arrived while the loop was busy goes
   * into one transaction (one fsync), not one each.
   */
  private report(e: ExecutorEvent): void {
    this.inbox.push(e);
    if (this.inbox.length > 1) return;
    void this.serial(async () => {
      const reports = this.inbox.splice(0);
      const updates: JobUpdate[] = [];
      for (const r of reports) {
        const job = this.active.get(r.job);
        if (!job) continue;
        if (r.kind === 'running')
          updates.push({
            id: job.id,
            from: ['starting'],
            set: { state: 'running' },
            event: this.ev('running', 'executor', r.at, null),
          });
        else if (r.kind === 'lost') updates.push(this.ended(job, r.at, null, null, 'lost', r.reason));
        else updates.push(this.ended(job, r.at, r.exitCode, r.signal, r.reason, null));
      }
      await this.update(updates);
      if (reports.some((r) => r.kind !== 'running')) this.kick();
    });
  }

  /** A job's processes are gone: requeue it (preempted, failed node, lost), or record how it ended. */
  private ended(
    job: StoredJob,
    at: number,
    exitCode: number | null,
    signal: string | null,
    /** `unstarted`: it never ran (the engine refused it for now, or never got it): queued again. */
    how: 'completed' | 'stopped' | 'timeout' | 'lost' | 'unstarted',
    lostReason: string | null,
  ): JobUpdate {
    const cancelled = this.cancelRequested.delete(job.id) || job.reason === 'CancelRequested';
    const preempt = this.preempting.get(job.id);
    this.preempting.delete(job.id);
    const requeue = !cancelled && (job.state === 'preempting' || how === 'unstarted' || (how === 'lost' && job.request.requeue));
    if (requeue) {
      const by = preempt?.by ?? null;
      // As the simulator's `requeued`: only a job that yielded to shorter work of its class goes
      // back by its remaining work; one the engine never ran keeps what it had.
      const keepsPlace =
        how === 'unstarted' ? job.keepsPlace : how === 'lost' || (preempt?.reason ?? preemptionReason(job.reason)) !== 'Service';
      return {
        id: job.id,
        from: ON_GPUS,
        set: {
          state: 'pending',
          placement: null,
          handle: null,
          startedAt: null,
          holdSince: null,
          lastCheckpointAt: null,
          keepsPlace,
          reason: null,
          requeues: how === 'unstarted' ? job.requeues : job.requeues + 1,
          preemptedBy: by && by !== 'NodeFailure' ? [...job.preemptedBy, by] : job.preemptedBy,
        },
        event: this.ev(
          'requeued',
          'executor',
          at,
          how === 'lost' ? `Lost: ${lostReason}` : how === 'unstarted' ? lostReason : (job.reason ?? null),
        ),
      };
    }
    let state: JobState;
    let reason: string | null;
    if (cancelled) [state, reason] = ['cancelled', 'Cancelled'];
    else if (how === 'lost') [state, reason] = ['lost', lostReason];
    else if (how === 'timeout') [state, reason] = ['failed', 'TimeLimit'];
    else if (exitCode === 0) [state, reason] = ['succeeded', null];
    else [state, reason] = ['failed', exitCode === null ? `Signal ${signal ?? 'unknown'}` : `NonZeroExitCode ${exitCode}`];
    return {
      id: job.id,
      from: ON_GPUS,
      set: { state, reason, endedAt: at, exitCode },
      event: this.ev(state, 'executor', at, reason, { exitCode, signal }),
    };
  }

  /** After a restart: the executor finds its jobs again; what it cannot find is lost (and requeued if allowed). */
  private async recover(): Promise<void> {
    const onGpus = [...this.active.values()].filter((j) => ON_GPUS.includes(j.state));
    // Jobs without a handle too: the server stopped between the placement and the executor's
    // answer, and an engine that tags its jobs (Slurm) may find one that was accepted.
    const placed = onGpus.filter((j) => j.placement !== null);
    const result = await this.o.executor.recover(placed.map((j) => ({ job: this.execJob(j), handle: j.handle ?? {} })));
    const now = this.o.now();
    const updates: JobUpdate[] = [];
    for (const j of onGpus)
      if (j.placement === null) updates.push(this.ended(j, now, null, null, 'lost', 'it was on GPUs without a placement'));
    for (const e of result.exited) {
      const j = this.active.get(e.job);
      if (j) updates.push(this.ended(j, e.at, e.exitCode, null, 'completed', null));
    }
    for (const id of result.lost) {
      const j = this.active.get(id);
      // Without a handle and without a trace in the engine, the job never started: it is queued again.
      if (j && j.handle === null)
        updates.push(
          this.ended(j, now, null, null, 'unstarted', 'NeverStarted: the server stopped before the executor answered'),
        );
      else if (j) updates.push(this.ended(j, now, null, null, 'lost', 'its processes vanished while the server was down'));
    }
    await this.update(updates);
    // Jobs told to stop before the restart are told again: their grace period runs anew.
    for (const id of result.found) {
      const j = this.active.get(id);
      if (j && (j.state === 'preempting' || j.reason === 'CancelRequested'))
        await this.o.executor.stop(id, j.request.gracePeriodSeconds);
    }
  }

  // ---- helpers -----------------------------------------------------------------------------

  /** The admission policies' refusal for the job where it was placed, or null (also for jobs without datasets). */
  private async placementRefusal(job: StoredJob): Promise<string | null> {
    if (!this.o.admitPlacement || (job.request.datasets ?? []).length === 0 || !job.placement) return null;
    const domainOf = (node: string) => this.site.nodes[this.nodeIndex.get(node)!]?.domain;
    const domains = new Set(job.placement.map((p) => domainOf(p.node)));
    const zone = this.site.domains[[...domains][0]!]?.zone ?? '';
    const cotenants = new Set<string>();
    for (const other of this.active.values())
      if (
        other.member !== job.member &&
        ON_GPUS.includes(other.state) &&
        other.placement?.some((p) => domains.has(domainOf(p.node)))
      )
        cotenants.add(other.member);
    return this.o.admitPlacement(job, zone, [...cotenants]);
  }

  /** Writes updates, then mirrors what took: a job in a final state leaves the mirror. */
  private async update(updates: readonly JobUpdate[]): Promise<string[]> {
    if (updates.length === 0) return [];
    const skipped = await this.o.store.updateJobs(updates);
    const skip = new Set(skipped);
    const now = this.o.now();
    const audited: { job: StoredJob; event: NonNullable<JobUpdate['event']> }[] = [];
    for (const u of updates) {
      if (skip.has(u.id)) continue;
      const j = this.active.get(u.id);
      if (!j) continue;
      if (u.event) audited.push({ job: j, event: u.event });
      const next: StoredJob = { ...j, ...u.set, updatedAt: u.event?.at ?? now };
      if (FINAL_STATES.includes(next.state) || !ACTIVE.includes(next.state)) this.active.delete(u.id);
      else this.active.set(u.id, next);
    }
    await this.audit(audited);
    return skipped;
  }

  /**
   * Job events into the audit log, after the store committed them (a kill -9 between the two
   * commits loses their audit entries, not the jobs'). A failure is logged, not thrown: the
   * mirror already follows the store, and the scheduling loop must go on.
   */
  private async audit(events: readonly { job: StoredJob; event: NonNullable<JobUpdate['event']> }[]): Promise<void> {
    const audit = this.o.audit;
    if (!audit || events.length === 0) return;
    try {
      await Promise.all(
        events.map(({ job, event }) => {
          // The job a preemption made room for is often another member's: a leaf is hashed and
          // cannot be redacted later, so its id never goes in (the member's own view hides it too).
          const { for: _for, ...data } = event.data ?? {};
          return audit.append({
            kind: `job.${event.kind}`,
            actor: event.actor,
            member: job.member,
            subject: job.id,
            data: { ...data, reason: event.reason?.replace(/ for job \d+/, '') ?? null },
          });
        }),
      );
    } catch (err) {
      this.o.log.error({ err }, 'job events could not be written to the audit log');
    }
  }

  private ev(kind: string, actor: string, at: number, reason: string | null, data: Record<string, unknown> | null = null) {
    return { kind, actor, at, reason, data };
  }

  private devicesInUse(): Map<string, Set<number>> {
    const used = new Map<string, Set<number>>();
    for (const j of this.active.values()) {
      if (!ON_GPUS.includes(j.state) || !j.placement) continue;
      for (const p of j.placement) {
        const s = used.get(p.node) ?? new Set<number>();
        for (const g of p.gpus) s.add(g);
        used.set(p.node, s);
      }
    }
    return used;
  }

  /** The scheduler says how many GPUs on which node; the lowest free device indices there are taken. */
  private placementFor(allocation: readonly Allocation[], used: Map<string, Set<number>>): Placement {
    return allocation.map((a) => {
      const name = this.o.site.nodes[a.node].name;
      const devices = this.execNodes.get(name)?.gpus ?? [];
      const taken = used.get(name) ?? new Set<number>();
      const gpus: number[] = [];
      for (const d of devices) {
        if (gpus.length === a.gpus) break;
        if (!taken.has(d)) gpus.push(d);
      }
      if (gpus.length < a.gpus)
        throw new Error(`node ${name}: the scheduler placed ${a.gpus} GPUs where ${gpus.length} are free`);
      for (const g of gpus) taken.add(g);
      used.set(name, taken);
      return { node: name, gpus };
    });
  }

  private toRunning(j: StoredJob, now: number): RunningJob {
    const allocation = (j.placement ?? []).map((p) => ({ node: this.nodeIndex.get(p.node) ?? 0, gpus: p.gpus.length }));
    const pre = this.preempting.get(j.id);
    const preempting =
      j.state === 'preempting'
        ? (pre ?? {
            since: now,
            graceEndsAt: now + j.request.gracePeriodSeconds,
            by: j.reason ?? 'unknown',
            reason: preemptionReason(j.reason),
          })
        : null;
    // The checkpoint the job reported (lastCheckpoint ignores one from before this run's start).
    return { ...toPending(j), startedAt: j.startedAt ?? now, allocation, lastCheckpointAt: j.lastCheckpointAt, preempting };
  }

  /** The control plane's data folder (the store, keys, jobs' folders): no job's working directory. */
  get dataDir(): string {
    return this.o.dataDir;
  }

  /** The job's own folder: its logs, its script, its ranks' records; the only place logs are served from. */
  jobDir(id: string): string {
    return join(this.o.dataDir, 'jobs', id);
  }

  /**
   * The job as the executor gets it. Logs are always in the job's own folder (see
   * logPathProblem): a pattern that would lead out of it once expanded (a job name `..`), or a
   * request stored before the rule (an absolute path), gets the default log instead. `secrets`:
   * the secret environment is opened and added to env, only to start the job.
   */
  execJob(j: StoredJob, o: { secrets?: boolean } = {}): ExecJob {
    const dir = this.jobDir(j.id);
    // A job name goes into a file name: no folder separators, no `.`/`..` of its own.
    const name = j.name.replace(/[/\0]/g, '_').replace(/^\.{1,2}$/, (d) => '_'.repeat(d.length));
    const expand = (pattern: string) =>
      pattern
        .replace(/%%/g, '\u0000')
        .replace(/%j/g, j.id)
        .replace(/%x/g, name)
        .replace(/%A/g, j.arrayJobId ?? j.id)
        .replace(/%a/g, String(j.arrayTaskId ?? 0))
        .replace(/\u0000/g, '%');
    const log = (pattern: string | undefined): string => {
      if (pattern === DEV_NULL) return DEV_NULL;
      const wanted = pattern === undefined || logPathProblem(pattern) !== null ? null : expand(pattern);
      return join(dir, wanted !== null && logPathProblem(wanted) === null ? wanted : expand(DEFAULT_LOG));
    };
    const output = log(j.request.output);
    const workdir = j.request.workdir;
    const secretEnv = o.secrets ? this.secrets.openAll(j, j.request.secretEnv ?? {}) : {};
    return {
      id: j.id,
      name: j.name,
      member: j.member,
      project: j.project,
      user: j.user,
      priorityClass: j.request.priorityClass,
      command: j.request.command ?? null,
      script: j.request.script ?? null,
      env: { ...j.request.env, ...secretEnv },
      workdir: workdir === undefined ? null : isAbsolute(workdir) ? workdir : join(dir, workdir),
      placement: j.placement ?? [],
      walltimeSeconds: j.request.walltimeSeconds,
      gracePeriodSeconds: j.request.gracePeriodSeconds,
      signal: j.request.signal,
      output,
      error: j.request.error ? log(j.request.error) : output,
    };
  }
}

/** sbatch's default log name, in the job's folder. */
const DEFAULT_LOG = 'fabrik-%j.out';

export function gangOf(j: StoredJob): GangRequest {
  const r = j.request;
  return r.nodes !== undefined && r.gpusPerNode !== undefined ? { nodes: r.nodes, gpusPerNode: r.gpusPerNode } : { gpus: j.gpus };
}

/** The job as the scheduler sees it while it waits. */
export function toPending(j: StoredJob): PendingJob {
  const r = j.request;
  return {
    id: j.id,
    member: j.member,
    project: j.project,
    priorityClass: r.priorityClass,
    gang: gangOf(j),
    topology: r.topology,
    isolation: { exclusive: r.exclusive, zone: r.zone },
    walltimeSeconds: r.walltimeSeconds,
    minRuntimeSeconds: r.minRuntimeSeconds,
    checkpointIntervalSeconds: r.checkpointIntervalSeconds,
    gracePeriodSeconds: r.gracePeriodSeconds,
    submittedAt: j.submittedAt,
    holdSince: j.holdSince,
    preemptedBy: j.preemptedBy,
    reservation: r.reservation ?? null,
    keepsPlace: j.keepsPlace,
  };
}

/**
 * Why a preempting job was told to stop, read back from its stored reason (`Preempted (Reclaim)
 * for job 7`, or `NodeFailure`): after a restart the in-memory record of it is gone.
 */
export function preemptionReason(reason: string | null): string | undefined {
  if (reason === 'NodeFailure') return reason;
  return reason?.match(/^Preempted \((\w+)\)/)?.[1];
}

// The simplest digital twin: a cluster driven by cycles at chosen times. It applies every
// decision the way the server will (start, preempt with grace, reserve, requeue), finishes jobs
// after their run time, and keeps decayed usage. Scenarios, property tests and the demo use it
// to watch several cycles play out.
import type { Consortium } from '../core/consortium.js';
import { gangGpusOf, requeued, type PendingJob, type RunningJob } from '../core/job.js';
import { withNodeStates, type NodeState, type Site } from '../core/site.js';
import { decayUsage } from '../core/usage.js';
import { applyDecisions } from '../scheduler/apply.js';
import { cycle } from '../scheduler/cycle.js';
import { DEFAULT_CONFIG, type CycleResult, type Decision, type SchedulerConfig } from '../scheduler/types.js';

export class SteppedCluster {
  site: Site;
  now = 0;
  pending: PendingJob[] = [];
  running: RunningJob[] = [];
  usageGpuHours: Record<string, number> = {};
  /** Actual run time per job (defaults to its walltime). */
  readonly runtime = new Map<string, number>();
  readonly finished: { job: string; at: number }[] = [];
  readonly history: { at: number; decisions: readonly Decision[] }[] = [];
  last: CycleResult = { decisions: [], pending: [] };

  constructor(
    site: Site,
    readonly consortium: Consortium,
    readonly config: SchedulerConfig = DEFAULT_CONFIG,
  ) {
    this.site = site;
  }

  submit(...jobs: PendingJob[]): this {
    this.pending.push(...jobs);
    return this;
  }

  /** Puts a job on GPUs directly, as if an earlier cycle had started it. */
  place(...jobs: RunningJob[]): this {
    this.running.push(...jobs);
    return this;
  }

  runFor(jobId: string, seconds: number): this {
    this.runtime.set(jobId, seconds);
    return this;
  }

  setNodes(states: Record<string, NodeState>): this {
    this.site = withNodeStates(this.site, states);
    return this;
  }

  /** Advances the clock (finishing jobs and ending grace periods), then runs one cycle. */
  step(to = this.now): CycleResult {
    this.advance(to);
    const result = cycle(
      {
        site: this.site,
        consortium: this.consortium,
        running: this.running,
        pending: this.pending,
        usageGpuHours: this.usageGpuHours,
      },
      this.now,
      this.config,
    );
    this.apply(result.decisions);
    this.history.push({ at: this.now, decisions: result.decisions });
    this.last = result;
    return result;
  }

  /** Steps every `every` seconds until `until` or until `done()` holds. */
  runUntil(until: number, every: number, done: () => boolean = () => false): void {
    while (this.now < until && !done()) this.step(this.now + every);
  }

  isRunning(id: string): boolean {
    return this.running.some((j) => j.id === id);
  }

  explanation(id: string) {
    return this.last.pending.find((e) => e.job === id);
  }

  private advance(to: number): void {
    if (to < this.now) throw new Error(`time goes forward only: ${to} < ${this.now}`);
    const half = this.consortium.fairShare.halfLifeHours;
    const usedNow: Record<string, number> = {};
    for (const j of this.running) usedNow[j.member] = (usedNow[j.member] ?? 0) + gangGpusOf(j);
    for (const m of this.consortium.members) {
      this.usageGpuHours[m.id] = decayUsage(this.usageGpuHours[m.id] ?? 0, to - this.now, half, usedNow[m.id] ?? 0);
    }
    this.now = to;
    const still: RunningJob[] = [];
    for (const j of this.running) {
      if (j.preempting && j.preempting.graceEndsAt <= to) {
        this.requeue(j);
      } else if (!j.preempting && j.startedAt + this.runsFor(j) <= to) {
        this.finished.push({ job: j.id, at: j.startedAt + this.runsFor(j) });
      } else {
        still.push(j);
      }
    }
    this.running = still;
  }

  /** The records come from the scheduling layer's applier, as in the server and the event simulator. */
  private apply(decisions: readonly Decision[]): void {
    const a = applyDecisions({ pending: this.pending, running: this.running }, decisions, this.now);
    const gone = new Set([...a.started, ...a.requeued].map((j) => j.id));
    const holds = new Map(a.holds.map((p) => [p.id, p]));
    this.pending = this.pending.filter((p) => !gone.has(p.id)).map((p) => holds.get(p.id) ?? p);
    const preempting = new Map(a.preempting.map((r) => [r.id, r]));
    this.running = this.running.filter((r) => !gone.has(r.id)).map((r) => preempting.get(r.id) ?? r);
    this.running.push(...a.started);
    this.pending.push(...a.requeued);
  }

  /** Its run time, but never past its walltime: the executor enforces the limit, as Slurm does. */
  private runsFor(j: RunningJob): number {
    return Math.min(this.runtime.get(j.id) ?? j.walltimeSeconds, j.walltimeSeconds);
  }

  private requeue(j: RunningJob): void {
    this.pending.push(requeued(j));
  }
}

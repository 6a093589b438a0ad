// The simplest digital twin: a cluster driven by cycles at chosen times. It applies every
// decision the way the server will (start, preempt with grace, reserve, requeue), finishes jobs
// after their run time, and keeps decayed usage. Scenarios, property tests and the demo use it
// to watch several cycles play out.
import type { Consortium } from '../core/consortium.js';
import { gangGpusOf, requeued, type PendingJob, type RunningJob } from '../core/job.js';
import { withNodeStates, type NodeState, type Site } from '../core/site.js';
import { decayUsage } from '../core/usage.js';
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

  private apply(decisions: readonly Decision[]): void {
    const reserved = new Set<string>();
    for (const d of decisions) {
      switch (d.kind) {
        case 'start': {
          const i = this.pending.findIndex((p) => p.id === d.job);
          const { holdSince: _h, ...spec } = this.pending[i];
          this.pending.splice(i, 1);
          this.running.push({ ...spec, startedAt: this.now, allocation: d.allocation, lastCheckpointAt: null, preempting: null });
          break;
        }
        case 'preempt': {
          const i = this.running.findIndex((r) => r.id === d.job);
          const r = this.running[i];
          this.running[i] = { ...r, preempting: { since: this.now, graceEndsAt: this.now + d.graceSeconds, by: d.for } };
          break;
        }
        case 'requeue': {
          const i = this.running.findIndex((r) => r.id === d.job);
          this.requeue(this.running[i]);
          this.running.splice(i, 1);
          break;
        }
        case 'reserve':
          reserved.add(d.job);
          break;
      }
    }
    // A job keeps its hold while it keeps a reservation; one that lost it goes back in line.
    this.pending = this.pending.map((p) =>
      reserved.has(p.id) ? { ...p, holdSince: p.holdSince ?? this.now } : p.holdSince != null ? { ...p, holdSince: null } : p,
    );
  }

  /** Its run time, but never past its walltime: the executor enforces the limit, as Slurm does. */
  private runsFor(j: RunningJob): number {
    return Math.min(this.runtime.get(j.id) ?? j.walltimeSeconds, j.walltimeSeconds);
  }

  private requeue(j: RunningJob): void {
    this.pending.push(requeued(j));
  }
}

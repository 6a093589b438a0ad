// The simulator's two preemption models on a scripted policy: with `checkpoint` a preempted job
// keeps the work up to its last checkpoint, with `resume` all of it, and either way its next run
// pays the restart overhead; what it kept is its attained service (JobSpec.attainedSeconds), and
// what is left to run is its run time less that. The policy preempts at a time the test chooses,
// so the arithmetic is the engine's alone.
import { describe, expect, it } from 'vitest';
import type { PendingJob } from '../../src/core/job.js';
import { simulate, type SimOptions } from '../../src/sim/engine.js';
import type { Policy } from '../../src/sim/policy.js';
import type { CycleOptions, Decision } from '../../src/scheduler/types.js';
import { consortium, job, site } from '../../src/testing/builders.js';

const s = site().racksPerSuperpod(1).traysPerRack(1).gpusPerTray(4).build(); // one 4-GPU node
const c = consortium().member('pharma', { entitlement: 4 }).build();

/** Starts every waiting job that fits on node 0; preempts job `victim` once, at the first cycle at or after `at`. */
function scripted(victim: string, at: number, seen: { attained: (number | undefined)[]; options: CycleOptions[] }): Policy {
  let done = false;
  return {
    type: 'policy/scripted',
    name: 'scripted',
    description: 'test',
    cycle(state, now, options) {
      seen.options.push(options ?? {});
      const decisions: Decision[] = [];
      let free = 4 - state.running.reduce((g, r) => g + r.allocation.reduce((x, a) => x + a.gpus, 0), 0);
      for (const p of state.pending) {
        seen.attained.push(p.attainedSeconds);
        const gpus = 'gpus' in p.gang ? p.gang.gpus : 0;
        if (gpus > free) continue;
        free -= gpus;
        decisions.push({ kind: 'start', job: p.id, allocation: [{ node: 0, gpus }], borrowing: false });
      }
      const r = state.running.find((x) => x.id === victim && !x.preempting);
      if (!done && r && now >= at) {
        done = true;
        decisions.push({ kind: 'preempt', job: victim, for: 'other', reason: 'Priority', graceSeconds: 60, lostGpuHours: 0 });
      }
      return { decisions, pending: [] };
    },
  };
}

function run(o: Partial<SimOptions>, checkpointEvery: number | null) {
  const seen = { attained: [] as (number | undefined)[], options: [] as CycleOptions[] };
  const b = job('a').member('pharma').gpus(4).walltime(20_000).submitted(0);
  const spec: PendingJob = (checkpointEvery === null ? b : b.checkpointEvery(checkpointEvery)).build();
  const result = simulate({
    site: s,
    consortium: c,
    jobs: [{ job: spec, runtimeSeconds: 10_000 }],
    policy: scripted('a', 4000, seen),
    cycleSeconds: 60,
    // Nothing waits while the job runs: a node report (no change) makes the cycle that preempts.
    nodeEvents: [{ at: 4000, node: s.nodes[0].name, state: 'up' }],
    ...o,
  });
  return { outcome: result.outcomes[0], seen };
}

describe('preemption modes of the simulator', () => {
  it('checkpoint (default): keeps the work up to the last checkpoint, loses the rest; no restart overhead', () => {
    // Preempted at 4000 (grace until 4060); checkpoints every 1500 s: 3000 s kept, 1060 s lost.
    const { outcome, seen } = run({}, 1500);
    expect(outcome.preemptions).toBe(1);
    expect(outcome.lostGpuSeconds).toBe(4 * 1060);
    expect(outcome.overheadGpuSeconds).toBe(0);
    // Requeued at 4060, it starts again at once and runs what is left: 10,000 − 3,000.
    expect(outcome.finishedAt).toBe(4060 + 7000);
    expect(seen.attained.filter((a) => a !== undefined)).toContain(3000);
    expect(seen.options[0]).toMatchObject({ preemption: 'checkpoint', restartOverheadSeconds: 0 });
  });

  it('checkpoint: a job that never checkpoints loses its whole run', () => {
    const { outcome } = run({}, null);
    expect(outcome.lostGpuSeconds).toBe(4 * 4060);
    expect(outcome.finishedAt).toBe(4060 + 10_000);
  });

  it('resume: keeps all its work, and pays the restart overhead (30 s by default) on its next run', () => {
    const { outcome, seen } = run({ preemption: 'resume' }, null);
    expect(outcome.lostGpuSeconds).toBe(0);
    expect(outcome.overheadGpuSeconds).toBe(4 * 30);
    // 4060 s of work done before the stop; 5940 s left after 30 s of restart.
    expect(outcome.finishedAt).toBe(4060 + 30 + 5940);
    expect(seen.attained.filter((a) => a !== undefined)).toContain(4060);
    expect(seen.options[0]).toMatchObject({ preemption: 'resume', restartOverheadSeconds: 30 });
  });

  it('resume with a stated overhead; a negative overhead is refused', () => {
    const { outcome } = run({ preemption: 'resume', restartOverheadSeconds: 120 }, null);
    expect(outcome.overheadGpuSeconds).toBe(4 * 120);
    expect(outcome.finishedAt).toBe(4060 + 120 + 5940);
    expect(() => run({ restartOverheadSeconds: -1 }, null)).toThrow(/restartOverheadSeconds/);
  });
});

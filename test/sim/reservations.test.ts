// Capability runs in the digital twin: the reservation CSV (booked with the server's function,
// line-numbered errors), which jobs run in a reservation, and a replay in which nobody else starts
// on the booked GPUs in the window while the capability run starts at its reservation's start.
import { describe, expect, it } from 'vitest';
import { InvalidDescriptionError } from '../../src/core/errors.js';
import type { AdvanceReservation } from '../../src/core/reservation.js';
import { simulate, type SimJob } from '../../src/sim/engine.js';
import type { Policy } from '../../src/sim/policy.js';
import { POLICIES } from '../../src/sim/policies/index.js';
import { assignToReservations, parseReservations } from '../../src/sim/reservations.js';
import { liveReservations } from '../../src/scheduler/reservations.js';
import { consortium, job, site } from '../../src/testing/builders.js';

const H = 3600;
// Two NVLink domains of 4 trays × 4 GPUs; pharma and telecom are entitled to 16 GPUs each.
const twoRacks = site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build();
const pair = consortium().member('pharma', { entitlement: 16 }).member('telecom', { entitlement: 16 }).build();

describe('the reservation CSV', () => {
  it('books each line in its order, whole nodes, none twice over overlapping windows', () => {
    const booked = parseReservations(
      'start_hours,duration_hours,member,gpus\n# a comment\n10,24,pharma,16   # a day\n20,2,telecom,16\n',
      'r.csv',
      twoRacks,
      pair,
    );
    expect(booked.map((r) => [r.id, r.member, r.start, r.end])).toEqual([
      ['r3', 'pharma', 10 * H, 34 * H],
      ['r4', 'telecom', 20 * H, 22 * H],
    ]);
    const nodes = booked.map((r) => new Set(r.allocation.map((a) => a.node)));
    expect([...nodes[0]].filter((n) => nodes[1].has(n))).toEqual([]);
  });

  it('names the file and the line of every problem', () => {
    const problem = (text: string) => {
      try {
        parseReservations(text, 'r.csv', twoRacks, pair);
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidDescriptionError);
        return (e as Error).message;
      }
      return null;
    };
    expect(problem('start,member\n')).toMatch(/line 1.*header/);
    expect(problem('start_hours,duration_hours,member,gpus\n1,2,pharma\n')).toMatch(/line 2.*4 fields/);
    expect(problem('start_hours,duration_hours,member,gpus\n-1,2,pharma,4\n')).toMatch(/line 2.*start_hours/);
    expect(problem('start_hours,duration_hours,member,gpus\n1,0,pharma,4\n')).toMatch(/line 2.*duration_hours/);
    expect(problem('start_hours,duration_hours,member,gpus\n1,2,bank,4\n')).toMatch(/line 2.*'bank' is not a member/);
    expect(problem('start_hours,duration_hours,member,gpus\n1,2,pharma,3\n')).toMatch(/line 2.*whole nodes/);
    // The second asks for the whole machine while the first holds half of it.
    expect(problem('start_hours,duration_hours,member,gpus\n1,5,pharma,16\n\n2,1,telecom,32\n')).toMatch(/line 4.*only 16 GPUs/);
  });
});

describe('which jobs run in a reservation', () => {
  const r: AdvanceReservation = { id: 'r2', member: 'pharma', start: 10 * H, end: 20 * H, allocation: [] };
  const withGpus = (gpus: number, o: { member?: string; walltime?: number; submitted?: number } = {}): SimJob => ({
    job: job(`j${gpus}-${o.member ?? 'pharma'}-${o.walltime ?? 0}-${o.submitted ?? 0}`)
      .member(o.member ?? 'pharma')
      .gpus(gpus)
      .walltime(o.walltime ?? 4 * H)
      .submitted(o.submitted ?? 0)
      .build(),
    runtimeSeconds: H,
  });
  const booked = { ...r, allocation: Array.from({ length: 8 }, (_, node) => ({ node, gpus: 4 })) };

  it("takes the member's jobs beyond its entitlement that fit the reservation and its window", () => {
    const jobs = [
      withGpus(32), // beyond pharma's 16, fits the 32 booked: in it
      withGpus(8), // within the entitlement: outside
      withGpus(32, { member: 'telecom' }), // another member's
      withGpus(64), // more than it holds
      withGpus(32, { walltime: 11 * H }), // longer than it lasts
      withGpus(32, { submitted: 17 * H }), // too late to end by 20 h
    ];
    expect(assignToReservations(jobs, [booked], pair).map((s) => s.job.reservation ?? null)).toEqual([
      'r2',
      null,
      null,
      null,
      null,
      null,
    ]);
  });

  it('takes no more than it can run: wide jobs one after another, within its GPU-time', () => {
    // Three 32-GPU jobs of 4 h in a 10 h window: two fit one after the other, the third runs outside.
    const jobs = [0, 1, 2].map((i) => ({ ...withGpus(32), job: { ...withGpus(32).job, id: `w${i}`, submittedAt: i } }));
    expect(assignToReservations(jobs, [booked], pair).map((s) => s.job.reservation ?? null)).toEqual(['r2', 'r2', null]);
  });
});

describe('a replay with a capability run', () => {
  it('starts the run at its reservation, keeps everyone else off its GPUs while it runs, backfills before it, releases it after', () => {
    const [booked] = parseReservations('start_hours,duration_hours,member,gpus\n6,4,pharma,32\n', 'r.csv', twoRacks, pair);
    const held = new Set(booked.allocation.map((a) => a.node));
    // A stream of telecom work all along, and pharma's capability run of the whole machine.
    const stream: SimJob[] = Array.from({ length: 60 }, (_, i) => ({
      job: job(`t${i}`)
        .member('telecom')
        .gpus(4)
        .walltime(2 * H)
        .submitted(i * 0.25 * H)
        .build(),
      runtimeSeconds: 1.5 * H,
    }));
    const run: SimJob = {
      job: job('capability')
        .member('pharma')
        .gpus(32)
        .walltime(3 * H)
        .submitted(0)
        .build(),
      runtimeSeconds: 3 * H,
    };
    const jobs = assignToReservations([run, ...stream], [booked], pair);
    expect(jobs[0].job.reservation).toBe(booked.id);

    const violations: string[] = [];
    let backfilled = 0;
    let reclaimedEarly = 0;
    const inner = POLICIES.fabrik;
    const policy: Policy = {
      ...inner,
      cycle(state, now, options) {
        const result = inner.cycle(state, now, options);
        const byId = new Map(state.pending.map((j) => [j.id, j]));
        for (const d of result.decisions) {
          if (d.kind !== 'start') continue;
          const j = byId.get(d.job)!;
          const end = now + j.walltimeSeconds;
          const onHeld = d.allocation.some((a) => held.has(a.node));
          if (j.reservation === booked.id) {
            if (!d.allocation.every((a) => held.has(a.node)) || now < booked.start || end > booked.end)
              violations.push(`${now}: ${j.id} outside its reservation`);
          } else if (onHeld && end > booked.start && now < booked.end) {
            // Only once the run is over and nothing waits for the reservation: it is released.
            if (liveReservations([booked], now, state.running, state.pending).length > 0)
              violations.push(`${now}: ${j.id} on the held GPUs`);
            else reclaimedEarly++;
          } else if (onHeld && now < booked.start) backfilled++;
        }
        return result;
      },
    };
    const out = simulate({ site: twoRacks, consortium: pair, jobs, policy, reservations: [booked], cycleSeconds: 60 });
    expect(violations).toEqual([]);
    expect(backfilled).toBeGreaterThan(0);
    // The run ends an hour before the window does: its GPUs go back to the stream then.
    expect(reclaimedEarly).toBeGreaterThan(0);
    const capability = out.outcomes.find((o) => o.id === 'capability')!;
    // It starts at the reservation's start, within a cycle or an idle cycle.
    expect(capability.finishedAt! - capability.runtimeSeconds).toBeGreaterThanOrEqual(booked.start);
    expect(capability.finishedAt! - capability.runtimeSeconds).toBeLessThan(booked.start + 10 * 60);
    expect(out.outcomes.filter((o) => o.finishedAt === null)).toEqual([]);
  });
});

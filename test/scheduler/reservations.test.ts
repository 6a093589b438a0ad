// Advance reservations (capability runs): booking, the rules of the consortium, and what the cycle
// does with a booked reservation: everyone else is kept off its GPUs in its window (backfill only
// before it), its own jobs run only there.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PendingJob, RunningJob } from '../../src/core/job.js';
import type { AdvanceReservation } from '../../src/core/reservation.js';
import { cycle } from '../../src/scheduler/cycle.js';
import {
  bookReservation,
  chargedGpus,
  checkReservationRules,
  liveReservations,
  RELEASE_IDLE_SECONDS,
  ReservationRefusedError,
  type BookingRequest,
  reservedGpuHours,
  runningForBooking,
} from '../../src/scheduler/reservations.js';
import type { ClusterState } from '../../src/scheduler/types.js';
import { consortium, job, onNodes, site } from '../../src/testing/builders.js';

// Two NVLink domains of 4 trays × 4 GPUs: nodes 0–3 are domain 0, nodes 4–7 domain 1.
const twoRacks = () => site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build();
const pair = () => consortium().member('pharma', { entitlement: 16 }).member('telecom', { entitlement: 16 }).build();
const H = 3600;

const state = (o: Partial<ClusterState>): ClusterState => ({
  site: twoRacks(),
  consortium: pair(),
  running: [],
  pending: [],
  usageGpuHours: {},
  reservations: [],
  ...o,
});
const book = (s: ClusterState, request: BookingRequest, now: number) =>
  bookReservation({ ...s, running: runningForBooking(s.running, now) }, request, now);
const inReservation = (j: PendingJob, r: string): PendingJob => ({ ...j, reservation: r });
const nodesOf = (r: AdvanceReservation) => r.allocation.map((a) => a.node);

describe('booking an advance reservation', () => {
  it('takes a whole NVLink domain first, and whole nodes', () => {
    const s = state({});
    const r = book(s, { id: 'cap', member: 'pharma', gpus: 20, start: 10 * H, end: 34 * H }, 0);
    expect(r.allocation.every((a) => a.gpus === 4)).toBe(true);
    expect(r.allocation.reduce((g, a) => g + a.gpus, 0)).toBe(20);
    // One whole domain (16 GPUs) and one node of the other.
    const domains = r.allocation.map((a) => s.site.nodes[a.node].domain);
    expect(domains.filter((d) => d === domains[0]).length === 4 || domains.filter((d) => d !== domains[0]).length === 4).toBe(
      true,
    );
  });

  it('prefers nodes whose running jobs end before the start, and avoids down nodes', () => {
    const base = twoRacks();
    const s = state({
      site: { ...base, nodes: base.nodes.map((n, i) => (i === 5 ? { ...n, state: 'down' as const } : n)) },
      running: [
        job('long')
          .gpus(4)
          .walltime(100 * H)
          .running(0, onNodes([4], 4)),
      ],
    });
    const r = book(s, { id: 'cap', member: 'pharma', gpus: 8, start: 10 * H, end: 20 * H }, 0);
    expect(nodesOf(r)).not.toContain(4);
    expect(nodesOf(r)).not.toContain(5);
  });

  it('never books a node twice over overlapping windows, and says who holds the rest', () => {
    const s = state({});
    const first = book(s, { id: 'a', member: 'pharma', gpus: 24, start: 10 * H, end: 20 * H }, 0);
    const second = book({ ...s, reservations: [first] }, { id: 'b', member: 'telecom', gpus: 8, start: 15 * H, end: 25 * H }, 0);
    expect(nodesOf(second).filter((n) => nodesOf(first).includes(n))).toEqual([]);
    const refused = () =>
      book({ ...s, reservations: [first, second] }, { id: 'c', member: 'telecom', gpus: 4, start: 16 * H, end: 17 * H }, 0);
    expect(refused).toThrow(ReservationRefusedError);
    expect(refused).toThrow(/a, b hold GPUs/);
    // After the first ends, its nodes are free again.
    const later = book(
      { ...s, reservations: [first, second] },
      { id: 'd', member: 'telecom', gpus: 16, start: 25 * H, end: 26 * H },
      0,
    );
    expect(later.allocation).toHaveLength(4);
  });

  it('books only in the zone of a member bound to one, and nobody else books there', () => {
    const s0 = site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).zone('sovereign', 'sp1-r02').build();
    const c = consortium()
      .member('defense', { entitlement: 16, zone: 'sovereign' })
      .member('pharma', { entitlement: 16 })
      .build();
    const s = state({ site: s0, consortium: c });
    const own = book(s, { id: 'x', member: 'defense', gpus: 16, start: H, end: 2 * H }, 0);
    expect(own.allocation.every((a) => s0.domains[s0.nodes[a.node].domain].zone === 'sovereign')).toBe(true);
    expect(() => book(s, { id: 'y', member: 'pharma', gpus: 20, start: H, end: 2 * H }, 0)).toThrow(/only 16 GPUs/);
  });

  it('refuses a window in the past, and GPUs that are not whole nodes', () => {
    const s = state({});
    expect(() => book(s, { id: 'p', member: 'pharma', gpus: 4, start: 0, end: H }, 2 * H)).toThrow(
      expect.objectContaining({ code: 'RESERVATION_IN_PAST', field: 'start' }),
    );
    expect(() => book(s, { id: 'p', member: 'pharma', gpus: 6, start: H, end: 2 * H }, 0)).toThrow(
      expect.objectContaining({ code: 'RESERVATION_SHAPE', field: 'gpus' }),
    );
  });
});

describe("the consortium's rules for members who book themselves", () => {
  const rules = { maxGpus: 16, maxHours: 24, minNoticeHours: 72, perMemberPerWeek: 1 };
  const ask = (o: Partial<{ gpus: number; start: number; end: number }>) => ({
    id: 'r',
    member: 'pharma',
    gpus: o.gpus ?? 16,
    start: o.start ?? 80 * H,
    end: o.end ?? (o.start ?? 80 * H) + 24 * H,
  });
  it('allows a booking within them', () => {
    expect(() => checkReservationRules(rules, ask({}), [], 0)).not.toThrow();
  });
  it('refuses too many GPUs, too long, too little notice, or twice a week, naming the field', () => {
    const refusal = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return (e as ReservationRefusedError).field;
      }
      return null;
    };
    expect(refusal(() => checkReservationRules(rules, ask({ gpus: 20 }), [], 0))).toBe('gpus');
    expect(refusal(() => checkReservationRules(rules, ask({ end: 80 * H + 25 * H }), [], 0))).toBe('duration');
    expect(refusal(() => checkReservationRules(rules, ask({ start: 10 * H }), [], 0))).toBe('start');
    const booked: AdvanceReservation = { id: 'earlier', member: 'pharma', start: 100 * H, end: 110 * H, allocation: [] };
    expect(refusal(() => checkReservationRules(rules, ask({}), [booked], 0))).toBe('start');
    // Another member's booking does not count against pharma's week.
    expect(refusal(() => checkReservationRules(rules, ask({}), [{ ...booked, member: 'telecom' }], 0))).toBe(null);
    expect(refusal(() => checkReservationRules(undefined, ask({}), [], 0))).toBe('member');
  });
});

/** pharma books domain 1 (nodes 4–7) from t = 10 h to 20 h. */
const booked: AdvanceReservation = {
  id: 'cap',
  member: 'pharma',
  start: 10 * H,
  end: 20 * H,
  allocation: onNodes([4, 5, 6, 7], 4),
};

/** Domain 0 (nodes 0–3) full for 100 h: only the reservation's nodes are free. */
const domain0Busy = (member: string) => [
  job('busy')
    .member(member)
    .gpus(16)
    .walltime(100 * H)
    .running(0, onNodes([0, 1, 2, 3], 4)),
];
/** A telecom job of 8 GPUs that runs this many hours. */
const telecomJob = (id: string, hours: number) =>
  job(id)
    .member('telecom')
    .gpus(8)
    .walltime(hours * H)
    .build();
const startedJobs = (r: { decisions: readonly { kind: string; job: string }[] }) =>
  r.decisions.filter((d) => d.kind === 'start').map((d) => d.job);

describe('the cycle with a booked reservation', () => {
  it('backfills its GPUs before the start only with jobs that end in time', () => {
    const running = domain0Busy('pharma');
    const short = telecomJob('short', 2);
    const long = telecomJob('long', 12);
    const r = cycle(state({ running, pending: [short, long], reservations: [booked] }), 0);
    expect(startedJobs(r)).toEqual(['short']);
    expect(r.pending.find((p) => p.job === 'long')?.reason).toBe('WaitingForReservation');
  });

  it('gives its GPUs back once it is on and idle (no job runs or waits in it), as PURGE_COMP does', () => {
    const running = domain0Busy('telecom');
    const long = telecomJob('long', 12);
    const at = booked.start + RELEASE_IDLE_SECONDS;
    // Idle since its start: released, so the long job takes its GPUs.
    const idle = cycle(state({ running, pending: [long], reservations: [booked] }), at);
    expect(startedJobs(idle)).toEqual(['long']);
    // Just started: its jobs may still come.
    const early = cycle(state({ running, pending: [long], reservations: [booked] }), at - 1);
    expect(startedJobs(early)).toEqual([]);
    // A job waits for it: it holds its GPUs again.
    const mine = inReservation(
      job('mine')
        .member('pharma')
        .gpus(4)
        .walltime(100 * H)
        .build(),
      'cap',
    );
    const claimed = cycle(state({ running, pending: [long, mine], reservations: [booked] }), at);
    expect(claimed.decisions.filter((d) => d.kind === 'start' && d.job === 'long')).toEqual([]);
    // And it is charged only while live.
    expect(chargedGpus([], [booked], at)).toEqual({});
    expect(chargedGpus([], [booked], at, [mine])).toEqual({ pharma: 16 });
    expect(liveReservations([booked], at, [mine])).toEqual([booked]);
  });

  it('keeps every other job off its GPUs in its window, and runs its own jobs only there', () => {
    const other = job('other').member('telecom').gpus(4).walltime(H).build();
    const mine = inReservation(
      job('capability')
        .member('pharma')
        .gpus(16)
        .walltime(8 * H)
        .build(),
      'cap',
    );
    const running = [
      job('busy')
        .member('telecom')
        .gpus(12)
        .walltime(100 * H)
        .running(0, onNodes([0, 1, 2], 4)),
    ];
    const r = cycle(state({ running, pending: [other, mine], reservations: [booked] }), 11 * H);
    const starts = r.decisions.flatMap((d) => (d.kind === 'start' ? [d] : []));
    expect(
      starts
        .find((d) => d.job === 'capability')
        ?.allocation.map((a) => a.node)
        .sort(),
    ).toEqual([4, 5, 6, 7]);
    expect(starts.find((d) => d.job === 'other')?.allocation.map((a) => a.node)).toEqual([3]);
  });

  it('makes its jobs wait for its start, and never starts one that cannot end inside it', () => {
    const early = inReservation(job('early').member('pharma').gpus(4).walltime(H).build(), 'cap');
    const tooLong = inReservation(
      job('too-long')
        .member('pharma')
        .gpus(4)
        .walltime(11 * H)
        .build(),
      'cap',
    );
    const stranger = inReservation(job('stranger').member('telecom').gpus(4).walltime(H).build(), 'cap');
    const r = cycle(state({ pending: [early, tooLong, stranger], reservations: [booked] }), 0);
    expect(r.decisions.filter((d) => d.kind === 'start')).toEqual([]);
    const why = Object.fromEntries(r.pending.map((p) => [p.job, p]));
    expect(why.early).toMatchObject({ reason: 'WaitingForReservation', estimatedStart: 10 * H });
    expect(why['too-long']).toMatchObject({ reason: 'WaitingForReservation', estimatedStart: null });
    expect(why.stranger).toMatchObject({ reason: 'WaitingForReservation', estimatedStart: null });
  });

  it('does not count its jobs against quota, and never preempts them for a reclaim', () => {
    // pharma runs 16 GPUs in its reservation; telecom, within its entitlement, wants 16 more.
    const inside = {
      ...job('inside')
        .member('pharma')
        .gpus(16)
        .walltime(8 * H)
        .running(10 * H, onNodes([4, 5, 6, 7], 4)),
      reservation: 'cap',
    };
    const ownShare = job('own').member('pharma').gpus(16).walltime(H).build();
    const r = cycle(state({ running: [inside], pending: [ownShare], reservations: [booked] }), 11 * H);
    // pharma's own 16 GPUs are still its to use, on domain 0.
    expect(r.decisions).toContainEqual(expect.objectContaining({ kind: 'start', job: 'own' }));
    const reclaim = job('reclaim').member('telecom').gpus(16).walltime(H).build();
    const r2 = cycle(state({ running: [inside], pending: [reclaim], reservations: [booked] }), 11 * H);
    expect(r2.decisions.filter((d) => d.kind === 'preempt')).toEqual([]);
    expect(r2.decisions).toContainEqual(expect.objectContaining({ kind: 'start', job: 'reclaim' }));
  });

  it('frees its GPUs for everyone once it is over', () => {
    const big = job('big').member('telecom').gpus(32).walltime(H).build();
    const r = cycle(state({ pending: [big], reservations: [booked] }), 20 * H);
    expect(r.decisions).toContainEqual(expect.objectContaining({ kind: 'start', job: 'big' }));
  });

  it('charges the member for the GPUs it holds while it is on, used or not', () => {
    expect(reservedGpuHours([booked], 0, 12 * H)).toEqual({ pharma: 16 * 2 });
    expect(reservedGpuHours([booked], 20 * H, 30 * H)).toEqual({});
  });
});

describe('reservation properties over random job streams', () => {
  /** Plays cycles every 30 minutes for two days: finished jobs leave, started ones run their walltime. */
  /** `released`: the reservation was on, but idle long enough to give its GPUs back (RELEASE_IDLE_SECONDS). */
  function play(
    pending: PendingJob[],
    r: AdvanceReservation,
    check: (t: number, j: PendingJob, nodes: number[], released: boolean) => void,
  ) {
    let running: RunningJob[] = [];
    let waiting = pending;
    for (let t = 0; t <= 48 * H; t += H / 2) {
      running = running.filter((j) => j.startedAt + j.walltimeSeconds > t);
      const arrived = waiting.filter((j) => j.submittedAt <= t);
      const released = t < r.end && liveReservations([r], t, running, arrived).length === 0;
      const res = cycle(state({ running, pending: arrived, reservations: [r] }), t);
      for (const d of res.decisions) {
        if (d.kind !== 'start') continue;
        const j = waiting.find((w) => w.id === d.job)!;
        check(
          t,
          j,
          d.allocation.map((a) => a.node),
          released,
        );
        running.push({ ...j, startedAt: t, allocation: d.allocation, lastCheckpointAt: null, preempting: null });
        waiting = waiting.filter((w) => w.id !== d.job);
      }
    }
  }

  const jobs = fc.array(
    fc.record({
      gpus: fc.constantFrom(1, 2, 4, 8, 16),
      hours: fc.integer({ min: 1, max: 12 }),
      member: fc.constantFrom('pharma', 'telecom'),
      submitted: fc.integer({ min: 0, max: 40 }),
      inside: fc.boolean(),
    }),
    { maxLength: 30 },
  );

  it('never starts a job outside the reservation on its GPUs in its window; its own jobs run only there', () => {
    fc.assert(
      fc.property(jobs, fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 16 }), (specs, startHours, hours) => {
        const r: AdvanceReservation = {
          id: 'cap',
          member: 'pharma',
          start: startHours * H,
          end: (startHours + hours) * H,
          allocation: onNodes([4, 5, 6, 7], 4),
        };
        const held = new Set(nodesOf(r));
        const pending = specs.map((s, i) => {
          const j = job(`j${i}`)
            .member(s.member)
            .gpus(s.gpus)
            .walltime(s.hours * H)
            .submitted(s.submitted * H)
            .build();
          return s.inside && s.member === 'pharma' ? inReservation(j, 'cap') : j;
        });
        play(pending, r, (t, j, nodes, released) => {
          const end = t + j.walltimeSeconds;
          if (j.reservation === 'cap') {
            expect(
              nodes.every((n) => held.has(n)),
              `${j.id} runs outside its reservation`,
            ).toBe(true);
            expect(t >= r.start && end <= r.end, `${j.id} runs outside the window`).toBe(true);
          } else if (nodes.some((n) => held.has(n))) {
            // Backfill: on the reservation's GPUs only if gone before it starts, or after it ends,
            // or once it is released (on for RELEASE_IDLE_SECONDS with no job running or waiting in it).
            expect(released || end <= r.start || t >= r.end, `${j.id} at ${t / H} h overlaps the reservation`).toBe(true);
            if (released) expect(t).toBeGreaterThanOrEqual(r.start + RELEASE_IDLE_SECONDS);
          }
        });
      }),
      { numRuns: 60 },
    );
  });

  it("lets jobs that end before the start backfill the reservation's GPUs", () => {
    const r: AdvanceReservation = { ...booked, start: 24 * H, end: 30 * H };
    // Domain 0 fills with 16 one-hour GPUs' worth; the rest must go onto the reservation's nodes.
    const pending = Array.from({ length: 8 }, (_, i) =>
      job(`b${i}`)
        .member('telecom')
        .gpus(4)
        .walltime(2 * H)
        .build(),
    );
    let backfilled = 0;
    play(pending, r, (t, _j, nodes) => {
      if (t < r.start && nodes.some((n) => n >= 4)) backfilled++;
    });
    expect(backfilled).toBeGreaterThan(0);
  });
});

describe('fair share charge', () => {
  it("charges a reservation's whole size while it is on, in place of its jobs, and nothing before or after", () => {
    const running = [
      { member: 'pharma', gpus: 4, reservation: 'cap' },
      { member: 'pharma', gpus: 8, reservation: null },
      { member: 'telecom', gpus: 2 },
    ];
    expect(chargedGpus(running, [booked], 11 * H)).toEqual({ pharma: 16 + 8, telecom: 2 });
    expect(chargedGpus(running, [booked], 9 * H)).toEqual({ pharma: 4 + 8, telecom: 2 });
    expect(chargedGpus(running, [booked], 20 * H)).toEqual({ pharma: 4 + 8, telecom: 2 });
  });
});

// Named scenarios: each is a situation a member or an operator will recognise.
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type Decision } from '../../src/scheduler/types.js';
import { cycle } from '../../src/scheduler/cycle.js';
import { consortium, job, onNodes, site } from '../../src/testing/builders.js';
import { SteppedCluster } from '../../src/sim/stepped.js';
import type { PendingJob } from '../../src/core/job.js';

// Two NVLink domains of 4 trays × 4 GPUs: nodes 0–3 are domain 0, nodes 4–7 domain 1.
const twoRacks = () => site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).build();
const pair = () => consortium().member('pharma', { entitlement: 16 }).member('telecom', { entitlement: 16 }).build();

const starts = (ds: readonly Decision[]) => ds.filter((d) => d.kind === 'start');
const preempts = (ds: readonly Decision[]) => ds.filter((d) => d.kind === 'preempt');
const domainsOf = (s: ReturnType<typeof twoRacks>, d: Decision) =>
  d.kind === 'start' || d.kind === 'reserve' ? new Set(d.allocation.map((a) => s.nodes[a.node].domain)) : new Set<number>();

describe('placement on NVLink domains', () => {
  it('packs small jobs best-fit onto one node so that domains stay whole', () => {
    const k = new SteppedCluster(twoRacks(), pair());
    for (let i = 0; i < 4; i++) k.submit(job(`nb-${i}`).gpus(1).build());
    const ds = starts(k.step(0).decisions);
    expect(ds).toHaveLength(4);
    expect(new Set(ds.flatMap((d) => (d.kind === 'start' ? d.allocation.map((a) => a.node) : [])))).toEqual(new Set([0]));
  });

  it('puts a gang that fits in one domain into the tightest domain that holds it', () => {
    const s = twoRacks();
    const k = new SteppedCluster(s, pair()).place(
      job('small')
        .gpus(4)
        .running(0, onNodes([0], 4)),
    );
    k.submit(job('train-12').gpus(12).topology('required').build());
    const [d] = starts(k.step(0).decisions);
    expect([...domainsOf(s, d)]).toEqual([0]);
  });

  it('keeps a required-topology gang waiting rather than splitting it, and says why', () => {
    const s = twoRacks();
    const k = new SteppedCluster(s, pair()).place(
      job('a')
        .gpus(8)
        .walltime(7200)
        .running(0, onNodes([0, 1], 4)),
      job('b')
        .gpus(8)
        .walltime(7200)
        .running(0, onNodes([4, 5], 4)),
    );
    k.submit(job('train-12').gpus(12).topology('required').build());
    const r = k.step(0);
    expect(starts(r.decisions)).toHaveLength(0);
    // 16 GPUs are free, but 8 in each domain: it holds a reservation for when one domain empties.
    expect(k.explanation('train-12')?.reason).toBe('NoTopologyFit');
    expect(r.decisions).toContainEqual(expect.objectContaining({ kind: 'reserve', job: 'train-12', start: 7200 }));
    expect(k.explanation('train-12')?.estimatedStart).toBe(7200);
  });

  it('lets a preferred-topology gang spread over domains when no single one has room', () => {
    const s = twoRacks();
    const k = new SteppedCluster(s, pair()).place(
      job('a')
        .gpus(8)
        .running(0, onNodes([0, 1], 4)),
      job('b')
        .gpus(8)
        .running(0, onNodes([4, 5], 4)),
    );
    k.submit(job('train-12').gpus(12).topology('preferred').build());
    const [d] = starts(k.step(0).decisions);
    expect(domainsOf(s, d).size).toBe(2);
  });

  it('gives a gang larger than a domain the fewest domains possible', () => {
    const s = site().racksPerSuperpod(4).traysPerRack(4).gpusPerTray(4).build();
    const c = consortium().member('pharma', { entitlement: 64 }).build();
    const k = new SteppedCluster(s, c).place(
      job('a')
        .gpus(4)
        .running(0, onNodes([0], 4)),
    );
    k.submit(job('train-32').gpus(32).topology('required').build());
    const [d] = starts(k.step(0).decisions);
    const used = domainsOf(s, d);
    expect(used.size).toBe(2);
    expect(used.has(0)).toBe(false);
  });

  it('starts a gang whole or not at all', () => {
    const k = new SteppedCluster(twoRacks(), pair()).place(
      job('a')
        .gpus(12)
        .walltime(600)
        .running(0, onNodes([0, 1, 2], 4)),
      job('b')
        .gpus(12)
        .walltime(600)
        .running(0, onNodes([4, 5, 6], 4)),
    );
    k.submit(job('gang').gang(3, 4).build());
    expect(starts(k.step(0).decisions)).toHaveLength(0);
    expect(k.explanation('gang')?.estimatedStart).toBe(600);
  });

  it('says NodesUnavailable when the gang cannot fit on the up nodes at all', () => {
    const k = new SteppedCluster(twoRacks(), pair()).setNodes({ 'sp1-r01-t01': 'down', 'sp1-r02-t01': 'maintenance' });
    k.submit(job('too-big').gpus(16).topology('required').build());
    k.step(0);
    expect(k.explanation('too-big')).toMatchObject({ reason: 'NodesUnavailable', estimatedStart: null });
  });
});

describe('entitlements: lend idle GPUs, reclaim them when the owner needs them', () => {
  /**
   * pharma runs 12 of its 16 on rack 1, telecom its whole 16 on rack 2 (protected for
   * `telecomMinRuntime`); rack 1's last node is free for what the test puts there.
   */
  const withinEntitlements = (telecomMinRuntime: number) =>
    new SteppedCluster(twoRacks(), pair()).place(
      job('p-own')
        .member('pharma')
        .gpus(12)
        .walltime(1e5)
        .running(0, onNodes([0, 1, 2], 4)),
      job('t-own')
        .member('telecom')
        .gpus(16)
        .walltime(1e5)
        .minRuntime(telecomMinRuntime)
        .running(0, onNodes([4, 5, 6, 7], 4)),
    );

  it('lends idle entitlement and marks the work as borrowing', () => {
    const k = new SteppedCluster(twoRacks(), pair());
    for (let i = 0; i < 6; i++) k.submit(job(`t${i}`).member('telecom').gpus(4).build());
    const ds = starts(k.step(0).decisions);
    expect(ds).toHaveLength(6);
    expect(ds.filter((d) => d.kind === 'start' && d.borrowing)).toHaveLength(2);
  });

  it('reclaims borrowed GPUs for an owner within its entitlement, and no more than needed', () => {
    const k = new SteppedCluster(twoRacks(), pair());
    for (let i = 0; i < 8; i++) k.submit(job(`t${i}`).member('telecom').gpus(4).grace(30).build());
    k.step(0);
    k.submit(job('owner').member('pharma').gpus(8).build());
    const r = k.step(600);
    const p = preempts(r.decisions);
    expect(p).toHaveLength(2);
    expect(p.every((d) => d.kind === 'preempt' && d.reason === 'Reclaim' && d.for === 'owner' && d.graceSeconds === 30)).toBe(
      true,
    );
    expect(k.explanation('owner')).toMatchObject({ reason: 'WaitingForReclaim', estimatedStart: 630 });
    // Next cycle, still in the grace period: nobody else is preempted.
    expect(preempts(k.step(610).decisions)).toHaveLength(0);
    // After the grace period, the owner starts on the reclaimed GPUs.
    k.step(630);
    expect(k.isRunning('owner')).toBe(true);
  });

  it('counts its whole queue when judging whether turnover will serve it: a thousand jobs are not each promised the next free GPU', () => {
    // telecom fills the machine with one-GPU jobs, half of them on pharma's idle share; one of
    // them ends within `reclaimWithinSeconds`, the others in a day.
    const k = new SteppedCluster(twoRacks(), pair());
    for (let n = 0; n < 8; n++)
      for (let g = 0; g < 4; g++)
        k.place(
          job(`t${n}-${g}`)
            .member('telecom')
            .gpus(1)
            .walltime(n === 0 && g === 0 ? 600 : 86_400)
            .grace(30)
            .running(0, onNodes([n], 1)),
        );
    for (let i = 0; i < 6; i++) k.submit(job(`p${i}`).member('pharma').gpus(1).submitted(60).build());
    const r = k.step(60);
    // The GPU that frees up at 600 serves one of pharma's jobs; the other five reclaim theirs now.
    // (Each job once judged alone: the next free GPU comes within 30 minutes, so none reclaimed.)
    const p = preempts(r.decisions);
    expect(p).toHaveLength(5);
    expect(p.every((d) => d.kind === 'preempt' && d.reason === 'Reclaim' && d.job !== 't0-0')).toBe(true);
    // Each starts when its victim stops (60 + 30 s grace), though a job of its size ahead of it
    // waits for the GPU that frees up at 600.
    const reclaiming = r.pending.filter((e) => e.reason === 'WaitingForReclaim');
    expect(reclaiming).toHaveLength(5);
    expect(reclaiming.every((e) => e.estimatedStart === 90)).toBe(true);
    expect(r.pending.find((e) => e.reason !== 'WaitingForReclaim')).toMatchObject({
      reason: 'WaitingForResources',
      estimatedStart: 600,
    });
  });

  it('never preempts a member at or under its entitlement for a borrower', () => {
    const k = new SteppedCluster(twoRacks(), pair());
    for (let i = 0; i < 4; i++) k.submit(job(`p${i}`).member('pharma').gpus(4).build());
    for (let i = 0; i < 4; i++) k.submit(job(`t${i}`).member('telecom').gpus(4).build());
    k.step(0);
    k.submit(job('more').member('telecom').gpus(4).build());
    const r = k.step(600);
    expect(preempts(r.decisions)).toHaveLength(0);
    expect(k.explanation('more')?.reason).toBe('QuotaExhausted');
  });

  it('runs a member’s work within its entitlement beside its reserved gang, which borrows at its start only as far as owners lend', () => {
    // Pharma runs 12 of its 16 until t=500; its 16-GPU gang is reserved for then, beyond its
    // entitlement until then. A 4-GPU job of pharma that fits in its entitlement now starts now
    // (the gang's claim is soft until the gang is promoted), on GPUs the gang does not hold; at
    // t=500 the gang starts, borrowing the 4 GPUs if an owner lends them, else it waits.
    const pharmaNow = job('p-run')
      .gpus(12)
      .walltime(500)
      .running(0, onNodes([0, 1, 2], 4));
    const setUp = (telecomGpus: number) => {
      const telecomNodes = Array.from({ length: telecomGpus / 4 }, (_, i) => 4 + i);
      const k = new SteppedCluster(twoRacks(), pair()).place(
        pharmaNow,
        job('t-run').member('telecom').gpus(telecomGpus).walltime(5000).running(0, onNodes(telecomNodes, 4)),
      );
      k.submit(job('gang').gpus(16).walltime(600).topology('required').build());
      k.submit(job('extra').gpus(4).walltime(2000).build());
      return { k, r: k.step(0) };
    };
    const lent = setUp(8);
    expect(lent.r.decisions).toContainEqual(expect.objectContaining({ kind: 'reserve', job: 'gang', start: 500 }));
    expect(starts(lent.r.decisions)).toEqual([expect.objectContaining({ job: 'extra', borrowing: false })]);
    expect(starts(lent.k.step(500).decisions)).toEqual([expect.objectContaining({ job: 'gang', borrowing: true })]);
    // Telecom uses all of its share: the only free tray is the gang's, and 'extra' may not take
    // it (its own member's hold is firm to it); the gang starts at 500 within pharma's share.
    const none = setUp(16);
    expect(none.r.decisions).toContainEqual(expect.objectContaining({ kind: 'reserve', job: 'gang', start: 500 }));
    expect(starts(none.r.decisions)).toHaveLength(0);
    expect(none.k.explanation('extra')?.reason).toBe('BehindReservation');
    expect(starts(none.k.step(500).decisions)).toEqual([expect.objectContaining({ job: 'gang', borrowing: false })]);
  });

  it('lends no more than the lending limit', () => {
    const c = consortium().member('defense', { entitlement: 16, lendingLimit: 4 }).member('bank', { entitlement: 16 }).build();
    const k = new SteppedCluster(twoRacks(), c);
    for (let i = 0; i < 8; i++) k.submit(job(`b${i}`).member('bank').gpus(4).build());
    k.step(0);
    expect(k.running).toHaveLength(5);
    expect(k.explanation('b5')?.reason).toBe('QuotaExhausted');
  });

  it('preempts the borrowed job that loses the fewest GPU-hours since its last checkpoint', () => {
    const k = withinEntitlements(0).place(
      // Borrowed by telecom, no checkpoint for 2 h:
      job('t-stale')
        .member('telecom')
        .gpus(2)
        .walltime(1e5)
        .running(0, [{ node: 3, gpus: 2 }]),
      // Borrowed by telecom, checkpointed 5 min ago:
      job('t-fresh')
        .member('telecom')
        .gpus(2)
        .walltime(1e5)
        .checkpointEvery(900)
        .running(0, [{ node: 3, gpus: 2 }], 6900),
    );
    k.submit(job('owner').member('pharma').gpus(2).build());
    const p = preempts(k.step(7200).decisions);
    expect(p.map((d) => d.job)).toEqual(['t-fresh']);
    expect(p[0]).toMatchObject({ lostGpuHours: (2 * 300) / 3600 });
  });

  it('respects the minimum runtime before preemption', () => {
    const k = withinEntitlements(1e5).place(
      job('t-young')
        .member('telecom')
        .gpus(4)
        .walltime(1e5)
        .minRuntime(3600)
        .running(1000, onNodes([3], 4)),
    );
    k.submit(job('owner').member('pharma').gpus(4).build());
    expect(preempts(k.step(2000).decisions)).toHaveLength(0);
    expect(preempts(k.step(4600).decisions).map((d) => d.job)).toEqual(['t-young']);
  });

  it('does not loop: the reclaimed job does not in turn preempt its preemptor', () => {
    const k = new SteppedCluster(twoRacks(), pair());
    for (let i = 0; i < 8; i++) k.submit(job(`t${i}`).member('telecom').gpus(4).walltime(1e5).build());
    k.step(0);
    for (let i = 0; i < 4; i++) k.submit(job(`p${i}`).member('pharma').gpus(4).walltime(1e5).build());
    k.runUntil(3600, 60);
    const all = k.history.flatMap((h) => preempts(h.decisions));
    expect(all).toHaveLength(4);
    expect(all.every((d) => d.kind === 'preempt' && d.for.startsWith('p'))).toBe(true);
    expect(k.running.filter((j) => j.member === 'pharma')).toHaveLength(4);
  });

  it('lets production inference preempt its own member’s batch work, not another member’s', () => {
    const k = new SteppedCluster(twoRacks(), pair()).place(
      job('p-batch')
        .member('pharma')
        .priority('batch')
        .gpus(16)
        .walltime(1e5)
        .running(0, onNodes([0, 1, 2, 3], 4)),
      job('t-batch')
        .member('telecom')
        .priority('batch')
        .gpus(16)
        .walltime(1e5)
        .running(0, onNodes([4, 5, 6, 7], 4)),
    );
    k.submit(job('p-serve').member('pharma').priority('inference').gpus(4).build());
    const p = preempts(k.step(100).decisions);
    expect(p).toEqual([expect.objectContaining({ job: 'p-batch', reason: 'Priority', for: 'p-serve' })]);
  });
});

describe('backfill with reservations', () => {
  /**
   * telecom's unstoppable 'long' fills domain 0 until 7200; 'mid' (12 GPUs of `midMember`) holds
   * domain 1 until 3600. pharma's 16-GPU gang needs a whole domain; academy has a long one-GPU
   * job (less expected work than 'short', so looked at first, but it would run past 3600) and a
   * short 4-GPU one.
   */
  const gangBehindMid = (midMember: 'academy' | 'pharma') => {
    const c = consortium()
      .member('pharma', { entitlement: 16 })
      .member('telecom', { entitlement: 8 })
      .member('academy', { entitlement: 8 })
      .build();
    const k = new SteppedCluster(twoRacks(), c).place(
      job('long')
        .member('telecom')
        .gpus(16)
        .walltime(7200)
        .minRuntime(1e5)
        .running(0, onNodes([0, 1, 2, 3], 4)),
      job('mid')
        .member(midMember)
        .gpus(12)
        .walltime(3600)
        .minRuntime(1e5)
        .running(0, onNodes([4, 5, 6], 4)),
    );
    k.submit(
      job('gang-16').member('pharma').gpus(16).topology('required').submitted(0).build(),
      job('long-small').member('academy').gpus(1).walltime(5400).submitted(1).build(),
      job('short').member('academy').gpus(4).walltime(1800).submitted(2).build(),
    );
    return { k, r: k.step(0) };
  };

  it('holds a reservation for the blocked gang and backfills only jobs that end before it', () => {
    // academy's 'mid' holds domain 1 until 3600: the gang, within pharma's entitlement, waits
    // for GPUs, not quota, and reserves domain 1 from then.
    const { k, r } = gangBehindMid('academy');
    expect(r.decisions.find((d) => d.kind === 'reserve' && d.job === 'gang-16')).toMatchObject({ start: 3600 });
    expect(k.explanation('gang-16')).toMatchObject({ reason: 'WaitingForResources', position: 1, estimatedStart: 3600 });
    expect(starts(r.decisions).map((d) => d.job)).toEqual(['short']);
    expect(k.explanation('long-small')?.reason).toBe('BehindReservation');
    k.step(3600);
    expect(k.isRunning('gang-16')).toBe(true);
  });

  it('lets work within an entitlement use GPUs held for a job its own quota keeps waiting', () => {
    // pharma's own 'mid' holds its entitlement until 3600: the gang's hold on domain 1 is soft
    // until then, and academy's work within its entitlement is not kept off it (a borrower's
    // hold that kept the member who reclaimed those GPUs off them made reclaim loop for hours).
    const { k, r } = gangBehindMid('pharma');
    expect(r.decisions.find((d) => d.kind === 'reserve' && d.job === 'gang-16')).toMatchObject({ start: 3600 });
    expect(k.explanation('gang-16')).toMatchObject({ reason: 'QuotaExhausted', position: 1 });
    // ('short' then finds no whole tray left in domain 1.)
    expect(starts(r.decisions).map((d) => d.job)).toEqual(['long-small']);
    // Within its entitlement from 3600, the gang's hold is firm: it starts when 'long-small' ends.
    k.step(3600);
    expect(k.isRunning('gang-16')).toBe(false);
    k.step(5400);
    expect(k.isRunning('gang-16')).toBe(true);
  });

  it('starts a large gang within a bounded time behind a stream of small jobs', () => {
    const c = consortium().member('pharma', { entitlement: 16 }).member('telecom', { entitlement: 16 }).build();
    const k = new SteppedCluster(twoRacks(), c);
    let n = 0;
    const stream = (t: number) => {
      for (let i = 0; i < 4; i++) {
        const m = i % 2 ? 'pharma' : 'telecom';
        k.submit(job(`s${n++}`).member(m).gpus(1).walltime(900).submitted(t).build());
      }
    };
    stream(0);
    k.step(0);
    k.submit(job('big').member('pharma').gpus(16).topology('required').submitted(30).build());
    for (let t = 60; t <= 4 * 3600 && !k.isRunning('big'); t += 60) {
      stream(t);
      k.step(t);
    }
    expect(k.isRunning('big')).toBe(true);
    // Bounded by the longest small job once the reservation is held, plus one cycle.
    expect(k.running.find((j) => j.id === 'big')!.startedAt).toBeLessThanOrEqual(30 + 900 + 60);
  });
});

describe('isolation and zones', () => {
  const sovereign = () => site().racksPerSuperpod(3).traysPerRack(4).gpusPerTray(4).zone('sovereign', 'sp1-r03').build();
  const withDefense = () =>
    consortium()
      .member('pharma', { entitlement: 24 })
      .member('defense', { entitlement: 16, isolation: 'required', zone: 'sovereign', lendingLimit: 0 })
      .build();

  it('runs isolation-required work only in its zone and never next to another member', () => {
    const s = sovereign();
    const k = new SteppedCluster(s, withDefense());
    k.submit(job('d1').member('defense').gpus(4).build(), job('p1').member('pharma').gpus(4).build());
    const ds = starts(k.step(0).decisions);
    const d1 = ds.find((d) => d.job === 'd1')!;
    const p1 = ds.find((d) => d.job === 'p1')!;
    expect([...domainsOf(s, d1)]).toEqual([2]);
    expect(domainsOf(s, p1).has(2)).toBe(false);
  });

  it('keeps a member bound to a zone the site lacks waiting (NodesUnavailable), and schedules the others', () => {
    // The demo consortium on a workstation: defense's sovereign zone does not exist there.
    const k = new SteppedCluster(twoRacks(), withDefense());
    k.submit(job('d1').member('defense').gpus(4).build(), job('p1').member('pharma').gpus(4).build());
    k.step(0);
    expect(k.isRunning('p1')).toBe(true);
    expect(k.explanation('d1')?.reason).toBe('NodesUnavailable');
  });

  it('keeps other members out of a domain that hosts isolated work, and says so', () => {
    const s = sovereign();
    const c = consortium()
      .member('pharma', { entitlement: 24, zone: 'sovereign' })
      .member('defense', { entitlement: 16, isolation: 'required', zone: 'sovereign', lendingLimit: 0 })
      .build();
    const k = new SteppedCluster(s, c).place(
      job('d1')
        .member('defense')
        .gpus(4)
        .walltime(1e5)
        .running(0, onNodes([8], 4)),
    );
    k.submit(job('p1').member('pharma').gpus(4).build());
    k.step(0);
    expect(k.isRunning('p1')).toBe(false);
    expect(k.explanation('p1')?.reason).toBe('IsolationRequired');
  });

  it('honours an exclusive request from a member that does not require isolation', () => {
    const s = twoRacks();
    const k = new SteppedCluster(s, pair()).place(
      job('t1')
        .member('telecom')
        .gpus(1)
        .walltime(1e5)
        .running(0, [{ node: 0, gpus: 1 }]),
    );
    k.submit(job('p-excl').member('pharma').gpus(4).exclusive().build());
    const [d] = starts(k.step(0).decisions);
    expect([...domainsOf(s, d)]).toEqual([1]);
  });
});

describe('failures and drains', () => {
  it('requeues a whole gang when one of its nodes fails', () => {
    const k = new SteppedCluster(twoRacks(), pair()).place(
      job('g')
        .gang(2, 4)
        .running(0, onNodes([0, 1], 4)),
    );
    k.setNodes({ 'sp1-r01-t02': 'down' });
    const r = k.step(10);
    expect(r.decisions[0]).toEqual({ kind: 'requeue', job: 'g', reason: 'NodeFailure', nodes: [1] });
    // Requeued whole and placed again on healthy nodes in the same cycle loop.
    k.step(20);
    expect(k.running.find((j) => j.id === 'g')!.allocation.map((a) => a.node)).not.toContain(1);
  });

  it('gives draining nodes no new work but lets their jobs finish', () => {
    const names = ['sp1-r01-t01', 'sp1-r01-t02', 'sp1-r01-t03', 'sp1-r01-t04'];
    const k = new SteppedCluster(twoRacks(), pair())
      .place(
        job('old')
          .gpus(1)
          .walltime(1e5)
          .running(0, [{ node: 0, gpus: 1 }]),
      )
      .setNodes(Object.fromEntries(names.map((n) => [n, 'draining'])));
    k.submit(job('new').gpus(1).build());
    const [d] = starts(k.step(0).decisions);
    expect(d.kind === 'start' && d.allocation[0].node).toBeGreaterThanOrEqual(4);
    expect(k.isRunning('old')).toBe(true);
  });
});

describe('fair share and explanations', () => {
  /**
   * Both racks full: pharma's job on rack 1, telecom's on rack 2, ending at the given times, and
   * exempt from preemption for as long (shorter work would otherwise displace them).
   */
  const fullMachine = (pharmaEnds: number, telecomEnds: number) =>
    new SteppedCluster(twoRacks(), pair()).place(
      job('fill')
        .member('pharma')
        .gpus(16)
        .walltime(pharmaEnds)
        .minRuntime(pharmaEnds)
        .running(0, onNodes([0, 1, 2, 3], 4)),
      job('fill2')
        .member('telecom')
        .gpus(16)
        .walltime(telecomEnds)
        .minRuntime(telecomEnds)
        .running(0, onNodes([4, 5, 6, 7], 4)),
    );

  it('orders members by decayed usage against entitlement', () => {
    const k = fullMachine(1e5, 1e5);
    k.usageGpuHours = { pharma: 5000, telecom: 100 };
    k.submit(job('p').member('pharma').gpus(1).submitted(0).build(), job('t').member('telecom').gpus(1).submitted(5).build());
    k.step(10);
    expect(k.last.pending.map((e) => e.job)).toEqual(['t', 'p']);
  });

  it('gives every waiting job a reason, a position and an estimated start', () => {
    const k = fullMachine(3600, 7200);
    for (let i = 0; i < 50; i++)
      k.submit(
        job(`w${i}`)
          .member(i % 2 ? 'pharma' : 'telecom')
          .gpus(1 + (i % 8))
          .submitted(i)
          .build(),
      );
    const r = k.step(0);
    expect(r.pending).toHaveLength(50);
    expect(r.pending.map((e) => e.position)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    for (const e of r.pending) {
      expect(e.estimatedStart).not.toBeNull();
      expect(e.estimatedStart!).toBeGreaterThanOrEqual(3600);
    }
  });

  it('is deterministic: the same state and time give the same decisions', () => {
    const s = twoRacks();
    const pending = Array.from({ length: 40 }, (_, i) =>
      job(`j${i}`)
        .member(i % 3 ? 'pharma' : 'telecom')
        .gpus(1 + (i % 6))
        .submitted(i)
        .build(),
    );
    const state = { site: s, consortium: pair(), running: [], pending, usageGpuHours: {} };
    expect(cycle(state, 100)).toEqual(cycle(state, 100));
  });
});

describe("a member's own order, and how deep a cycle looks", () => {
  // Domain 1 is busy for an hour: 16 GPUs (one whole domain) are free.
  const busy = (config = DEFAULT_CONFIG) =>
    new SteppedCluster(twoRacks(), consortium().member('pharma', { entitlement: 32 }).build(), config).place(
      job('busy')
        .gpus(16)
        .walltime(3600)
        .running(0, onNodes([4, 5, 6, 7], 4)),
    );

  it('puts the least expected work first (GPUs × walltime, at most slowdownBound × walltime), then age', () => {
    const k = busy();
    k.submit(
      job('long').gpus(4).walltime(7200).submitted(0).build(), // promoted at 0 + 4 × 7,200
      job('wide').gpus(8).walltime(600).submitted(1).build(), // 1 + min(8 × 600, 4 × 600)
      job('short').gpus(4).walltime(600).submitted(2).build(), // 2 + 2,400
      job('twin').gpus(4).walltime(600).submitted(3).build(), // 3 + 2,400
      job('gang').gpus(16).walltime(3600).submitted(4).build(), // 4 + 4 × 3,600
    );
    expect(DEFAULT_CONFIG.slowdownBound).toBe(4);
    const r = k.step(4);
    expect(starts(r.decisions).map((d) => d.job)).toEqual(['wide', 'short', 'twin']);
    expect(r.pending.map((p) => p.job)).toEqual(['gang', 'long']);
  });

  // One 12-GPU job fits at a time (16 GPUs of a 32-GPU site are busy for ever).
  const race = (first: PendingJob, second: PendingJob, at: number) => {
    const k = new SteppedCluster(twoRacks(), consortium().member('pharma', { entitlement: 32 }).build()).place(
      job('busy')
        .gpus(16)
        .walltime(1e6)
        .running(0, onNodes([4, 5, 6, 7], 4)),
    );
    k.submit(first, second);
    return starts(k.step(at).decisions).map((d) => d.job);
  };

  it('ages the expected work: a long job goes ahead of newer short ones after the least of W / agingGpus and slowdownBound × its walltime', () => {
    // 'long': 12 × 7,200 = 86,400 GPU-s, 4 × 7,200 = 28,800 s; 'short': 12 × 600 = 7,200, 2,400 s.
    const long = job('long').gpus(12).walltime(7200).submitted(0).build();
    const short = (at: number) => job('short').gpus(12).walltime(600).submitted(at).build();
    expect(DEFAULT_CONFIG.agingGpus).toBe(1);
    expect(race(long, short(26_000), 26_000)).toEqual(['short']); // 28,800 > 26,000 + 2,400
    expect(race(long, short(27_000), 27_000)).toEqual(['long']); // 28,800 < 27,000 + 2,400
  });

  it('promotes a gang of a whole NVLink domain gangAgingSeconds after its submission at the latest', () => {
    // 'gang': 16 GPUs for 20 h would wait 4 × 20 h; it is promoted at 48 h.
    const gang = job('gang')
      .gpus(16)
      .walltime(20 * 3600)
      .submitted(0)
      .build();
    const short = (at: number) => job('short').gpus(12).walltime(600).submitted(at).build();
    expect(DEFAULT_CONFIG.gangAgingSeconds).toBe(48 * 3600);
    expect(race(gang, short(170_000), 170_000)).toEqual(['short']); // 172,800 > 170,000 + 2,400
    expect(race(gang, short(171_000), 171_000)).toEqual(['gang']); // 172,800 < 171,000 + 2,400
  });

  it("puts a job stopped for another member back ahead of its member's later work; one that yielded for service, by its work", () => {
    const long = job('long').gpus(12).walltime(7200).submitted(0).build();
    const later = job('later').gpus(12).walltime(600).submitted(1000).build();
    expect(race({ ...long, keepsPlace: true }, later, 1000)).toEqual(['long']);
    expect(race({ ...long, keepsPlace: false }, later, 1000)).toEqual(['later']);
  });

  it('looks at only the first queueDepth jobs of each member; the others wait behind them (Priority)', () => {
    const k = busy({ ...DEFAULT_CONFIG, queueDepth: 2 });
    for (let i = 0; i < 4; i++)
      k.submit(
        job(`j${i}`)
          .gpus(2)
          .walltime(600 * (4 - i))
          .submitted(i)
          .build(),
      );
    const r = k.step(0);
    // Room for all four, but only the two with the least work are looked at.
    expect(starts(r.decisions).map((d) => d.job)).toEqual(['j3', 'j2']);
    expect(r.pending).toEqual([
      { job: 'j1', reason: 'Priority', position: 1, estimatedStart: expect.any(Number) },
      { job: 'j0', reason: 'Priority', position: 2, estimatedStart: expect.any(Number) },
    ]);
  });
});

describe('sovereign zones', () => {
  it("never places another member's work on a zone that members are bound to, even when it is the only free capacity", () => {
    const s = site().racksPerSuperpod(2).traysPerRack(4).gpusPerTray(4).zone('sovereign', 'sp1-r02').build();
    const c = consortium()
      .member('defense', { entitlement: 16, zone: 'sovereign', isolation: 'required' })
      .member('bank', { entitlement: 16 })
      .build();
    const k = new SteppedCluster(s, c);
    k.submit(job('b1').member('bank').gpus(16).build(), job('b2').member('bank').gpus(4).build());
    const r = k.step(0);
    // b1 takes the general rack; b2 would fit only on the idle sovereign rack, and waits.
    expect(starts(r.decisions).map((d) => d.job)).toEqual(['b1']);
    expect(r.decisions.flatMap((d) => (d.kind === 'start' ? d.allocation.map((a) => a.node) : [])).every((n) => n < 4)).toBe(
      true,
    );
    expect(k.isRunning('b2')).toBe(false);
  });
});

// Advance reservations through the API on real processes: who may book, list and delete; the
// consortium's rules; the refusals with their codes and fields; audit events; and a job that runs
// in its reservation while another member's job waits with WaitingForReservation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody, JobView, ReservationView } from '../../src/api/contract.js';
import { consortium, site } from '../../src/testing/builders.js';
import { testServer, type TestServer } from './helpers.js';

let t: TestServer;
let phaAdmin: string;
let phaResearcher: string;
let telAdmin: string;
let telResearcher: string;

const H = 3600;
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const now = () => Date.now() / 1000;

beforeAll(async () => {
  // Two nodes of 2 GPUs (this host's 4 GPUs in two slots); the consortium's rules let member
  // admins book up to 2 GPUs for up to 24 h, a day ahead, once a week.
  const s = site().racksPerSuperpod(2).traysPerRack(1).gpusPerTray(2).build();
  const c = {
    ...consortium().member('pharma', { entitlement: 2 }).member('telecom', { entitlement: 2 }).build(),
    reservations: { maxGpus: 2, maxHours: 24, minNoticeHours: 24, perMemberPerWeek: 1 },
  };
  t = await testServer({ site: s, consortium: c, localNodes: 2, localGpus: 4 });
  phaAdmin = await t.token('pharma', 'member-admin', 'pam');
  phaResearcher = await t.token('pharma', 'researcher', 'pia');
  telAdmin = await t.token('telecom', 'member-admin', 'tam');
  telResearcher = await t.token('telecom', 'researcher', 'tom');
});
afterAll(async () => {
  const all = await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?state=pending,starting,running,preempting');
  for (const j of all.body.jobs) await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`);
  await t.close();
});

const book = (token: string, body: Record<string, unknown>) =>
  t.call<{ reservation: ReservationView } & ErrorBody>(token, 'POST', '/v1/reservations', body);
const list = async (token: string) =>
  (await t.call<{ reservations: ReservationView[] }>(token, 'GET', '/v1/reservations')).body.reservations;

describe('booking, by role and within the rules', () => {
  it("lets a member admin book its own member's GPUs within the consortium's rules", async () => {
    const r = await book(phaAdmin, { name: 'pharma-cap', gpus: 2, start: iso(now() + 25 * H), durationSeconds: 24 * H });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body.reservation).toMatchObject({
      name: 'pharma-cap',
      member: 'pharma',
      gpus: 2,
      state: 'future',
      createdBy: 'pam',
    });
    expect(r.body.reservation.nodes).toHaveLength(1);
  });

  it('refuses a member admin beyond the rules, naming the rule and the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ gpus: 4, start: iso(now() + 25 * H), durationSeconds: H }, 'body.gpus'],
      [{ gpus: 2, start: iso(now() + 25 * H), durationSeconds: 25 * H }, 'body.durationSeconds'],
      [{ gpus: 2, start: iso(now() + H), durationSeconds: H }, 'body.start'],
      // A second one within a week of pharma-cap.
      [{ gpus: 2, start: iso(now() + 50 * H), durationSeconds: H }, 'body.start'],
    ];
    for (const [body, field] of cases) {
      const r = await book(phaAdmin, { name: 'too-much', ...body });
      expect(r.status, JSON.stringify(body)).toBe(403);
      expect(r.body.error).toMatchObject({ code: 'RESERVATION_RULES', field });
    }
  });

  it('refuses researchers, and member admins booking for another member', async () => {
    const mine = await book(phaResearcher, { name: 'r', gpus: 2, start: iso(now() + 25 * H), durationSeconds: H });
    expect(mine.status).toBe(403);
    const other = await book(phaAdmin, { name: 'r', member: 'telecom', gpus: 2, start: iso(now() + 25 * H), durationSeconds: H });
    expect(other.status).toBe(403);
    expect(other.body.error.field).toBe('body.member');
  });

  it('lets an operator book for a member beyond the rules, and refuses bad shapes, the past and a taken name', async () => {
    const r = await book(t.operator, { name: 'tel-now', member: 'telecom', gpus: 2, start: iso(now()), durationSeconds: 2 * H });
    expect(r.status).toBe(201);
    expect(r.body.reservation.state).toBe('active');
    const odd = await book(t.operator, { name: 'odd', member: 'telecom', gpus: 3, start: iso(now() + H), durationSeconds: H });
    expect(odd.body.error).toMatchObject({ code: 'RESERVATION_SHAPE', field: 'body.gpus' });
    const past = await book(t.operator, {
      name: 'past',
      member: 'telecom',
      gpus: 2,
      start: iso(now() - H),
      durationSeconds: 2 * H,
    });
    expect(past.body.error).toMatchObject({ code: 'RESERVATION_IN_PAST', field: 'body.start' });
    // Both nodes are held from 25 h (pharma-cap's) and now (tel-now's): 4 more GPUs now do not fit.
    const full = await book(t.operator, { name: 'full', member: 'pharma', gpus: 4, start: iso(now() + H), durationSeconds: H });
    expect(full.status).toBe(409);
    expect(full.body.error).toMatchObject({ code: 'RESERVATION_NO_ROOM', field: 'body.gpus' });
    const taken = await book(t.operator, {
      name: 'tel-now',
      member: 'pharma',
      gpus: 2,
      start: iso(now() + 60 * H),
      durationSeconds: H,
    });
    expect(taken.body.error).toMatchObject({ code: 'CONFLICT', field: 'body.name' });
    const nobody = await book(t.operator, { name: 'x', gpus: 2, start: iso(now() + H), durationSeconds: H });
    expect(nobody.body.error.field).toBe('body.member');
  });
});

describe('seeing and deleting', () => {
  it('shows every reservation to everyone (sinfo -T), but who booked it only to its member and operators', async () => {
    const seen = await list(telResearcher);
    const pharma = seen.find((r) => r.name === 'pharma-cap')!;
    expect(pharma).toMatchObject({ member: 'pharma', gpus: 2, createdBy: null, createdAt: null });
    expect(seen.find((r) => r.name === 'tel-now')?.createdBy).not.toBeNull();
    expect((await list(t.operator)).find((r) => r.name === 'pharma-cap')?.createdBy).toBe('pam');
  });

  it("refuses another member's admin, and researchers, a delete; its own member admin deletes it", async () => {
    const cross = await t.call<ErrorBody>(telAdmin, 'DELETE', '/v1/reservations/pharma-cap');
    expect(cross.status).toBe(403);
    expect((await t.call(phaResearcher, 'DELETE', '/v1/reservations/pharma-cap')).status).toBe(403);
    expect((await list(t.operator)).map((r) => r.name)).toContain('pharma-cap');
    const own = await t.call(phaAdmin, 'DELETE', '/v1/reservations/pharma-cap');
    expect(own.status).toBe(200);
    expect((await list(t.operator)).map((r) => r.name)).not.toContain('pharma-cap');
    expect((await t.call(phaAdmin, 'DELETE', '/v1/reservations/pharma-cap')).status).toBe(404);
  });

  it('records bookings and deletions in the audit log', async () => {
    const events = await t.server.audit.events({ after: 0, limit: 10_000 });
    const ours = events.filter((e) => e.kind.startsWith('reservation.')).map((e) => [e.kind, e.subject, e.member]);
    expect(ours).toEqual(
      expect.arrayContaining([
        ['reservation.created', 'reservation:pharma-cap', 'pharma'],
        ['reservation.created', 'reservation:tel-now', 'telecom'],
        ['reservation.deleted', 'reservation:pharma-cap', 'pharma'],
      ]),
    );
  });
});

describe('jobs in a reservation', () => {
  it("keeps another member's job off the reservation's GPUs, with WaitingForReservation", async () => {
    // pharma asks for both nodes for 3 h: one of them is telecom's for the next 2 h.
    const wide = await t.call<{ jobs: JobView[] }>(phaResearcher, 'POST', '/v1/jobs', {
      name: 'wide',
      command: ['sleep', '60'],
      gpus: 4,
      walltimeSeconds: 3 * H,
    });
    expect(wide.status).toBe(201);
    const id = wide.body.jobs[0].id;
    const reason = await t.waitFor('its reason', async () => {
      const j = (await t.call<JobView>(phaResearcher, 'GET', `/v1/jobs/${id}`)).body;
      return j.reason ?? undefined;
    });
    expect(reason).toBe('WaitingForReservation');
    const explained = await t.call<{ reason: string; message: string }>(phaResearcher, 'GET', `/v1/jobs/${id}/explain`);
    expect(explained.body.reason).toBe('WaitingForReservation');
    expect((await t.call(phaResearcher, 'POST', `/v1/jobs/${id}/cancel`)).status).toBe(200);
  });

  it("runs the member's job on the reservation's GPUs", async () => {
    const held = (await list(t.operator)).find((r) => r.name === 'tel-now')!;
    const inside = await t.call<{ jobs: JobView[] }>(telResearcher, 'POST', '/v1/jobs', {
      name: 'capability',
      command: ['sleep', '60'],
      gpus: 2,
      walltimeSeconds: H,
      reservation: 'tel-now',
    });
    expect(inside.status).toBe(201);
    const running = await t.waitFor('the job in its reservation to run', async () => {
      const j = (await t.call<JobView>(telResearcher, 'GET', `/v1/jobs/${inside.body.jobs[0].id}`)).body;
      return j.state === 'running' ? j : undefined;
    });
    expect(running.placement!.map((p) => p.node)).toEqual(held.nodes);
  });

  it("refuses a job that names another member's reservation, one that runs past its end, or asks for more than it holds", async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      [phaResearcher, { reservation: 'tel-now' }, 'body.reservation'],
      [telResearcher, { reservation: 'tel-now', walltimeSeconds: 3 * H }, 'body.walltimeSeconds'],
      [telResearcher, { reservation: 'tel-now', gpus: 4 }, 'body.reservation'],
      [telResearcher, { reservation: 'nope' }, 'body.reservation'],
    ];
    for (const [token, extra, field] of cases) {
      const r = await t.call<ErrorBody>(token, 'POST', '/v1/jobs', { name: 'x', command: ['true'], ...extra });
      expect(r.status, JSON.stringify(extra)).toBe(400);
      expect(r.body.error.field).toBe(field);
    }
  });
});

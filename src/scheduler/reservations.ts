// Advance reservations (capability runs) in the scheduler: booking one (which GPUs it holds), the
// consortium's rules for members who book themselves, and what a cycle does with the booked ones.
//
// Invariants kept here (and checked by test/scheduler/reservations.test.ts):
// - a reservation holds whole nodes, and no node is held by two reservations whose windows overlap;
// - from its start to its end, no job outside it is started on its GPUs: every other job sees them
//   as held from the start (Snapshot.reserve), so it may use them only if it ends before then
//   (backfill); its own jobs run only on its GPUs, and only inside its window.
import { expectedEnd, type Allocation, type PendingJob, type RunningJob } from '../core/job.js';
import type { Consortium } from '../core/consortium.js';
import type { AdvanceReservation, ReservationRules } from '../core/reservation.js';
import { isSchedulable, type Site } from '../core/site.js';
import type { PlacementRequest } from './placement.js';
import { place } from './placement.js';
import type { Availability, Reservation, Snapshot } from './snapshot.js';

const HOUR = 3600;
const WEEK = 7 * 24 * HOUR;

/** Why a booking was refused: a stable code, the field of the request to blame, and a sentence. */
export class ReservationRefusedError extends Error {
  constructor(
    readonly code: 'RESERVATION_IN_PAST' | 'RESERVATION_SHAPE' | 'RESERVATION_NO_ROOM' | 'RESERVATION_RULES',
    readonly field: 'name' | 'member' | 'gpus' | 'start' | 'duration',
    message: string,
  ) {
    super(message);
    this.name = 'ReservationRefusedError';
  }
}

export interface BookingRequest {
  readonly id: string;
  readonly member: string;
  readonly gpus: number;
  /** Seconds, on the caller's clock (epoch in the server, virtual in the simulator). */
  readonly start: number;
  readonly end: number;
}

/** What a booking looks at: the machine, who may run where, what runs now and what is booked. */
export interface BookingState {
  readonly site: Site;
  readonly consortium: Consortium;
  /** The running jobs: where they are, and when each is expected to end. */
  readonly running: readonly { readonly allocation: readonly Allocation[]; readonly end: number }[];
  /** Those already booked (none when absent). */
  readonly reservations?: readonly AdvanceReservation[];
}

/**
 * Picks the GPUs of a new reservation, as Slurm picks a reservation's nodes: whole nodes that are
 * up, in the member's zone if it is bound to one (else outside every bound zone), not held by a
 * reservation whose window overlaps. Whole NVLink domains first (the emptiest first, as large
 * gangs go), the rest in the tightest domain that holds it; within each, nodes whose running jobs
 * are expected to end before the start first, so the machine drains toward it with the least
 * waiting. Throws ReservationRefusedError when it cannot be satisfied.
 */
export function bookReservation(state: BookingState, request: BookingRequest, now: number): AdvanceReservation {
  const { site, consortium } = state;
  const member = consortium.members.find((m) => m.id === request.member);
  if (!member) throw new ReservationRefusedError('RESERVATION_SHAPE', 'member', `no member ${request.member}`);
  if (request.end <= request.start)
    throw new ReservationRefusedError('RESERVATION_SHAPE', 'duration', 'a reservation lasts more than zero seconds');
  if (request.end <= now)
    throw new ReservationRefusedError('RESERVATION_IN_PAST', 'start', 'the reservation would be over before it is booked');
  if (!Number.isInteger(request.gpus) || request.gpus <= 0)
    throw new ReservationRefusedError('RESERVATION_SHAPE', 'gpus', 'a reservation holds a positive whole number of GPUs');

  // Whole nodes: a count no sum of node sizes makes is refused before anything is looked up.
  const sizes = [...new Set(site.nodes.map((n) => n.gpus))].sort((a, b) => a - b);
  if (sizes.length === 1 && request.gpus % sizes[0] !== 0)
    throw new ReservationRefusedError(
      'RESERVATION_SHAPE',
      'gpus',
      `a reservation holds whole nodes of ${sizes[0]} GPUs: ask for a multiple of ${sizes[0]}`,
    );
  // Nodes a reservation may hold: up, in the member's place, not booked over this window.
  const boundZones = new Set(consortium.members.map((m) => m.zone).filter((z) => z !== null));
  const inPlace = (zone: string) => (member.zone !== null ? zone === member.zone : !boundZones.has(zone));
  const booked = new Uint8Array(site.nodes.length);
  const overlapping = (state.reservations ?? []).filter((r) => r.start < request.end && request.start < r.end);
  for (const r of overlapping) for (const a of r.allocation) booked[a.node] = 1;
  // When each node's running work is expected to be gone: the drain toward the start.
  const busyUntil = new Float64Array(site.nodes.length);
  for (const job of state.running) for (const a of job.allocation) busyUntil[a.node] = Math.max(busyUntil[a.node], job.end);
  const eligible = (n: number) => isSchedulable(site.nodes[n]) && booked[n] === 0;
  // Drained in time first, then the sooner-free; node index keeps it deterministic.
  const nodeOrder = (a: number, b: number) =>
    Number(busyUntil[a] > request.start) - Number(busyUntil[b] > request.start) || busyUntil[a] - busyUntil[b] || a - b;

  const domains = site.domains
    .map((d, i) => {
      const nodes = inPlace(d.zone) ? d.nodes.filter(eligible).sort(nodeOrder) : [];
      const gpus = nodes.reduce((s, n) => s + site.nodes[n].gpus, 0);
      const late = nodes.filter((n) => busyUntil[n] > request.start).length;
      return { index: i, nodes, gpus, late };
    })
    .filter((d) => d.gpus > 0);
  const available = domains.reduce((s, d) => s + d.gpus, 0);
  if (available < request.gpus) {
    const others =
      overlapping.length > 0
        ? `; ${overlapping.map((r) => r.id).join(', ')} ${overlapping.length === 1 ? 'holds' : 'hold'} GPUs in that window`
        : '';
    throw new ReservationRefusedError(
      'RESERVATION_NO_ROOM',
      'gpus',
      `only ${available} GPUs can be booked for ${member.id} in that window (up nodes${member.zone ? ` in zone ${member.zone}` : ''})${others}`,
    );
  }

  // Whole domains, emptiest (and best drained) first, while the rest needs at least a whole one.
  domains.sort((a, b) => b.gpus - a.gpus || a.late - b.late || a.index - b.index);
  const chosen: number[] = [];
  let remaining = request.gpus;
  const rest = [...domains];
  while (rest.length > 0 && rest[0].gpus <= remaining) {
    const d = rest.shift()!;
    chosen.push(...d.nodes);
    remaining -= d.gpus;
  }
  // The rest: in the tightest domain that holds it, else across the emptiest ones.
  if (remaining > 0) {
    const tight = rest.filter((d) => d.gpus >= remaining).sort((a, b) => a.gpus - b.gpus || a.late - b.late || a.index - b.index);
    const order = tight.length > 0 ? [tight[0]] : rest;
    for (const d of order) {
      for (const n of d.nodes) {
        if (remaining <= 0) break;
        if (site.nodes[n].gpus > remaining) continue;
        chosen.push(n);
        remaining -= site.nodes[n].gpus;
      }
      if (remaining <= 0) break;
    }
  }
  if (remaining !== 0) {
    throw new ReservationRefusedError(
      'RESERVATION_SHAPE',
      'gpus',
      `a reservation holds whole nodes (of ${sizes.join(' or ')} GPUs here): ${request.gpus} GPUs cannot be made of the free nodes`,
    );
  }
  chosen.sort((a, b) => a - b);
  const allocation: Allocation[] = chosen.map((node) => ({ node, gpus: site.nodes[node].gpus }));
  return { id: request.id, member: member.id, start: request.start, end: request.end, allocation };
}

/** Running jobs as a booking sees them: where, and until when (expected). */
export function runningForBooking(running: readonly RunningJob[], now: number): BookingState['running'] {
  return running.map((j) => ({ allocation: j.allocation, end: expectedEnd(j, now) }));
}

/**
 * Whether a member admin may book this without an operator (operators may book beyond the rules).
 * `existing` is every reservation of the factory; the weekly count is of the member's own.
 */
export function checkReservationRules(
  rules: ReservationRules | undefined,
  request: BookingRequest,
  existing: readonly AdvanceReservation[],
  now: number,
): void {
  if (!rules)
    throw new ReservationRefusedError(
      'RESERVATION_RULES',
      'member',
      'the consortium lets only operators book reservations (it has no reservations: rules)',
    );
  const hours = (request.end - request.start) / HOUR;
  if (rules.maxGpus !== null && request.gpus > rules.maxGpus)
    throw new ReservationRefusedError('RESERVATION_RULES', 'gpus', `the consortium's rules allow at most ${rules.maxGpus} GPUs`);
  if (rules.maxHours !== null && hours > rules.maxHours)
    throw new ReservationRefusedError(
      'RESERVATION_RULES',
      'duration',
      `the consortium's rules allow at most ${rules.maxHours} h`,
    );
  if (request.start < now + rules.minNoticeHours * HOUR)
    throw new ReservationRefusedError(
      'RESERVATION_RULES',
      'start',
      `the consortium's rules ask for ${rules.minNoticeHours} h notice: start at ${new Date((now + rules.minNoticeHours * HOUR) * 1000).toISOString()} or later`,
    );
  if (rules.perMemberPerWeek !== null) {
    // Any 7 days around this one: the ones starting within a week before or after it.
    const near = existing.filter((r) => r.member === request.member && Math.abs(r.start - request.start) < WEEK);
    if (near.length >= rules.perMemberPerWeek)
      throw new ReservationRefusedError(
        'RESERVATION_RULES',
        'start',
        `the consortium's rules allow ${rules.perMemberPerWeek} reservation(s) per member per week; ${request.member} has ${near.map((r) => r.id).join(', ')} within a week of this one`,
      );
  }
}

/** A job's verdict inside its reservation: start on these GPUs, or wait (null start: never). */
export type InReservation =
  | { readonly kind: 'start'; readonly allocation: Allocation[]; readonly end: number }
  | { readonly kind: 'wait'; readonly from: number | null };

/**
 * A reservation that has been on this long with no job running or waiting in it is released
 * (Slurm's PURGE_COMP): its GPUs are everyone's again and it is no longer charged. A capability
 * run that ends hours before its window does not idle the rest of it. A job submitted to it later
 * takes it back, from when the GPUs free up.
 */
export const RELEASE_IDLE_SECONDS = 600;

/** The reservations still holding their GPUs: not over, and not released for want of jobs. */
export function liveReservations(
  reservations: readonly AdvanceReservation[] | undefined,
  now: number,
  ...jobs: Iterable<{ readonly reservation?: string | null }>[]
): AdvanceReservation[] {
  // Every cycle (and every simulated event) asks, with every job: the jobs are read only when a
  // reservation has been on long enough to be released.
  if (!reservations || reservations.length === 0) return [];
  const due = (r: AdvanceReservation) => r.end > now && now >= r.start + RELEASE_IDLE_SECONDS;
  if (!reservations.some(due)) return reservations.filter((r) => r.end > now);
  const used = new Set<string>();
  for (const list of jobs) for (const j of list) if (j.reservation != null) used.add(j.reservation);
  return reservations.filter((r) => r.end > now && (!due(r) || used.has(r.id)));
}

/** The prefix that marks an advance reservation among the snapshot's held GPU sets. */
const HELD = 'reservation:';

/**
 * The booked reservations as one cycle sees them: held GPUs for everyone outside them, the only
 * GPUs for the jobs inside them.
 */
export class AdvanceReservations {
  private readonly byId = new Map<string, AdvanceReservation>();

  constructor(
    reservations: readonly AdvanceReservation[] | undefined,
    private readonly now: number,
  ) {
    // Those over are gone: their GPUs are everyone's again.
    for (const r of reservations ?? []) if (r.end > now) this.byId.set(r.id, r);
  }

  get any(): boolean {
    return this.byId.size > 0;
  }

  /** Holds every reservation's GPUs from its start: others may use them only if they end before. */
  hold(snap: Snapshot, member: (id: string) => number): void {
    for (const r of this.byId.values())
      snap.reserve({ job: HELD + r.id, member: member(r.member), start: r.start, end: r.end, allocation: r.allocation });
  }

  /** The running job runs in a reservation that is on now: its GPUs are the reservation's, not quota. */
  inActive(job: PendingJob | RunningJob): boolean {
    if (job.reservation == null) return false;
    const r = this.byId.get(job.reservation);
    return r !== undefined && r.member === job.member && r.start <= this.now;
  }

  /**
   * Where a job of a reservation starts now: only on the reservation's GPUs, only inside its window,
   * and only if its walltime ends by the reservation's end. Otherwise it waits for the start (or for
   * ever, when the reservation is gone, not its member's, or too short for it).
   */
  consider(snap: Snapshot, job: PendingJob, req: PlacementRequest): InReservation {
    const r = job.reservation == null ? undefined : this.byId.get(job.reservation);
    if (!r || r.member !== job.member || job.walltimeSeconds > r.end - r.start) return { kind: 'wait', from: null };
    const start = Math.max(this.now, r.start);
    if (start + job.walltimeSeconds > r.end) return { kind: 'wait', from: null };
    if (this.now < r.start) return { kind: 'wait', from: r.start };
    const allocation = place(snap, this.inside(snap, r), req);
    if (!allocation) return { kind: 'wait', from: this.now };
    return { kind: 'start', allocation, end: this.now + job.walltimeSeconds };
  }

  /** The reservation's GPUs that are free now: its nodes are its own for the whole window. */
  private inside(snap: Snapshot, r: AdvanceReservation): Availability {
    const avail = new Int32Array(snap.free.length);
    const domainAvail = new Int32Array(snap.site.domains.length);
    let total = 0;
    for (const { node, gpus } of r.allocation) {
      const a = Math.min(gpus, Math.max(0, snap.now.avail[node]));
      avail[node] = a;
      domainAvail[snap.site.nodes[node].domain] += a;
      total += a;
    }
    return { avail, domainAvail, total };
  }

  /**
   * Whether an advance reservation, not a blocked job's hold, keeps this job from starting now:
   * without the reservations' GPUs it would fit. Said as WaitingForReservation.
   */
  blocks(snap: Snapshot, job: string, req: PlacementRequest, end: number): boolean {
    if (!snap.reservations.some((r) => isAdvance(r) && r.start < end)) return false;
    // The job's own hold (made just before it is explained) is no obstacle to it.
    const holds = snap.subtractReservations(snap.now, (r) => !isAdvance(r) && r.job !== job && r.start < end);
    return place(snap, holds, req) !== null;
  }
}

export function isAdvance(r: Reservation): boolean {
  return r.job.startsWith(HELD);
}

/** GPUs a reservation holds. */
export function reservationGpus(r: Pick<AdvanceReservation, 'allocation'>): number {
  let g = 0;
  for (const a of r.allocation) g += a.gpus;
  return g;
}

/**
 * GPU-hours the reservations held between `from` and `to` for each member: what fair share charges
 * them, whether their jobs used the GPUs or not (the borrowed share is usage, so the lenders are repaid).
 */
export function reservedGpuHours(reservations: readonly AdvanceReservation[], from: number, to: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reservations) {
    const seconds = Math.min(to, r.end) - Math.max(from, r.start);
    if (seconds <= 0) continue;
    out[r.member] = (out[r.member] ?? 0) + (reservationGpus(r) * seconds) / HOUR;
  }
  return out;
}

/**
 * GPUs each member is charged for in fair share now: its running jobs' GPUs, where the jobs inside
 * a reservation that is on give way to the reservation's whole size, used or not (the borrowed
 * share is usage, so fair share repays the lenders), until it is released (`liveReservations`).
 */
export function chargedGpus(
  running: readonly { readonly member: string; readonly gpus: number; readonly reservation?: string | null }[],
  reservations: readonly AdvanceReservation[],
  now: number,
  waiting: Iterable<{ readonly reservation?: string | null }> = [],
): Record<string, number> {
  const out: Record<string, number> = {};
  const active = new Map<string, AdvanceReservation>();
  for (const r of liveReservations(reservations, now, running, waiting)) {
    if (r.start > now || r.end <= now) continue;
    active.set(r.id, r);
    out[r.member] = (out[r.member] ?? 0) + reservationGpus(r);
  }
  for (const j of running) {
    const r = j.reservation == null ? undefined : active.get(j.reservation);
    if (r && r.member === j.member) continue;
    out[j.member] = (out[j.member] ?? 0) + j.gpus;
  }
  return out;
}

// Capability runs for the digital twin: advance reservations booked at given hours of the replay, as
// node events are. A small CSV, booked in its order with the server's booking function (whole
// nodes, whole NVLink domains first, the member's zone, no node booked twice over overlapping
// windows), against the site as it is when the replay starts:
//
//   start_hours,duration_hours,member,gpus
//   72,24,pharma,576        # pharma's capability run: half the factory for a day, from day 3
//
// Which jobs run in one: a trace says nothing of reservations, so the rule is the capability run's
// own. A job of the reservation's member runs in it when its gang is larger than the member's
// entitlement (it needs the booked GPUs: within its share it would not need a reservation), it fits
// the reservation (no more GPUs than it holds, a walltime no longer than it lasts), and it is
// submitted while there is still time to run it there (submission + walltime ≤ its end, from its
// start at the earliest), and the reservation has room left for it (see assignToReservations). Of
// several such reservations, the first to start takes it. Every other job runs outside
// reservations, as in the server.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Consortium } from '../core/consortium.js';
import { InvalidDescriptionError } from '../core/errors.js';
import { gangGpus } from '../core/job.js';
import type { AdvanceReservation } from '../core/reservation.js';
import type { Site } from '../core/site.js';
import { bookReservation, ReservationRefusedError, reservationGpus } from '../scheduler/reservations.js';
import type { SimJob } from './engine.js';

const HEADER = 'start_hours,duration_hours,member,gpus';

/** Reads and books a reservation CSV for a site and consortium; every problem names the file and the line. */
export function parseReservations(text: string, file: string, site: Site, consortium: Consortium): AdvanceReservation[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = lines[0]?.split('#')[0].trim().toLowerCase().replace(/\s/g, '');
  if (header !== HEADER) throw new InvalidDescriptionError(file, 'line 1', `the header must be '${HEADER}'`);
  const booked: AdvanceReservation[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].split('#')[0].trim();
    if (line === '') continue;
    const where = `line ${i + 1}`;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length !== 4) throw new InvalidDescriptionError(file, where, `expected 4 fields, got ${fields.length}`);
    const [startText, durationText, member, gpusText] = fields;
    const start = Number(startText);
    if (startText === '' || !Number.isFinite(start) || start < 0)
      throw new InvalidDescriptionError(file, where, `start_hours must be a number of hours ≥ 0, got '${startText}'`);
    const duration = Number(durationText);
    if (durationText === '' || !Number.isFinite(duration) || duration <= 0)
      throw new InvalidDescriptionError(file, where, `duration_hours must be a number of hours > 0, got '${durationText}'`);
    if (!consortium.members.some((m) => m.id === member))
      throw new InvalidDescriptionError(
        file,
        where,
        `'${member}' is not a member of ${consortium.name} (${consortium.members.map((m) => m.id).join(', ')})`,
      );
    const gpus = Number(gpusText);
    if (!/^\d+$/.test(gpusText) || gpus < 1)
      throw new InvalidDescriptionError(file, where, `gpus must be a whole number ≥ 1, got '${gpusText}'`);
    try {
      booked.push(
        bookReservation(
          { site, consortium, running: [], reservations: booked },
          { id: `r${i + 1}`, member, gpus, start: start * 3600, end: (start + duration) * 3600 },
          0,
        ),
      );
    } catch (e) {
      if (e instanceof ReservationRefusedError) throw new InvalidDescriptionError(file, where, e.message);
      throw e;
    }
  }
  return booked;
}

export function readReservations(path: string, site: Site, consortium: Consortium): AdvanceReservation[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InvalidDescriptionError(basename(path), '', `cannot read: ${(e as Error).message}`);
  }
  return parseReservations(text, path, site, consortium);
}

/**
 * The jobs with `reservation` set on those that run in one (the rule at the top of this file);
 * the others unchanged. A reservation takes no more than it can run: in submission order, each job
 * it takes uses its GPU-time, and jobs of more than half its GPUs (which run one after another)
 * must each fit after the previous one's walltime; a job that would not fit runs outside it.
 */
export function assignToReservations(
  jobs: readonly SimJob[],
  reservations: readonly AdvanceReservation[],
  consortium: Consortium,
): SimJob[] {
  if (reservations.length === 0) return [...jobs];
  const entitlement = new Map(consortium.members.map((m) => [m.id, m.entitlementGpus]));
  const plans = [...reservations]
    .sort((a, b) => a.start - b.start || (a.id < b.id ? -1 : 1))
    .map((r) => ({ r, gpus: reservationGpus(r), gpuSeconds: reservationGpus(r) * (r.end - r.start), wideUntil: r.start }));
  const order = jobs.map((_, i) => i).sort((a, b) => jobs[a].job.submittedAt - jobs[b].job.submittedAt || a - b);
  const out = [...jobs];
  for (const i of order) {
    const j = jobs[i].job;
    const gpus = gangGpus(j.gang);
    if (gpus <= (entitlement.get(j.member) ?? 0)) continue;
    for (const p of plans) {
      if (p.r.member !== j.member || gpus > p.gpus || gpus * j.walltimeSeconds > p.gpuSeconds) continue;
      const wide = 2 * gpus > p.gpus;
      const start = Math.max(j.submittedAt, p.r.start, wide ? p.wideUntil : p.r.start);
      if (start + j.walltimeSeconds > p.r.end) continue;
      p.gpuSeconds -= gpus * j.walltimeSeconds;
      if (wide) p.wideUntil = start + j.walltimeSeconds;
      out[i] = { ...jobs[i], job: { ...j, reservation: p.r.id } };
      break;
    }
  }
  return out;
}

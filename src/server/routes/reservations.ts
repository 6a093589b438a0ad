// Advance reservations (capability runs), as Slurm's `scontrol create reservation` and `sinfo -T`.
//
// Who may do what (see access.ts): an operator books for any member, beyond the consortium's rules;
// a member admin books for its own member, within the rules of the consortium file's `reservations:`
// block; nobody else books. Everyone sees every reservation's name, member, window, GPUs and nodes
// (what `sinfo -T` shows to all, so that everyone knows why GPUs are held); who booked it, only its
// member and operators. An operator deletes any; a member admin only its own member's: another
// member's is refused with 403 (it is visible, so a 404 would be a lie).
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isoTime, ReservationRequest, ReservationView, type SubmitSpec } from '../../api/contract.js';
import type { Allocation } from '../../core/job.js';
import { nodeIndex, type Site } from '../../core/site.js';
import { bookReservation, checkReservationRules, ReservationRefusedError } from '../../scheduler/reservations.js';
import { ReservationExistsError, type StoredReservation } from '../../store/reservations.js';
import { requireRole } from '../access.js';
import type { Principal } from '../auth.js';
import type { ServerContext } from '../context.js';
import { ApiError, notFound } from '../errors.js';

const STATUS: Record<ReservationRefusedError['code'], number> = {
  RESERVATION_IN_PAST: 400,
  RESERVATION_SHAPE: 400,
  RESERVATION_NO_ROOM: 409,
  RESERVATION_RULES: 403,
};

const FIELD: Record<ReservationRefusedError['field'], string> = {
  name: 'body.name',
  member: 'body.member',
  gpus: 'body.gpus',
  start: 'body.start',
  duration: 'body.durationSeconds',
};

export function reservationRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { controller, consortium } = ctx;
  const store = ctx.reservations;

  const view = (res: StoredReservation, p: Principal, now: number): ReservationView => {
    const site = controller.currentSite();
    const own = p.member === null || p.member === res.member;
    return {
      name: res.id,
      member: res.member,
      start: isoTime(res.start),
      end: isoTime(res.end),
      gpus: res.gpus,
      nodes: res.allocation.map((a) => site.nodes[a.node]?.name ?? `#${a.node}`),
      state: res.start <= now ? 'active' : 'future',
      createdBy: own ? res.createdBy : null,
      createdAt: own ? isoTime(res.createdAt) : null,
    };
  };

  const record = (p: Principal, kind: string, res: StoredReservation) =>
    ctx.audit.append({
      kind,
      actor: `${p.role}:${p.user}`,
      member: res.member,
      subject: `reservation:${res.id}`,
      data: { gpus: res.gpus, start: isoTime(res.start), end: isoTime(res.end), nodes: res.allocation.length },
    });

  r.post(
    '/v1/reservations',
    {
      schema: {
        summary:
          "Book GPUs for a member from a start time (an advance reservation: a capability run). Operators book for any member; member admins for their own, within the consortium's rules.",
        body: ReservationRequest,
        response: { 201: z.object({ reservation: ReservationView }) },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'reservation.book');
      const b = req.body;
      const member = p.member ?? b.member;
      if (member === undefined)
        throw new ApiError(400, 'VALIDATION_FAILED', 'an operator names the member it books for', 'body.member');
      if (p.member !== null && b.member !== undefined && b.member !== p.member)
        throw new ApiError(403, 'FORBIDDEN', `you book reservations of member ${p.member} only`, 'body.member');
      if (!consortium.members.some((m) => m.id === member))
        throw new ApiError(400, 'VALIDATION_FAILED', `no member ${member}`, 'body.member');
      const now = ctx.now();
      const start = Date.parse(b.start) / 1000;
      const request = { id: b.name, member, gpus: b.gpus, start, end: start + b.durationSeconds };
      if (start < now - 60)
        throw new ApiError(400, 'RESERVATION_IN_PAST', `the start ${b.start} is in the past: book from now on`, 'body.start');
      let booked: StoredReservation;
      try {
        booked = await store.book(b.name, now, p.user, (existing) => {
          if (p.role !== 'operator') checkReservationRules(consortium.reservations, request, existing, now);
          const site = controller.currentSite();
          return bookReservation(
            { site, consortium, running: runningOn(site, controller.onGpus()), reservations: existing },
            request,
            now,
          );
        });
      } catch (e) {
        if (e instanceof ReservationRefusedError) throw new ApiError(STATUS[e.code], e.code, e.message, FIELD[e.field]);
        if (e instanceof ReservationExistsError) throw new ApiError(409, 'CONFLICT', e.message, 'body.name');
        throw e;
      }
      await record(p, 'reservation.created', booked);
      // The next cycle holds its GPUs (backfill only what ends before its start).
      controller.kick();
      return reply.code(201).send({ reservation: view(booked, p, now) });
    },
  );

  r.get(
    '/v1/reservations',
    {
      schema: {
        summary: 'Every reservation that is on or to come (sinfo -T): name, member, window, GPUs and nodes.',
        response: { 200: z.object({ reservations: z.array(ReservationView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'reservation.read');
      const now = ctx.now();
      return { reservations: (await store.list(now)).map((res) => view(res, p, now)) };
    },
  );

  r.delete(
    '/v1/reservations/:name',
    {
      schema: {
        summary: "Delete a reservation: its GPUs are everyone's again, and its waiting jobs can never start (cancel them).",
        params: z.object({ name: z.string().min(1).max(64) }),
        response: { 200: z.object({ reservation: ReservationView }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'reservation.delete');
      const res = await store.get(req.params.name);
      const now = ctx.now();
      if (!res || res.end <= now) throw notFound(`reservation ${req.params.name}`);
      if (p.member !== null && p.member !== res.member)
        throw new ApiError(
          403,
          'FORBIDDEN',
          `reservation ${res.id} is ${res.member}'s: only its member admins or an operator delete it`,
          'params.name',
        );
      if (!(await store.delete(res.id))) throw notFound(`reservation ${req.params.name}`);
      await record(p, 'reservation.deleted', res);
      controller.kick();
      return { reservation: view(res, p, now) };
    },
  );
}

/** Running jobs where they are (node indices) and when they are expected to end. */
function runningOn(
  site: Site,
  jobs: readonly {
    readonly placement: readonly { node: string; gpus: readonly number[] }[] | null;
    readonly startedAt: number | null;
    readonly request: { readonly walltimeSeconds: number };
  }[],
): { allocation: Allocation[]; end: number }[] {
  const index = nodeIndex(site);
  return jobs.flatMap((j) => {
    if (!j.placement) return [];
    const allocation = j.placement.flatMap((pl) => {
      const node = index.get(pl.node);
      return node === undefined ? [] : [{ node, gpus: pl.gpus.length }];
    });
    return [{ allocation, end: (j.startedAt ?? 0) + j.request.walltimeSeconds }];
  });
}

/**
 * A job that names a reservation must name one of its member's that is on or to come, and fit it:
 * no more GPUs than it holds, and a walltime that ends inside it. Otherwise it could never start.
 */
export async function checkJobReservation(ctx: ServerContext, member: string, spec: SubmitSpec): Promise<void> {
  if (spec.reservation === null) return;
  const gpus = spec.gpus ?? (spec.nodes !== undefined && spec.gpusPerNode !== undefined ? spec.nodes * spec.gpusPerNode : 1);
  const res = await ctx.reservations.get(spec.reservation);
  const now = ctx.now();
  // Another member's and none at all read alike: a job may name only its own member's.
  if (!res || res.member !== member || res.end <= now)
    throw new ApiError(
      400,
      'VALIDATION_FAILED',
      `${member} has no reservation ${spec.reservation} that is on or to come`,
      'body.reservation',
    );
  if (gpus > res.gpus)
    throw new ApiError(
      400,
      'VALIDATION_FAILED',
      `reservation ${res.id} holds ${res.gpus} GPUs; the job asks for ${gpus}`,
      'body.reservation',
    );
  if (Math.max(now, res.start) + spec.walltimeSeconds > res.end)
    throw new ApiError(
      400,
      'VALIDATION_FAILED',
      `reservation ${res.id} ends at ${isoTime(res.end)}: a walltime of ${spec.walltimeSeconds} s would run past it`,
      'body.walltimeSeconds',
    );
}

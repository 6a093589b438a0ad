// /v1/jobs: submit (idempotent), list, get, cancel, logs (follow), explain, events.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ensureSubmitted } from '../../audit/reconcile.js';
import {
  ExplainView,
  FINAL_STATES,
  isoTime,
  JOB_STATES,
  JobEventView,
  JobView,
  SubmitRequest,
  type SubmitSpec,
} from '../../api/contract.js';
import type { Member } from '../../core/consortium.js';
import { gangGpus } from '../../core/job.js';
import { beyondMemberLimits } from '../../scheduler/limits.js';
import type { NewJob, StoredJob } from '../../store/store.js';
import { authorize, memberOfWork, requireRole, seesMember } from '../access.js';
import type { Principal } from '../auth.js';
import { ApiError, notFound } from '../errors.js';
import type { ServerContext } from '../context.js';
import { checkJobReservation } from './reservations.js';
import { LogRefusedError, openJobLog, type OpenLog } from '../job-logs.js';
import { HIDDEN_SHOWN, SECRET_SHOWN, type SecretBox } from '../secrets.js';
import { UnknownDatasetError, type Admission } from '../../governance/governance.js';
import { AmbiguousNameError } from '../../governance/model.js';

const JobId = z.object({ id: z.string().regex(/^\d{1,18}$/, 'a job id') });
const Jobs = z.object({ jobs: z.array(JobView) });

/**
 * A job as anyone sees it. Env values are the owner's business (the user who submitted it, in
 * its member): everyone else, operators included, sees the names with "(hidden)". Secret
 * variables are shown to no one, the owner included: their names with "(secret)".
 */
export function jobView(j: StoredJob, p: Principal): JobView {
  const owner = p.role !== 'operator' && p.member === j.member && p.user === j.user;
  const names = (env: Readonly<Record<string, string>> | undefined, shown: string) =>
    Object.fromEntries(Object.keys(env ?? {}).map((k) => [k, shown]));
  const env = owner ? j.request.env : names(j.request.env, HIDDEN_SHOWN);
  return {
    id: j.id,
    name: j.name,
    member: j.member,
    project: j.project,
    user: j.user,
    state: j.state,
    reason: j.reason,
    gpus: j.gpus,
    priorityClass: j.request.priorityClass,
    walltimeSeconds: j.request.walltimeSeconds,
    submittedAt: isoTime(j.submittedAt),
    startedAt: isoTime(j.startedAt),
    endedAt: isoTime(j.endedAt),
    exitCode: j.exitCode,
    placement: j.placement,
    arrayJobId: j.arrayJobId,
    arrayTaskId: j.arrayTaskId,
    requeues: j.requeues,
    lastCheckpointAt: isoTime(j.lastCheckpointAt),
    spec: { ...j.request, env, secretEnv: names(j.request.secretEnv, SECRET_SHOWN) },
  };
}

/**
 * Same request, same hash: key order does not matter. The hash is stored: secret values go into
 * it as keyed fingerprints, never as themselves.
 */
function requestHash(spec: SubmitSpec, secrets: SecretBox): string {
  // A request without secrets hashes as it did before secretEnv existed.
  const { secretEnv: plain, ...rest } = spec;
  const secretEnv = Object.fromEntries(Object.entries(plain).map(([k, v]) => [k, secrets.fingerprint(v)]));
  const body: unknown = Object.keys(secretEnv).length > 0 ? { ...rest, secretEnv } : rest;
  const canon = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canon)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canon(body)))
    .digest('hex');
}

export function jobRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { store, controller, consortium } = ctx;

  /** The job if the principal may see it; 404 otherwise (another member's job does not exist for you). */
  async function visibleJob(p: Principal, id: string): Promise<StoredJob> {
    const j = controller.activeJob(id) ?? (await store.job(id));
    if (!j || !seesMember(p, j.member)) throw notFound(`job ${id}`);
    return j;
  }

  /**
   * A preempted job's reason and events name the job it made room for ("… for job 9"), often
   * another member's: that job's id is cut out for whoever may not see it.
   */
  async function sees(p: Principal, id: string): Promise<boolean> {
    if (p.member === null) return true;
    const other = controller.activeJob(id) ?? (await store.job(id));
    return !!other && seesMember(p, other.member);
  }
  async function hideOthers(p: Principal, text: string | null): Promise<string | null> {
    const m = text === null ? null : / for job (\d+)/.exec(text);
    return m && !(await sees(p, m[1])) ? text!.replace(m[0], '') : text;
  }
  /** A waiting job's reason is the scheduler's latest (what squeue shows in NODELIST(REASON)). */
  async function view(j: StoredJob, p: Principal): Promise<JobView> {
    const v = jobView(j, p);
    if (j.state === 'pending') return { ...v, reason: controller.explanation(j.id)?.reason ?? v.reason };
    return { ...v, reason: await hideOthers(p, v.reason) };
  }

  r.post(
    '/v1/jobs',
    {
      schema: {
        summary: 'Submit a job (or a job array). Retrying with the same Idempotency-Key never makes two.',
        headers: z.object({ 'idempotency-key': z.string().min(1).max(256).optional() }),
        body: SubmitRequest,
        response: { 200: Jobs, 201: Jobs },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      const spec = req.body;
      const member = memberFor(p, spec, consortium.members);
      await checkJobReservation(ctx, member.id, spec);
      const jobs = await admitted(buildJobs(spec, member, p.user, ctx.now(), ctx), p, ctx);
      for (const d of spec.afterOk) await visibleJob(p, d).catch(() => bad('body.afterOk', `job ${d} does not exist`));
      const key = req.headers['idempotency-key'];
      const outcome = await store.submit({
        jobs,
        idempotency: key ? { member: member.id, user: p.user, key, requestHash: requestHash(spec, controller.secrets) } : null,
      });
      if (outcome.kind === 'conflict')
        throw new ApiError(
          409,
          'IDEMPOTENCY_CONFLICT',
          'this Idempotency-Key was used for a different request',
          'headers.idempotency-key',
        );
      if (outcome.kind === 'created') {
        controller.submitted(outcome.jobs);
        ctx.metrics.submissions.inc(outcome.jobs.length);
        // After the store's commit, before the reply: an acknowledged job is in the audit log.
        await Promise.all(
          outcome.jobs.map((j) =>
            ctx.audit.append({
              kind: 'job.submitted',
              actor: p.user,
              member: j.member,
              subject: j.id,
              data: { name: j.name, project: j.project, gpus: j.gpus, priorityClass: j.request.priorityClass },
            }),
          ),
        );
      }
      if (outcome.kind === 'replayed')
        // A keyed retry of jobs whose first reply a crash (or a failed audit append) cut off: log
        // the job.submitted they may lack, once, before the reply (src/audit/reconcile.ts).
        await ensureSubmitted(ctx.audit, outcome.jobs, p.user);
      return reply.code(outcome.kind === 'created' ? 201 : 200).send({ jobs: outcome.jobs.map((j) => jobView(j, p)) });
    },
  );

  r.get(
    '/v1/jobs',
    {
      schema: {
        summary: "List jobs: your member's (everyone's for operators), newest ids last; page with `after`.",
        querystring: z.strictObject({
          state: z
            .string()
            .max(200)
            .transform((s) => s.split(','))
            .pipe(z.array(z.enum(JOB_STATES)))
            .optional(),
          member: z.string().max(64).optional(),
          user: z.string().max(128).optional(),
          project: z.string().max(64).optional(),
          name: z.string().max(128).optional(),
          array: z
            .string()
            .regex(/^\d{1,18}$/)
            .optional(),
          after: z
            .string()
            .regex(/^\d{1,18}$/, 'a job id')
            .optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.object({ jobs: z.array(JobView), next: z.string().nullable() }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'job.read');
      const q = req.query;
      if (p.member !== null && q.member !== undefined && q.member !== p.member) return { jobs: [], next: null };
      const jobs = await store.jobs({
        member: p.member ?? q.member,
        user: q.user,
        project: q.project,
        states: q.state,
        name: q.name,
        arrayJobId: q.array,
        after: q.after,
        limit: q.limit,
      });
      return {
        jobs: await Promise.all(jobs.map((j) => view(j, p))),
        next: jobs.length === q.limit ? jobs[jobs.length - 1].id : null,
      };
    },
  );

  r.get('/v1/jobs/:id', { schema: { params: JobId, response: { 200: JobView } } }, async (req) => {
    const j = await visibleJob(req.principal, req.params.id);
    authorize(req.principal, 'job.read', { member: j.member, what: `job ${j.id}` });
    return view(j, req.principal);
  });

  r.post(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        summary: 'Cancel a job (scancel): a running one gets its signal, then SIGKILL after its grace period.',
        params: JobId,
        response: { 200: JobView },
      },
    },
    async (req) => {
      const p = req.principal;
      const j = await visibleJob(p, req.params.id);
      authorize(p, 'job.cancel', { member: j.member, user: j.user, what: `job ${j.id}` });
      if (FINAL_STATES.includes(j.state)) throw new ApiError(409, 'JOB_FINISHED', `job ${j.id} already ended (${j.state})`);
      const after = (await controller.cancel(j.id, p.user)) ?? (await store.job(j.id))!;
      return view(after, p);
    },
  );

  r.post(
    '/v1/jobs/:id/checkpoints',
    {
      schema: {
        summary:
          "A running job reports a checkpoint (its owner, or the job with its owner's credentials): the scheduler counts the work a preemption would destroy from now on.",
        params: JobId,
        response: { 200: JobView },
      },
    },
    async (req) => {
      const p = req.principal;
      const j = await visibleJob(p, req.params.id);
      authorize(p, 'job.read', { member: j.member, what: `job ${j.id}` });
      // What the job saved is known to its owner only: nobody else may move the scheduler's view of it.
      if (p.member !== j.member || p.user !== j.user)
        throw new ApiError(403, 'FORBIDDEN', `only the owner of job ${j.id} reports its checkpoints`);
      const after = await controller.checkpoint(j.id, p.user);
      if (!after) {
        const now = (await store.job(j.id))!;
        throw new ApiError(409, 'CONFLICT', `job ${j.id} is ${now.state}: only a job on its GPUs reports checkpoints`);
      }
      return view(after, p);
    },
  );

  r.get(
    '/v1/jobs/:id/events',
    { schema: { params: JobId, response: { 200: z.object({ events: z.array(JobEventView) }) } } },
    async (req) => {
      const j = await visibleJob(req.principal, req.params.id);
      authorize(req.principal, 'job.read', { member: j.member, what: `job ${j.id}` });
      const events = await store.events(j.id);
      const p = req.principal;
      return {
        events: await Promise.all(
          events.map(async (e) => {
            const data = e.data ? { ...e.data } : null;
            if (data && typeof data.for === 'string' && !(await sees(p, data.for))) delete data.for;
            return { at: isoTime(e.at), kind: e.kind, actor: e.actor, reason: await hideOthers(p, e.reason), data };
          }),
        ),
      };
    },
  );

  r.get('/v1/jobs/:id/explain', { schema: { params: JobId, response: { 200: ExplainView } } }, async (req) => {
    const found = await visibleJob(req.principal, req.params.id);
    authorize(req.principal, 'job.read', { member: found.member, what: `job ${found.id}` });
    const j = { ...found, reason: await hideOthers(req.principal, found.reason) };
    const e = j.state === 'pending' ? controller.explanation(j.id) : undefined;
    return {
      job: j.id,
      state: j.state,
      reason: e?.reason ?? (j.state === 'pending' ? 'NotYetScheduled' : j.reason),
      position: e?.position ?? null,
      estimatedStart: isoTime(e?.estimatedStart ?? null),
      message: explainMessage(j, e?.reason ?? null, e?.estimatedStart ?? null),
    };
  });

  r.get(
    '/v1/jobs/:id/logs',
    {
      schema: {
        summary: "The job's output log (or its error log); with follow=true the response streams until the job ends.",
        params: JobId,
        querystring: z.strictObject({
          stream: z.enum(['output', 'error']).default('output'),
          offset: z.coerce.number().int().min(0).default(0),
          follow: z
            .enum(['true', 'false', '1', '0'])
            .transform((v) => v === 'true' || v === '1')
            .default(false),
        }),
      },
    },
    async (req, reply) => {
      const p = req.principal;
      const j = await visibleJob(p, req.params.id);
      authorize(p, 'job.logs', { member: j.member, user: j.user, what: `job ${j.id}` });
      const exec = controller.execJob(j);
      const path = req.query.stream === 'error' ? exec.error : exec.output;
      const dir = controller.jobDir(j.id);
      const open = async (): Promise<OpenLog> => {
        try {
          return await openJobLog(dir, path);
        } catch (err) {
          if (err instanceof LogRefusedError)
            throw new ApiError(403, 'FORBIDDEN', `job ${j.id}'s ${req.query.stream} log is not served: ${err.why}`);
          throw err;
        }
      };
      // Opened (and checked) before the first byte goes out: a refusal is a 403, not a cut stream.
      const first = await open();
      reply.type('text/plain; charset=utf-8');
      if (!req.query.follow) {
        if (!first) return '';
        return first.handle.createReadStream({ start: req.query.offset, autoClose: true });
      }
      return Readable.from(
        follow(
          first,
          open,
          req.query.offset,
          async () => !controller.activeJob(j.id),
          () => req.raw.destroyed,
        ),
      );
    },
  );
}

/** An absolute path in the data folder (as written, and where it leads once links are read). */
function inDataFolder(dataDir: string, path: string): boolean {
  const inside = (dir: string, p: string) => {
    const rel = relative(dir, p);
    return rel === '' || (rel.split(sep)[0] !== '..' && !isAbsolute(rel));
  };
  /** The real path of the longest part of `p` that exists, with the rest appended. */
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      const parent = dirname(p);
      return parent === p ? p : resolve(real(parent), relative(parent, p));
    }
  };
  return inside(resolve(dataDir), resolve(path)) || inside(real(dataDir), real(path));
}

/**
 * Yields what is appended to the log until `ended()` and everything written has been read. The
 * descriptor opened (and checked) once is read on; a log that did not exist yet is opened, with
 * the same checks, when it appears. A log refused later ends the stream.
 */
async function* follow(
  first: OpenLog,
  open: () => Promise<OpenLog>,
  offset: number,
  ended: () => Promise<boolean>,
  gone: () => boolean,
): AsyncGenerator<Buffer> {
  let log = first;
  let at = offset;
  try {
    for (;;) {
      const done = await ended();
      if (!log) {
        try {
          log = await open();
        } catch (e) {
          if (e instanceof LogRefusedError) return;
          // Not there yet: looked for again on the next turn.
        }
      }
      if (log) {
        const size = (await log.handle.stat()).size;
        while (size > at) {
          const chunk = Buffer.alloc(Math.min(size - at, 64 * 1024));
          const { bytesRead } = await log.handle.read(chunk, 0, chunk.length, at);
          if (bytesRead === 0) break;
          at += bytesRead;
          yield chunk.subarray(0, bytesRead);
        }
      }
      if (done || gone()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await log?.handle.close();
  }
}

/**
 * Jobs that declare datasets pass admission (Cedar, over the datasets, the agreements and where
 * they may run), and are bound to the zone and the NVLink-domain isolation it requires. A refusal
 * is an error naming the rule, recorded in the audit log like an admission.
 */
async function admitted(jobs: NewJob[], p: Principal, ctx: ServerContext): Promise<NewJob[]> {
  const { request: r, member, project } = jobs[0];
  if (r.datasets.length === 0) return jobs;
  let a: Admission;
  try {
    a = await ctx.governance.admit({
      member,
      project,
      purpose: r.purpose!,
      datasets: r.datasets,
      zone: r.zone,
      exclusive: r.exclusive,
    });
  } catch (err) {
    if (err instanceof UnknownDatasetError) throw new ApiError(404, 'NOT_FOUND', err.message, 'body.datasets');
    if (err instanceof AmbiguousNameError) throw new ApiError(400, 'VALIDATION_FAILED', err.message, 'body.datasets');
    throw err;
  }
  const actor = `${p.role}:${p.user}`;
  if (!a.allow) {
    await ctx.audit.append({
      kind: 'admission.denied',
      actor,
      member,
      subject: `dataset:${a.refusal.dataset}`,
      data: { rules: a.refusal.rules, purpose: r.purpose },
    });
    throw new ApiError(403, 'ADMISSION_DENIED', `admission refused: ${a.message}`, 'body.datasets');
  }
  await ctx.audit.append({
    kind: 'admission.allowed',
    actor,
    member,
    subject: `datasets:${a.datasets.join(',')}`,
    data: { purpose: r.purpose, zone: a.zone, exclusive: a.exclusive, agreements: a.uses.map((u) => u.agreement) },
  });
  // The job keeps the qualified names it was admitted with (`pharma/trials`): a dataset of that
  // bare name registered later never changes what it uses, where it is placed or in its lineage.
  return jobs.map((j) => ({
    ...j,
    request: { ...j.request, datasets: [...a.datasets], zone: a.zone, exclusive: a.exclusive },
  }));
}

function bad(field: string, message: string): never {
  throw new ApiError(400, 'VALIDATION_FAILED', message, field);
}

/**
 * The member a job is for: the submitter's own, always. Only a member's people submit (job.submit
 * in access.ts); `member` in the body may repeat their own and nothing else.
 */
function memberFor(p: Principal, spec: SubmitSpec, members: readonly Member[]): Member {
  const id = memberOfWork(p, 'job.submit', { value: spec.member, field: 'body.member' });
  const m = members.find((x) => x.id === id);
  if (!m) bad('body.member', `no member ${id}`);
  return m;
}

function buildJobs(spec: SubmitSpec, member: Member, user: string, now: number, ctx: ServerContext): NewJob[] {
  const project = spec.project ?? member.projects[0] ?? 'default';
  if (member.projects.length > 0 && !member.projects.includes(project))
    bad('body.project', `member ${member.id} has no project ${project} (it has ${member.projects.join(', ')})`);
  const site = ctx.controller.currentSite();
  if (spec.zone !== null && !site.zones.includes(spec.zone))
    bad('body.zone', `no zone ${spec.zone} (zones: ${site.zones.join(', ')})`);
  // The scheduler places a job by its own zone before its member's: a member bound to a zone must
  // not name another, and a zone that members are bound to is theirs alone.
  if (spec.zone !== null && member.zone !== null && spec.zone !== member.zone)
    throw new ApiError(403, 'FORBIDDEN', `member ${member.id}'s work runs in zone ${member.zone} only`, 'body.zone');
  if (spec.zone !== null && member.zone === null && ctx.consortium.members.some((m) => m.zone === spec.zone))
    throw new ApiError(403, 'FORBIDDEN', `zone ${spec.zone} is reserved for the members bound to it`, 'body.zone');
  // A zone this site lacks is no place to wait in: the scheduling loop cannot plan such a job at all.
  if (member.zone !== null && !site.zones.includes(member.zone))
    throw new ApiError(
      409,
      'CONFLICT',
      `member ${member.id}'s work must run in zone ${member.zone}, which this site does not have (zones: ${site.zones.join(', ')})`,
    );
  if (spec.gpusPerNode !== undefined && spec.gpusPerNode > site.maxGpusPerNode)
    bad('body.gpusPerNode', `nodes here have at most ${site.maxGpusPerNode} GPUs`);
  if (spec.workdir !== undefined && isAbsolute(spec.workdir) && inDataFolder(ctx.controller.dataDir, spec.workdir))
    bad(
      'body.workdir',
      "the working directory may not be in the control plane's data folder: give a path relative to the job's own folder, or one outside it",
    );
  const { member: _m, project: _p, name, array, secretEnv, ...plain } = spec;
  // Sealed here, before anything is stored: the store, the idempotency record and every view
  // only ever hold the ciphertext (see secrets.ts).
  const rest = { ...plain, secretEnv: ctx.controller.secrets.sealAll({ member: member.id, user }, secretEnv) };
  const request = spec.gpus === undefined && spec.nodes === undefined ? { ...rest, gpus: 1 } : rest;
  const gpus = gangGpus(
    request.gpus !== undefined ? { gpus: request.gpus } : { nodes: request.nodes!, gpusPerNode: request.gpusPerNode! },
  );
  if (gpus > site.totalGpus)
    bad(spec.gpus !== undefined ? 'body.gpus' : 'body.nodes', `the site has ${site.totalGpus} GPUs; the job asks for ${gpus}`);
  // A job its member may never hold would wait for ever, and no start time could be true.
  // (A job in an advance reservation runs on its GPUs instead: checkJobReservation bounds it.)
  const beyond = spec.reservation === null ? beyondMemberLimits(member, site, gpus) : null;
  if (beyond !== null)
    throw new ApiError(
      400,
      'EXCEEDS_MEMBER_LIMIT',
      `${beyond}: it could never start`,
      spec.gpus !== undefined ? 'body.gpus' : 'body.nodes',
    );
  const one = (task: number | null): NewJob => ({
    name,
    member: member.id,
    project,
    user,
    request,
    gpus,
    submittedAt: now,
    arrayTaskId: task,
    arrayThrottle: array?.throttle ?? null,
  });
  return array ? [...new Set(array.indices)].sort((a, b) => a - b).map(one) : [one(null)];
}

function explainMessage(j: StoredJob, reason: string | null, start: number | null): string {
  if (j.state !== 'pending') return `job ${j.id} is ${j.state}${j.reason ? ` (${j.reason})` : ''}`;
  const when = start === null ? 'no start time can be estimated with the machine as it is' : `estimated start ${isoTime(start)}`;
  const why: Record<string, string> = {
    QuotaExhausted: 'its member is at its entitlement and nothing idle can be borrowed',
    WaitingForReclaim: 'GPUs lent to another member are being taken back for it',
    WaitingForResources: 'it holds a reservation and starts when running jobs release its GPUs',
    BehindReservation: 'it would fit now but would delay a job that holds a reservation',
    WaitingForReservation:
      'GPUs booked for an advance reservation (a capability run) keep it off, or it runs in one that has not started',
    NoTopologyFit: 'enough GPUs are free, but not in the NVLink-domain shape it needs',
    IsolationRequired: 'enough GPUs are free, but only on domains shared with another member',
    NodesUnavailable: 'it cannot fit even on an empty machine with the nodes up today',
    ExceedsMemberLimit: 'it asks for more GPUs than its member may ever hold (entitlement plus borrowing limit, its zone)',
    Priority: 'jobs ahead of it in the queue come first',
    Dependency: 'it waits for the jobs it depends on (afterok) to succeed',
    JobArrayTaskLimit: 'its array already runs as many tasks as its throttle allows',
  };
  return `${reason ? (why[reason] ?? reason) : 'the scheduler has not looked at it yet'}; ${when}`;
}

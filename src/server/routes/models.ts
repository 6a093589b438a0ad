// /v1/models, /v1/approvals, /v1/members/:id/break-glass: a finished job's output registered as a
// model version with its lineage and the restrictions it inherits, its card (Markdown or JSON, with
// the EU AI Act's Annex XI fields), export under the two-person rule, and break-glass: operators
// read the job details of a member that asks for it only with an approved request.
//
// Who sees a model: its member (every role), operators and consortium-wide auditors (all of it);
// a member whose datasets it was trained on (a grantor of one of its agreements) sees that it
// exists and its lineage, with other members' datasets and agreements hidden, never its card or
// artifact. Everyone else: 404, exactly as for a model that does not exist.
//
// A model version is its member's: (member, name, version). A route's name is the caller's own
// member's model, else the one other member's it may see by that name and version, or
// `member/name` (`telecom%2Fran-chem` in a path).
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Site } from '../../core/site.js';
import { approverPerson, complete, refuseApproval, requesterPerson, vouchingChain } from '../../governance/approvals.js';
import { AmbiguousNameError, CLASSIFICATIONS, qualified, resolveName } from '../../governance/model.js';
import {
  agreementsUsed,
  buildLineage,
  CardFields,
  cardMarkdown,
  CardPatch,
  modelCard,
  modelRestrictions,
  patchCard,
  type Lineage,
  type ModelRecord,
} from '../../governance/models.js';
import { APPROVAL_KINDS, ModelStore, type Approval, type ApprovalKind } from '../../governance/models-store.js';
import { AlreadyExistsError } from '../../governance/store.js';
import { KyselyStore } from '../../store/kysely-store.js';
import type { StoredJob } from '../../store/store.js';
import { requireRole } from '../access.js';
import type { Principal } from '../auth.js';
import type { ServerContext } from '../context.js';
import { ApiError, forbidden, notFound } from '../errors.js';
import { isoTime } from '../../api/contract.js';

const slug = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, dot, dash and underscore');
const ModelId = z.object({
  name: z
    .string()
    .min(1)
    .max(193)
    .regex(
      /^([a-z0-9][a-z0-9._-]*\/)?[A-Za-z0-9][A-Za-z0-9._-]*$/,
      'a model name (letters, digits, dot, dash and underscore), or member/name',
    ),
  version: slug(64),
});
const HOUR = 3600;
/** How long a request waits for its approvers; a break-glass grant is good for as long. */
const APPROVAL_TTL: Readonly<Record<ApprovalKind, number>> = { 'model-export': 7 * 24 * HOUR, 'break-glass': 24 * HOUR };

const RestrictionsView = z.object({
  classification: z.enum(CLASSIFICATIONS),
  purposes: z.array(z.string()).nullable(),
  zones: z.array(z.string()).nullable(),
  noExport: z.boolean(),
  exportNeedsApproval: z.boolean(),
});
const ModelView = z.object({
  name: z.string(),
  version: z.string(),
  member: z.string(),
  jobId: z.string(),
  artifact: z.string(),
  restrictions: RestrictionsView,
  /** `full`: the member, operators, consortium auditors; `lineage`: a member whose data it was trained on. */
  access: z.enum(['full', 'lineage']),
  createdAt: z.string(),
  createdBy: z.string(),
  cardUpdatedAt: z.string().nullable(),
  cardUpdatedBy: z.string().nullable(),
});
const ApprovalView = z.object({
  id: z.string(),
  kind: z.enum(APPROVAL_KINDS),
  subject: z.string(),
  member: z.string(),
  reason: z.string(),
  requestedBy: z.string(),
  requestedById: z.string().nullable(),
  state: z.enum(['pending', 'approved', 'used', 'expired']),
  /** userId: the person (a name may change or repeat); absent for approvals given before users were records. */
  approvers: z.array(z.object({ user: z.string(), userId: z.string().optional(), role: z.string(), at: z.string() })),
  createdAt: z.string(),
  expiresAt: z.string(),
  approvedAt: z.string().nullable(),
  usedAt: z.string().nullable(),
});

type Access = 'full' | 'lineage';

/** What the principal may see of a model: all of it, its lineage only (a grantor), or nothing. */
function accessTo(p: Principal, m: ModelRecord): Access | null {
  if (p.member === null || p.member === m.member) return 'full';
  return m.grantors.includes(p.member) ? 'lineage' : null;
}

const needsApproval = (m: ModelRecord) => !m.restrictions.noExport && m.restrictions.classification === 'restricted';

function modelView(m: ModelRecord, access: Access): z.infer<typeof ModelView> {
  return {
    name: m.name,
    version: m.version,
    member: m.member,
    jobId: m.jobId,
    artifact: access === 'full' ? m.artifact : '(hidden)',
    restrictions: {
      ...m.restrictions,
      purposes: m.restrictions.purposes && [...m.restrictions.purposes],
      zones: m.restrictions.zones && [...m.restrictions.zones],
      exportNeedsApproval: needsApproval(m),
    },
    access,
    createdAt: isoTime(m.createdAt),
    createdBy: m.createdBy,
    cardUpdatedAt: isoTime(m.cardUpdatedAt),
    cardUpdatedBy: m.cardUpdatedBy,
  };
}

/**
 * The lineage as the principal may see it: dataset locations only to their owner (and operators
 * and auditors); a grantor sees its own datasets and agreements, the others' only as hidden
 * entries with their classification (what explains the model's restrictions), and not the user.
 */
function lineageView(l: Lineage, p: Principal, access: Access) {
  const own = (member: string) => p.member === null || p.member === member;
  return {
    datasets: l.datasets.map((d) =>
      own(d.owner) ? d : access === 'full' ? { ...d, location: '(hidden)' } : { ...d, id: '(hidden)', location: '(hidden)' },
    ),
    agreements: l.agreements.map((a) =>
      access === 'full' || own(a.grantor) ? a : { ...a, id: '(hidden)', datasets: a.datasets.map(() => '(hidden)') },
    ),
    job: access === 'full' ? l.job : { ...l.job, user: '(hidden)' },
    placement: l.placement,
    model: access === 'full' ? l.model : { ...l.model, artifact: '(hidden)' },
  };
}

function approvalView(a: Approval, now: number): z.infer<typeof ApprovalView> {
  return {
    id: a.id,
    kind: a.kind,
    subject: a.subject,
    member: a.member,
    reason: a.reason,
    requestedBy: a.requestedBy,
    requestedById: a.requestedById,
    state: a.state === 'used' ? 'used' : a.expiresAt <= now ? 'expired' : a.state,
    approvers: a.approvers.map((x) => ({ ...x, at: isoTime(x.at) })),
    createdAt: isoTime(a.createdAt),
    expiresAt: isoTime(a.expiresAt),
    approvedAt: isoTime(a.approvedAt),
    usedAt: isoTime(a.usedAt),
  };
}

function placementOf(j: StoredJob, site: Site): Lineage['placement'] {
  const index = new Map(site.nodes.map((n) => [n.name, n]));
  const nodes = (j.placement ?? []).map((x) => {
    const n = index.get(x.node);
    return { node: x.node, gpus: x.gpus.length, domain: n ? site.domains[n.domain].name : null };
  });
  const zones = [
    ...new Set(
      (j.placement ?? []).flatMap((x) => {
        const n = index.get(x.node);
        return n ? [site.domains[n.domain].zone] : [];
      }),
    ),
  ];
  return { zone: zones.length === 1 ? zones[0] : zones.length > 1 ? zones.join('+') : j.request.zone, nodes };
}

/**
 * Job routes that read a member's job details (its script, environment, output, history): with
 * break-glass on, operators need an approval first. The others (the list, cancel, explain) answer
 * without one, with the script, command and environment sealed (SEALED below).
 */
const JOB_DETAILS = new Set(['/v1/jobs/:id', '/v1/jobs/:id/logs', '/v1/jobs/:id/events']);
const HIDDEN = '(break-glass)';

/** A job view with what break-glass protects replaced: the command, the script and the env values. */
function sealed(j: { spec: Record<string, unknown> }) {
  const { command, script, env, ...spec } = j.spec;
  return {
    ...j,
    spec: {
      ...spec,
      ...(command !== undefined ? { command: [HIDDEN] } : {}),
      ...(script !== undefined ? { script: HIDDEN } : {}),
      env: Object.fromEntries(Object.keys((env ?? {}) as object).map((k) => [k, HIDDEN])),
    },
  };
}

type MaybeJob = { member?: unknown; spec?: unknown };
const isJobView = (v: unknown): v is { member: string; spec: Record<string, unknown> } =>
  !!v &&
  typeof v === 'object' &&
  typeof (v as MaybeJob).member === 'string' &&
  !!(v as MaybeJob).spec &&
  typeof (v as MaybeJob).spec === 'object';

export function modelRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  // The registry lives in the store's own database, beside the datasets it refers to.
  if (!(ctx.store instanceof KyselyStore)) throw new Error('the model registry needs a Kysely store');
  const models = new ModelStore(ctx.store.db);
  const gov = ctx.governance.store;

  const record = (p: Principal, kind: string, member: string | null, subject: string, data?: Record<string, unknown>) =>
    ctx.audit.append({ kind, actor: `${p.role}:${p.user}`, member, subject, data });

  /** The version a name means to the principal, among those it may see as `need` asks; 404 otherwise, 400 when several. */
  async function visibleModel(p: Principal, name: string, version: string, need: Access = 'full') {
    const id = name.slice(name.indexOf('/') + 1);
    const seen = (await models.modelsNamed(id, version)).flatMap((m) => {
      const access = accessTo(p, m);
      return access && (need === 'lineage' || access === 'full') ? [{ m, access }] : [];
    });
    const r = resolveName(
      name,
      p.member,
      seen,
      (x) => x.m.member,
      (x) => x.m.name,
    );
    if (r.ambiguous.length > 0)
      throw new ApiError(400, 'VALIDATION_FAILED', new AmbiguousNameError('model', name, r.ambiguous).message, 'params.name');
    if (!r.found) throw notFound(`model ${name} version ${version}`);
    return r.found;
  }

  async function job(id: string): Promise<StoredJob | undefined> {
    return ctx.controller.activeJob(id) ?? (await ctx.store.job(id));
  }

  /** The approved break-glass request of this operator (the person, not the name) for this job, if any. */
  async function breakGlassGrant(p: Principal, jobId: string): Promise<Approval | undefined> {
    const now = ctx.now();
    const all = await models.approvals({ kind: 'break-glass', subject: `job:${jobId}` });
    return all.find((a) => a.state === 'approved' && a.requestedById === p.userId && a.expiresAt > now);
  }
  /** Requests whose job details an operator may read now: its grant was checked in the preHandler. */
  const granted = new WeakSet<FastifyRequest>();

  // Break-glass: an operator's read of a member's job details, where the member asked for it. The
  // job routes stay as they are; this hook stands in front of them.
  app.addHook('preHandler', async (req: FastifyRequest) => {
    const p = req.principal;
    if (!p || p.role !== 'operator' || req.method !== 'GET' || !JOB_DETAILS.has(req.routeOptions.url ?? '')) return;
    const id = (req.params as { id?: string }).id ?? '';
    const j = /^\d{1,18}$/.test(id) ? await job(id) : undefined;
    if (!j || !(await models.breakGlassRequired(j.member))) return;
    const grant = await breakGlassGrant(p, j.id);
    if (!grant)
      throw new ApiError(
        403,
        'APPROVAL_REQUIRED',
        `member ${j.member} requires break-glass: request it (POST /v1/approvals, kind break-glass, subject job:${j.id}) and have a member admin of ${j.member} and another operator approve it`,
      );
    granted.add(req);
    await record(p, 'breakglass.read', j.member, `job:${j.id}`, { approval: grant.id, route: req.routeOptions.url });
  });

  // SEALED: every other answer of the job routes that holds a job (the list is operations' view of
  // the queue; a cancel answers with the job it stopped) goes to an operator without the commands
  // and environment of members that require break-glass. A route added to jobs.ts is covered too.
  // Not a submission's answer: that is what the operator itself just sent.
  app.addHook('preSerialization', async (req: FastifyRequest, _reply, payload: unknown) => {
    const p = req.principal;
    const url = req.routeOptions.url ?? '';
    if (!p || p.role !== 'operator' || !url.startsWith('/v1/jobs') || granted.has(req)) return payload;
    if (req.method === 'POST' && url === '/v1/jobs') return payload;
    const list = (payload as { jobs?: unknown })?.jobs;
    const jobs = isJobView(payload) ? [payload] : Array.isArray(list) ? list.filter(isJobView) : [];
    const seal = new Map<string, boolean>();
    for (const m of new Set(jobs.map((j) => j.member))) seal.set(m, await models.breakGlassRequired(m));
    if (![...seal.values()].some(Boolean)) return payload;
    const each = (j: unknown) => (isJobView(j) && seal.get(j.member) ? sealed(j) : j);
    if (isJobView(payload)) return each(payload);
    return { ...(payload as object), jobs: (list as unknown[]).map(each) };
  });

  /** The vouching chains of these people (user ids; a pre-008 approver's `name:` is a chain of itself). */
  async function chains(people: readonly string[]): Promise<(person: string) => readonly string[]> {
    const out = new Map<string, string[]>();
    for (const id of new Set(people)) out.set(id, await vouchingChain(id, (x) => ctx.store.userById(x)));
    return (person) => out.get(person) ?? [person];
  }

  r.post(
    '/v1/models',
    {
      schema: {
        summary: 'Register a model version from a succeeded job of your member; its restrictions come from its lineage.',
        body: z.strictObject({
          name: slug(128),
          version: slug(64),
          jobId: z.string().regex(/^\d{1,18}$/, 'a job id'),
          artifact: z.string().min(1).max(4096),
          card: CardFields.optional(),
        }),
        response: { 201: ModelView },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'model.register');
      const b = req.body;
      const j = await job(b.jobId);
      if (!j || j.member !== p.member) throw new ApiError(404, 'NOT_FOUND', `job ${b.jobId} not found`, 'body.jobId');
      if (j.state !== 'succeeded')
        throw new ApiError(409, 'CONFLICT', `job ${j.id} is ${j.state}: models come from succeeded jobs`, 'body.jobId');
      // The names admission resolved (`owner/id`; a bare id from before 011 resolved as it is today).
      const datasets = await gov.jobDatasets(j.member, [...new Set(j.request.datasets ?? [])]);
      const purpose = j.request.purpose ?? null;
      const agreements = agreementsUsed({ member: j.member, project: j.project, purpose }, datasets, await gov.agreements());
      const m: ModelRecord = {
        name: b.name,
        version: b.version,
        member: j.member,
        jobId: j.id,
        artifact: b.artifact,
        restrictions: modelRestrictions(datasets, agreements),
        lineage: buildLineage({
          datasets,
          agreements,
          job: {
            id: j.id,
            member: j.member,
            project: j.project,
            user: j.user,
            purpose,
            gpus: j.gpus,
            submittedAt: j.submittedAt,
            startedAt: j.startedAt,
            endedAt: j.endedAt,
          },
          placement: placementOf(j, ctx.controller.currentSite()),
          model: { name: b.name, version: b.version, artifact: b.artifact },
        }),
        grantors: [...new Set([...datasets.map((d) => d.owner), ...agreements.map((a) => a.grantor)])]
          .filter((x) => x !== j.member)
          .sort(),
        card: b.card ?? {},
        createdAt: ctx.now(),
        createdBy: p.user,
        cardUpdatedAt: null,
        cardUpdatedBy: null,
      };
      try {
        await models.addModel(m);
      } catch (err) {
        // Only ever the member's own name and version: another member's ran-chem is no conflict.
        if (err instanceof AlreadyExistsError)
          throw new ApiError(409, 'CONFLICT', `model ${m.name} version ${m.version} exists`, 'body.version');
        throw err;
      }
      const subject = `model:${m.name}@${m.version}`;
      const data = {
        job: j.id,
        datasets: datasets.map((d) => qualified(d.owner, d.id)),
        agreements: agreements.map((a) => qualified(a.grantor, a.id)),
        restrictions: m.restrictions,
      };
      await record(p, 'model.registered', m.member, subject, data);
      // A data owner learns, in its own part of the log, that a model was made from its data.
      for (const g of m.grantors) await record(p, 'model.trained-on-data', g, subject, { member: m.member, ...data });
      return reply.code(201).send(modelView(m, 'full'));
    },
  );

  r.get(
    '/v1/models',
    {
      schema: {
        summary:
          "Your member's models, and those trained on your data (lineage only); all for operators and consortium auditors.",
        response: { 200: z.object({ models: z.array(ModelView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'model.read');
      const out: z.infer<typeof ModelView>[] = [];
      for (const m of await models.models()) {
        const access = accessTo(p, m);
        if (access) out.push(modelView(m, access));
      }
      return { models: out };
    },
  );

  r.get('/v1/models/:name/versions/:version', { schema: { params: ModelId, response: { 200: ModelView } } }, async (req) => {
    requireRole(req.principal, 'model.read');
    const { m, access } = await visibleModel(req.principal, req.params.name, req.params.version, 'lineage');
    return modelView(m, access);
  });

  r.get(
    '/v1/models/:name/versions/:version/lineage',
    {
      schema: {
        summary: 'Where the model came from: datasets → agreements → job → placement → model.',
        params: ModelId,
        response: { 200: z.object({ restrictions: RestrictionsView, lineage: z.record(z.string(), z.unknown()) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'model.read');
      const { m, access } = await visibleModel(p, req.params.name, req.params.version, 'lineage');
      return { restrictions: modelView(m, access).restrictions, lineage: lineageView(m.lineage, p, access) };
    },
  );

  r.get(
    '/v1/models/:name/versions/:version/card',
    {
      schema: {
        summary: 'The model card from platform records and what people filled in, with the EU AI Act Annex XI fields.',
        params: ModelId,
        querystring: z.strictObject({ format: z.enum(['markdown', 'json']).default('json') }),
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'model.read');
      const { m } = await visibleModel(p, req.params.name, req.params.version);
      const card = modelCard(
        { ...m, lineage: { ...m.lineage, ...lineageView(m.lineage, p, 'full') } },
        ctx.controller.currentSite(),
      );
      if (req.query.format === 'markdown') return reply.type('text/markdown; charset=utf-8').send(cardMarkdown(card));
      return reply.type('application/json; charset=utf-8').send(JSON.stringify(card));
    },
  );

  r.patch(
    '/v1/models/:name/versions/:version/card',
    {
      schema: {
        summary:
          'Fill in (or clear, with null) the fields people provide: intended use, limitations, evaluation, Annex XI answers.',
        params: ModelId,
        body: CardPatch,
        response: { 200: z.object({ card: z.record(z.string(), z.unknown()) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      const { m } = await visibleModel(p, req.params.name, req.params.version);
      requireRole(p, 'model.edit');
      if (p.member !== m.member) throw forbidden(`only member ${m.member} edits this card`);
      const card = patchCard(m.card, req.body);
      await models.updateCard(m.member, m.name, m.version, card, p.user, ctx.now());
      await record(p, 'model.card.updated', m.member, `model:${m.name}@${m.version}`, { fields: Object.keys(req.body) });
      return { card };
    },
  );

  r.post(
    '/v1/models/:name/versions/:version/export',
    {
      schema: {
        summary:
          'Export a model: never when an agreement says noExport; a restricted one with an approval of two member admins (two-person rule).',
        params: ModelId,
        response: {
          200: z.object({
            name: z.string(),
            version: z.string(),
            artifact: z.string(),
            classification: z.enum(CLASSIFICATIONS),
            approval: z.string().nullable(),
            approvers: z.array(z.string()),
            exportedAt: z.string(),
            exportedBy: z.string(),
          }),
        },
      },
    },
    async (req) => {
      const p = req.principal;
      const { m } = await visibleModel(p, req.params.name, req.params.version);
      requireRole(p, 'model.export');
      if (p.member !== m.member) throw forbidden(`only member ${m.member} exports this model`);
      const subject = `model:${m.name}@${m.version}`;
      if (m.restrictions.noExport) {
        await record(p, 'model.export.refused', m.member, subject, { rule: 'no-export' });
        throw new ApiError(
          403,
          'EXPORT_FORBIDDEN',
          `model ${m.name} ${m.version} may not leave the factory: an agreement says noExport`,
        );
      }
      let used: Approval | null = null;
      if (needsApproval(m)) {
        const now = ctx.now();
        const mine = (await models.approvals({ kind: 'model-export', subject })).filter(
          (a) => a.requestedById === p.userId && a.expiresAt > now,
        );
        used = mine.find((a) => a.state === 'approved') ?? null;
        if (!used || !(await models.useApproval(used.id, now))) {
          const pending = mine.find((a) => a.state === 'pending');
          await record(p, 'model.export.refused', m.member, subject, { rule: 'two-person', approval: pending?.id ?? null });
          throw new ApiError(
            403,
            'APPROVAL_REQUIRED',
            pending
              ? `approval ${pending.id} has ${pending.approvers.length} of 2 approvers (member admins of ${m.member}, not you)`
              : `a restricted model is exported with two approvers: request one (POST /v1/approvals, kind model-export, subject ${subject})`,
          );
        }
      }
      const at = ctx.now();
      const approvers = used ? used.approvers.map((a) => a.user) : [];
      await record(p, 'model.exported', m.member, subject, {
        artifact: m.artifact,
        classification: m.restrictions.classification,
        approval: used?.id ?? null,
        approvers,
      });
      return {
        name: m.name,
        version: m.version,
        artifact: m.artifact,
        classification: m.restrictions.classification,
        approval: used?.id ?? null,
        approvers,
        exportedAt: isoTime(at),
        exportedBy: p.user,
      };
    },
  );

  r.post(
    '/v1/approvals',
    {
      schema: {
        summary:
          'Ask for a two-person approval: model-export (subject model:<name>@<version>) or break-glass (subject job:<id>).',
        body: z.strictObject({
          kind: z.enum(APPROVAL_KINDS),
          subject: z.string().min(1).max(256),
          reason: z.string().min(1).max(4096),
        }),
        response: { 201: ApprovalView },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'approval.request');
      const b = req.body;
      let member: string;
      if (b.kind === 'model-export') {
        const at = /^model:([^@]+)@(.+)$/.exec(b.subject);
        if (!at) throw new ApiError(400, 'VALIDATION_FAILED', 'a model-export subject is model:<name>@<version>', 'body.subject');
        // A member exports its own models only: the subject names one of them (another's is absent).
        const m = p.member === null ? undefined : await models.model(p.member, at[1], at[2]);
        if (!m) throw new ApiError(404, 'NOT_FOUND', `model ${at[1]} version ${at[2]} not found`, 'body.subject');
        if (m.restrictions.noExport)
          throw new ApiError(
            403,
            'EXPORT_FORBIDDEN',
            `model ${m.name} ${m.version} may never be exported: no approval changes that`,
          );
        if (!needsApproval(m))
          throw new ApiError(
            409,
            'CONFLICT',
            `model ${m.name} ${m.version} is ${m.restrictions.classification}: its export needs no approval`,
          );
        member = m.member;
      } else {
        const at = /^job:(\d{1,18})$/.exec(b.subject);
        if (!at) throw new ApiError(400, 'VALIDATION_FAILED', 'a break-glass subject is job:<id>', 'body.subject');
        if (p.role !== 'operator') throw forbidden('break-glass is asked for by operators');
        const j = await job(at[1]);
        if (!j) throw new ApiError(404, 'NOT_FOUND', `job ${at[1]} not found`, 'body.subject');
        member = j.member;
      }
      const now = ctx.now();
      const a: Approval = {
        id: `apr-${randomBytes(6).toString('hex')}`,
        kind: b.kind,
        subject: b.subject,
        member,
        reason: b.reason,
        requestedBy: p.user,
        requestedById: p.userId,
        requestedRole: p.role,
        createdAt: now,
        expiresAt: now + APPROVAL_TTL[b.kind],
        approvers: [],
        state: 'pending',
        approvedAt: null,
        usedAt: null,
      };
      await models.addApproval(a);
      await record(p, 'approval.requested', member, `approval:${a.id}`, { kind: a.kind, subject: a.subject, reason: a.reason });
      return reply.code(201).send(approvalView(a, now));
    },
  );

  r.post(
    '/v1/approvals/:id/approve',
    {
      schema: {
        summary: 'Approve (two distinct people, neither the requester): member admins, and for break-glass another operator.',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: ApprovalView },
      },
    },
    async (req) => {
      const p = req.principal;
      const visible = (a: Approval | undefined) => a && (p.member === null || p.member === a.member);
      for (let attempt = 0; attempt < 5; attempt++) {
        const a = await models.approval(req.params.id);
        if (!a || !visible(a)) throw notFound(`approval ${req.params.id}`);
        requireRole(p, 'approval.approve');
        const now = ctx.now();
        const chainOf = await chains([p.userId, requesterPerson(a), ...a.approvers.map(approverPerson)]);
        const refusal = refuseApproval(a, p, chainOf, now);
        if (refusal) throw new ApiError(refusal.status, refusal.status === 403 ? 'FORBIDDEN' : 'CONFLICT', refusal.message);
        const after = [...a.approvers, { user: p.user, userId: p.userId, role: p.role, at: now }];
        const done = complete(a, after, chainOf);
        if (!(await models.setApprovers(a.id, a.approvers, after, done ? now : null))) continue;
        await record(p, 'approval.approved', a.member, `approval:${a.id}`, {
          kind: a.kind,
          subject: a.subject,
          approvers: after.map((x) => x.user),
          complete: done,
        });
        return approvalView((await models.approval(a.id))!, now);
      }
      throw new ApiError(409, 'CONFLICT', `approval ${req.params.id} keeps changing; try again`);
    },
  );

  r.get(
    '/v1/approvals',
    {
      schema: {
        summary: "Approval requests: your member's; all for operators and consortium auditors.",
        querystring: z.strictObject({ kind: z.enum(APPROVAL_KINDS).optional() }),
        response: { 200: z.object({ approvals: z.array(ApprovalView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'model.read');
      const all = await models.approvals({ kind: req.query.kind, ...(p.member !== null ? { member: p.member } : {}) });
      return { approvals: all.map((a) => approvalView(a, ctx.now())) };
    },
  );

  const MemberId = z.object({ id: z.string().min(1).max(64) });
  const BreakGlassView = z.object({ member: z.string(), required: z.boolean() });
  r.get('/v1/members/:id/break-glass', { schema: { params: MemberId, response: { 200: BreakGlassView } } }, async (req) => {
    const p = req.principal;
    if (!ctx.consortium.members.some((m) => m.id === req.params.id) || (p.member !== null && p.member !== req.params.id))
      throw notFound(`member ${req.params.id}`);
    return { member: req.params.id, required: await models.breakGlassRequired(req.params.id) };
  });
  r.put(
    '/v1/members/:id/break-glass',
    {
      schema: {
        summary:
          "Require (or stop requiring) break-glass for operators' reads of this member's job details; a member admin of the member decides.",
        params: MemberId,
        body: z.strictObject({ required: z.boolean() }),
        response: { 200: BreakGlassView },
      },
    },
    async (req) => {
      const p = req.principal;
      if (!ctx.consortium.members.some((m) => m.id === req.params.id) || (p.member !== null && p.member !== req.params.id))
        throw notFound(`member ${req.params.id}`);
      requireRole(p, 'breakglass.manage');
      await models.setBreakGlass(req.params.id, req.body.required, p.user, ctx.now());
      await record(p, 'breakglass.setting', req.params.id, `member:${req.params.id}`, { required: req.body.required });
      return { member: req.params.id, required: req.body.required };
    },
  );
}

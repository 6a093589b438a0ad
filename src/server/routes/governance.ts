// /v1/datasets, /v1/agreements, /v1/policies: a member registers its datasets, grants them to
// another member or project for named purposes and zones until a date, approves (member admin)
// and revokes; operators add site-wide Cedar policies. "Who can use dataset D, and for what?" is
// answered from the same policies that admit jobs.
//
// Ids are each member's own (pharma's `trials` is not telecom's): a route takes `id`, meaning the
// caller's member's own or else the one other member's it may see by that id, or `owner/id`
// (`pharma%2Ftrials` in a path). Another member's object it may not see answers exactly as an
// absent one: the same status, code and message, which names only what the caller gave.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { UnknownDatasetError } from '../../governance/governance.js';
import {
  AgreementInput,
  agreementVisibleTo,
  AmbiguousNameError,
  CLASSIFICATIONS,
  DatasetInput,
  datasetVisibleTo,
  granteeParts,
  nameParts,
  qualified,
  resolveName,
  type Agreement,
  type Dataset,
} from '../../governance/model.js';
import { BUILT_IN_POLICIES, InvalidPolicyError } from '../../governance/policies.js';
import { AlreadyExistsError } from '../../governance/store.js';
import { memberOfWork, requireRole } from '../access.js';
import type { Principal } from '../auth.js';
import type { ServerContext } from '../context.js';
import { ApiError, forbidden, notFound } from '../errors.js';
import { isoTime } from '../../api/contract.js';

const DatasetView = z.object({
  id: z.string(),
  owner: z.string(),
  name: z.string(),
  classification: z.enum(CLASSIFICATIONS),
  zones: z.array(z.string()),
  location: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
});
const AgreementView = z.object({
  id: z.string(),
  grantor: z.string(),
  grantee: z.string(),
  datasets: z.array(z.string()),
  purposes: z.array(z.string()),
  zones: z.array(z.string()),
  expires: z.string(),
  produces: z.enum(CLASSIFICATIONS),
  noExport: z.boolean(),
  state: z.enum(['proposed', 'approved', 'revoked', 'expired']),
  createdAt: z.string(),
  createdBy: z.string(),
  approvedAt: z.string().nullable(),
  approvedBy: z.string().nullable(),
  revokedAt: z.string().nullable(),
  revokedBy: z.string().nullable(),
});
/** An id, or `owner/id` (a `/` in a path is sent as %2F). */
const Id = z.object({ id: z.string().min(1).max(129) });

/** Several objects the caller may see answer to a bare name: 400, with the qualified names to use. */
const ambiguous = (err: AmbiguousNameError, field: string) => new ApiError(400, 'VALIDATION_FAILED', err.message, field);

function datasetView(d: Dataset, p: Principal): z.infer<typeof DatasetView> {
  // The location is where the owner keeps its data: a grantee learns that it exists, not where.
  const location = p.member === null || p.member === d.owner ? d.location : '(hidden)';
  return { ...d, zones: [...d.zones], location, createdAt: isoTime(d.createdAt) };
}

function agreementView(a: Agreement, now: number): z.infer<typeof AgreementView> {
  const state =
    a.revokedAt !== null ? 'revoked' : a.expiresAt <= now ? 'expired' : a.approvedAt !== null ? 'approved' : 'proposed';
  return {
    id: a.id,
    grantor: a.grantor,
    grantee: a.grantee,
    datasets: [...a.datasets],
    purposes: [...a.purposes],
    zones: [...a.zones],
    expires: isoTime(a.expiresAt),
    produces: a.produces,
    noExport: a.noExport,
    state,
    createdAt: isoTime(a.createdAt),
    createdBy: a.createdBy,
    approvedAt: isoTime(a.approvedAt),
    approvedBy: a.approvedBy,
    revokedAt: isoTime(a.revokedAt),
    revokedBy: a.revokedBy,
  };
}

export function governanceRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { governance } = ctx;
  const store = governance.store;
  const members = new Map(ctx.consortium.members.map((m) => [m.id, m]));

  const record = (p: Principal, kind: string, member: string | null, subject: string, data?: Record<string, unknown>) =>
    ctx.audit.append({ kind, actor: `${p.role}:${p.user}`, member, subject, data });

  /** The agreement a name means to the principal, among those it may see (the grantor's or the grantee's); 404 otherwise. */
  async function visibleAgreement(p: Principal, name: string): Promise<Agreement> {
    const id = name.slice(name.indexOf('/') + 1);
    const visible = (await store.agreements(id)).filter((a) => agreementVisibleTo(a, p.member));
    const r = resolveName(
      name,
      p.member,
      visible,
      (a) => a.grantor,
      (a) => a.id,
    );
    if (r.ambiguous.length > 0) throw ambiguous(new AmbiguousNameError('agreement', name, r.ambiguous), 'params.id');
    if (!r.found) throw notFound(`agreement ${name}`);
    return r.found;
  }

  r.post(
    '/v1/datasets',
    { schema: { summary: 'Register a dataset of your member.', body: DatasetInput, response: { 201: DatasetView } } },
    async (req, reply) => {
      const p = req.principal;
      const owner = memberOfWork(p, 'data.register', { value: req.body.owner, field: 'body.owner' });
      const zones = ctx.controller.currentSite().zones;
      const unknown = req.body.zones.find((z) => !zones.includes(z));
      if (unknown) throw new ApiError(400, 'VALIDATION_FAILED', `no zone ${unknown} (zones: ${zones.join(', ')})`, 'body.zones');
      const d: Dataset = {
        id: req.body.id,
        owner,
        name: req.body.name ?? req.body.id,
        classification: req.body.classification,
        zones: [...new Set(req.body.zones)],
        location: req.body.location,
        createdAt: ctx.now(),
        createdBy: p.user,
      };
      try {
        await store.addDataset(d);
      } catch (err) {
        // Only ever the owner's own id: another member's `trials` is no conflict.
        if (err instanceof AlreadyExistsError) throw new ApiError(409, 'CONFLICT', `dataset ${d.id} exists`, 'body.id');
        throw err;
      }
      await record(p, 'dataset.registered', owner, `dataset:${qualified(owner, d.id)}`, {
        classification: d.classification,
        zones: d.zones,
      });
      return reply.code(201).send(datasetView(d, p));
    },
  );

  r.get(
    '/v1/datasets',
    {
      schema: {
        summary: 'Datasets you may see: your own, and those an agreement names for you.',
        response: { 200: z.object({ datasets: z.array(DatasetView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'data.read');
      const agreements = p.member === null ? [] : await store.agreementsFor(p.member);
      const all = await store.datasets();
      return { datasets: all.filter((d) => datasetVisibleTo(d, p.member, agreements)).map((d) => datasetView(d, p)) };
    },
  );

  r.get(
    '/v1/datasets/:id/uses',
    {
      schema: {
        summary: 'Who can use this dataset, and for what: from the admission policies.',
        params: Id,
        response: {
          200: z.object({
            dataset: DatasetView,
            grants: z.array(
              z.object({
                grantee: z.string(),
                purposes: z.array(z.string()),
                zones: z.array(z.string()),
                agreement: z.string().nullable(),
                until: z.string().nullable(),
              }),
            ),
          }),
        },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'data.read');
      try {
        const { dataset, grants } = await governance.whoCanUse(req.params.id, p.member);
        return {
          dataset: datasetView(dataset, p),
          grants: grants.map((g) => ({ ...g, purposes: [...g.purposes], zones: [...g.zones], until: isoTime(g.until) })),
        };
      } catch (err) {
        if (err instanceof UnknownDatasetError) throw notFound(`dataset ${req.params.id}`);
        if (err instanceof AmbiguousNameError) throw ambiguous(err, 'params.id');
        throw err;
      }
    },
  );

  r.post(
    '/v1/agreements',
    {
      schema: {
        summary: "Propose a data-use agreement over your member's datasets; it grants nothing until a member admin approves it.",
        body: AgreementInput,
        response: { 201: AgreementView },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      const grantor = memberOfWork(p, 'agreement.propose');
      const b = req.body;
      // A member grants its own datasets only: another member's does not exist for it here, even
      // one granted to it.
      const candidates = (await store.datasets(b.datasets.map((n) => nameParts(n).id))).filter((d) => d.owner === grantor);
      const datasets: Dataset[] = [];
      for (const name of b.datasets) {
        const r = resolveName(
          name,
          p.member,
          candidates,
          (d) => d.owner,
          (d) => d.id,
        );
        if (r.ambiguous.length > 0) throw ambiguous(new AmbiguousNameError('dataset', name, r.ambiguous), 'body.datasets');
        if (!r.found) throw new ApiError(404, 'NOT_FOUND', `dataset ${name} not found`, 'body.datasets');
        datasets.push(r.found);
      }
      const g = granteeParts(b.grantee);
      const member = members.get(g.member);
      if (!member) throw new ApiError(400, 'VALIDATION_FAILED', `no member ${g.member}`, 'body.grantee');
      if (g.project !== null && member.projects.length > 0 && !member.projects.includes(g.project))
        throw new ApiError(400, 'VALIDATION_FAILED', `member ${g.member} has no project ${g.project}`, 'body.grantee');
      if (g.member === grantor)
        throw new ApiError(400, 'VALIDATION_FAILED', 'a member uses its own data without an agreement', 'body.grantee');
      const zones = ctx.controller.currentSite().zones;
      const unknown = b.zones.find((z) => !zones.includes(z));
      if (unknown) throw new ApiError(400, 'VALIDATION_FAILED', `no zone ${unknown} (zones: ${zones.join(', ')})`, 'body.zones');
      const expiresAt = Date.parse(b.expires) / 1000;
      if (expiresAt <= ctx.now()) throw new ApiError(400, 'VALIDATION_FAILED', 'the expiry is in the past', 'body.expires');
      const a: Agreement = {
        id: b.id,
        grantor,
        grantee: b.grantee,
        granteeMember: g.member,
        granteeProject: g.project,
        // The grantor's own ids: the grantor is the agreement's namespace for them.
        datasets: [...new Set(datasets.map((d) => d.id))],
        purposes: [...new Set(b.purposes)],
        zones: [...new Set(b.zones)],
        expiresAt,
        produces: b.produces,
        noExport: b.noExport,
        createdAt: ctx.now(),
        createdBy: p.user,
        approvedAt: null,
        approvedBy: null,
        revokedAt: null,
        revokedBy: null,
      };
      try {
        await store.addAgreement(a);
      } catch (err) {
        // Only ever the grantor's own id.
        if (err instanceof AlreadyExistsError) throw new ApiError(409, 'CONFLICT', `agreement ${a.id} exists`, 'body.id');
        throw err;
      }
      await record(p, 'agreement.proposed', a.grantor, `agreement:${qualified(a.grantor, a.id)}`, {
        grantee: a.grantee,
        datasets: a.datasets,
        purposes: a.purposes,
      });
      return reply.code(201).send(agreementView(a, ctx.now()));
    },
  );

  r.get(
    '/v1/agreements',
    {
      schema: {
        summary: 'Agreements your member grants or receives (all for operators and consortium auditors).',
        response: { 200: z.object({ agreements: z.array(AgreementView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'data.read');
      const mine = (await store.agreements()).filter((a) => agreementVisibleTo(a, p.member));
      return { agreements: mine.map((a) => agreementView(a, ctx.now())) };
    },
  );

  r.get('/v1/agreements/:id', { schema: { params: Id, response: { 200: AgreementView } } }, async (req) => {
    requireRole(req.principal, 'data.read');
    return agreementView(await visibleAgreement(req.principal, req.params.id), ctx.now());
  });

  for (const [verb, kind] of [
    ['approve', 'agreement.approved'],
    ['revoke', 'agreement.revoked'],
  ] as const) {
    r.post(
      `/v1/agreements/:id/${verb}`,
      {
        schema: {
          summary:
            verb === 'approve'
              ? 'Approve an agreement (a member admin of the grantor): from now on it grants what it says.'
              : 'Revoke an agreement (a member admin of the grantor, or an operator): new jobs under it are refused at once.',
          params: Id,
          response: { 200: AgreementView },
        },
      },
      async (req) => {
        const p = req.principal;
        const a = await visibleAgreement(p, req.params.id);
        requireRole(p, verb === 'approve' ? 'agreement.approve' : 'agreement.revoke');
        // Only the grantor decides over its data (an operator may revoke, never approve).
        if (p.member !== null && p.member !== a.grantor) throw forbidden(`only member ${a.grantor} may ${verb} this agreement`);
        const now = ctx.now();
        const done =
          verb === 'approve'
            ? await store.approveAgreement(a.grantor, a.id, p.user, now)
            : await store.revokeAgreement(a.grantor, a.id, p.user, now);
        if (!done)
          throw new ApiError(409, 'CONFLICT', `agreement ${a.id} is ${agreementView(a, now).state}: it cannot be ${verb}d`);
        await record(p, kind, a.grantor, `agreement:${qualified(a.grantor, a.id)}`, { grantee: a.grantee });
        return agreementView((await store.agreement(a.grantor, a.id))!, now);
      },
    );
  }

  const PolicyId = z.object({
    id: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, dot, dash and underscore'),
  });
  r.get(
    '/v1/policies',
    {
      schema: {
        summary: 'The admission policies: built-in and site-wide (Cedar).',
        response: { 200: z.object({ builtIn: z.record(z.string(), z.string()), site: z.record(z.string(), z.string()) }) },
      },
    },
    async (req) => {
      requireRole(req.principal, 'data.read');
      return { builtIn: { ...BUILT_IN_POLICIES }, site: await store.sitePolicies() };
    },
  );
  r.put(
    '/v1/policies/:id',
    {
      schema: {
        summary: 'Add or replace a site-wide admission policy (Cedar; operators).',
        params: PolicyId,
        body: z.strictObject({ cedar: z.string().min(1).max(65_536) }),
        response: { 200: z.object({ id: z.string(), cedar: z.string() }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'policy.manage');
      if (req.params.id in BUILT_IN_POLICIES)
        throw new ApiError(409, 'CONFLICT', `${req.params.id} is a built-in rule`, 'params.id');
      try {
        await governance.putSitePolicy(req.params.id, req.body.cedar, p.user);
      } catch (err) {
        if (err instanceof InvalidPolicyError) throw new ApiError(400, 'VALIDATION_FAILED', err.message, 'body.cedar');
        throw err;
      }
      await record(p, 'policy.changed', null, `policy:${req.params.id}`, { cedar: req.body.cedar });
      return { id: req.params.id, cedar: req.body.cedar };
    },
  );
  r.delete('/v1/policies/:id', { schema: { params: PolicyId, response: { 200: z.object({ id: z.string() }) } } }, async (req) => {
    const p = req.principal;
    requireRole(p, 'policy.manage');
    if (!(await governance.deleteSitePolicy(req.params.id))) throw notFound(`policy ${req.params.id}`);
    await record(p, 'policy.deleted', null, `policy:${req.params.id}`);
    return { id: req.params.id };
  });
}

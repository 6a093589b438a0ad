// Tokens, members and nodes: what member admins and operators manage.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isoTime, ROLES } from '../../api/contract.js';
import { NODE_STATES } from '../../core/site.js';
import type { TokenRecord } from '../../store/store.js';
import { requireRole, seesMember } from '../access.js';
import { issueToken } from '../auth.js';
import { ApiError, forbidden, notFound } from '../errors.js';
import type { ServerContext } from '../context.js';

const TokenView = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string(),
  member: z.string().nullable(),
  role: z.enum(ROLES),
  user: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
const tokenView = (t: TokenRecord) => ({
  id: t.id,
  name: t.name,
  prefix: t.prefix,
  member: t.member,
  role: t.role,
  user: t.user,
  createdAt: isoTime(t.createdAt),
  expiresAt: isoTime(t.expiresAt),
  revokedAt: isoTime(t.revokedAt),
});

export function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { store, controller, consortium } = ctx;

  r.post(
    '/v1/tokens',
    {
      schema: {
        summary: 'Create an API token; its secret is in this response only.',
        body: z.strictObject({
          name: z.string().min(1).max(128),
          user: z
            .string()
            .min(1)
            .max(128)
            .regex(/^[A-Za-z0-9._@-]+$/, 'letters, digits and . _ @ -'),
          role: z.enum(ROLES),
          member: z.string().max(64).nullable().optional(),
          ttlDays: z.number().int().min(1).max(3650).nullable().default(90),
        }),
        response: { 201: z.object({ token: TokenView, secret: z.string() }) },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'token.manage');
      const b = req.body;
      const member = p.member ?? b.member ?? null;
      if (p.member !== null && b.member != null && b.member !== p.member)
        throw forbidden(`you manage tokens of member ${p.member} only`);
      if (member !== null && !consortium.members.some((m) => m.id === member))
        throw new ApiError(400, 'VALIDATION_FAILED', `no member ${member}`, 'body.member');
      if (b.role === 'operator' && p.role !== 'operator')
        throw new ApiError(403, 'FORBIDDEN', 'only operators create operator tokens', 'body.role');
      if (b.role === 'operator' && member !== null)
        throw new ApiError(400, 'VALIDATION_FAILED', 'operator tokens belong to no member', 'body.role');
      if (member === null && b.role !== 'operator' && b.role !== 'auditor')
        throw new ApiError(400, 'VALIDATION_FAILED', `a ${b.role} token belongs to a member: give member`, 'body.member');
      const { record, secret } = await issueToken(
        store,
        { name: b.name, member, role: b.role, user: b.user, ttlSeconds: b.ttlDays === null ? null : b.ttlDays * 86400 },
        ctx.now(),
      );
      await ctx.audit.append({
        kind: 'token.issued',
        actor: p.user,
        member: record.member,
        subject: record.id,
        data: { name: record.name, role: record.role, user: record.user, expiresAt: record.expiresAt },
      });
      return reply.code(201).send({ token: tokenView(record), secret });
    },
  );

  r.get('/v1/tokens', { schema: { response: { 200: z.object({ tokens: z.array(TokenView) }) } } }, async (req) => {
    const p = req.principal;
    requireRole(p, 'token.manage');
    const tokens = p.member === null ? await store.listTokens() : await store.listTokens(p.member);
    return { tokens: tokens.map(tokenView) };
  });

  r.delete(
    '/v1/tokens/:id',
    { schema: { params: z.object({ id: z.string().max(64) }), response: { 200: TokenView } } },
    async (req) => {
      const p = req.principal;
      const t = await store.tokenById(req.params.id);
      if (!t || (p.member !== null && t.member !== p.member)) throw notFound(`token ${req.params.id}`);
      requireRole(p, 'token.manage');
      await store.revokeToken(t.id, ctx.now());
      ctx.auth.forget(t.hash);
      await ctx.audit.append({
        kind: 'token.revoked',
        actor: p.user,
        member: t.member,
        subject: t.id,
        data: { name: t.name, role: t.role, user: t.user },
      });
      return tokenView((await store.tokenById(t.id))!);
    },
  );

  const MemberView = z.object({
    id: z.string(),
    name: z.string(),
    entitlementGpus: z.number(),
    lendingLimitGpus: z.number().nullable(),
    borrowingLimitGpus: z.number().nullable(),
    zone: z.string().nullable(),
    isolation: z.string(),
    projects: z.array(z.string()),
    runningGpus: z.number(),
  });
  r.get('/v1/members', { schema: { response: { 200: z.object({ members: z.array(MemberView) }) } } }, async (req) => {
    const p = req.principal;
    requireRole(p, 'member.read');
    const held = controller.runningGpus();
    return {
      members: consortium.members
        .filter((m) => seesMember(p, m.id))
        .map((m) => ({
          id: m.id,
          name: m.name,
          entitlementGpus: m.entitlementGpus,
          lendingLimitGpus: m.lendingLimitGpus,
          borrowingLimitGpus: m.borrowingLimitGpus,
          zone: m.zone,
          isolation: m.isolation,
          projects: [...m.projects],
          runningGpus: held[m.id] ?? 0,
        })),
    };
  });

  const NodeView = z.object({
    name: z.string(),
    domain: z.string(),
    zone: z.string(),
    state: z.enum(NODE_STATES),
    gpus: z.number().int(),
    gpusInUse: z.number().int(),
  });
  const nodes = () => {
    const site = controller.currentSite();
    const used = new Map<string, number>();
    for (const j of controller.onGpus())
      for (const p of j.placement ?? []) used.set(p.node, (used.get(p.node) ?? 0) + p.gpus.length);
    return site.nodes.map((n) => ({
      name: n.name,
      domain: site.domains[n.domain].name,
      zone: site.domains[n.domain].zone,
      state: n.state,
      gpus: n.gpus,
      gpusInUse: used.get(n.name) ?? 0,
    }));
  };
  r.get(
    '/v1/nodes',
    {
      schema: {
        summary: 'Nodes, their state and GPUs in use (sinfo).',
        response: { 200: z.object({ nodes: z.array(NodeView) }) },
      },
    },
    async (req) => {
      requireRole(req.principal, 'member.read');
      return { nodes: nodes() };
    },
  );

  r.put(
    '/v1/nodes/:name/state',
    {
      schema: {
        summary: 'Drain, resume, down or maintenance (scontrol update nodename=… state=…).',
        params: z.object({ name: z.string().max(128) }),
        body: z.strictObject({ state: z.enum(NODE_STATES), reason: z.string().max(1024).nullable().default(null) }),
        response: { 200: NodeView },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'node.manage');
      if (!controller.currentSite().nodes.some((n) => n.name === req.params.name)) throw notFound(`node ${req.params.name}`);
      await controller.setNodeState({
        node: req.params.name,
        state: req.body.state,
        reason: req.body.reason,
        by: p.user,
        at: ctx.now(),
      });
      return nodes().find((n) => n.name === req.params.name)!;
    },
  );
}

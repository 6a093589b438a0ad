// Users, tokens, members and nodes: what member admins and operators manage.
//
// People, not names: a token belongs to a user record, and who creates whom is narrow. A member
// admin creates its own member's users; an operator creates operators and consortium-wide auditors.
// Tokens are made for yourself and for the users you created (directly, or through users you
// created), so an operator never holds a token of a member's user and nobody holds another
// person's: the two-person rule (governance/approvals.ts) relies on it.
//
// Bootstrap: a member needs its first admin before it has anyone to make one. An operator may
// create a member's first member admins (at most BOOTSTRAP_ADMINS, the two a two-person approval
// needs) while every user of that member is such an admin, never once the member has people of its
// own; each gets a token that lives a day, for its person to make their own with. Until then the
// operator holds that token: the member trusts the operator at its onboarding, and no longer (see
// docs/control-plane.md). A member that does not want to, signs its people in through OIDC.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isoTime, MEMBER_ROLES, ROLES, TokenView, UserName, UserView, type Role } from '../../api/contract.js';
import { NODE_STATES } from '../../core/site.js';
import { vouchingChain } from '../../governance/approvals.js';
import { newUserId } from '../../store/schema.js';
import { UserExistsError, VOUCHED, type TokenRecord, type UserRecord } from '../../store/store.js';
import { requireRole, seesMember } from '../access.js';
import { issueToken, type Principal } from '../auth.js';
import { ApiError, forbidden, notFound } from '../errors.js';
import type { ServerContext } from '../context.js';

/** A member's first admins, made by an operator: two, so that a two-person approval is possible. */
export const BOOTSTRAP_ADMINS = 2;
/** A bootstrap admin's first token: long enough to make its own, short enough to leave the operator's hands. */
const BOOTSTRAP_TOKEN_SECONDS = 86_400;

const tokenView = (t: TokenRecord): TokenView => ({
  id: t.id,
  name: t.name,
  prefix: t.prefix,
  member: t.member,
  role: t.role,
  user: t.user,
  userId: t.userId,
  createdAt: isoTime(t.createdAt),
  expiresAt: isoTime(t.expiresAt),
  revokedAt: isoTime(t.revokedAt),
});
const userView = (u: UserRecord): UserView => ({
  id: u.id,
  member: u.member,
  name: u.name,
  roles: [...u.roles],
  origin: u.origin,
  issuer: u.issuer,
  subject: u.subject,
  createdBy: u.createdBy,
  createdAt: isoTime(u.createdAt),
  disabledAt: isoTime(u.disabledAt),
});

const bad = (field: string, message: string) => new ApiError(400, 'VALIDATION_FAILED', message, field);
/** `usr_…` or a name. */
const UserRef = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._@~-]+$/, 'a user name or id');

export function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { store, controller, consortium } = ctx;
  const isMember = (id: string) => consortium.members.some((m) => m.id === id);

  /** Whether `p` vouched for `u`: it is `p`'s own record, or `p` is in its chain of creators. */
  const vouchedBy = async (p: Principal, u: UserRecord) =>
    (await vouchingChain(u.id, (id) => store.userById(id))).includes(p.userId);

  /** The member whose users `p` names with `member` (its own; none for operators and consortium auditors). */
  function scopeOf(p: Principal, member: string | null | undefined): string | null {
    if (p.member !== null && member != null && member !== p.member)
      throw new ApiError(403, 'FORBIDDEN', `you manage users and tokens of member ${p.member} only`, 'body.member');
    return p.member ?? member ?? null;
  }

  r.post(
    '/v1/users',
    {
      schema: {
        summary:
          "Create a user: a member admin creates its member's people; an operator creates operators, consortium auditors, and a member's first admins (bootstrap, with a token for a day).",
        body: z.strictObject({
          name: UserName,
          roles: z.array(z.enum(ROLES)).min(1).max(ROLES.length),
          member: z.string().max(64).nullable().optional(),
        }),
        response: {
          201: z.object({ user: UserView, token: TokenView.optional(), secret: z.string().optional() }),
        },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      requireRole(p, 'user.manage');
      const b = req.body;
      const member = scopeOf(p, b.member);
      if (member !== null && !isMember(member)) throw bad('body.member', `no member ${member}`);
      const roles = [...new Set(b.roles)].sort() as Role[];
      const now = ctx.now();
      const user: UserRecord = {
        id: newUserId(),
        member,
        name: b.name,
        roles,
        origin: 'local',
        issuer: null,
        subject: null,
        createdBy: p.userId,
        createdAt: now,
        disabledAt: null,
      };
      const exists = () =>
        new ApiError(409, 'CONFLICT', `a user named ${b.name} exists${member ? ` in ${member}` : ''}`, 'body.name');

      if (p.role === 'operator' && member !== null) {
        // Bootstrap: a member's first admins, and nothing else of a member's, ever.
        if (roles.length !== 1 || roles[0] !== 'member-admin')
          throw new ApiError(
            403,
            'FORBIDDEN',
            `an operator creates only a member's first member admins; ${member}'s admins create its other users`,
            'body.roles',
          );
        let outcome;
        try {
          outcome = await store.bootstrapUser({ ...user, createdBy: VOUCHED.bootstrap }, BOOTSTRAP_ADMINS);
        } catch (e) {
          if (e instanceof UserExistsError) throw exists();
          throw e;
        }
        if (outcome === 'closed')
          throw new ApiError(
            403,
            'FORBIDDEN',
            `member ${member} has people of its own: only its member admins create its users now`,
            'body.member',
          );
        if (outcome === 'full')
          throw new ApiError(409, 'CONFLICT', `member ${member} has its ${BOOTSTRAP_ADMINS} first admins already`, 'body.member');
        const made = { ...user, createdBy: VOUCHED.bootstrap };
        const { record, secret } = await issueToken(
          store,
          { name: `${b.name}-bootstrap`, user: made, role: 'member-admin', ttlSeconds: BOOTSTRAP_TOKEN_SECONDS },
          now,
        );
        await ctx.audit.append({
          kind: 'user.bootstrapped',
          actor: p.user,
          member,
          subject: made.id,
          data: { name: made.name, roles, by: p.userId, token: record.id, expiresAt: record.expiresAt },
        });
        return reply.code(201).send({ user: userView(made), token: tokenView(record), secret });
      }

      const allowed: readonly Role[] = member === null ? ['operator', 'auditor'] : MEMBER_ROLES;
      const refused = roles.find((x) => !allowed.includes(x));
      if (refused)
        throw new ApiError(
          403,
          'FORBIDDEN',
          member === null
            ? `users of no member are operators or consortium auditors, not ${refused}s`
            : `a member's users are ${MEMBER_ROLES.join(', ')}; ${refused} is not one`,
          'body.roles',
        );
      try {
        await store.createUser(user);
      } catch (e) {
        if (e instanceof UserExistsError) throw exists();
        throw e;
      }
      await ctx.audit.append({
        kind: 'user.created',
        actor: p.user,
        member,
        subject: user.id,
        data: { name: user.name, roles, by: p.userId },
      });
      return reply.code(201).send({ user: userView(user) });
    },
  );

  r.get(
    '/v1/users',
    {
      schema: {
        summary: "Users: your member's; all for operators and consortium auditors (member= narrows it).",
        querystring: z.strictObject({ member: z.string().max(64).optional() }),
        response: { 200: z.object({ users: z.array(UserView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'user.read');
      const q = req.query.member;
      if (p.member !== null && q !== undefined && q !== p.member) return { users: [] };
      return { users: (await store.listUsers(p.member ?? q)).map(userView) };
    },
  );

  r.post(
    '/v1/users/:id/disable',
    {
      schema: {
        summary: 'Disable a user for good: its tokens and logins are refused at once.',
        params: z.object({ id: z.string().min(1).max(64) }),
        response: { 200: UserView },
      },
    },
    async (req) => {
      const p = req.principal;
      const u = await store.userById(req.params.id);
      if (!u || (p.member !== null && u.member !== p.member)) throw notFound(`user ${req.params.id}`);
      requireRole(p, 'user.manage');
      if (p.member === null && u.member !== null)
        throw forbidden(`${u.member}'s people are disabled by its member admins, not by operators`);
      if (u.id === p.userId) throw new ApiError(409, 'CONFLICT', 'you cannot disable yourself');
      if (u.disabledAt === null) {
        await store.updateUser(u.id, { disabledAt: ctx.now() });
        ctx.auth.forgetUser(u.id);
        await ctx.audit.append({ kind: 'user.disabled', actor: p.user, member: u.member, subject: u.id, data: { name: u.name } });
      }
      return userView((await store.userById(u.id))!);
    },
  );

  r.post(
    '/v1/tokens',
    {
      schema: {
        summary: 'Create an API token for yourself or a user you created; its secret is in this response only.',
        body: z.strictObject({
          name: z.string().min(1).max(128),
          /** An existing user: its name (in your member) or id. */
          user: UserRef,
          /** One of the user's roles (default: its only one). */
          role: z.enum(ROLES).optional(),
          /** The user's member: yours (member admins), or none (operators). */
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
      if (b.role === 'operator' && p.role !== 'operator')
        throw new ApiError(403, 'FORBIDDEN', 'only operators create operator tokens', 'body.role');
      const member = scopeOf(p, b.member);
      if (member !== null && !isMember(member)) throw bad('body.member', `no member ${member}`);
      if (p.member === null && member !== null)
        throw new ApiError(
          403,
          'FORBIDDEN',
          `an operator does not create tokens for ${member}'s users: its member admins do (its first ones come with a token: fabrik users create --member ${member})`,
          'body.member',
        );
      const byId = b.user.startsWith('usr_') ? await store.userById(b.user) : undefined;
      const u = byId && byId.member === member ? byId : await store.userByName(member, b.user);
      if (!u)
        throw new ApiError(
          404,
          'NOT_FOUND',
          `no user ${b.user}${member ? ` in ${member}` : ' of no member'}: create it first (fabrik users create)`,
          'body.user',
        );
      if (u.disabledAt !== null) throw new ApiError(409, 'CONFLICT', `user ${u.name} is disabled`, 'body.user');
      if (!(await vouchedBy(p, u)))
        throw new ApiError(
          403,
          'FORBIDDEN',
          `tokens are made by their user or by whoever created it; ${u.name} was not created by you`,
          'body.user',
        );
      const role = b.role ?? (u.roles.length === 1 ? u.roles[0] : undefined);
      if (role === undefined) throw bad('body.role', `user ${u.name} is ${u.roles.join(' and ')}: say which role the token has`);
      if (!u.roles.includes(role)) throw bad('body.role', `user ${u.name} is ${u.roles.join(', ')}, not ${role}`);
      const { record, secret } = await issueToken(
        store,
        { name: b.name, user: u, role, ttlSeconds: b.ttlDays === null ? null : b.ttlDays * 86400 },
        ctx.now(),
      );
      await ctx.audit.append({
        kind: 'token.issued',
        actor: p.user,
        member: record.member,
        subject: record.id,
        data: { name: record.name, role: record.role, user: record.user, userId: u.id, expiresAt: record.expiresAt },
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

  // What a member sees of the machine stops at its own work: another member's GPUs per node or per
  // rack tell a competitor how big and where its isolated runs are (a defense gang on a rack of
  // its own). Members see their own use per node and all other members' together, site-wide
  // ("others"); operators and consortium auditors (no member) see every member's use per node.
  const NodeView = z.object({
    name: z.string(),
    domain: z.string(),
    zone: z.string(),
    state: z.enum(NODE_STATES),
    gpus: z.number().int(),
    /** Operators and consortium auditors: every member's GPUs in use here. Members: their own member's. */
    gpusInUse: z.number().int(),
    /** Operators and consortium auditors only: GPUs in use here, per member. */
    byMember: z.record(z.string(), z.number().int()).optional(),
  });
  const nodes = (p: Principal) => {
    const site = controller.currentSite();
    const used = new Map<string, Map<string, number>>();
    for (const j of controller.onGpus())
      for (const at of j.placement ?? []) {
        let perMember = used.get(at.node);
        if (!perMember) used.set(at.node, (perMember = new Map()));
        perMember.set(j.member, (perMember.get(j.member) ?? 0) + at.gpus.length);
      }
    let others = 0;
    const view = site.nodes.map((n) => {
      const perMember = used.get(n.name) ?? new Map<string, number>();
      let total = 0;
      for (const g of perMember.values()) total += g;
      const base = {
        name: n.name,
        domain: site.domains[n.domain].name,
        zone: site.domains[n.domain].zone,
        state: n.state,
        gpus: n.gpus,
      };
      if (p.member === null) return { ...base, gpusInUse: total, byMember: Object.fromEntries(perMember) };
      const own = perMember.get(p.member) ?? 0;
      others += total - own;
      return { ...base, gpusInUse: own };
    });
    return { nodes: view, others: p.member === null ? null : { gpusInUse: others } };
  };
  r.get(
    '/v1/nodes',
    {
      schema: {
        summary:
          "Nodes, their state and GPUs in use (sinfo): a member sees its own use per node, and other members' only as one site-wide sum.",
        response: {
          200: z.object({
            nodes: z.array(NodeView),
            /** Members only: all other members' GPUs in use on the whole site, never per node or rack. */
            others: z.object({ gpusInUse: z.number().int() }).nullable(),
          }),
        },
      },
    },
    async (req) => {
      requireRole(req.principal, 'member.read');
      return nodes(req.principal);
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
      return nodes(p).nodes.find((n) => n.name === req.params.name)!;
    },
  );
}

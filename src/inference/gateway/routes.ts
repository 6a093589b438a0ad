// The gateway on the control plane's fastify server. Two kinds of route:
// - the OpenAI API (/v1/chat/completions, /v1/completions, /v1/embeddings, and /v1/models when the
//   bearer is a gateway key), in a scope of its own: gateway keys, the OpenAI error shape, replies
//   written straight to the socket (streams chunk by chunk);
// - the management API (/v1/keys, /v1/usage, /v1/gateway/settings) with control-plane tokens and
//   the control plane's error body, like every other management route.
import type { ServerResponse } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CLASSIFICATIONS } from '../../governance/model.js';
import { KyselyStore } from '../../store/index.js';
import type { ServerContext } from '../../server/context.js';
import type { Principal } from '../../server/auth.js';
import { authorize, requireRole } from '../../server/access.js';
import { ApiError, forbidden, notFound } from '../../server/errors.js';
import { GatewayError, errorBody } from './errors.js';
import {
  DEFAULT_GATEWAY,
  defined,
  Gateway,
  KEY_PREFIX,
  newKey,
  type Endpoint,
  type GatewayConfig,
  type Standing,
  type WindowStanding,
} from './gateway.js';
import { GatewayMetrics } from './metrics.js';
import { GatewayStore, type GatewayKey } from './store.js';
import { isoTime } from '../../api/contract.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An OpenAI route: authenticated by a gateway key, not a control-plane token. */
    gateway?: boolean;
  }
}

const KeyView = z.object({
  id: z.string(),
  prefix: z.string(),
  name: z.string(),
  member: z.string(),
  user: z.string(),
  models: z.array(z.string()),
  classification: z.enum(CLASSIFICATIONS),
  zones: z.array(z.string()).nullable(),
  limits: z.object({
    requestsPerMinute: z.number().nullable(),
    tokensPerMinute: z.number().nullable(),
    tokensPerDay: z.number().nullable(),
    tokensPerMonth: z.number().nullable(),
  }),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
const keyView = (k: GatewayKey): z.infer<typeof KeyView> => ({
  id: k.id,
  prefix: k.prefix,
  name: k.name,
  member: k.member,
  user: k.user,
  models: [...k.models],
  classification: k.classification,
  zones: k.zones === null ? null : [...k.zones],
  limits: k.limits,
  createdAt: isoTime(k.createdAt),
  expiresAt: isoTime(k.expiresAt),
  revokedAt: isoTime(k.revokedAt),
});

const UsageView = z.object({
  /** With `period`: the period's first second. */
  start: z.number().optional(),
  member: z.string(),
  keyId: z.string(),
  /** The key's name (null: a key that is no longer stored). */
  keyName: z.string().nullable(),
  model: z.string(),
  requests: z.number(),
  promptTokens: z.number(),
  completionTokens: z.number(),
  reasoningTokens: z.number(),
});

/** The member a principal acts for: its own, or the one an operator names. */
function memberOf(p: Principal, named: string | null | undefined, members: ReadonlySet<string>, field: string): string {
  if (p.member !== null) {
    if (named != null && named !== p.member) throw forbidden(`you act for member ${p.member} only`);
    return p.member;
  }
  if (named == null) throw new ApiError(400, 'VALIDATION_FAILED', 'an operator names the member', field);
  if (!members.has(named)) throw new ApiError(400, 'VALIDATION_FAILED', `no member ${named}`, field);
  return named;
}

/** Writes an error straight to the socket (the OpenAI routes hijack their replies). */
function sendError(res: ServerResponse, e: unknown, log: FastifyInstance['log'], metrics: GatewayMetrics): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const g =
    e instanceof GatewayError
      ? e
      : new GatewayError(500, 'server_error', 'internal_error', 'The gateway failed; the error was logged.');
  if (!(e instanceof GatewayError)) log.error({ err: e }, 'gateway error');
  metrics.error(g.status, g.code);
  const body = g.body();
  res.writeHead(g.status, { ...g.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Fastify's own refusals in the gateway's scope (bad JSON, wrong content type, too large): OpenAI-shaped. */
function scopeErrors(scope: FastifyInstance, metrics: GatewayMetrics): void {
  scope.setErrorHandler((err: FastifyError, req, reply: FastifyReply) => {
    const status = err instanceof GatewayError ? err.status : (err.statusCode ?? 500);
    metrics.error(status < 500 ? status : 500, err instanceof GatewayError ? err.code : (err.code ?? null));
    if (err instanceof GatewayError) {
      reply.headers(err.headers);
      return reply.code(status).type('application/json').send(err.body());
    }
    if (status >= 400 && status < 500)
      return reply
        .code(status)
        .type('application/json')
        .send(errorBody(err.message, 'invalid_request_error', null, err.code ?? null));
    req.log.error({ err }, 'gateway error');
    return reply
      .code(500)
      .type('application/json')
      .send(errorBody('The gateway failed; the error was logged.', 'server_error', null, null));
  });
}

/** Requests carrying a gateway key: the OpenAI `/v1/models` is theirs, the control plane's is everyone else's. */
const gatewayKeyConstraint = {
  name: 'gatewayKey',
  storage() {
    const m = new Map<string, unknown>();
    return {
      get: (v: string) => (m.get(v) ?? null) as never,
      set: (v: string, s: unknown) => void m.set(v, s),
    };
  },
  deriveConstraint: (req: { headers: Record<string, string | string[] | undefined> }) => {
    const h = req.headers.authorization;
    return typeof h === 'string' && h.slice(7, 7 + KEY_PREFIX.length) === KEY_PREFIX ? 'yes' : 'no';
  },
  mustMatchWhenDerived: false,
};

export async function gatewayRoutes(app: FastifyInstance, ctx: ServerContext): Promise<Gateway> {
  // The server's store is a KyselyStore (openStore makes one); the gateway keeps its tables beside it.
  if (!(ctx.store instanceof KyselyStore)) throw new Error('the gateway needs a Kysely store');
  const store = new GatewayStore(ctx.store.db);
  const config: GatewayConfig = { ...DEFAULT_GATEWAY, ...defined(ctx.gateway ?? {}) };
  const source = ctx.replicas ?? { replicas: () => [], models: () => [] };
  const metrics = new GatewayMetrics(ctx.metrics.registry);
  const gateway = new Gateway(
    store,
    source,
    ctx.consortium,
    config,
    ctx.now,
    ctx.log,
    ctx.replicaLoad ?? null,
    metrics,
    await ctx.store.installationId(),
  );
  await gateway.start();
  app.addHook('onClose', () => gateway.close());
  const members = new Set(ctx.consortium.members.map((m) => m.id));
  const zoneOf = new Map(ctx.consortium.members.map((m) => [m.id, m.zone]));
  app.addConstraintStrategy(gatewayKeyConstraint);

  await app.register(async (scope) => {
    scopeErrors(scope, metrics);
    const config = { gateway: true };
    const openai = (endpoint: Endpoint) =>
      async function (this: unknown, req: { headers: { authorization?: string }; body: unknown }, reply: FastifyReply) {
        reply.hijack();
        const res = reply.raw;
        try {
          const key = await gateway.authenticate(req.headers.authorization);
          await gateway.handle(endpoint, key, req.body, res);
        } catch (e) {
          sendError(res, e, scope.log, metrics);
        }
      };
    scope.post('/v1/chat/completions', { config, schema: { hide: true } }, openai('chat'));
    scope.post('/v1/completions', { config, schema: { hide: true } }, openai('completions'));
    scope.post('/v1/embeddings', { config, schema: { hide: true } }, openai('embeddings'));
    scope.get('/v1/models', { config, constraints: { gatewayKey: 'yes' }, schema: { hide: true } }, async (req) => {
      const key = await gateway.authenticate(req.headers.authorization);
      return { object: 'list', data: gateway.models(key) };
    });
    scope.get('/v1/models/:model', { config, constraints: { gatewayKey: 'yes' }, schema: { hide: true } }, async (req) => {
      const key = await gateway.authenticate(req.headers.authorization);
      const id = (req.params as { model: string }).model;
      const m = gateway.models(key).find((x) => x.id === id);
      if (!m)
        throw new GatewayError(404, 'invalid_request_error', 'model_not_found', `The model '${id}' does not exist.`, 'model');
      return m;
    });
  });

  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    '/v1/keys',
    {
      schema: {
        summary: 'Create a gateway API key for the OpenAI API; its secret is in this response only.',
        body: z.strictObject({
          name: z.string().min(1).max(128),
          member: z.string().max(64).nullable().optional(),
          models: z.array(z.string().min(1).max(256)).min(1).max(100).default(['*']),
          classification: z.enum(CLASSIFICATIONS).default('internal'),
          zones: z.array(z.string().min(1).max(64)).min(1).max(20).nullable().default(null),
          ttlDays: z.number().int().min(1).max(3650).nullable().default(90),
          requestsPerMinute: z.number().int().min(1).max(10_000_000).nullable().default(null),
          tokensPerMinute: z.number().int().min(1).max(1e12).nullable().default(null),
          tokensPerDay: z.number().int().min(1).max(1e13).nullable().default(null),
          tokensPerMonth: z.number().int().min(1).max(1e14).nullable().default(null),
        }),
        response: { 201: z.object({ key: KeyView, secret: z.string() }) },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      // A member's people only: a key an operator made for pharma would call pharma's models.
      requireRole(p, 'gateway.key.create');
      const b = req.body;
      const member = memberOf(p, b.member, members, 'body.member');
      // A member bound to a zone is served there only: a key for other zones could never be used.
      const zone = zoneOf.get(member) ?? null;
      if (zone !== null && b.zones !== null && !b.zones.includes(zone))
        throw new ApiError(400, 'VALIDATION_FAILED', `member ${member} is served in zone ${zone} only`, 'body.zones');
      const { key, secret } = newKey({
        name: b.name,
        member,
        user: p.user,
        models: b.models,
        classification: b.classification,
        zones: b.zones,
        limits: {
          requestsPerMinute: b.requestsPerMinute,
          tokensPerMinute: b.tokensPerMinute,
          tokensPerDay: b.tokensPerDay,
          tokensPerMonth: b.tokensPerMonth,
        },
        ttlSeconds: b.ttlDays === null ? null : b.ttlDays * 86_400,
        now: ctx.now(),
      });
      await store.createKey(key);
      await ctx.audit.append({
        kind: 'gateway.key.created',
        actor: p.user,
        member,
        subject: key.id,
        data: {
          name: key.name,
          models: [...key.models],
          classification: key.classification,
          zones: key.zones,
          limits: { ...key.limits },
          expiresAt: key.expiresAt,
        },
      });
      return reply.code(201).send({ key: keyView(key), secret });
    },
  );

  r.get(
    '/v1/keys',
    {
      schema: {
        summary: "Your member's gateway keys (all for operators).",
        response: { 200: z.object({ keys: z.array(KeyView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      requireRole(p, 'gateway.key.read');
      return { keys: (await store.keys(p.member)).map(keyView) };
    },
  );

  r.delete(
    '/v1/keys/:id',
    {
      schema: {
        summary: 'Revoke a gateway key: refused at once by this server.',
        params: z.object({ id: z.string().max(64) }),
        response: { 200: KeyView },
      },
    },
    async (req) => {
      const p = req.principal;
      const k = await store.key(req.params.id);
      if (!k) throw notFound(`key ${req.params.id}`);
      authorize(p, 'gateway.key.revoke', { member: k.member, user: k.user, what: `key ${req.params.id}` });
      if (await store.revokeKey(k.id, ctx.now())) {
        gateway.forgetKey(k.id);
        await ctx.audit.append({
          kind: 'gateway.key.revoked',
          actor: p.user,
          member: k.member,
          subject: k.id,
          data: { name: k.name },
        });
      }
      return keyView((await store.key(k.id))!);
    },
  );

  r.get(
    '/v1/usage',
    {
      schema: {
        summary:
          "Tokens metered by the gateway per member, key and model (your member's; all for operators and consortium auditors).",
        querystring: z.object({
          since: z.coerce.number().min(0).optional(),
          until: z.coerce.number().min(0).optional(),
          member: z.string().max(64).optional(),
          /** Sums per UTC hour or day as well (each row with its `start`), as accounting reads them. */
          period: z.enum(['hour', 'day']).optional(),
        }),
        response: { 200: z.object({ since: z.number(), usage: z.array(UsageView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      if (p.member !== null && req.query.member !== undefined && req.query.member !== p.member)
        throw notFound(`member ${req.query.member}`);
      const member = p.member ?? req.query.member ?? null;
      // What is still in memory counts too: a member reads its usage as of now.
      await gateway.flush();
      const since = req.query.since ?? Math.floor(ctx.now() / 86_400) * 86_400;
      const until = req.query.until ?? Number.MAX_SAFE_INTEGER;
      const rows = req.query.period
        ? await store.usageByPeriod(member, since, until, req.query.period === 'hour' ? 3600 : 86_400)
        : await store.usage(member, since, until);
      const names = new Map((await store.keys(member)).map((k) => [k.id, k.name]));
      return { since, usage: rows.map((u) => ({ ...u, keyName: names.get(u.keyId) ?? null })) };
    },
  );

  const WindowView = z.object({
    limit: z.number().nullable(),
    used: z.number(),
    remaining: z.number().nullable(),
    resetsAt: z.string(),
  });
  const LimitsView = z.object({
    requestsPerMinute: WindowView,
    tokensPerMinute: WindowView,
    tokensPerDay: WindowView,
    tokensPerMonth: WindowView,
  });
  const limitsView = (l: Standing['limits']): z.infer<typeof LimitsView> => {
    const w = (x: WindowStanding) => ({ ...x, resetsAt: isoTime(x.resetsAt) });
    return {
      requestsPerMinute: w(l.requestsPerMinute),
      tokensPerMinute: w(l.tokensPerMinute),
      tokensPerDay: w(l.tokensPerDay),
      tokensPerMonth: w(l.tokensPerMonth),
    };
  };
  r.get(
    '/v1/gateway/limits',
    {
      schema: {
        summary:
          "Where your member and each of its live keys stand against their rate limits and token budgets now (every member's for operators and consortium auditors).",
        querystring: z.object({ member: z.string().max(64).optional() }),
        response: {
          200: z.object({
            at: z.string(),
            members: z.array(
              z.object({
                member: z.string(),
                limits: LimitsView,
                keys: z.array(z.object({ id: z.string(), name: z.string(), limits: LimitsView })),
              }),
            ),
          }),
        },
      },
    },
    async (req) => {
      const p = req.principal;
      const named = req.query.member;
      if (named !== undefined && !(p.member === null ? members.has(named) : named === p.member))
        throw notFound(`member ${named}`);
      const now = ctx.now();
      const live = (k: GatewayKey) => k.revokedAt === null && (k.expiresAt === null || k.expiresAt > now);
      const keys = (await store.keys(p.member ?? named ?? null)).filter(live);
      const shown = p.member !== null ? [p.member] : named !== undefined ? [named] : [...members];
      return {
        at: isoTime(now),
        members: shown.map((m) => {
          const s = gateway.standing(
            m,
            keys.filter((k) => k.member === m),
          );
          return {
            member: s.member,
            limits: limitsView(s.limits),
            keys: s.keys.map((k) => ({ ...k, limits: limitsView(k.limits) })),
          };
        }),
      };
    },
  );

  const Settings = z.object({ member: z.string(), logging: z.boolean() });
  r.get(
    '/v1/gateway/settings',
    {
      schema: {
        summary: "Whether the gateway keeps your member's prompts and completions (off by default).",
        querystring: z.object({ member: z.string().max(64).optional() }),
        response: { 200: Settings },
      },
    },
    async (req) => {
      const member = memberOf(req.principal, req.query.member, members, 'query.member');
      return { member, logging: await store.logging(member) };
    },
  );
  r.put(
    '/v1/gateway/settings',
    {
      schema: {
        summary: "Turn the keeping of your member's prompts and completions on or off (member admins).",
        body: z.strictObject({ member: z.string().max(64).optional(), logging: z.boolean() }),
        response: { 200: Settings },
      },
    },
    async (req) => {
      const p = req.principal;
      // The member's own decision: operators cannot turn on the keeping of a member's prompts.
      requireRole(p, 'gateway.logging');
      const member = memberOf(p, req.body.member, members, 'body.member');
      await store.setLogging(member, req.body.logging, p.user, ctx.now());
      gateway.setLogging(member, req.body.logging);
      await ctx.audit.append({
        kind: 'gateway.logging.changed',
        actor: p.user,
        member,
        subject: member,
        data: { logging: req.body.logging },
      });
      return { member, logging: req.body.logging };
    },
  );

  const LogView = z.object({
    keyId: z.string(),
    model: z.string(),
    at: z.string(),
    /** The request's messages (chat), prompt (completions) or input (embeddings), as sent. */
    request: z.unknown(),
    completion: z.string(),
  });
  r.get(
    '/v1/gateway/logs',
    {
      schema: {
        summary:
          'The prompts and completions the gateway kept for your member (while its logging is on), newest first; member admins only; each read is audited.',
        querystring: z.strictObject({
          member: z.string().max(64).optional(),
          since: z.coerce.number().min(0).optional(),
          until: z.coerce.number().min(0).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.object({ member: z.string(), logs: z.array(LogView) }) },
      },
    },
    async (req) => {
      const p = req.principal;
      // The member's own record of what its people asked: not the operators'.
      // Another member's logs do not exist for you (404), whatever your role.
      if (p.member !== null && req.query.member !== undefined && req.query.member !== p.member)
        throw notFound(`member ${req.query.member}`);
      requireRole(p, 'gateway.logs.read');
      const member = p.member;
      if (member === null) throw forbidden("only the member's admins read its prompts");
      const { since, until, limit } = req.query;
      // What is still in memory counts too.
      await gateway.flush();
      const rows = await store.logs(member, { since, until, limit });
      await ctx.audit.append({
        kind: 'gateway.logs.read',
        actor: p.user,
        member,
        subject: member,
        data: { since: since ?? null, until: until ?? null, limit, count: rows.length },
      });
      return {
        member,
        logs: rows.map((l) => ({
          keyId: l.keyId,
          model: l.model,
          at: isoTime(l.at),
          request: parseJson(l.request),
          completion: l.completion,
        })),
      };
    },
  );
  return gateway;
}

/** A kept request as it was sent; text that is not JSON (never written so) as text. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

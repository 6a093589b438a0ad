// The HTTP API: fastify with zod schemas (validated in, serialized out, published as OpenAPI at
// /openapi.json). Every route but the probes and the API description needs a bearer token.
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { ApiError, clientError, frameworkError, installErrorHandling } from './errors.js';
import type { ServerContext } from './context.js';
import { adminRoutes } from './routes/admin.js';
import { auditRoutes } from './routes/audit.js';
import { governanceRoutes } from './routes/governance.js';
import { jobRoutes } from './routes/jobs.js';
import { modelRoutes } from './routes/models.js';
import { reservationRoutes } from './routes/reservations.js';
import { gatewayRoutes } from '../inference/gateway/routes.js';
import { deploymentRoutes } from '../inference/deployments/routes.js';

const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.json']);

export async function buildApp(ctx: ServerContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    // One log line per request is too many at thousands of submissions a second; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    // Huge or odd inputs are refused early, never parsed into a crash.
    bodyLimit: 2 * 1024 * 1024,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    // Bad percent-encoding, over-long parameters, unknown methods, huge headers: our error body too.
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
  });
  // The API speaks JSON only: a text body is refused as 415, not parsed into a confusing 400.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandling(app);
  await app.register(swagger, {
    openapi: {
      info: { title: 'Fabrik', description: 'Control plane of a sovereign AI factory', version: '0.1.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.decorateRequest('principal', null as never);
  app.addHook('onRequest', async (req) => {
    (req as { startedAt?: bigint }).startedAt = process.hrtime.bigint();
    const path = req.url.split('?')[0];
    // The OpenAI routes authenticate gateway keys themselves, and answer in OpenAI's error shape.
    if (PUBLIC.has(path) || req.routeOptions.config.gateway) return;
    req.principal = await ctx.auth.authenticate(req.headers.authorization);
  });
  app.addHook('onResponse', async (req, reply) => {
    const started = (req as { startedAt?: bigint }).startedAt;
    if (started === undefined) return;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.metrics.httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) },
      seconds,
    );
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    try {
      await ctx.store.countTokens();
      return { status: 'ready' };
    } catch {
      return reply.code(503).send(new ApiError(503, 'UNAVAILABLE', 'the store does not answer').body());
    }
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
    // The metrics hold every member's GPUs in use: an auditor of one member must not see the others'.
    const { role, member } = req.principal;
    if (role !== 'operator' && !(role === 'auditor' && member === null))
      throw new ApiError(403, 'FORBIDDEN', 'metrics are for operators and consortium-wide auditors');
    reply.type(ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  jobRoutes(app, ctx);
  adminRoutes(app, ctx);
  auditRoutes(app, ctx);
  governanceRoutes(app, ctx);
  modelRoutes(app, ctx);
  reservationRoutes(app, ctx);
  deploymentRoutes(app, ctx);
  await gatewayRoutes(app, ctx);
  await app.ready();
  return app;
}

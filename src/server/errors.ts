// Every error a client sees is an ApiError: an HTTP status, a stable code, a sentence for
// people, and the field to blame. Anything else that escapes a handler is a bug: it is logged
// with its stack and the client gets a 500 without one.
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import type { ErrorBody, ErrorCode } from '../api/contract.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } };
  }
}

/** Another member's object, or none at all: the same answer, so nothing leaks. */
export const notFound = (what: string) => new ApiError(404, 'NOT_FOUND', `${what} not found`);
export const forbidden = (message: string) => new ApiError(403, 'FORBIDDEN', message);

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  params?: { issue?: { path?: readonly PropertyKey[]; message?: string } };
}

/** `body.gpus`, `query.limit`, `headers.idempotency-key`: where the bad value was. */
function fieldOf(context: string | undefined, issue: ValidationIssue): string {
  const path = issue.params?.issue?.path ?? (issue.instancePath ?? '').split('/').filter(Boolean);
  const where = context === 'querystring' ? 'query' : (context ?? 'body');
  return [where, ...path.map(String)].join('.');
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof ApiError) return reply.code(err.status).send(err.body());
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation as unknown as ValidationIssue[];
      const first = issues[0] ?? {};
      const field = fieldOf(err.validationContext, first);
      const message = issues
        .map((i) => `${fieldOf(err.validationContext, i)}: ${i.params?.issue?.message ?? i.message}`)
        .join('; ');
      return reply.code(400).send(new ApiError(400, 'VALIDATION_FAILED', message, field).body());
    }
    // Fastify's own client errors: malformed JSON, wrong content type, body too large, ….
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const code: ErrorCode =
        status === 413
          ? 'PAYLOAD_TOO_LARGE'
          : status === 415
            ? 'UNSUPPORTED_MEDIA_TYPE'
            : status === 404
              ? 'NOT_FOUND'
              : status === 405
                ? 'METHOD_NOT_ALLOWED'
                : 'BAD_REQUEST';
      return reply.code(status).send(new ApiError(status, code, err.message).body());
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: { code: 'UNAVAILABLE', message: 'internal error; it was logged' } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(new ApiError(404, 'NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`).body());
  });
}

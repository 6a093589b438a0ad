// Every error a client sees is an ApiError: an HTTP status, a stable code, a sentence for
// people, and the field to blame. Anything else that escapes a handler is a bug: it is logged
// with its stack and the client gets a 500 without one.
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
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
    // A route may have set another type (logs are text/plain) before it failed.
    reply.type('application/json; charset=utf-8');
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

/**
 * Errors fastify's router raises before any route runs (a path that is not valid percent-encoding,
 * a path parameter over maxParamLength): the same error body as everywhere else.
 */
export function frameworkError(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const status = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
  const message = status === 414 ? 'a path parameter is too long' : 'the path is not valid percent-encoding';
  reply
    .code(status)
    .type('application/json; charset=utf-8')
    .send(new ApiError(status, 'BAD_REQUEST', message).body());
}

/**
 * Requests Node's HTTP parser refuses (an unknown method, headers over its size limit, a malformed
 * request line) never reach fastify: answer them on the socket with the same error body.
 */
export function clientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'the request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'the request took too long to arrive']
        : [400, `malformed HTTP request${err.code ? ` (${err.code})` : ''}`];
  const body = JSON.stringify(new ApiError(status, 'BAD_REQUEST', message).body());
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy(err);
}

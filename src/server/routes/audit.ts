// /v1/audit: the signed checkpoint, the key it is signed with, the events, and the proofs that
// let a member check for itself that the log only grew and that its events are in it.
//
// Who sees what: a member's people (any role) see the member's own events and may ask for their
// inclusion proofs; the factory-wide principals (operators, consortium auditors) see every event.
// Another member's event does not exist for you (404), as everywhere in the API. Checkpoints and
// consistency proofs are hashes only: everyone signed in may have them.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AuditEventView, CheckpointView, ConsistencyProofView, InclusionProofView, PublicKeyView } from '../../audit/api.js';
import { keyFingerprint, publicKeyPem } from '../../audit/checkpoint.js';
import { seesMember } from '../access.js';
import type { Principal } from '../auth.js';
import { ApiError, notFound } from '../errors.js';
import type { ServerContext } from '../context.js';

const seqNumber = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const b64 = (hashes: readonly Buffer[]) => hashes.map((h) => h.toString('base64'));
const bad = (field: string, message: string) => new ApiError(400, 'VALIDATION_FAILED', message, field);

/** Factory-wide principals see every event; everyone else, their member's. */
const sees = (p: Principal, member: string | null) => p.member === null || (member !== null && seesMember(p, member));

export function auditRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { audit } = ctx;

  const noCheckpoint = () => new ApiError(404, 'NOT_FOUND', 'no checkpoint yet: the log is empty or younger than a second');

  r.get(
    '/v1/audit/checkpoint',
    {
      schema: {
        summary: "The latest signed checkpoint: the log's size and root hash, signed with Ed25519.",
        response: { 200: CheckpointView },
      },
    },
    async () => audit.latestCheckpoint() ?? Promise.reject(noCheckpoint()),
  );

  r.get(
    '/v1/audit/public-key',
    { schema: { summary: 'The key checkpoints are signed with; save it with a checkpoint.', response: { 200: PublicKeyView } } },
    async () => {
      const key = audit.publicKey();
      return { algorithm: 'Ed25519' as const, publicKey: publicKeyPem(key), fingerprint: keyFingerprint(key) };
    },
  );

  r.get(
    '/v1/audit/events',
    {
      schema: {
        summary:
          "Logged events, oldest first: your member's (everyone's for operators and consortium auditors); page with `after`.",
        querystring: z.strictObject({
          after: seqNumber.optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.object({ events: z.array(AuditEventView), next: z.number().int().nullable() }) },
      },
    },
    async (req) => {
      const p = req.principal;
      const { after, limit } = req.query;
      const events = await audit.events({ after: after ?? -1, limit, member: p.member ?? undefined });
      return { events, next: events.length === limit ? events[events.length - 1].seq : null };
    },
  );

  r.get(
    '/v1/audit/proofs/inclusion',
    {
      schema: {
        summary: 'That an event is in the tree of a given size (default: the latest checkpoint), with the event as stored.',
        querystring: z.strictObject({ seq: seqNumber, size: seqNumber.min(1).optional() }),
        response: { 200: InclusionProofView },
      },
    },
    async (req) => {
      const p = req.principal;
      const { seq } = req.query;
      const size = req.query.size ?? audit.latestCheckpoint()?.size;
      if (size === undefined) throw noCheckpoint();
      if (size > audit.size) throw bad('query.size', `the log has ${audit.size} events, not ${size}`);
      // Before the size check on seq: whether another member's event exists must not leak.
      const event = seq < size ? await audit.event(seq) : undefined;
      if (seq < size && (!event || !sees(p, event.member))) throw notFound(`audit event ${seq}`);
      if (!event) throw bad('query.seq', `event ${seq} is not in the tree of ${size} events`);
      return {
        seq,
        size,
        leafHash: audit.leafHash(seq).toString('base64'),
        proof: b64(audit.inclusionProof(seq, size)),
        event,
      };
    },
  );

  r.get(
    '/v1/audit/proofs/consistency',
    {
      schema: {
        summary: 'That the tree of `to` events extends the tree of `from` events: the log only grew.',
        querystring: z.strictObject({ from: seqNumber, to: seqNumber.optional() }),
        response: { 200: ConsistencyProofView },
      },
    },
    async (req) => {
      const { from } = req.query;
      const to = req.query.to ?? audit.latestCheckpoint()?.size;
      if (to === undefined) throw noCheckpoint();
      if (to > audit.size) throw bad('query.to', `the log has ${audit.size} events, not ${to}`);
      if (from > to) throw bad('query.from', `from (${from}) is after to (${to})`);
      return { from, to, proof: b64(audit.consistencyProof(from, to)) };
    },
  );
}

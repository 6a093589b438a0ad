// What a leaf is: the canonical JSON of an event, exactly as the API shows it. A verifier hashes
// the event it was given and needs nothing else from the server to know whether it is the leaf.
import { leafHash } from './merkle.js';

/** One logged event, as stored, served and hashed. */
export interface AuditEvent {
  readonly seq: number;
  /** ISO 8601 with milliseconds (the stored integer, exactly). */
  readonly at: string;
  readonly kind: string;
  readonly actor: string;
  readonly member: string | null;
  readonly subject: string | null;
  readonly data: Readonly<Record<string, unknown>> | null;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/**
 * JSON with the keys of every object sorted: one text per value, so the same event always
 * hashes the same. Undefined members drop out, as in JSON.stringify; a second pass over the
 * parsed text gives the same text.
 */
export function canonicalJson(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) =>
    isPlainObject(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, v[k]]),
        )
      : v,
  );
  if (text === undefined) throw new TypeError('an audit event must be a JSON value');
  return text;
}

/** The bytes of the leaf. */
export function leafContent(e: AuditEvent): string {
  return canonicalJson({
    seq: e.seq,
    at: e.at,
    kind: e.kind,
    actor: e.actor,
    member: e.member,
    subject: e.subject,
    data: e.data,
  });
}

export const eventLeafHash = (e: AuditEvent): Buffer => leafHash(leafContent(e));

export const isoOfMs = (ms: number): string => new Date(ms).toISOString();

/** A stored row (either engine) as the event it records. */
export function eventOfRow(row: {
  seq: string | number;
  at: string | number;
  kind: string;
  actor: string;
  member: string | null;
  subject: string | null;
  data: string;
}): AuditEvent {
  return {
    seq: Number(row.seq),
    at: isoOfMs(Number(row.at)),
    kind: row.kind,
    actor: row.actor,
    member: row.member,
    subject: row.subject,
    data: JSON.parse(row.data) as Record<string, unknown> | null,
  };
}

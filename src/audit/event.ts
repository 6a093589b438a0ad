// What a leaf is: the canonical JSON of an event, exactly as the API shows it. A verifier hashes
// the event it was given and needs nothing else from the server to know whether it is the leaf.
//
// Since migration 009_audit_salts every event carries `salt`: 32 random bytes (base64) chosen when
// it is appended, inside the hashed JSON. Without it a sibling hash in someone else's inclusion
// proof can be brute-forced: kind, actor, member and subject come from small sets and `at` is near
// the asker's own event. The salt is shown only with the event, to whoever may see the event, so
// the leaf stays "the event as served" and verifiers need no second rule. Events logged before the
// switch have no `salt` key at all, so their canonical JSON, and their leaf, are what they were.
import { randomBytes } from 'node:crypto';
import { leafHash } from './merkle.js';

/** Bytes of randomness per event: as many as the hash, so guessing a salt is as hard as a preimage. */
export const SALT_BYTES = 32;

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
  /** Base64 of SALT_BYTES random bytes; absent on events logged before salting (see the top of this file). */
  readonly salt?: string;
}

/** One fresh salt per event, from a single draw for the whole batch (one call into the CSPRNG, not n). */
export function freshSalts(n: number): string[] {
  const bytes = randomBytes(SALT_BYTES * n);
  const salts = new Array<string>(n);
  for (let i = 0; i < n; i++) salts[i] = bytes.toString('base64', i * SALT_BYTES, (i + 1) * SALT_BYTES);
  return salts;
}

/**
 * JSON with the keys of every object sorted: one text per value, so the same event always
 * hashes the same. As JSON.stringify otherwise (undefined members drop out, toJSON is used), and
 * a second pass over the parsed text gives the same text. Written out rather than a replacer:
 * it is most of an append's cost.
 */
export function canonicalJson(value: unknown): string {
  const text = canonical(value);
  if (text === undefined) throw new TypeError('an audit event must be a JSON value');
  return text;
}

function canonical(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const json = (v as { toJSON?: () => unknown }).toJSON;
  if (typeof json === 'function') return canonical(json.call(v));
  if (Array.isArray(v)) return '[' + v.map((x) => canonical(x) ?? 'null').join(',') + ']';
  const o = v as Record<string, unknown>;
  let out = '';
  for (const k of Object.keys(o).sort()) {
    const member = canonical(o[k]);
    if (member !== undefined) out += (out === '' ? '' : ',') + JSON.stringify(k) + ':' + member;
  }
  return '{' + out + '}';
}

/**
 * The bytes of the leaf: canonicalJson of the event, written with its keys in their sorted order
 * (actor, at, data, kind, member, salt, seq, subject) so that only `data` needs sorting, and not
 * even that when its canonical text is at hand. An event without a salt (logged before salting)
 * has no `salt` key, exactly as canonicalJson would write it.
 */
export function leafContent(e: AuditEvent): string;
/** With the data's canonical text at hand (the writer made it once). */
export function leafContent(e: Omit<AuditEvent, 'data'>, dataText: string): string;
export function leafContent(
  e: Omit<AuditEvent, 'data'> & { data?: AuditEvent['data'] },
  dataText = canonicalJson(e.data ?? null),
): string {
  const s = JSON.stringify;
  const salt = e.salt === undefined ? '' : `"salt":${s(e.salt)},`;
  return `{"actor":${s(e.actor)},"at":${s(e.at)},"data":${dataText},"kind":${s(e.kind)},"member":${s(e.member)},${salt}"seq":${s(e.seq)},"subject":${s(e.subject)}}`;
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
  salt?: string | null;
}): AuditEvent {
  const event: AuditEvent = {
    seq: Number(row.seq),
    at: isoOfMs(Number(row.at)),
    kind: row.kind,
    actor: row.actor,
    member: row.member,
    subject: row.subject,
    data: JSON.parse(row.data) as Record<string, unknown> | null,
  };
  // No key at all when unsalted: the served event must be the hashed one, key for key.
  return row.salt == null ? event : { ...event, salt: row.salt };
}

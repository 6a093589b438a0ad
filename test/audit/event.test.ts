// What a leaf is: the canonical JSON of the event as served, so a verifier can rehash what it is shown.
//
// Reproduce a property failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/audit.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, leafContent, type AuditEvent } from '../../src/audit/event.js';

const seed = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {};

// With and without a salt: events logged before salting have no `salt` key at all.
const arbEvent: fc.Arbitrary<AuditEvent> = fc.record(
  {
    seq: fc.nat(),
    at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    kind: fc.string(),
    actor: fc.string(),
    member: fc.option(fc.string(), { nil: null }),
    subject: fc.option(fc.string(), { nil: null }),
    data: fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: null }),
    salt: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64')),
  },
  { requiredKeys: ['seq', 'at', 'kind', 'actor', 'member', 'subject', 'data'] },
);

describe('audit events', () => {
  it('property: the leaf is the canonical JSON of the event, and canonical JSON survives a round trip', () => {
    fc.assert(
      fc.property(arbEvent, (e) => {
        const text = leafContent(e);
        expect(text).toBe(canonicalJson(e));
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(e)));
      }),
      { numRuns: 300, ...seed },
    );
  });

  it('sorts keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: undefined }], c: null } })).toBe('{"a":{"c":null,"d":[{"z":1}]},"b":1}');
    expect(() => canonicalJson(undefined)).toThrow(/JSON value/);
  });
});

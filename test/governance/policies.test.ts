// The admission matrix: members × datasets × agreements (valid, expired, revoked, unapproved,
// wrong purpose, wrong zone) × placements (zone, co-tenancy). Every decision is the expected one,
// with the expected rule.
import { describe, expect, it } from 'vitest';
import type { Agreement, Dataset } from '../../src/governance/model.js';
import fc from 'fast-check';
import {
  AdmissionPolicies,
  BUILT_IN_POLICIES,
  InvalidPolicyError,
  POLICY_LIMITS,
  checkPolicyText,
} from '../../src/governance/policies.js';
import { cedarInstancesReplaced } from '../../src/governance/cedar.js';

const NOW = 1_800_000_000;
const dataset = (over: Partial<Dataset>): Dataset => ({
  id: 'trials',
  owner: 'pharma',
  name: 'trials',
  classification: 'internal',
  zones: ['general', 'sovereign'],
  location: '/data/trials',
  createdAt: NOW - 100,
  createdBy: 'pia',
  ...over,
});
const agreement = (over: Partial<Agreement>): Agreement => ({
  id: 'dua-1',
  grantor: 'pharma',
  grantee: 'telecom',
  granteeMember: 'telecom',
  granteeProject: null,
  datasets: ['trials'],
  purposes: ['drug-discovery'],
  zones: ['general'],
  expiresAt: NOW + 3600,
  produces: 'confidential',
  noExport: false,
  createdAt: NOW - 50,
  createdBy: 'pia',
  approvedAt: NOW - 40,
  approvedBy: 'pharma-admin',
  revokedAt: null,
  revokedBy: null,
  ...over,
});

const AGREEMENTS: Record<string, Agreement | null> = {
  none: null,
  valid: agreement({}),
  expired: agreement({ expiresAt: NOW - 1 }),
  revoked: agreement({ revokedAt: NOW - 10, revokedBy: 'pharma-admin' }),
  unapproved: agreement({ approvedAt: null, approvedBy: null }),
  'other-purpose': agreement({ purposes: ['marketing'] }),
  'project-grant': agreement({ grantee: 'telecom/ran', granteeProject: 'ran' }),
  'other-project-grant': agreement({ grantee: 'telecom/billing', granteeProject: 'billing' }),
};
const PLACES = {
  'before placement': { zone: '', cotenants: [] },
  'general, alone': { zone: 'general', cotenants: [] },
  'sovereign, alone': { zone: 'sovereign', cotenants: [] },
  'general, next to bank': { zone: 'general', cotenants: ['bank'] },
};
type Place = keyof typeof PLACES;

/** The expected outcome: 'allow', or the rules that refuse. */
function expected(member: string, classification: string, a: string, place: Place): string {
  if (member === 'pharma') {
    // The owner: its dataset's zones and, for sensitive data, no neighbours.
    if (place === 'general, next to bank' && classification === 'confidential') return 'shared-nvlink-domain';
    return 'allow';
  }
  if (member === 'bank') return 'no-agreement';
  if (a === 'none' || a === 'other-project-grant') return 'no-agreement';
  const rules: string[] = [];
  if (a === 'expired') rules.push('agreement-expired');
  if (a === 'revoked') rules.push('agreement-revoked');
  if (a === 'unapproved') rules.push('agreement-not-approved');
  if (a === 'other-purpose') rules.push('purpose-not-permitted');
  if (place === 'sovereign, alone') rules.push('zone-not-in-agreement');
  if (place === 'general, next to bank' && classification === 'confidential') rules.push('shared-nvlink-domain');
  return rules.length === 0 ? 'allow' : rules.sort().join(',');
}

describe('admission policies', () => {
  const policies = new AdmissionPolicies();
  const cases: [string, string, string, Place][] = [];
  for (const member of ['pharma', 'telecom', 'bank'])
    for (const classification of ['internal', 'confidential'])
      for (const a of Object.keys(AGREEMENTS))
        for (const place of Object.keys(PLACES) as Place[]) cases.push([member, classification, a, place]);

  it.each(cases)('%s uses a %s dataset under agreement %s, %s', (member, classification, a, place) => {
    const d = dataset({ classification: classification as Dataset['classification'] });
    const agreements = AGREEMENTS[a] ? [AGREEMENTS[a]] : [];
    const decision = policies.decide({ member, project: 'ran', purpose: 'drug-discovery' }, d, agreements, PLACES[place], NOW);
    const want = expected(member, classification, a, place);
    expect(decision.allow ? 'allow' : decision.rules.join(',')).toBe(want);
    if (decision.allow) expect(decision.agreement).toBe(member === 'pharma' ? null : `pharma/${AGREEMENTS[a]!.id}`);
  });

  it('refuses a zone the dataset does not allow, even to its owner', () => {
    const d = dataset({ zones: ['sovereign'] });
    const decision = policies.decide({ member: 'pharma', project: 'p', purpose: 'x' }, d, [], PLACES['general, alone'], NOW);
    expect(decision).toMatchObject({ allow: false, rules: ['zone-not-allowed-for-dataset'] });
  });

  it('takes the first agreement that allows among several', () => {
    const decision = policies.decide(
      { member: 'telecom', project: 'ran', purpose: 'drug-discovery' },
      dataset({}),
      [AGREEMENTS.revoked!, agreement({ id: 'dua-2' })],
      PLACES['general, alone'],
      NOW,
    );
    expect(decision).toEqual({ dataset: 'pharma/trials', allow: true, agreement: 'pharma/dua-2', rules: [] });
  });

  it("adds an operator's site-wide rule, which names itself when it refuses", () => {
    const site = new AdmissionPolicies({
      'restricted-only-in-sovereign': `forbid (principal, action, resource is Fabrik::Dataset)
        when { resource.classification == "restricted" && context.zone != "" && context.zone != "sovereign" };`,
    });
    const d = dataset({ classification: 'restricted' });
    const job = { member: 'pharma', project: 'p', purpose: 'x' };
    expect(site.decide(job, d, [], PLACES['general, alone'], NOW).rules).toEqual(['restricted-only-in-sovereign']);
    expect(site.decide(job, d, [], PLACES['sovereign, alone'], NOW).allow).toBe(true);
  });

  it("never confuses two members' datasets or agreements of one id", () => {
    // Telecom has a trials of its own, and pharma's agreement names pharma's trials only.
    const telecoms = dataset({ owner: 'telecom', location: '/data/telecom/trials' });
    const pharmas = dataset({});
    const grant = agreement({ grantee: 'bank', granteeMember: 'bank' });
    const job = { member: 'bank', project: 'p', purpose: 'drug-discovery' };
    expect(policies.decide(job, pharmas, [grant], PLACES['general, alone'], NOW)).toMatchObject({
      allow: true,
      agreement: 'pharma/dua-1',
    });
    expect(policies.decide(job, telecoms, [grant], PLACES['general, alone'], NOW)).toEqual({
      dataset: 'telecom/trials',
      allow: false,
      agreement: null,
      rules: ['no-agreement'],
    });
    // An agreement that claims another grantor's dataset (a forged row) grants nothing either:
    // Cedar sees telecom's agreement listing telecom/trials, not pharma's.
    const forged = agreement({ grantor: 'telecom', grantee: 'bank', granteeMember: 'bank' });
    expect(policies.decide(job, pharmas, [forged], PLACES['general, alone'], NOW).rules).toEqual(['no-agreement']);
    // A site policy names a dataset by owner/id, and only that one.
    const site = new AdmissionPolicies({
      'no-pharma-trials': 'forbid (principal, action, resource) when { resource == Fabrik::Dataset::"pharma/trials" };',
    });
    const own = (owner: string) => ({ member: owner, project: 'p', purpose: 'x' });
    expect(site.decide(own('pharma'), pharmas, [], PLACES['general, alone'], NOW).rules).toEqual(['no-pharma-trials']);
    expect(site.decide(own('telecom'), telecoms, [], PLACES['general, alone'], NOW).allow).toBe(true);
  });

  it('fails closed, and says why, when Cedar cannot evaluate the policies together', () => {
    // Each site policy is checked when it is put; a set Cedar refuses as a whole (here, text that
    // never went through that check) must deny every use and name the reason, never throw.
    const broken = new AdmissionPolicies({ broken: 'permit (principal, action, resource) when { ' });
    const decision = broken.decide(
      { member: 'pharma', project: 'p', purpose: 'x' },
      dataset({}),
      [],
      PLACES['general, alone'],
      NOW,
    );
    expect(decision.allow).toBe(false);
    expect(decision.agreement).toBeNull();
    expect(decision.rules.length).toBeGreaterThan(0);
    expect(decision.rules.every((r) => r.startsWith('policies: '))).toBe(true);
  });

  it('refuses a policy that names a dataset or agreement without its member (it would match nothing)', () => {
    for (const [text, message] of [
      [
        'forbid (principal, action, resource) when { resource == Fabrik::Dataset::"trials" };',
        'policy bare: Fabrik::Dataset::"trials" names no member: datasets are Fabrik::Dataset::"<owner>/trials" (e.g. "pharma/trials")',
      ],
      [
        'forbid (principal, action, resource) when { context.agreement == Fabrik :: Agreement :: "dua" };',
        'policy bare: Fabrik::Agreement::"dua" names no member: agreements are Fabrik::Agreement::"<grantor>/dua" (e.g. "pharma/dua")',
      ],
    ])
      expect(() => checkPolicyText('bare', text)).toThrow(message);
    expect(() =>
      checkPolicyText('qualified', 'forbid (principal, action, resource) when { resource == Fabrik::Dataset::"pharma/trials" };'),
    ).not.toThrow();
  });

  it('names a policy that does not parse', () => {
    expect(() => checkPolicyText('broken', 'forbid (principal, action, resource) when { ;')).toThrow(InvalidPolicyError);
    expect(() => checkPolicyText('broken', 'forbid (principal, action, resource) when { ;')).toThrow(/policy broken/);
  });
});

/** Shapes that took Cedar's stack (RangeError, or a wasm out-of-bounds trap) at a few hundred levels. */
const DEEP: Record<string, (n: number) => string> = {
  brackets: (n) => `${'('.repeat(n)}true${')'.repeat(n)}`,
  sets: (n) => `${'['.repeat(n)}1${']'.repeat(n)} == 1`,
  records: (n) => `${'{a:'.repeat(n)}1${'}'.repeat(n)} == 1`,
  sums: (n) => `${Array(n).fill('1').join(' + ')} == 1`,
  attributes: (n) => `context${'.a'.repeat(n)}`,
  ifs: (n) => `${'if true then '.repeat(n)}true${' else false'.repeat(n)}`,
  conjunctions: (n) => Array(n).fill('true').join(' && '),
};
const policy = (when: string) => `forbid (principal, action, resource) when { ${when} };`;

describe('operator policies are bounded before Cedar reads them', () => {
  it('keeps Cedar whole after policies that run it out of stack: each is refused, and plain ones still evaluate', () => {
    // Within the bounds, yet deeper than Cedar's recursion goes: each parse traps inside the wasm,
    // which used to leak the instance's stack until a plain policy failed ("memory access out of
    // bounds") and admission answered 500 for everyone.
    const trapping = policy(`${'if true then '.repeat(220)}true${' else false'.repeat(220)}`);
    const before = cedarInstancesReplaced();
    for (let i = 0; i < 40; i++) expect(() => checkPolicyText('trap', trapping)).toThrow(/Cedar could not (read|evaluate) it/);
    expect(cedarInstancesReplaced()).toBeGreaterThanOrEqual(before + 40);
    for (let i = 0; i < 20; i++)
      expect(() => checkPolicyText('plain', policy(`${'('.repeat(13)}true${')'.repeat(13)}`))).not.toThrow();
  });

  it('refuses deep nesting and long operator chains with InvalidPolicyError, naming the policy, the limit and where', () => {
    for (const [shape, deep] of Object.entries(DEEP))
      for (const n of [1_000, 10_000]) {
        const e = (() => {
          try {
            checkPolicyText('deep', policy(deep(n)));
          } catch (err) {
            return err as Error;
          }
          return null;
        })();
        expect(e, `${shape} × ${n}`).toBeInstanceOf(InvalidPolicyError);
        expect(e!.message, shape).toMatch(
          /^policy deep: (brackets nested more than 32 deep|more than 256 operators) \(at line 1, column \d+\)/,
        );
      }
  });

  it('accepts what stays within the limits, and Cedar evaluates it at admission', () => {
    // The policy's own `when { }` is one level.
    const n = POLICY_LIMITS.nesting - 1;
    const within = policy(`${'('.repeat(n)}resource.classification == "x"${')'.repeat(n)}`);
    expect(() => checkPolicyText('one-more', policy(`(${'('.repeat(n)}true${')'.repeat(n)})`))).toThrow(
      /nested more than 32 deep/,
    );
    expect(() => checkPolicyText('within', within)).not.toThrow();
    const d = dataset({ classification: 'internal' });
    expect(
      new AdmissionPolicies({ within }).decide(
        { member: 'pharma', project: 'p', purpose: 'x' },
        d,
        [],
        PLACES['general, alone'],
        NOW,
      ).allow,
    ).toBe(true);
    // Strings and comments are not code: brackets in them do not count.
    expect(() =>
      checkPolicyText('quoted', `// ${'('.repeat(500)}\n` + policy(`resource.classification == "${'['.repeat(500)}\\""`)),
    ).not.toThrow();
    for (const [id, text] of Object.entries(BUILT_IN_POLICIES))
      expect(() => checkPolicyText(`copy-of-${id}`, text)).not.toThrow();
  });

  it('any nesting of any shape: an answer (accepted or InvalidPolicyError), never another error (property)', () => {
    const expr: fc.Memo<string> = fc.memo((n) =>
      n <= 1
        ? fc.constantFrom('true', '1', 'context.zone', '"s"', 'principal', '[]', '{}')
        : fc.oneof(
            fc
              .tuple(fc.constantFrom('(', '[', '{a: '), expr(n - 1))
              .map(([o, e]) => `${o}${e}${o === '(' ? ')' : o === '[' ? ']' : '}'}`),
            fc
              .tuple(expr(n - 1), fc.constantFrom(' + ', ' && ', ' == ', ' || ', ' < ', ' in '), expr(n - 1))
              .map(([a, op, b]) => a + op + b),
            expr(n - 1).map((e) => `!${e}`),
            expr(n - 1).map((e) => `if ${e} then ${e} else ${e}`),
            fc.tuple(expr(n - 1), fc.integer({ min: 1, max: 600 })).map(([e, k]) => `${'('.repeat(k)}${e}${')'.repeat(k)}`),
            fc.tuple(expr(n - 1), fc.integer({ min: 1, max: 600 })).map(([e, k]) => `${e}${'.a'.repeat(k)}`),
          ),
    );
    fc.assert(
      fc.property(expr(6), (when) => {
        try {
          checkPolicyText('fuzzed', policy(when));
        } catch (e) {
          if (!(e instanceof InvalidPolicyError)) throw e;
        }
      }),
      { numRuns: 300 },
    );
  });
});

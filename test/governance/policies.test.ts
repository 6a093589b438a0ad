// The admission matrix: members × datasets × agreements (valid, expired, revoked, unapproved,
// wrong purpose, wrong zone) × placements (zone, co-tenancy). Every decision is the expected one,
// with the expected rule.
import { describe, expect, it } from 'vitest';
import type { Agreement, Dataset } from '../../src/governance/model.js';
import { AdmissionPolicies, InvalidPolicyError, checkPolicyText } from '../../src/governance/policies.js';

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
    if (decision.allow) expect(decision.agreement).toBe(member === 'pharma' ? null : AGREEMENTS[a]!.id);
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
    expect(decision).toEqual({ dataset: 'trials', allow: true, agreement: 'dua-2', rules: [] });
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

  it('names a policy that does not parse', () => {
    expect(() => checkPolicyText('broken', 'forbid (principal, action, resource) when { ;')).toThrow(InvalidPolicyError);
    expect(() => checkPolicyText('broken', 'forbid (principal, action, resource) when { ;')).toThrow(/policy broken/);
  });
});

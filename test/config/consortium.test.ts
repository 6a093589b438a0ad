import { descriptionError as failure } from '../../src/testing/errors.js';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite, parseConsortium, parseSite } from '../../src/config/index.js';
import { memberById } from '../../src/core/consortium.js';

const file = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));

/** 16 GPUs: rack sp1-r01 (8 GPUs) is general, rack sp1-r02 (8 GPUs) is sovereign. */
const SMALL_SITE = parseSite(
  `
name: small
gpu: { name: test-gpu, memoryGb: 80, watts: 700 }
zones: [general, sovereign]
superpods:
  - name: sp1
    racks:
      - { count: 1, zone: general, trays: 2 }
      - { count: 1, zone: sovereign, trays: 2 }
`,
  'small.yaml',
);

const SMALL = `
name: small
members:
  - id: lab
    name: Lab
    entitlement: 50%
    lendingLimit: 4
    projects: [alpha, beta]
  - id: vault
    name: Vault
    entitlement: 8
    isolation: required
    zone: sovereign
`;

describe('the demo consortium on se-factory', () => {
  const site = loadSite(file('sites/se-factory.yaml'));
  const demo = loadConsortium(file('consortia/demo.yaml'), site);

  it('resolves percentages against the 1,152 GPUs, rounding down', () => {
    expect(demo.members.map((m) => [m.id, m.entitlementGpus])).toEqual([
      ['pharma', 345],
      ['telecom', 230],
      ['defense', 144],
      ['bank', 172],
      ['invest', 144],
      ['academy', 32],
    ]);
    expect(demo.members.reduce((sum, m) => sum + m.entitlementGpus, 0)).toBeLessThanOrEqual(site.totalGpus);
    expect(demo.fairShare.halfLifeHours).toBe(168);
  });

  it('confines defense to the sovereign zone, isolated, lending nothing', () => {
    expect(memberById(demo, 'defense')).toMatchObject({
      isolation: 'required',
      zone: 'sovereign',
      lendingLimitGpus: 0,
      borrowingLimitGpus: 0,
    });
  });

  it('lets a member without a lending limit lend all, and gives every member projects', () => {
    expect(memberById(demo, 'telecom')?.lendingLimitGpus).toBeNull();
    expect(memberById(demo, 'pharma')).toMatchObject({ isolation: 'none', zone: null, lendingLimitGpus: 288 });
    expect(demo.members.every((m) => m.projects.length >= 2)).toBe(true);
  });
});

describe('a small consortium written inline', () => {
  it('fills in the documented defaults', () => {
    const consortium = parseConsortium(SMALL, 'small.yaml', SMALL_SITE);
    expect(consortium.fairShare).toEqual({ halfLifeHours: 168 });
    expect(consortium.members[0]).toEqual({
      id: 'lab',
      name: 'Lab',
      entitlementGpus: 8,
      lendingLimitGpus: 4,
      borrowingLimitGpus: null,
      isolation: 'none',
      zone: null,
      projects: ['alpha', 'beta'],
    });
    expect(consortium.members[1].projects).toEqual([]);
  });

  it.each([
    ['33%', 5], // 5.28 rounds down
    ['12.5%', 2],
    ['100%', 16],
    ['0%', 0],
    [0, 0],
  ])('resolves entitlement %s to %i GPUs', (amount, gpus) => {
    const text = SMALL.replace('entitlement: 50%', `entitlement: ${JSON.stringify(amount)}`)
      .replace('lendingLimit: 4', '')
      .replace('entitlement: 8', 'entitlement: 0');
    expect(parseConsortium(text, 'small.yaml', SMALL_SITE).members[0].entitlementGpus).toBe(gpus);
  });
});

describe('an invalid consortium description', () => {
  const cases: { what: string; text: string; path: string; problem: string }[] = [
    {
      what: 'bad YAML syntax',
      text: SMALL.replace('projects: [alpha, beta]', 'projects: [alpha, beta'),
      path: '',
      problem: 'YAML syntax error at line 9',
    },
    {
      what: 'an unknown key',
      text: SMALL.replace('lendingLimit: 4', 'lendLimit: 4'),
      path: 'members[0].lendLimit',
      problem: "unknown key 'lendLimit' (allowed here: id, name, entitlement, lendingLimit",
    },
    {
      what: 'a wrong type',
      text: SMALL.replace('name: Lab', 'name: [Lab]'),
      path: 'members[0].name',
      problem: 'expected text, got a list',
    },
    {
      what: 'entitlements over capacity',
      text: SMALL.replace('entitlement: 50%', 'entitlement: 9'),
      path: 'members',
      problem: "entitlements add up to 17 GPUs, more than the 16 GPUs of site 'small'",
    },
    {
      what: 'a lending limit over the entitlement',
      text: SMALL.replace('lendingLimit: 4', 'lendingLimit: 75%'),
      path: 'members[0].lendingLimit',
      problem: 'is 12 GPUs, more than the entitlement of 8',
    },
    {
      what: 'a duplicate member',
      text: SMALL.replace('id: vault', 'id: lab'),
      path: 'members[1].id',
      problem: "member id 'lab' is used twice (first at members[0].id)",
    },
    {
      what: 'an unknown zone',
      text: SMALL.replace('zone: sovereign', 'zone: secret'),
      path: 'members[1].zone',
      problem: "zone 'secret' is not a zone of site 'small' (general, sovereign)",
    },
    {
      what: 'an isolated member larger than its zone',
      text: SMALL.replace('entitlement: 50%', 'entitlement: 4').replace('entitlement: 8', 'entitlement: 12'),
      path: 'members[1].entitlement',
      problem: "is 12 GPUs, but zone 'sovereign', where this member's work must run, has only 8",
    },
    {
      what: 'members who together overfill a zone',
      text: SMALL.replace('entitlement: 50%', 'entitlement: 4\n    zone: sovereign'),
      path: 'members',
      problem: "members whose work must run in zone 'sovereign' (lab, vault) are entitled to 12 GPUs together, more than its 8",
    },
    {
      what: 'an amount that is neither GPUs nor a percentage',
      text: SMALL.replace('entitlement: 50%', 'entitlement: half'),
      path: 'members[0].entitlement',
      problem: 'expected a whole number of GPUs (e.g. 144) or a percentage of the site (e.g. "12.5%"), got text "half"',
    },
    {
      what: 'a fraction of a GPU',
      text: SMALL.replace('entitlement: 50%', 'entitlement: 2.5'),
      path: 'members[0].entitlement',
      problem: 'got 2.5',
    },
    {
      what: 'a negative amount',
      text: SMALL.replace('lendingLimit: 4', 'borrowingLimit: -1'),
      path: 'members[0].borrowingLimit',
      problem: 'got -1',
    },
    {
      what: 'more than the whole site',
      text: SMALL.replace('50%', '150%'),
      path: 'members[0].entitlement',
      problem: 'more than 100%',
    },
    {
      what: 'an unknown isolation',
      text: SMALL.replace('isolation: required', 'isolation: strict'),
      path: 'members[1].isolation',
      problem: 'expected one of none, required, got text "strict"',
    },
    {
      what: 'an id that is not lowercase',
      text: SMALL.replace('id: lab', 'id: Lab'),
      path: 'members[0].id',
      problem: 'must be a lowercase id',
    },
    {
      what: 'a project listed twice',
      text: SMALL.replace('[alpha, beta]', '[alpha, alpha]'),
      path: 'members[0].projects[1]',
      problem: "project 'alpha' is used twice",
    },
    {
      what: 'a non-positive half-life',
      text: `${SMALL}fairShare: { halfLifeHours: 0 }\n`,
      path: 'fairShare.halfLifeHours',
      problem: 'must be more than 0, got 0',
    },
    { what: 'no members', text: 'name: empty\nmembers: []\n', path: 'members', problem: 'must list at least one entry' },
  ];

  it.each(cases)('$what → $path', ({ text, path, problem }) => {
    const error = failure(() => parseConsortium(text, 'bad.yaml', SMALL_SITE));
    expect(error.file).toBe('bad.yaml');
    expect(error.path).toBe(path);
    expect(error.problem).toContain(problem);
  });

  it('names a missing file', () => {
    const error = failure(() => loadConsortium('consortia/no-such-consortium.yaml', SMALL_SITE));
    expect(error.file).toBe('consortia/no-such-consortium.yaml');
    expect(error.problem).toBe('file not found');
  });
});

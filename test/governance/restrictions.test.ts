// Property: a model's restrictions are never weaker than the strongest of its training data's:
// its classification is at least every dataset's and every agreement's `produces`, its purposes
// are permitted by every agreement, its zones allowed by every dataset and agreement, and it is
// never exportable when any agreement says noExport.
//
// Reproduce a failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/governance/restrictions.test.ts
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLASSIFICATION_RANK, CLASSIFICATIONS, type Agreement, type Dataset } from '../../src/governance/model.js';
import { agreementsUsed, modelRestrictions } from '../../src/governance/models.js';

const seed = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {};
const ZONES = ['general', 'sovereign', 'edge', 'north'];
const PURPOSES = ['research', 'drug-discovery', 'marketing', 'fraud', 'safety'];
const some = (xs: string[]) => fc.uniqueArray(fc.constantFrom(...xs), { minLength: 1, maxLength: xs.length });

const arbDataset = (i: number): fc.Arbitrary<Dataset> =>
  fc
    .record({
      owner: fc.constantFrom('pharma', 'telecom', 'bank'),
      classification: fc.constantFrom(...CLASSIFICATIONS),
      zones: some(ZONES),
    })
    .map((d) => ({ id: `d${i}`, name: `d${i}`, location: '/x', createdAt: 0, createdBy: 'u', ...d }));

const arbAgreement = (i: number, datasets: readonly string[]): fc.Arbitrary<Agreement> =>
  fc
    .record({
      grantor: fc.constantFrom('pharma', 'bank'),
      grantee: fc.constantFrom('telecom', 'telecom/ran', 'bank'),
      datasets: fc.subarray([...datasets], { minLength: 1 }),
      purposes: some(PURPOSES),
      zones: some(ZONES),
      produces: fc.constantFrom(...CLASSIFICATIONS),
      noExport: fc.boolean(),
      approvedAt: fc.option(fc.constant(1), { nil: null }),
      revokedAt: fc.option(fc.constant(2), { nil: null }),
    })
    .map((a) => {
      const [member, project] = a.grantee.split('/');
      return {
        id: `a${i}`,
        granteeMember: member,
        granteeProject: project ?? null,
        expiresAt: 10,
        createdAt: 0,
        createdBy: 'u',
        approvedBy: a.approvedAt === null ? null : 'adm',
        revokedBy: a.revokedAt === null ? null : 'adm',
        ...a,
      };
    });

const world = fc
  .integer({ min: 0, max: 5 })
  .chain((n) =>
    fc
      .tuple(...Array.from({ length: n }, (_, i) => arbDataset(i)))
      .chain((datasets) =>
        fc
          .integer({ min: 0, max: 6 })
          .chain((m) =>
            fc
              .tuple(
                ...Array.from({ length: m }, (_, i) => arbAgreement(i, datasets.length ? datasets.map((d) => d.id) : ['d0'])),
              )
              .map((agreements) => ({ datasets, agreements })),
          ),
      ),
  );

describe('model restrictions', () => {
  it('are never weaker than the strongest of its training data', () => {
    fc.assert(
      fc.property(world, fc.constantFrom(...PURPOSES), ({ datasets, agreements: all }, purpose) => {
        const job = { member: 'telecom', project: 'ran', purpose };
        const agreements = agreementsUsed(job, datasets, all);
        const r = modelRestrictions(datasets, agreements);
        const rank = CLASSIFICATION_RANK[r.classification];
        for (const d of datasets) {
          expect(rank).toBeGreaterThanOrEqual(CLASSIFICATION_RANK[d.classification]);
          expect(r.zones).not.toBeNull();
          for (const z of r.zones!) expect(d.zones).toContain(z);
        }
        for (const a of agreements) {
          expect(rank).toBeGreaterThanOrEqual(CLASSIFICATION_RANK[a.produces]);
          expect(r.purposes).not.toBeNull();
          for (const p of r.purposes!) expect(a.purposes).toContain(p);
          for (const z of r.zones!) expect(a.zones).toContain(z);
          if (a.noExport) expect(r.noExport).toBe(true);
        }
        // Every other member's dataset the job used is covered by an agreement of its owner in the lineage.
        const ofOwner = (a: Agreement, d: Dataset) => a.grantor === d.owner && a.datasets.includes(d.id);
        for (const d of datasets.filter((x) => x.owner !== job.member))
          if (all.some((a) => ofOwner(a, d) && (a.grantee === 'telecom' || a.grantee === 'telecom/ran')))
            expect(agreements.some((a) => ofOwner(a, d))).toBe(true);
        // And only those: ids are each member's own, so bank's agreement naming `d0` says nothing
        // about pharma's `d0` and never restricts (or explains) a model made from it.
        for (const a of agreements) expect(datasets.some((d) => d.owner !== job.member && ofOwner(a, d))).toBe(true);
        // Never public: a model is its member's work at the least.
        expect(rank).toBeGreaterThanOrEqual(CLASSIFICATION_RANK.internal);
      }),
      { numRuns: 500, ...seed },
    );
  });

  it('take the highest classification, the common purposes and zones, and noExport from any agreement', () => {
    const d = (id: string, classification: Dataset['classification'], zones: string[]): Dataset => ({
      id,
      owner: 'pharma',
      name: id,
      classification,
      zones,
      location: '/x',
      createdAt: 0,
      createdBy: 'u',
    });
    const a = (
      id: string,
      purposes: string[],
      zones: string[],
      produces: Agreement['produces'],
      noExport: boolean,
    ): Agreement => ({
      id,
      grantor: 'pharma',
      grantee: 'telecom',
      granteeMember: 'telecom',
      granteeProject: null,
      datasets: ['x', 'y'],
      purposes,
      zones,
      expiresAt: 10,
      produces,
      noExport,
      createdAt: 0,
      createdBy: 'u',
      approvedAt: 1,
      approvedBy: 'p',
      revokedAt: null,
      revokedBy: null,
    });
    expect(
      modelRestrictions(
        [d('x', 'internal', ['general', 'edge']), d('y', 'confidential', ['general', 'edge', 'north'])],
        [
          a('a1', ['research', 'safety'], ['general', 'edge'], 'restricted', false),
          a('a2', ['safety'], ['edge'], 'public', true),
        ],
      ),
    ).toEqual({ classification: 'restricted', purposes: ['safety'], zones: ['edge'], noExport: true });
    expect(modelRestrictions([], [])).toEqual({ classification: 'internal', purposes: null, zones: null, noExport: false });
  });
});

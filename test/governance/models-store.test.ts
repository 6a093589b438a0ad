// The model registry's store on both engines: model versions round-trip with their lineage,
// restrictions and card; approvals change by compare-and-set (a stale approver list loses, so two
// approvers at once never drop one another) and are used once; break-glass settings upsert.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ModelStore, type Approval } from '../../src/governance/models-store.js';
import type { ModelRecord } from '../../src/governance/models.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, type Location } from '../audit/engines.js';

const model: ModelRecord = {
  name: 'cell-ran',
  version: '1',
  member: 'telecom',
  jobId: '42',
  artifact: '/lustre/m/1',
  restrictions: { classification: 'restricted', purposes: ['research'], zones: ['general'], noExport: false },
  lineage: {
    datasets: [{ id: 'cells', owner: 'pharma', classification: 'confidential', zones: ['general'], location: '/l' }],
    agreements: [],
    job: {
      id: '42',
      member: 'telecom',
      project: 'ran',
      user: 'tom',
      purpose: 'research',
      gpus: 8,
      submittedAt: 1.5,
      startedAt: 2.25,
      endedAt: 3602.25,
    },
    placement: { zone: 'general', nodes: [{ node: 'n1', gpus: 8, domain: 'r1' }] },
    model: { name: 'cell-ran', version: '1', artifact: '/lustre/m/1' },
  },
  grantors: ['pharma'],
  card: { intendedUse: 'research' },
  createdAt: 1_700_000_000.125,
  createdBy: 'tom',
  cardUpdatedAt: null,
  cardUpdatedBy: null,
};

const approval: Approval = {
  id: 'apr-1',
  kind: 'model-export',
  subject: 'model:cell-ran@1',
  member: 'telecom',
  reason: 'publish',
  requestedBy: 'tara',
  requestedById: 'usr_tara',
  requestedRole: 'member-admin',
  createdAt: 10,
  expiresAt: 1000,
  approvers: [],
  state: 'pending',
  approvedAt: null,
  usedAt: null,
};

forEachEngine('model store', (engine, location) => {
  describe(`model store (${engine})`, () => {
    let where: Location;
    let store: KyselyStore;
    let models: ModelStore;
    beforeEach(async () => {
      where = await location();
      store = (await openStore(where.url)) as KyselyStore;
      models = new ModelStore(store.db);
    });
    afterEach(async () => {
      await store.close();
      await where.dispose();
    });

    it('keeps model versions with their lineage, restrictions and card', async () => {
      await models.addModel(model);
      await models.addModel({ ...model, version: '2', createdAt: model.createdAt + 1 });
      await expect(models.addModel(model)).rejects.toThrow(/exists/);
      expect(await models.model('telecom', 'cell-ran', '1')).toEqual(model);
      expect(await models.model('telecom', 'cell-ran', '3')).toBeUndefined();
      expect(await models.model('bank', 'cell-ran', '1')).toBeUndefined();
      expect((await models.models()).map((m) => m.version)).toEqual(['1', '2']);
      expect(await models.updateCard('telecom', 'cell-ran', '1', { limitations: 'none known' }, 'tim', 99.5)).toBe(true);
      expect(await models.updateCard('bank', 'cell-ran', '1', { limitations: 'x' }, 'bea', 99.5)).toBe(false);
      expect(await models.model('telecom', 'cell-ran', '1')).toMatchObject({
        card: { limitations: 'none known' },
        cardUpdatedAt: 99.5,
        cardUpdatedBy: 'tim',
      });
    });

    it("keys versions by member: another member's name and version is a model of its own", async () => {
      await models.addModel(model);
      const banks = { ...model, member: 'bank', artifact: '/lustre/bank/1', createdAt: model.createdAt + 5 };
      await models.addModel(banks);
      await expect(models.addModel({ ...banks, artifact: '/again' })).rejects.toThrow(/exists/);
      expect((await models.modelsNamed('cell-ran', '1')).map((m) => [m.member, m.artifact])).toEqual([
        ['bank', '/lustre/bank/1'],
        ['telecom', '/lustre/m/1'],
      ]);
      expect(await models.model('bank', 'cell-ran', '1')).toEqual(banks);
      expect(await models.modelsNamed('cell-ran', '2')).toEqual([]);
    });

    it('adds approvers by compare-and-set and uses an approval once', async () => {
      await models.addApproval(approval);
      expect(await models.approval('apr-1')).toEqual(approval);
      const tim = { user: 'tim', role: 'member-admin', at: 11 };
      const tess = { user: 'tess', role: 'member-admin', at: 12 };
      expect(await models.setApprovers('apr-1', [], [tim], null)).toBe(true);
      // A second approver who read the empty list too loses, and must read again.
      expect(await models.setApprovers('apr-1', [], [tess], null)).toBe(false);
      expect(await models.useApproval('apr-1', 13)).toBe(false);
      expect(await models.setApprovers('apr-1', [tim], [tim, tess], 12)).toBe(true);
      expect(await models.approval('apr-1')).toMatchObject({ state: 'approved', approvedAt: 12, approvers: [tim, tess] });
      expect(await models.setApprovers('apr-1', [tim, tess], [tim, tess, tim], 13)).toBe(false);
      expect(await models.useApproval('apr-1', 14)).toBe(true);
      expect(await models.useApproval('apr-1', 15)).toBe(false);
      expect(await models.approval('apr-1')).toMatchObject({ state: 'used', usedAt: 14 });
      await models.addApproval({
        ...approval,
        id: 'apr-2',
        kind: 'break-glass',
        subject: 'job:7',
        member: 'bank',
        createdAt: 20,
      });
      expect((await models.approvals({ member: 'bank' })).map((a) => a.id)).toEqual(['apr-2']);
      expect((await models.approvals({ kind: 'model-export', subject: 'model:cell-ran@1' })).map((a) => a.id)).toEqual(['apr-1']);
      expect((await models.approvals()).map((a) => a.id)).toEqual(['apr-1', 'apr-2']);
    });

    it('sets and clears break-glass per member', async () => {
      expect(await models.breakGlassRequired('telecom')).toBe(false);
      await models.setBreakGlass('telecom', true, 'tara', 1);
      expect(await models.breakGlassRequired('telecom')).toBe(true);
      expect(await models.breakGlassRequired('bank')).toBe(false);
      await models.setBreakGlass('telecom', false, 'tara', 2);
      expect(await models.breakGlassRequired('telecom')).toBe(false);
    });
  });
});

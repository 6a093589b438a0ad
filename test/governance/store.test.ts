// Datasets and agreements in the store on both engines, keyed per member (migration 011): two
// members' `trials` are two datasets; a name resolves to the member's own first, else to the one
// granted to it; a store an older Fabrik left keeps its rows, its models and what its site
// policies meant.
import { afterEach, describe, expect, it } from 'vitest';
import { Governance, UnknownDatasetError } from '../../src/governance/governance.js';
import { AmbiguousNameError, type Agreement, type Dataset } from '../../src/governance/model.js';
import { ModelStore } from '../../src/governance/models-store.js';
import { AlreadyExistsError, GovernanceStore } from '../../src/governance/store.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, storeMigratedBefore, type Location } from '../audit/engines.js';

const NOW = 1_800_000_000;
const dataset = (owner: string, id: string, over: Partial<Dataset> = {}): Dataset => ({
  id,
  owner,
  name: id,
  classification: 'internal',
  zones: ['general'],
  location: `/lustre/${owner}/${id}`,
  createdAt: NOW,
  createdBy: `${owner}-user`,
  ...over,
});
const agreement = (grantor: string, id: string, grantee: string, datasets: string[]): Agreement => ({
  id,
  grantor,
  grantee,
  granteeMember: grantee,
  granteeProject: null,
  datasets,
  purposes: ['research'],
  zones: ['general'],
  expiresAt: NOW + 86_400,
  produces: 'internal',
  noExport: false,
  createdAt: NOW,
  createdBy: `${grantor}-user`,
  approvedAt: NOW,
  approvedBy: `${grantor}-admin`,
  revokedAt: null,
  revokedBy: null,
});

forEachEngine('member-scoped dataset and agreement ids', (engine, location) => {
  describe(`member-scoped ids in the store (${engine})`, () => {
    let where: Location;
    let store: KyselyStore | undefined;
    afterEach(async () => {
      await store?.close();
      store = undefined;
      await where?.dispose();
    });
    async function open() {
      where = await location();
      store = await openStore(where.url);
      return new GovernanceStore(store.db);
    }

    it("keeps two members' datasets and agreements of one id apart, and refuses a member's own id twice", async () => {
      const gov = await open();
      await gov.addDataset(dataset('pharma', 'trials'));
      await gov.addDataset(dataset('telecom', 'trials', { classification: 'restricted' }));
      await expect(gov.addDataset(dataset('pharma', 'trials'))).rejects.toThrow(AlreadyExistsError);
      // Two at once for one owner: exactly one lands, the other is told it exists (never a 500).
      const race = await Promise.allSettled([
        gov.addDataset(dataset('bank', 'ledger')),
        gov.addDataset(dataset('bank', 'ledger', { location: '/other' })),
      ]);
      expect(race.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect((await gov.dataset('telecom', 'trials'))?.classification).toBe('restricted');
      expect((await gov.dataset('pharma', 'trials'))?.classification).toBe('internal');
      expect(await gov.dataset('bank', 'trials')).toBeUndefined();
      expect((await gov.datasets(['trials'])).map((d) => d.owner)).toEqual(['pharma', 'telecom']);

      await gov.addAgreement({ ...agreement('pharma', 'dua', 'bank', ['trials']), approvedAt: null, approvedBy: null });
      await gov.addAgreement({ ...agreement('telecom', 'dua', 'bank', ['trials']), approvedAt: null, approvedBy: null });
      await expect(gov.addAgreement(agreement('pharma', 'dua', 'invest', ['trials']))).rejects.toThrow(AlreadyExistsError);
      // Approving pharma's dua leaves telecom's as it was.
      expect(await gov.approveAgreement('pharma', 'dua', 'pam', NOW)).toBe(true);
      expect(await gov.approveAgreement('pharma', 'dua', 'pam', NOW)).toBe(false);
      expect((await gov.agreement('telecom', 'dua'))?.approvedAt).toBeNull();
      expect(await gov.revokeAgreement('telecom', 'dua', 'tim', NOW)).toBe(true);
      expect((await gov.agreement('pharma', 'dua'))?.revokedAt).toBeNull();
      expect((await gov.agreements('dua')).map((a) => a.grantor)).toEqual(['pharma', 'telecom']);
    });

    it('resolves what a job names: its own first, else the one granted to it; never a guess', async () => {
      const gov = await open();
      for (const [owner, id] of [
        ['pharma', 'trials'],
        ['bank', 'trials'],
        ['telecom', 'trials'],
        ['pharma', 'genomes'],
        ['invest', 'secret'],
      ])
        await gov.addDataset(dataset(owner, id));
      await gov.addAgreement(agreement('pharma', 'dua-p', 'academy', ['trials', 'genomes']));
      await gov.addAgreement(agreement('bank', 'dua-b', 'academy', ['trials']));
      await gov.addAgreement(agreement('pharma', 'dua-t', 'telecom', ['trials']));
      const names = (ds: Dataset[]) => ds.map((d) => `${d.owner}/${d.id}`);
      // telecom: its own trials first; pharma's by its qualified name.
      expect(names(await gov.jobDatasets('telecom', ['trials', 'pharma/trials']))).toEqual(['telecom/trials', 'pharma/trials']);
      // academy has no trials of its own and two granted: bare is ambiguous (left out), qualified is not.
      expect(names(await gov.jobDatasets('academy', ['trials', 'genomes', 'bank/trials']))).toEqual([
        'pharma/genomes',
        'bank/trials',
      ]);
      // Not granted: absent, whether it exists or not.
      expect(names(await gov.jobDatasets('academy', ['invest/secret', 'secret', 'nothing']))).toEqual([]);

      const governance = new Governance(gov, ['general'], () => NOW);
      const admission = await governance.admit({
        member: 'academy',
        project: 'labs',
        purpose: 'research',
        datasets: ['genomes', 'bank/trials'],
        zone: null,
        exclusive: false,
      });
      expect(admission).toMatchObject({ allow: true, datasets: ['pharma/genomes', 'bank/trials'] });
      const request = { member: 'academy', project: 'labs', purpose: 'research', zone: null, exclusive: false };
      const err = await governance.admit({ ...request, datasets: ['trials'] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AmbiguousNameError);
      expect((err as Error).message).toBe(
        'dataset trials names more than one you may use: give one of bank/trials, pharma/trials',
      );
      // Another member's dataset and an absent one: the same error, naming only what was given.
      for (const name of ['invest/secret', 'invest/nothing']) {
        const e = await governance.admit({ ...request, datasets: [name] }).catch((x: unknown) => x);
        expect(e).toBeInstanceOf(UnknownDatasetError);
        expect((e as Error).message).toBe(`dataset ${name} does not exist`);
      }
      // Who may use telecom's own trials: telecom alone (pharma's agreement is about pharma's).
      const uses = await governance.whoCanUse('trials', 'telecom');
      expect(uses.dataset.owner).toBe('telecom');
      expect(uses.grants.map((g) => g.grantee)).toEqual(['telecom']);
      expect((await governance.whoCanUse('pharma/trials', 'telecom')).grants.map((g) => g.agreement)).toEqual(['dua-t']);
    });

    it('migrates a store an older Fabrik left: its rows keep working, and its site policies keep meaning what they said', async () => {
      where = await location();
      const old = await storeMigratedBefore(where, '011_member_scoped_ids');
      await old
        .insertInto('datasets')
        .values({
          id: 'trials',
          owner: 'pharma',
          name: 'Trials',
          classification: 'confidential',
          zones: '["general"]',
          location: '/lustre/pharma/trials',
          created_at: NOW,
          created_by: 'pia',
        })
        .execute();
      await old
        .insertInto('agreements')
        .values({
          id: 'dua-trials',
          grantor: 'pharma',
          grantee: 'telecom',
          datasets: '["trials"]',
          purposes: '["drug-discovery"]',
          zones: '["general"]',
          expires_at: NOW + 86_400,
          produces: 'confidential',
          no_export: 0,
          created_at: NOW,
          created_by: 'pia',
          approved_at: NOW,
          approved_by: 'pam',
          revoked_at: null,
          revoked_by: null,
        })
        .execute();
      await old
        .insertInto('model_versions')
        .values({
          name: 'ran-chem',
          version: '1',
          member: 'telecom',
          job_id: '4',
          artifact: '/lustre/telecom/ran-chem-1',
          restrictions: '{"classification":"confidential","purposes":["drug-discovery"],"zones":["general"],"noExport":false}',
          lineage: '{}',
          grantors: '["pharma"]',
          card: '{}',
          created_at: NOW,
          created_by: 'tom',
          card_updated_at: null,
          card_updated_by: null,
        })
        .execute();
      const policy = `forbid (principal, action, resource) when { resource == Fabrik::Dataset::"trials" && context.agreement == Fabrik :: Agreement :: "dua-trials" && resource != Fabrik::Dataset::"unknown" };`;
      await old
        .insertInto('site_policies')
        .values({ id: 'no-trials', text: policy, created_at: NOW, created_by: 'op' })
        .execute();
      await old.destroy();

      store = await openStore(where.url);
      const gov = new GovernanceStore(store.db);
      expect(await gov.dataset('pharma', 'trials')).toMatchObject({ name: 'Trials', classification: 'confidential' });
      expect(await gov.agreement('pharma', 'dua-trials')).toMatchObject({ grantee: 'telecom', approvedBy: 'pam' });
      // A job from before 011 named it bare: it still finds it.
      expect((await gov.jobDatasets('telecom', ['trials'])).map((d) => d.owner)).toEqual(['pharma']);
      const models = new ModelStore(store.db);
      expect(await models.model('telecom', 'ran-chem', '1')).toMatchObject({ artifact: '/lustre/telecom/ran-chem-1' });
      expect((await gov.sitePolicies())['no-trials']).toBe(
        `forbid (principal, action, resource) when { resource == Fabrik::Dataset::"pharma/trials" && context.agreement == Fabrik :: Agreement :: "pharma/dua-trials" && resource != Fabrik::Dataset::"unknown" };`,
      );
      // The new keys: another member takes the same ids.
      await gov.addDataset(dataset('telecom', 'trials'));
      await gov.addAgreement(agreement('telecom', 'dua-trials', 'bank', ['trials']));
      await models.addModel({ ...(await models.model('telecom', 'ran-chem', '1'))!, member: 'bank' });
      await expect(gov.addDataset(dataset('pharma', 'trials'))).rejects.toThrow(AlreadyExistsError);
      expect((await gov.datasets(['trials'])).map((d) => d.owner)).toEqual(['pharma', 'telecom']);
      expect((await models.modelsNamed('ran-chem', '1')).map((m) => m.member)).toEqual(['bank', 'telecom']);
    });
  });
});

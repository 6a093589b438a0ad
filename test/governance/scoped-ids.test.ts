// Ids are each member's own, through the API on both stores: pharma's `trials` and telecom's
// `trials` are two datasets (likewise agreements and models), so creating one never answers
// "exists" for another member's, and every route answers another member's id exactly as an
// absent one. A bare name is the caller's own, else the one other member's granted to it; several
// such: 400 with the qualified names it may use.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { forEachEngine, type Location } from '../audit/engines.js';
import { testServer, type TestServer } from '../server/helpers.js';

type Err = { error: { code: string; message: string; field?: string } };
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();
const dataset = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  classification: 'internal',
  zones: ['general'],
  location: `/lustre/${id}`,
  ...over,
});
const dua = (id: string, grantee: string, datasets: string[], purposes = ['research']) => ({
  id,
  grantee,
  datasets,
  purposes,
  zones: ['general'],
  expires: tomorrow(),
  produces: 'internal',
});

forEachEngine('member-scoped ids through the API', (engine, location) => {
  describe(`member-scoped ids through the API (${engine})`, () => {
    let loc: Location;
    let t: TestServer;
    const tok: Record<string, string> = {};

    beforeAll(async () => {
      loc = await location();
      t = await testServer(engine === 'postgres' ? { store: loc.url } : {});
      for (const [key, member, role, user] of [
        ['pia', 'pharma', 'researcher', 'pia'],
        ['pam', 'pharma', 'member-admin', 'pam'],
        ['tom', 'telecom', 'researcher', 'tom'],
        ['tim', 'telecom', 'member-admin', 'tim'],
        ['bea', 'bank', 'researcher', 'bea'],
        ['bob', 'bank', 'member-admin', 'bob'],
        ['ada', 'academy', 'researcher', 'ada'],
      ] as const)
        tok[key] = await t.token(member, role, user);
    }, 60_000);
    afterAll(async () => {
      const all = await t?.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?state=pending,starting,running');
      for (const j of all?.body.jobs ?? []) await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`);
      await t?.close();
      await loc?.dispose();
    });

    /** The same request on another member's id and on an absent one: the same answer, but for the name given. */
    async function sameAsAbsent(token: string, method: string, path: (id: string) => string, theirs: string, body?: unknown) {
      const absent = `absent-${theirs.replaceAll('/', '-')}`;
      const a = await t.call<Err>(token, method, path(theirs), body);
      const b = await t.call<Err>(token, method, path(absent), body);
      expect(a.status, `${method} ${path(theirs)}`).toBe(b.status);
      expect(a.status).toBe(404);
      expect(a.body.error.code).toBe(b.body.error.code);
      expect(a.body.error.field).toBe(b.body.error.field);
      expect(a.body.error.message.replaceAll(theirs, 'X')).toBe(b.body.error.message.replaceAll(absent, 'X'));
    }

    it("creates a dataset, an agreement and a model with another member's ids as its own", async () => {
      expect((await t.call(tok.pia, 'POST', '/v1/datasets', dataset('trials'))).status).toBe(201);
      expect((await t.call(tok.pia, 'POST', '/v1/agreements', dua('dua-trials', 'academy', ['trials']))).status).toBe(201);
      // Telecom takes the same ids: no 409, nothing learnt about pharma.
      const mine = await t.call<{ id: string; owner: string }>(
        tok.tom,
        'POST',
        '/v1/datasets',
        dataset('trials', { classification: 'confidential' }),
      );
      expect(mine.status).toBe(201);
      expect(mine.body).toMatchObject({ id: 'trials', owner: 'telecom' });
      expect((await t.call(tok.tom, 'POST', '/v1/agreements', dua('dua-trials', 'academy', ['trials']))).status).toBe(201);
      // Its own id twice is still a conflict, naming only its own.
      const again = await t.call<Err>(tok.tom, 'POST', '/v1/datasets', dataset('trials'));
      expect(again.status).toBe(409);
      expect(again.body.error).toMatchObject({ code: 'CONFLICT', field: 'body.id', message: 'dataset trials exists' });
      const list = await t.call<{ datasets: { id: string; owner: string }[] }>(tok.tom, 'GET', '/v1/datasets');
      expect(list.body.datasets.map((d) => `${d.owner}/${d.id}`)).toEqual(['telecom/trials']);
    });

    it("answers another member's dataset and agreement exactly as absent ones, on every route", async () => {
      // Bank sees neither member's trials: bare, qualified, by every route.
      for (const id of ['trials', 'pharma/trials', 'telecom/trials'])
        await sameAsAbsent(tok.bea, 'GET', (x) => `/v1/datasets/${encodeURIComponent(x)}/uses`, id);
      for (const id of ['dua-trials', 'pharma/dua-trials'])
        for (const [method, suffix] of [
          ['GET', ''],
          ['POST', '/approve'],
          ['POST', '/revoke'],
        ] as const)
          await sameAsAbsent(tok.bob, method, (x) => `/v1/agreements/${encodeURIComponent(x)}${suffix}`, id);
      // Granting another member's dataset: absent too.
      for (const [theirs, absent] of [
        ['pharma/trials', 'pharma/absent'],
        ['trials', 'absent'],
      ]) {
        const a = await t.call<Err>(tok.bob, 'POST', '/v1/agreements', dua('steal', 'invest', [theirs]));
        const b = await t.call<Err>(tok.bob, 'POST', '/v1/agreements', dua('steal', 'invest', [absent]));
        expect([a.status, a.body.error.code, a.body.error.field]).toEqual([404, 'NOT_FOUND', 'body.datasets']);
        expect([b.status, b.body.error.code, b.body.error.field]).toEqual([404, 'NOT_FOUND', 'body.datasets']);
        expect(a.body.error.message.replace(theirs, 'X')).toBe(b.body.error.message.replace(absent, 'X'));
      }
      // Even telecom, granted nothing by pharma, cannot grant pharma/trials as its own.
      const claim = await t.call<Err>(tok.tom, 'POST', '/v1/agreements', dua('claim', 'bank', ['pharma/trials']));
      expect(claim.status).toBe(404);
      // A job naming another member's dataset: the same 404 as an absent one.
      for (const name of ['pharma/trials', 'pharma/absent']) {
        const r = await t.call<Err>(tok.bea, 'POST', '/v1/jobs', { command: ['true'], datasets: [name], purpose: 'research' });
        expect([r.status, r.body.error.code, r.body.error.message]).toEqual([404, 'NOT_FOUND', `dataset ${name} does not exist`]);
      }
    });

    it('resolves a bare name to your own first, else the one granted to you; several: 400 with the names to use', async () => {
      for (const [admin, id] of [
        [tok.pam, 'dua-trials'],
        [tok.tim, 'dua-trials'],
      ])
        expect((await t.call(admin, 'POST', `/v1/agreements/${id}/approve`)).status).toBe(200);
      // Telecom's bare trials is its own; pharma's is pharma/trials (not granted to telecom: absent).
      const own = await t.call<{ dataset: { owner: string } }>(tok.tom, 'GET', '/v1/datasets/trials/uses');
      expect(own.body.dataset.owner).toBe('telecom');
      // Academy is granted both: bare is ambiguous, and the answer lists what it may use.
      const amb = await t.call<Err>(tok.ada, 'GET', '/v1/datasets/trials/uses');
      expect(amb.status).toBe(400);
      expect(amb.body.error).toEqual({
        code: 'VALIDATION_FAILED',
        field: 'params.id',
        message: 'dataset trials names more than one you may use: give one of pharma/trials, telecom/trials',
      });
      const job = await t.call<Err>(tok.ada, 'POST', '/v1/jobs', {
        command: ['true'],
        datasets: ['trials'],
        purpose: 'research',
      });
      expect(job.status).toBe(400);
      expect(job.body.error.field).toBe('body.datasets');
      expect(job.body.error.message).toContain('pharma/trials, telecom/trials');
      const agreement = await t.call<Err>(tok.ada, 'GET', '/v1/agreements/dua-trials');
      expect(agreement.status).toBe(400);
      expect(agreement.body.error.message).toBe(
        'agreement dua-trials names more than one you may use: give one of pharma/dua-trials, telecom/dua-trials',
      );
      expect(
        (await t.call<{ grantor: string }>(tok.ada, 'GET', `/v1/agreements/${encodeURIComponent('telecom/dua-trials')}`)).body
          .grantor,
      ).toBe('telecom');
      // Qualified: admitted under pharma's agreement, and the job keeps the qualified name.
      const ok = await t.call<{ jobs: JobView[] }>(tok.ada, 'POST', '/v1/jobs', {
        command: ['true'],
        gpus: 1,
        datasets: ['pharma/trials'],
        purpose: 'research',
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
      expect(ok.body.jobs[0].spec.datasets).toEqual(['pharma/trials']);
      // Pharma revokes its own dua-trials (the bare id is pharma's own to pam); telecom's stays in force.
      expect((await t.call<{ grantor: string }>(tok.pam, 'POST', '/v1/agreements/dua-trials/revoke')).body.grantor).toBe(
        'pharma',
      );
      expect((await t.call<{ state: string }>(tok.tim, 'GET', '/v1/agreements/dua-trials')).body.state).toBe('approved');
      const revokedJob = await t.call<Err>(tok.ada, 'POST', '/v1/jobs', {
        command: ['true'],
        datasets: ['pharma/trials'],
        purpose: 'research',
      });
      expect(revokedJob.body.error.message).toBe('admission refused: dataset pharma/trials: refused by agreement-revoked');
    });

    it("registers models per member: another member's name and version is no conflict, and its lineage names datasets by owner", async () => {
      const job = async (token: string, body: Record<string, unknown>) => {
        const r = await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', { command: ['true'], gpus: 1, ...body });
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        const id = r.body.jobs[0].id;
        await t.waitFor(`job ${id} to succeed`, async () => {
          const j = (await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;
          if (j.state === 'failed') throw new Error(`job ${id} failed: ${j.reason}`);
          return j.state === 'succeeded';
        });
        return id;
      };
      // Pharma trains on telecom's trials (granted: on this small site only pharma and telecom
      // have a whole GPU to run on); telecom on its own trials.
      expect((await t.call(tok.tom, 'POST', '/v1/agreements', dua('dua-t2p', 'pharma', ['trials']))).status).toBe(201);
      expect((await t.call(tok.tim, 'POST', '/v1/agreements/dua-t2p/approve')).status).toBe(200);
      const pharmaJob = await job(tok.pia, { datasets: ['telecom/trials'], purpose: 'research' });
      const telecomJob = await job(tok.tom, { datasets: ['trials'], purpose: 'anything' });
      const reg = (token: string, jobId: string) =>
        t.call<{ member: string }>(token, 'POST', '/v1/models', { name: 'ran-chem', version: '1', jobId, artifact: '/m' });
      expect((await reg(tok.tom, telecomJob)).status).toBe(201);
      const second = await reg(tok.pia, pharmaJob);
      expect(second.status, JSON.stringify(second.body)).toBe(201);
      expect(second.body.member).toBe('pharma');
      expect((await reg(tok.pia, pharmaJob)).status).toBe(409);
      // Telecom: its own ran-chem; pharma's is reachable by qualified name (its lineage has telecom's data).
      expect((await t.call<{ member: string }>(tok.tom, 'GET', '/v1/models/ran-chem/versions/1')).body.member).toBe('telecom');
      const theirs = await t.call<{ member: string; access: string }>(
        tok.tom,
        'GET',
        `/v1/models/${encodeURIComponent('pharma/ran-chem')}/versions/1`,
      );
      expect(theirs.body).toMatchObject({ member: 'pharma', access: 'lineage' });
      const lineage = await t.call<{ lineage: { datasets: { id: string; owner: string }[] } }>(
        tok.pia,
        'GET',
        '/v1/models/ran-chem/versions/1/lineage',
      );
      expect(lineage.body.lineage.datasets.map((d) => [d.owner, d.id])).toEqual([['telecom', 'trials']]);
      // Bank sees neither: bare and qualified names answer as absent ones, on every model route.
      for (const name of ['ran-chem', 'pharma/ran-chem', 'telecom/ran-chem'])
        for (const [method, suffix, body] of [
          ['GET', '', undefined],
          ['GET', '/lineage', undefined],
          ['GET', '/card', undefined],
          ['PATCH', '/card', { limitations: 'x' }],
          ['POST', '/export', undefined],
        ] as const)
          await sameAsAbsent(tok.bob, method, (x) => `/v1/models/${encodeURIComponent(x)}/versions/1${suffix}`, name, body);
      // Operators see both: bare is ambiguous, qualified is one.
      const op = await t.call<Err>(t.operator, 'GET', '/v1/models/ran-chem/versions/1');
      expect(op.status).toBe(400);
      expect(op.body.error.message).toBe(
        'model ran-chem names more than one you may use: give one of pharma/ran-chem, telecom/ran-chem',
      );
    });

    it("refuses a site policy that names a dataset without its member, and applies one that names it to that member's only", async () => {
      const bare = await t.call<Err>(t.operator, 'PUT', '/v1/policies/bare', {
        cedar: 'forbid (principal, action, resource) when { resource == Fabrik::Dataset::"trials" };',
      });
      expect(bare.status).toBe(400);
      expect(bare.body.error.field).toBe('body.cedar');
      expect(bare.body.error.message).toContain('names no member');
      const put = await t.call(t.operator, 'PUT', '/v1/policies/no-telecom-trials', {
        cedar: 'forbid (principal, action, resource) when { resource == Fabrik::Dataset::"telecom/trials" };',
      });
      expect(put.status).toBe(200);
      const refused = await t.call<Err>(tok.tom, 'POST', '/v1/jobs', { command: ['true'], datasets: ['trials'], purpose: 'x' });
      expect(refused.body.error.message).toBe('admission refused: dataset telecom/trials: refused by no-telecom-trials');
      expect((await t.call(tok.pia, 'POST', '/v1/jobs', { command: ['true'], datasets: ['trials'], purpose: 'x' })).status).toBe(
        201,
      );
      expect((await t.call(t.operator, 'DELETE', '/v1/policies/no-telecom-trials')).status).toBe(200);
    });
  });
});

// Datasets, agreements and admission through the API, on a real server (local executor): a
// member registers a dataset and grants it to another for one purpose; jobs are admitted or
// refused with the rule; a revocation stops a job that had not started yet; operators add Cedar
// policies; no member sees another's datasets or agreements without being named in one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from '../server/helpers.js';

let t: TestServer;
let pharmaAdmin: string;
let pharma: string;
let telecom: string;
let bank: string;
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();

beforeAll(async () => {
  t = await testServer();
  pharmaAdmin = await t.token('pharma', 'member-admin', 'pam');
  pharma = await t.token('pharma', 'researcher', 'pia');
  telecom = await t.token('telecom', 'researcher', 'tom');
  bank = await t.token('bank', 'researcher', 'bea');
});
afterAll(async () => {
  const all = await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?state=pending,starting,running,preempting');
  for (const j of all.body.jobs) await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`);
  await t.close();
});

const job = (over: Record<string, unknown>) => ({ command: ['sleep', '1'], gpus: 1, ...over });
type Err = { error: { code: string; message: string; field?: string } };

describe('data-use agreements and admission', () => {
  it('registers a dataset for its owner only, and hides it from the others', async () => {
    const r = await t.call(pharma, 'POST', '/v1/datasets', {
      id: 'trials',
      classification: 'confidential',
      zones: ['general'],
      location: '/lustre/pharma/trials',
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ id: 'trials', owner: 'pharma', classification: 'confidential' });
    expect(
      (
        await t.call(pharma, 'POST', '/v1/datasets', {
          id: 'trials',
          classification: 'public',
          zones: ['general'],
          location: '/x',
        })
      ).status,
    ).toBe(409);
    const bad = await t.call<Err>(pharma, 'POST', '/v1/datasets', {
      id: 'x',
      classification: 'secret',
      zones: ['general'],
      location: '/x',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('body.classification');
    expect((await t.call<{ datasets: unknown[] }>(telecom, 'GET', '/v1/datasets')).body.datasets).toEqual([]);
    expect((await t.call(telecom, 'GET', '/v1/datasets/trials/uses')).status).toBe(404);
  });

  it('grants nothing until a member admin of the grantor approves', async () => {
    const dua = {
      id: 'dua-trials',
      grantee: 'telecom',
      datasets: ['trials'],
      purposes: ['drug-discovery'],
      zones: ['general'],
      expires: tomorrow(),
      produces: 'confidential',
    };
    const proposed = await t.call<{ state: string }>(pharma, 'POST', '/v1/agreements', dua);
    expect(proposed.status).toBe(201);
    expect(proposed.body.state).toBe('proposed');
    // Another member cannot grant pharma's data.
    expect((await t.call(bank, 'POST', '/v1/agreements', { ...dua, id: 'steal' })).status).toBe(404);
    const early = await t.call<Err>(telecom, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'drug-discovery' }));
    expect(early.status).toBe(403);
    expect(early.body.error).toMatchObject({ code: 'ADMISSION_DENIED', field: 'body.datasets' });
    expect(early.body.error.message).toContain('agreement-not-approved');
    // A researcher may not approve; nor may the grantee.
    expect((await t.call(pharma, 'POST', '/v1/agreements/dua-trials/approve')).status).toBe(403);
    expect((await t.call(telecom, 'POST', '/v1/agreements/dua-trials/approve')).status).toBe(403);
    const approved = await t.call<{ state: string; approvedBy: string }>(
      pharmaAdmin,
      'POST',
      '/v1/agreements/dua-trials/approve',
    );
    expect(approved.body).toMatchObject({ state: 'approved', approvedBy: 'pam' });
    expect((await t.call(pharmaAdmin, 'POST', '/v1/agreements/dua-trials/approve')).status).toBe(409);
  });

  it('admits a job for a permitted purpose, isolated on its own NVLink domains, and refuses others with the rule', async () => {
    const ok = await t.call<{ jobs: JobView[] }>(
      telecom,
      'POST',
      '/v1/jobs',
      job({ datasets: ['trials'], purpose: 'drug-discovery' }),
    );
    expect(ok.status).toBe(201);
    // The job keeps the dataset it was admitted with, by its qualified name.
    expect(ok.body.jobs[0].spec).toMatchObject({ datasets: ['pharma/trials'], purpose: 'drug-discovery', exclusive: true });
    const wrong = await t.call<Err>(telecom, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'marketing' }));
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.message).toBe('admission refused: dataset pharma/trials: refused by purpose-not-permitted');
    const noPurpose = await t.call<Err>(telecom, 'POST', '/v1/jobs', job({ datasets: ['trials'] }));
    expect(noPurpose.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.purpose' });
    // Not named in any agreement: the dataset does not exist for bank.
    const stranger = await t.call<Err>(bank, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'drug-discovery' }));
    expect(stranger.status).toBe(404);
    // The owner needs no agreement.
    expect((await t.call(pharma, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'anything' }))).status).toBe(201);
  });

  it('answers who can use the dataset, and for what, from the same policies', async () => {
    const uses = await t.call<{ grants: { grantee: string; purposes: string[]; agreement: string | null }[] }>(
      pharma,
      'GET',
      '/v1/datasets/trials/uses',
    );
    expect(uses.body.grants.map((g) => [g.grantee, g.purposes, g.agreement])).toEqual([
      ['pharma', ['*'], null],
      ['telecom', ['drug-discovery'], 'dua-trials'],
    ]);
    // The grantee sees its own grant, and the dataset without its location.
    const mine = await t.call<{ dataset: { location: string }; grants: { grantee: string }[] }>(
      telecom,
      'GET',
      '/v1/datasets/trials/uses',
    );
    expect(mine.body.dataset.location).toBe('(hidden)');
    expect(mine.body.grants.map((g) => g.grantee)).toEqual(['telecom']);
  });

  it('stops at once, on revocation, a job that has not started yet, and refuses new ones', async () => {
    const first = await t.call<{ jobs: JobView[] }>(telecom, 'POST', '/v1/jobs', job({ command: ['sleep', '2'] }));
    const waiting = await t.call<{ jobs: JobView[] }>(
      telecom,
      'POST',
      '/v1/jobs',
      job({ datasets: ['trials'], purpose: 'drug-discovery', afterOk: [first.body.jobs[0].id] }),
    );
    expect(waiting.status).toBe(201);
    const revoked = await t.call<{ state: string }>(pharmaAdmin, 'POST', '/v1/agreements/dua-trials/revoke');
    expect(revoked.body.state).toBe('revoked');
    const refused = await t.call<Err>(telecom, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'drug-discovery' }));
    expect(refused.body.error.message).toContain('agreement-revoked');
    const ended = await t.waitFor('the waiting job to be refused at placement', async () => {
      const j = (await t.call<JobView>(telecom, 'GET', `/v1/jobs/${waiting.body.jobs[0].id}`)).body;
      return j.state === 'failed' ? j : undefined;
    });
    expect(ended.reason).toBe('AdmissionDenied: dataset pharma/trials: refused by agreement-revoked');
    const uses = await t.call<{ grants: { grantee: string }[] }>(pharma, 'GET', '/v1/datasets/trials/uses');
    expect(uses.body.grants.map((g) => g.grantee)).toEqual(['pharma']);
  });

  it('lets operators add site-wide Cedar policies, checked before they land', async () => {
    const broken = await t.call<Err>(t.operator, 'PUT', '/v1/policies/broken', {
      cedar: 'forbid (principal, action, resource) when { ;',
    });
    expect(broken.status).toBe(400);
    expect(broken.body.error.field).toBe('body.cedar');
    expect(
      (await t.call(pharmaAdmin, 'PUT', '/v1/policies/mine', { cedar: 'forbid (principal, action, resource);' })).status,
    ).toBe(403);
    const put = await t.call(t.operator, 'PUT', '/v1/policies/no-confidential-for-anything', {
      cedar:
        'forbid (principal, action, resource is Fabrik::Dataset) when { resource.classification == "confidential" && principal.purpose == "anything" };',
    });
    expect(put.status).toBe(200);
    const owner = await t.call<Err>(pharma, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'anything' }));
    expect(owner.body.error.message).toBe('admission refused: dataset pharma/trials: refused by no-confidential-for-anything');
    expect((await t.call(t.operator, 'DELETE', '/v1/policies/no-confidential-for-anything')).status).toBe(200);
    expect((await t.call(pharma, 'POST', '/v1/jobs', job({ datasets: ['trials'], purpose: 'anything' }))).status).toBe(201);
  });

  it('shows agreements to their grantor and grantee only', async () => {
    expect((await t.call<{ agreements: unknown[] }>(bank, 'GET', '/v1/agreements')).body.agreements).toEqual([]);
    expect((await t.call(bank, 'GET', '/v1/agreements/dua-trials')).status).toBe(404);
    expect((await t.call<{ agreements: unknown[] }>(telecom, 'GET', '/v1/agreements')).body.agreements).toHaveLength(1);
  });
});

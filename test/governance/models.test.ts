// Models, lineage, cards, export and break-glass through the API, on a real server (local
// executor): telecom trains on pharma's data under an agreement and its own; the model inherits
// the strongest restrictions; its card carries GPU-hours, energy, the data and the EU AI Act
// fields; pharma (the grantor) sees the lineage and nothing else; bank sees nothing; a restricted
// model leaves only with two distinct member admins' approval; with break-glass on, an operator
// reads telecom's job details only with a member admin's and another operator's approval; all of
// it lands in the audit log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import type { AuditEvent } from '../../src/audit/event.js';
import type { ModelCard } from '../../src/governance/models.js';
import { testServer, type TestServer } from '../server/helpers.js';

let t: TestServer;
const tok: Record<string, string> = {};
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();
type Err = { error: { code: string; message: string; field?: string } };
type Model = {
  name: string;
  version: string;
  member: string;
  artifact: string;
  access: string;
  restrictions: Record<string, unknown>;
};
type Approval = { id: string; state: string; approvers: { user: string }[] };
let trainJob: string;

async function succeeded(token: string, body: Record<string, unknown>): Promise<JobView> {
  const r = await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', { command: ['true'], gpus: 1, ...body });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  const id = r.body.jobs[0].id;
  return t.waitFor(`job ${id} to succeed`, async () => {
    const j = (await t.call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;
    return j.state === 'succeeded' ? j : j.state === 'failed' ? Promise.reject(new Error(`job ${id} failed`)) : undefined;
  });
}

async function auditEvents(): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  for (;;) {
    const page = await t.server.audit.events({ after: out.length ? out[out.length - 1].seq : -1, limit: 1000 });
    out.push(...page);
    if (page.length === 0) return out;
  }
}

beforeAll(async () => {
  t = await testServer();
  for (const [key, member, role, user] of [
    ['pharmaAdmin', 'pharma', 'member-admin', 'pam'],
    ['pharma', 'pharma', 'researcher', 'pia'],
    ['telecom', 'telecom', 'researcher', 'tom'],
    ['tara', 'telecom', 'member-admin', 'tara'],
    ['tim', 'telecom', 'member-admin', 'tim'],
    ['tess', 'telecom', 'member-admin', 'tess'],
    ['bank', 'bank', 'researcher', 'bea'],
    ['bankAuditor', 'bank', 'auditor', 'bo'],
    ['auditor', null, 'auditor', 'aud'],
    ['olga', null, 'operator', 'olga'],
  ] as const)
    tok[key] = await t.token(member, role, user);
  const ok = (r: { status: number; body: unknown }) => expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
  ok(
    await t.call(tok.pharma, 'POST', '/v1/datasets', {
      id: 'cells',
      classification: 'confidential',
      zones: ['general'],
      location: '/lustre/pharma/cells',
    }),
  );
  ok(
    await t.call(tok.telecom, 'POST', '/v1/datasets', {
      id: 'towers',
      classification: 'internal',
      zones: ['general'],
      location: '/lustre/telecom/towers',
    }),
  );
  for (const [id, purposes, produces, noExport] of [
    ['dua-cells', ['drug-discovery', 'research'], 'restricted', false],
    ['dua-cells-screen', ['screening'], 'internal', true],
  ] as const) {
    ok(
      await t.call(tok.pharma, 'POST', '/v1/agreements', {
        id,
        grantee: 'telecom',
        datasets: ['cells'],
        purposes,
        zones: ['general'],
        expires: tomorrow(),
        produces,
        noExport,
      }),
    );
    ok(await t.call(tok.pharmaAdmin, 'POST', `/v1/agreements/${id}/approve`));
  }
  trainJob = (await succeeded(tok.telecom, { datasets: ['cells', 'towers'], purpose: 'drug-discovery' })).id;
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe('models and lineage', () => {
  it('registers a version from a succeeded job with restrictions from its lineage, never from the request', async () => {
    const r = await t.call<Model>(tok.telecom, 'POST', '/v1/models', {
      name: 'cell-ran',
      version: '1',
      jobId: trainJob,
      artifact: '/lustre/telecom/models/cell-ran/1',
      card: { intendedUse: 'research on cell signalling' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ member: 'telecom', access: 'full' });
    expect(r.body.restrictions).toEqual({
      classification: 'restricted',
      purposes: ['drug-discovery', 'research'],
      zones: ['general'],
      noExport: false,
      exportNeedsApproval: true,
    });
    const smuggled = await t.call<Err>(tok.telecom, 'POST', '/v1/models', {
      name: 'cell-ran',
      version: '2',
      jobId: trainJob,
      artifact: '/x',
      restrictions: { classification: 'public' },
    });
    expect(smuggled.status).toBe(400);
    expect(
      (await t.call(tok.telecom, 'POST', '/v1/models', { name: 'cell-ran', version: '1', jobId: trainJob, artifact: '/x' }))
        .status,
    ).toBe(409);
  });

  it('refuses jobs of another member (404) and jobs that did not succeed (409)', async () => {
    const other = await t.call<Err>(tok.bank, 'POST', '/v1/models', { name: 'b', version: '1', jobId: trainJob, artifact: '/x' });
    expect(other.status).toBe(404);
    expect(other.body.error.field).toBe('body.jobId');
    const failed = await t.call<{ jobs: JobView[] }>(tok.telecom, 'POST', '/v1/jobs', { command: ['false'], gpus: 1 });
    const id = failed.body.jobs[0].id;
    await t.waitFor(
      'the job to fail',
      async () => (await t.call<JobView>(tok.telecom, 'GET', `/v1/jobs/${id}`)).body.state === 'failed',
    );
    const r = await t.call<Err>(tok.telecom, 'POST', '/v1/models', { name: 'f', version: '1', jobId: id, artifact: '/x' });
    expect(r.status).toBe(409);
    expect(
      (await t.call(t.operator, 'POST', '/v1/models', { name: 'o', version: '1', jobId: trainJob, artifact: '/x' })).status,
    ).toBe(403);
  });

  it('gives the lineage: datasets → agreements → job → placement → model', async () => {
    const r = await t.call<{
      lineage: {
        datasets: { id: string; location: string }[];
        agreements: { id: string }[];
        job: { id: string; purpose: string; user: string };
        placement: { zone: string; nodes: unknown[] };
        model: { artifact: string };
      };
    }>(tok.telecom, 'GET', '/v1/models/cell-ran/versions/1/lineage');
    expect(r.status).toBe(200);
    const l = r.body.lineage;
    expect(l.datasets.map((d) => [d.id, d.location])).toEqual([
      ['cells', '(hidden)'],
      ['towers', '/lustre/telecom/towers'],
    ]);
    expect(l.agreements.map((a) => a.id)).toEqual(['dua-cells']);
    expect(l.job).toMatchObject({ id: trainJob, purpose: 'drug-discovery', user: 'tom' });
    expect(l.placement.zone).toBe('general');
    expect(l.placement.nodes.length).toBeGreaterThan(0);
    expect(l.model.artifact).toBe('/lustre/telecom/models/cell-ran/1');
  });

  it('shows the grantor the lineage of models made from its data, and nothing to anyone else', async () => {
    const lin = await t.call<{
      lineage: { datasets: { id: string; owner: string }[]; job: { user: string }; model: { artifact: string } };
    }>(tok.pharma, 'GET', '/v1/models/cell-ran/versions/1/lineage');
    expect(lin.status).toBe(200);
    expect(lin.body.lineage.datasets.map((d) => [d.id, d.owner])).toEqual([
      ['cells', 'pharma'],
      ['(hidden)', 'telecom'],
    ]);
    expect(lin.body.lineage.job.user).toBe('(hidden)');
    expect(lin.body.lineage.model.artifact).toBe('(hidden)');
    const list = await t.call<{ models: Model[] }>(tok.pharma, 'GET', '/v1/models');
    expect(list.body.models.map((m) => [m.name, m.access, m.artifact])).toEqual([['cell-ran', 'lineage', '(hidden)']]);
    expect((await t.call(tok.pharma, 'GET', '/v1/models/cell-ran/versions/1/card')).status).toBe(404);
    for (const who of ['bank', 'bankAuditor']) {
      for (const path of ['', '/lineage', '/card', '/card?format=markdown'])
        expect((await t.call(tok[who], 'GET', `/v1/models/cell-ran/versions/1${path}`)).status).toBe(404);
      expect((await t.call<{ models: Model[] }>(tok[who], 'GET', '/v1/models')).body.models).toEqual([]);
    }
    expect((await t.call(tok.bank, 'PATCH', '/v1/models/cell-ran/versions/1/card', { limitations: 'x' })).status).toBe(404);
    expect((await t.call(tok.bank, 'POST', '/v1/models/cell-ran/versions/1/export')).status).toBe(404);
    expect((await t.call<{ models: Model[] }>(tok.auditor, 'GET', '/v1/models')).body.models).toHaveLength(1);
    expect((await t.call(tok.auditor, 'GET', '/v1/models/cell-ran/versions/1/card')).status).toBe(200);
  });

  it('generates the card from platform records, in JSON and Markdown, with the EU AI Act sections', async () => {
    const patched = await t.call(tok.telecom, 'PATCH', '/v1/models/cell-ran/versions/1/card', {
      limitations: 'not validated on 6G traces',
      parameters: 7_000_000_000,
    });
    expect(patched.status).toBe(200);
    expect((await t.call<Err>(tok.telecom, 'PATCH', '/v1/models/cell-ran/versions/1/card', { parameters: -1 })).status).toBe(400);
    const j = await t.call<ModelCard>(tok.telecom, 'GET', '/v1/models/cell-ran/versions/1/card?format=json');
    expect(j.status).toBe(200);
    const c = j.body;
    expect(c.compute.gpus).toBe(1);
    expect(c.compute.gpuHours).toBeGreaterThanOrEqual(0);
    expect(c.compute.flops.estimated).toBe(true);
    expect(c.compute.flops.assumptions).toMatchObject({ peakDenseBf16TflopsPerGpu: 2500, utilisation: 0.4 });
    expect(c.energy.assumptions).toEqual(expect.objectContaining({ gpuWatts: 1400, pue: 1.1 }));
    expect(typeof c.energy.kwh).toBe('number');
    expect(c.data.datasets.map((d) => d.id)).toEqual(['cells', 'towers']);
    expect(c.data.agreements.map((a) => a.id)).toEqual(['dua-cells']);
    expect(c.training).toMatchObject({ zone: 'general', job: trainJob, purpose: 'drug-discovery' });
    expect(c.provided.intendedUse).toEqual({ value: 'research on cell signalling', source: 'provider' });
    expect(c.provided.limitations.value).toBe('not validated on 6G traces');
    expect(c.provided.evaluation).toEqual({ value: 'to be completed by the provider', source: 'missing' });
    expect(c.euAiAct.section1.parameters).toEqual({ value: 7_000_000_000, source: 'provider' });
    expect(c.euAiAct.section1.licence.source).toBe('missing');
    expect(c.euAiAct.section2.computationalResources.source).toBe('platform');
    expect((c.euAiAct.section2.energyConsumption.value as { kwh: number }).kwh).toBe(c.energy.kwh);
    const md = await t.call<string>(tok.telecom, 'GET', '/v1/models/cell-ran/versions/1/card?format=markdown');
    expect(md.status).toBe(200);
    for (const s of [
      '# Model card: cell-ran 1',
      'GPU-hours:',
      'kWh',
      '| cells | pharma | confidential |',
      '| dua-cells | pharma | telecom |',
      'zone general',
      'Annex XI, section 1',
      'Annex XI, section 2',
      '(d) Number of parameters: 7000000000',
      '(f) Licence: _to be completed by the provider_',
      'Training compute (estimate)',
    ])
      expect(md.body).toContain(s);
    expect((await t.call<Err>(tok.telecom, 'GET', '/v1/models/cell-ran/versions/1/card?format=pdf')).status).toBe(400);
  });
});

describe('two-person rule', () => {
  it('never exports a model an agreement says noExport', async () => {
    const job = await succeeded(tok.telecom, { datasets: ['cells'], purpose: 'screening' });
    const m = await t.call<Model>(tok.telecom, 'POST', '/v1/models', {
      name: 'screen',
      version: '1',
      jobId: job.id,
      artifact: '/m/s',
    });
    expect(m.body.restrictions).toMatchObject({ classification: 'confidential', noExport: true, purposes: ['screening'] });
    const r = await t.call<Err>(tok.tara, 'POST', '/v1/models/screen/versions/1/export');
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('EXPORT_FORBIDDEN');
    const ask = await t.call<Err>(tok.tara, 'POST', '/v1/approvals', {
      kind: 'model-export',
      subject: 'model:screen@1',
      reason: 'r',
    });
    expect(ask.body.error.code).toBe('EXPORT_FORBIDDEN');
  });

  it('exports a restricted model only after two distinct member admins, neither the requester, approved', async () => {
    const refused = await t.call<Err>(tok.tara, 'POST', '/v1/models/cell-ran/versions/1/export');
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('APPROVAL_REQUIRED');
    const asked = await t.call<Approval>(tok.tara, 'POST', '/v1/approvals', {
      kind: 'model-export',
      subject: 'model:cell-ran@1',
      reason: 'publish to the partner lab',
    });
    expect(asked.status).toBe(201);
    const id = asked.body.id;
    // The requester cannot approve; a researcher or an operator is not an approver of an export; bank does not see it.
    expect((await t.call(tok.tara, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(403);
    expect((await t.call(tok.telecom, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(403);
    expect((await t.call(tok.olga, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(403);
    expect((await t.call(tok.pharmaAdmin, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(404);
    const one = await t.call<Approval>(tok.tim, 'POST', `/v1/approvals/${id}/approve`);
    expect(one.body).toMatchObject({ state: 'pending', approvers: [{ user: 'tim' }] });
    // The same person twice counts once.
    const again = await t.call<Err>(tok.tim, 'POST', `/v1/approvals/${id}/approve`);
    expect(again.status).toBe(409);
    const stillOne = await t.call<Err>(tok.tara, 'POST', '/v1/models/cell-ran/versions/1/export');
    expect(stillOne.status).toBe(403);
    expect(stillOne.body.error).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(stillOne.body.error.message).toContain('1 of 2');
    const two = await t.call<Approval>(tok.tess, 'POST', `/v1/approvals/${id}/approve`);
    expect(two.body.state).toBe('approved');
    // Only the requester uses it, once.
    expect((await t.call(tok.tim, 'POST', '/v1/models/cell-ran/versions/1/export')).status).toBe(403);
    const done = await t.call<{ approval: string; approvers: string[] }>(
      tok.tara,
      'POST',
      '/v1/models/cell-ran/versions/1/export',
    );
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ approval: id, approvers: ['tim', 'tess'] });
    expect((await t.call(tok.tara, 'POST', '/v1/models/cell-ran/versions/1/export')).status).toBe(403);
    const list = await t.call<{ approvals: Approval[] }>(tok.tim, 'GET', '/v1/approvals');
    expect(list.body.approvals.find((a) => a.id === id)?.state).toBe('used');
    expect((await t.call<{ approvals: Approval[] }>(tok.bank, 'GET', '/v1/approvals')).body.approvals).toEqual([]);
  });

  it('with break-glass on, an operator reads a member job only with a member admin and another operator approving', async () => {
    expect((await t.call(tok.telecom, 'PUT', '/v1/members/telecom/break-glass', { required: true })).status).toBe(403);
    expect((await t.call(t.operator, 'PUT', '/v1/members/telecom/break-glass', { required: false })).status).toBe(403);
    expect((await t.call(tok.tara, 'PUT', '/v1/members/pharma/break-glass', { required: true })).status).toBe(404);
    expect((await t.call(tok.tara, 'PUT', '/v1/members/telecom/break-glass', { required: true })).status).toBe(200);
    // Pharma did not ask: operators read its jobs as before.
    const pharmaJob = await t.call<{ jobs: JobView[] }>(tok.pharma, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 });
    expect((await t.call(t.operator, 'GET', `/v1/jobs/${pharmaJob.body.jobs[0].id}`)).status).toBe(200);
    for (const path of ['', '/events', '/logs']) {
      const r = await t.call<Err>(t.operator, 'GET', `/v1/jobs/${trainJob}${path}`);
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('APPROVAL_REQUIRED');
    }
    // The member itself reads its jobs as ever; the operator's queue view hides the command.
    expect((await t.call(tok.telecom, 'GET', `/v1/jobs/${trainJob}`)).status).toBe(200);
    const list = await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?member=telecom');
    expect(list.status).toBe(200);
    expect(list.body.jobs.find((j) => j.id === trainJob)?.spec.command).toEqual(['(break-glass)']);
    expect(
      (await t.call(tok.tara, 'POST', '/v1/approvals', { kind: 'break-glass', subject: `job:${trainJob}`, reason: 'x' })).status,
    ).toBe(403);
    const asked = await t.call<Approval>(t.operator, 'POST', '/v1/approvals', {
      kind: 'break-glass',
      subject: `job:${trainJob}`,
      reason: 'node fault investigation',
    });
    expect(asked.status).toBe(201);
    const id = asked.body.id;
    expect((await t.call(t.operator, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(403);
    expect((await t.call(tok.olga, 'POST', `/v1/approvals/${id}/approve`)).body).toMatchObject({ state: 'pending' });
    // Two operators are not enough: the second approver must be a member admin of telecom.
    const ops2 = await t.token(null, 'operator', 'otto');
    expect((await t.call(ops2, 'POST', `/v1/approvals/${id}/approve`)).status).toBe(403);
    expect((await t.call(t.operator, 'GET', `/v1/jobs/${trainJob}`)).status).toBe(403);
    expect((await t.call<Approval>(tok.tim, 'POST', `/v1/approvals/${id}/approve`)).body.state).toBe('approved');
    expect((await t.call(t.operator, 'GET', `/v1/jobs/${trainJob}`)).status).toBe(200);
    // Only the operator who asked.
    expect((await t.call(tok.olga, 'GET', `/v1/jobs/${trainJob}`)).status).toBe(403);
    expect((await t.call(tok.tara, 'PUT', '/v1/members/telecom/break-glass', { required: false })).status).toBe(200);
    expect((await t.call(tok.olga, 'GET', `/v1/jobs/${trainJob}`)).status).toBe(200);
  });

  it('records it all in the audit log, each member seeing its part', async () => {
    const events = await auditEvents();
    const kinds = (member: string | null) => events.filter((e) => e.member === member).map((e) => e.kind);
    expect(kinds('telecom')).toEqual(
      expect.arrayContaining([
        'model.registered',
        'model.card.updated',
        'model.export.refused',
        'approval.requested',
        'approval.approved',
        'model.exported',
        'breakglass.setting',
        'breakglass.read',
      ]),
    );
    // Pharma learns that a model was made from its data.
    expect(events.filter((e) => e.member === 'pharma' && e.kind === 'model.trained-on-data').map((e) => e.subject)).toEqual([
      'model:cell-ran@1',
      'model:screen@1',
    ]);
    const exported = events.find((e) => e.kind === 'model.exported')!;
    expect(exported.data).toMatchObject({ approvers: ['tim', 'tess'], classification: 'restricted' });
    const read = events.find((e) => e.kind === 'breakglass.read')!;
    expect(read).toMatchObject({ actor: expect.stringMatching(/^operator:/), subject: `job:${trainJob}` });
  });
});

describe('people, not names: sock puppets and side doors', () => {
  /** A user `admin` makes in its member, and a token for it (what a sock puppet takes). */
  async function puppet(admin: string, name: string, role: string): Promise<string> {
    const u = await t.call(admin, 'POST', '/v1/users', { name, roles: [role] });
    expect(u.status, JSON.stringify(u.body)).toBe(201);
    const tk = await t.call<{ secret: string }>(admin, 'POST', '/v1/tokens', { name, user: name });
    expect(tk.status, JSON.stringify(tk.body)).toBe(201);
    return tk.body.secret;
  }

  it('a member admin and the admins it made are one person: the two-person rule needs someone else', async () => {
    const sock = await puppet(tok.tara, 'tara-sockpuppet', 'member-admin');
    const sock2 = await puppet(tok.tara, 'tara-puppet-2', 'member-admin');
    // A puppet's puppet is tara's too.
    const deep = await puppet(sock, 'tara-puppet-3', 'member-admin');
    const m = await t.call(tok.telecom, 'POST', '/v1/models', {
      name: 'cell-ran',
      version: 'sp',
      jobId: trainJob,
      artifact: '/m/sp',
    });
    expect(m.status).toBe(201);
    const asked = await t.call<Approval>(tok.telecom, 'POST', '/v1/approvals', {
      kind: 'model-export',
      subject: 'model:cell-ran@sp',
      reason: 'publish',
    });
    const id = asked.body.id;
    expect((await t.call<Approval>(tok.tara, 'POST', `/v1/approvals/${id}/approve`)).body.state).toBe('pending');
    for (const p of [sock, sock2, deep]) {
      const r = await t.call<Err>(p, 'POST', `/v1/approvals/${id}/approve`);
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      expect(r.body.error.message).toContain('they count as one person');
    }
    expect((await t.call<Err>(tok.telecom, 'POST', '/v1/models/cell-ran/versions/sp/export')).body.error.code).toBe(
      'APPROVAL_REQUIRED',
    );
    // Two puppets of one admin, neither approving first, are one person as well.
    const other = await t.call<Approval>(tok.telecom, 'POST', '/v1/approvals', {
      kind: 'model-export',
      subject: 'model:cell-ran@sp',
      reason: 'again',
    });
    expect((await t.call(sock, 'POST', `/v1/approvals/${other.body.id}/approve`)).status).toBe(200);
    expect((await t.call(sock2, 'POST', `/v1/approvals/${other.body.id}/approve`)).status).toBe(403);
    // Someone else: tim is a person of his own.
    expect((await t.call<Approval>(tok.tim, 'POST', `/v1/approvals/${id}/approve`)).body.state).toBe('approved');
    const done = await t.call<{ approvers: string[] }>(tok.telecom, 'POST', '/v1/models/cell-ran/versions/sp/export');
    expect(done.body.approvers).toEqual(['tara', 'tim']);
  });

  it("the requester's own users never approve its request", async () => {
    const sock = await puppet(tok.tess, 'tess-sockpuppet', 'member-admin');
    const asked = await t.call<Approval>(tok.tess, 'POST', '/v1/approvals', {
      kind: 'model-export',
      subject: 'model:cell-ran@sp',
      reason: 'mine',
    });
    const r = await t.call<Err>(sock, 'POST', `/v1/approvals/${asked.body.id}/approve`);
    expect(r.status).toBe(403);
    expect(r.body.error.message).toBe(
      'tess-sockpuppet was created by the requester tess (or by a user they created): the same person may be behind both, and the requester does not approve',
    );
  });

  it('an operator cannot become a member admin to lift break-glass, nor approve its own break-glass through an operator it made', async () => {
    expect((await t.call(tok.tara, 'PUT', '/v1/members/telecom/break-glass', { required: true })).status).toBe(200);
    const steal = await t.call<Err>(t.operator, 'POST', '/v1/tokens', { name: 'x', user: 'tara', member: 'telecom' });
    expect(steal.status).toBe(403);
    expect(steal.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.member' });
    const mint = await t.call<Err>(t.operator, 'POST', '/v1/users', {
      name: 'fake-admin',
      roles: ['member-admin'],
      member: 'telecom',
    });
    expect(mint.status).toBe(403);
    expect(mint.body.error.message).toBe('member telecom has people of its own: only its member admins create its users now');

    const opUser = await t.call(t.operator, 'POST', '/v1/users', { name: 'op-puppet', roles: ['operator'] });
    expect(opUser.status).toBe(201);
    const op2 = (await t.call<{ secret: string }>(t.operator, 'POST', '/v1/tokens', { name: 'p', user: 'op-puppet' })).body
      .secret;
    // A job that waits while the test runs: it depends on a long one (a job larger than the
    // member may hold is refused at submission now).
    const blocker = await t.call<{ jobs: JobView[] }>(tok.telecom, 'POST', '/v1/jobs', {
      command: ['sleep', '600'],
      gracePeriodSeconds: 0,
    });
    const waiting = await t.call<{ jobs: JobView[] }>(tok.telecom, 'POST', '/v1/jobs', {
      script: '#!/bin/bash\necho TELECOM-SCRIPT-SECRET\n',
      env: { API_KEY: 'TELECOM-ENV-SECRET' },
      afterOk: [blocker.body.jobs[0].id],
    });
    const jobId = waiting.body.jobs[0].id;
    const asked = await t.call<Approval>(t.operator, 'POST', '/v1/approvals', {
      kind: 'break-glass',
      subject: `job:${jobId}`,
      reason: 'x',
    });
    const r = await t.call<Err>(op2, 'POST', `/v1/approvals/${asked.body.id}/approve`);
    expect(r.status).toBe(403);
    expect(r.body.error.message).toContain('was created by the requester operator');

    // Side doors: every answer of the job routes holds the same seal for the operator.
    for (const path of ['/events', '/logs', '']) {
      const denied = await t.call<Err>(t.operator, 'GET', `/v1/jobs/${jobId}${path}`);
      expect(denied.body.error.code, path).toBe('APPROVAL_REQUIRED');
    }
    const explain = await t.call(t.operator, 'GET', `/v1/jobs/${jobId}/explain`);
    expect(explain.status).toBe(200);
    const list = await t.call(t.operator, 'GET', '/v1/jobs?member=telecom&limit=1000');
    const cancel = await t.call<JobView>(t.operator, 'POST', `/v1/jobs/${jobId}/cancel`);
    expect(cancel.status).toBe(200);
    expect(cancel.body.state).toBe('cancelled');
    expect(cancel.body.spec).toMatchObject({ script: '(break-glass)', env: { API_KEY: '(break-glass)' } });
    for (const answer of [explain, list, cancel]) {
      const text = JSON.stringify(answer.body);
      expect(text).not.toContain('TELECOM-SCRIPT-SECRET');
      expect(text).not.toContain('TELECOM-ENV-SECRET');
    }
    // The member itself still sees its job whole.
    const own = await t.call<JobView>(tok.telecom, 'GET', `/v1/jobs/${jobId}`);
    expect(own.body.spec).toMatchObject({ env: { API_KEY: 'TELECOM-ENV-SECRET' } });
    expect((await t.call(tok.tara, 'PUT', '/v1/members/telecom/break-glass', { required: false })).status).toBe(200);
    expect((await t.call(tok.telecom, 'POST', `/v1/jobs/${blocker.body.jobs[0].id}/cancel`)).status).toBe(200);
  });
});

// The audit log through the API and the CLI, on a real server: what each principal sees (a
// member only its own events and proofs, auditors of the consortium everything), proofs that a
// member checks on its own, logins recorded once, and `fabrik audit verify` end to end: from a
// saved checkpoint it passes on an untouched log and fails, naming the event, once a stored
// event is edited behind the server's back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  AuditEventView,
  CheckpointView,
  ConsistencyProofView,
  InclusionProofView,
  PublicKeyView,
} from '../../src/audit/api.js';
import { checkpointSignedBy, publicKeyOf } from '../../src/audit/checkpoint.js';
import { eventLeafHash } from '../../src/audit/event.js';
import { verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { testServer, type TestServer } from './helpers.js';
import { runCli } from '../cli/run.js';

const b = (s: string) => Buffer.from(s, 'base64');

/** The CLI's output, stdout then stderr. */
async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  const r = await runCli(args, env);
  return { code: r.code, out: r.out + r.err };
}

describe('audit API', () => {
  let t: TestServer;
  let pharma: string;
  let telecom: string;
  let auditor: string;
  let pharmaJob: string;
  let telecomJob: string;

  const events = async (token: string) => {
    const all: AuditEventView[] = [];
    let after: number | null = -1;
    while (after !== null) {
      const q: string = after < 0 ? '' : `&after=${after}`;
      const r = await t.call<{ events: AuditEventView[]; next: number | null }>(token, 'GET', `/v1/audit/events?limit=50${q}`);
      expect(r.status).toBe(200);
      all.push(...r.body.events);
      after = r.body.next;
    }
    return all;
  };
  const checkpoint = async () => (await t.call<CheckpointView>(t.operator, 'GET', '/v1/audit/checkpoint')).body;
  /** Waits until a checkpoint covers every event appended so far. */
  const covered = () => t.waitFor('a checkpoint of the whole log', async () => (await checkpoint()).size === t.server.audit.size);

  beforeAll(async () => {
    t = await testServer();
    pharma = await t.token('pharma', 'researcher', 'ada');
    telecom = await t.token('telecom', 'researcher', 'bob');
    auditor = await t.token(null, 'auditor', 'carol');
    const submit = async (token: string) =>
      (await t.call<{ jobs: { id: string }[] }>(token, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 })).body.jobs[0].id;
    pharmaJob = await submit(pharma);
    telecomJob = await submit(telecom);
    await t.waitFor('both jobs to end', async () => {
      const all = await events(t.operator);
      return [pharmaJob, telecomJob].every((id) => all.some((e) => e.subject === id && e.kind === 'job.succeeded'));
    });
    await covered();
  });
  afterAll(async () => {
    await t.close();
  });

  it('records tokens, logins, submissions, placements and ends with who did them', async () => {
    const all = await events(t.operator);
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i));
    const kinds = (subject: string) => all.filter((e) => e.subject === subject).map((e) => e.kind);
    expect(kinds(pharmaJob)).toEqual(['job.submitted', 'job.started', 'job.running', 'job.succeeded']);
    expect(all.find((e) => e.kind === 'job.started' && e.subject === pharmaJob)).toMatchObject({
      actor: 'scheduler',
      member: 'pharma',
      data: { placement: expect.any(Array) },
    });
    expect(all.find((e) => e.kind === 'job.submitted' && e.subject === pharmaJob)).toMatchObject({
      actor: 'ada',
      member: 'pharma',
    });
    expect(all.filter((e) => e.kind === 'token.issued').map((e) => e.data?.user)).toEqual(['operator', 'ada', 'bob', 'carol']);
    // One login per token per server start, however many requests it makes.
    const logins = all.filter((e) => e.kind === 'auth.login');
    expect(logins.filter((e) => e.actor === 'ada')).toHaveLength(1);
    expect(new Set(logins.map((e) => e.subject)).size).toBe(logins.length);
  });

  it("shows a member only its own events, and the consortium's auditor all of them", async () => {
    const mine = await events(pharma);
    expect(mine.length).toBeGreaterThan(3);
    expect(mine.every((e) => e.member === 'pharma')).toBe(true);
    expect(mine.some((e) => e.subject === telecomJob)).toBe(false);
    expect((await events(telecom)).every((e) => e.member === 'telecom')).toBe(true);
    const everything = await events(auditor);
    expect(everything.map((e) => e.seq)).toEqual((await events(t.operator)).map((e) => e.seq));
    expect(new Set(everything.map((e) => e.member))).toEqual(new Set(['pharma', 'telecom', null]));
  });

  it('proves a member its own events, checked with its own hashing, and answers 404 for another member’s', async () => {
    const c = await checkpoint();
    const key = (await t.call<PublicKeyView>(pharma, 'GET', '/v1/audit/public-key')).body;
    expect(checkpointSignedBy(c, publicKeyOf(key.publicKey))).toBe(true);
    const own = (await events(pharma)).find((e) => e.subject === pharmaJob && e.kind === 'job.submitted')!;
    const p = await t.call<InclusionProofView>(pharma, 'GET', `/v1/audit/proofs/inclusion?seq=${own.seq}`);
    expect(p.status).toBe(200);
    expect(p.body.event).toEqual(own);
    expect(verifyInclusion(own.seq, c.size, eventLeafHash(p.body.event), p.body.proof.map(b), b(c.rootHash))).toBe(true);
    const theirs = (await events(telecom)).find((e) => e.subject === telecomJob)!;
    const refused = await t.call<{ error: { code: string } }>(pharma, 'GET', `/v1/audit/proofs/inclusion?seq=${theirs.seq}`);
    expect(refused.status).toBe(404);
    expect(refused.body.error.code).toBe('NOT_FOUND');
    expect((await t.call(auditor, 'GET', `/v1/audit/proofs/inclusion?seq=${theirs.seq}`)).status).toBe(200);
  });

  it("shows each event's salt with the event only: a member's proof gives no neighbour's salt or leaf to guess", async () => {
    const c = await checkpoint();
    const all = await events(auditor);
    expect(all.every((e) => typeof e.salt === 'string' && b(e.salt).length === 32)).toBe(true);
    const mine = await events(pharma);
    const others = all.filter((e) => e.member !== 'pharma');
    // Everything pharma is served about its own events, proofs included: no other event's salt in it.
    const served: string[] = [JSON.stringify(mine)];
    for (const e of mine)
      served.push(JSON.stringify((await t.call(pharma, 'GET', `/v1/audit/proofs/inclusion?seq=${e.seq}&size=${c.size}`)).body));
    const text = served.join('\n');
    for (const o of others) expect(text).not.toContain(o.salt!);
    // And the sibling leaves it is given are hashes of salted events: not the hash of any of them without its salt.
    const siblings = new Set(
      (
        await Promise.all(
          mine.map((e) => t.call<InclusionProofView>(pharma, 'GET', `/v1/audit/proofs/inclusion?seq=${e.seq}&size=${c.size}`)),
        )
      ).flatMap((r) => r.body.proof),
    );
    for (const o of others) {
      const { salt: _salt, ...unsalted } = o;
      expect(siblings.has(eventLeafHash(unsalted).toString('base64'))).toBe(false);
    }
    expect([...siblings].some((h) => others.some((o) => eventLeafHash(o).toString('base64') === h))).toBe(true);
  });

  it('serves consistency proofs between any two sizes', async () => {
    const c = await checkpoint();
    const half = Math.floor(c.size / 2);
    const p = await t.call<ConsistencyProofView>(pharma, 'GET', `/v1/audit/proofs/consistency?from=${half}&to=${c.size}`);
    expect(p.status).toBe(200);
    const oldRoot = t.server.audit.rootHash(half);
    expect(verifyConsistency(half, c.size, oldRoot, b(c.rootHash), p.body.proof.map(b))).toBe(true);
  });

  it('answers bad input with 400 and the field, never 5xx, and is described in the OpenAPI document', async () => {
    const size = t.server.audit.size;
    const cases: [string, string][] = [
      ['/v1/audit/proofs/inclusion?seq=abc', 'query.seq'],
      ['/v1/audit/proofs/inclusion?seq=-1', 'query.seq'],
      [`/v1/audit/proofs/inclusion?seq=0&size=${size + 5}`, 'query.size'],
      ['/v1/audit/proofs/inclusion?seq=3&size=2', 'query.seq'],
      ['/v1/audit/proofs/consistency?from=5&to=2', 'query.from'],
      [`/v1/audit/proofs/consistency?from=1&to=${size + 1}`, 'query.to'],
      ['/v1/audit/events?limit=0', 'query.limit'],
      ['/v1/audit/events?bogus=1', 'query'],
    ];
    for (const [path, field] of cases) {
      const r = await t.call<{ error: { code: string; field?: string } }>(t.operator, 'GET', path);
      expect(r.status, path).toBe(400);
      expect(r.body.error.code).toBe('VALIDATION_FAILED');
      expect(r.body.error.field ?? 'query', path).toContain(field);
    }
    expect((await t.call(null, 'GET', '/v1/audit/checkpoint')).status).toBe(401);
    const api = await t.call<{ paths: Record<string, unknown> }>(null, 'GET', '/openapi.json');
    for (const path of ['checkpoint', 'public-key', 'events', 'proofs/inclusion', 'proofs/consistency'])
      expect(Object.keys(api.body.paths)).toContain(`/v1/audit/${path}`);
  });

  it('fabrik audit verify: passes from a saved checkpoint, then fails naming the event edited in the store', async () => {
    const env = { FABRIK_URL: t.server.url, FABRIK_TOKEN: pharma, FABRIK_DATA: t.dataDir };
    const file = join(t.dataDir, 'pharma-checkpoint.json');
    const saved = await cli(['audit', 'checkpoint', '--out', file], env);
    expect(saved.out).toMatch(/saved checkpoint of fabrik\/.*size \d+/);
    expect(saved.code).toBe(0);
    // The log grows after the save.
    const later = (await t.call<{ jobs: { id: string }[] }>(pharma, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 })).body
      .jobs[0].id;
    const seqOf = async (subject: string) =>
      (await events(pharma)).find((e) => e.subject === subject && e.kind === 'job.submitted')!.seq;
    const [first, second] = [await seqOf(pharmaJob), await seqOf(later)];
    const ok = await cli(['audit', 'verify', '--checkpoint', file, '--event', String(first), '--event', String(second)], env);
    expect(ok.out).toMatch(/consistency \d+ -> \d+: ok/);
    expect(ok.out).toContain(`event ${second}: job.submitted by ada on ${later} (pharma)`);
    expect(ok.out).toMatch(/verified\n$/);
    expect(ok.code).toBe(0);

    // Someone with the database's password edits pharma's first submission.
    const db = (t.server.store as KyselyStore).db;
    await sql`update audit_events set data = ${'{"gpus":64,"name":"job","priorityClass":"training","project":"discovery"}'} where seq = ${first}`.execute(
      db,
    );
    const bad = await cli(['audit', 'verify', '--checkpoint', file, '--event', String(first), '--event', String(second)], env);
    expect(bad.out).toContain(`FAILED event ${first}: its stored content`);
    expect(bad.out).toContain(`audit verification FAILED: event ${first}`);
    expect(bad.code).toBe(1);

    const store = await cli(['audit', 'verify', '--store', `sqlite:${join(t.dataDir, 'fabrik.db')}`, '--data', t.dataDir], env);
    expect(store.out).toContain(`audit verification FAILED: event ${first}: its content does not hash to its leaf`);
    expect(store.code).toBe(1);

    const missing = await cli(['audit', 'verify', '--checkpoint', join(t.dataDir, 'nope.json')], env);
    expect(missing.out).toContain('no such file');
    expect(missing.code).toBe(2);
  });
});

describe('audit log rewritten behind the server', () => {
  it('fabrik audit verify: a member with a saved checkpoint finds out, even when the checkpoints were rewritten too', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fabrik-audit-'));
    try {
      let t = await testServer({}, dataDir);
      const pharma = await t.token('pharma', 'researcher', 'ada');
      const env = { FABRIK_URL: t.server.url, FABRIK_TOKEN: pharma, FABRIK_DATA: dataDir };
      await t.call(pharma, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 });
      const audit = () => t.server.audit;
      await t.waitFor('a checkpoint of the whole log', async () => audit().latestCheckpoint()?.size === audit().size);
      const file = join(dataDir, 'pharma.json');
      expect((await cli(['audit', 'checkpoint', '--out', file], env)).code).toBe(0);
      const submitted = (await audit().events({ after: -1, limit: 1000 })).find((e) => e.kind === 'job.submitted')!;
      await t.close();

      // The operator, with the database and the key, rewrites who submitted the job, its leaf
      // hash, and drops the checkpoints that would have given it away at the next start.
      const store = await openStore(`sqlite:${join(dataDir, 'fabrik.db')}`);
      const forged = { ...submitted, actor: 'mallory' };
      await sql`update audit_events set actor = ${'mallory'}, leaf_hash = ${eventLeafHash(forged).toString('hex')} where seq = ${submitted.seq}`.execute(
        store.db,
      );
      await sql`delete from audit_checkpoints`.execute(store.db);
      await store.close();

      t = await testServer({}, dataDir);
      await t.call(pharma, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 });
      await t.waitFor('a checkpoint of the rewritten log', async () => audit().latestCheckpoint()?.size === audit().size);
      const bad = await cli(['audit', 'verify', '--checkpoint', file, '--event', String(submitted.seq)], {
        ...env,
        FABRIK_URL: t.server.url,
      });
      expect(bad.out).toContain('audit verification FAILED: the log was rewritten');
      expect(bad.code).toBe(1);
      await t.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

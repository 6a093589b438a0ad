// The attack suite's requests, on both stores, against a real `fabrik up` with an identity provider:
// people acting beyond their role (an operator minting a member's tokens, a member admin's sock
// puppets, OIDC identities that combine operator with a member or never expire), side doors around
// the jobs API and the audit log, and the inputs that answered 500. Every one must be refused, and
// the refusal must say no more than an absent object would.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { forEachEngine } from '../audit/engines.js';
import { startTarget, type ApiClient, type Target } from './client.js';

const ISSUER = 'https://idp.attack.example';

type ErrorBody = { error: { code: string; message: string; field?: string } };

forEachEngine('attack suite, requests', (engine, location) => {
  describe(`attacks through requests (${engine})`, () => {
    let target: Target;
    let api: ApiClient;
    let operator: string;
    let people: Target['people'];
    let sign: (claims: JWTPayload, expires?: string | null) => Promise<string>;

    beforeAll(async () => {
      const { publicKey, privateKey } = await generateKeyPair('RS256');
      const jwks = join(mkdtempSync(join(tmpdir(), 'fabrik-attack-idp-')), 'jwks.json');
      writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'RS256', use: 'sig' }] }));
      sign = (claims, expires = '10m') => {
        const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setIssuer(ISSUER).setIssuedAt();
        if (expires !== null) jwt.setExpirationTime(expires);
        return jwt.sign(privateKey);
      };
      target = await startTarget(engine, await location(), { flags: ['--oidc-issuer', ISSUER, '--oidc-jwks', jwks] });
      ({ api, operator, people } = target);
    }, 120_000);
    afterAll(async () => {
      await target?.close();
    }, 120_000);

    describe('people, not names', () => {
      it("refuses an operator who mints a token for a member's user, or makes a member's researcher", async () => {
        const token = await api.call<ErrorBody>(operator, 'POST', '/v1/tokens', { name: 'x', user: 'pia', member: 'pharma' });
        expect(token.status).toBe(403);
        const user = await api.call<ErrorBody>(operator, 'POST', '/v1/users', {
          name: 'ghost',
          roles: ['researcher'],
          member: 'pharma',
        });
        expect(user.status).toBe(403);
        // Nor a member admin once the member has people of its own.
        const admin = await api.call<ErrorBody>(operator, 'POST', '/v1/users', {
          name: 'ghost-admin',
          roles: ['member-admin'],
          member: 'pharma',
        });
        expect(admin.status).toBeGreaterThanOrEqual(403);
      });

      it("refuses a member admin's tokens for another member's people", async () => {
        const r = await api.call<ErrorBody>(people.pharma.admin, 'POST', '/v1/tokens', {
          name: 'x',
          user: 'tom',
          member: 'telecom',
        });
        expect(r.status).toBe(403);
      });

      it('does not let an operator satisfy break-glass with an operator it created itself', async () => {
        // Telecom turns break-glass on; its job's details are then sealed from operators.
        expect((await api.call(people.telecom.admin, 'PUT', '/v1/members/telecom/break-glass', { required: true })).status).toBe(
          200,
        );
        const job = await api.startRunning(people.telecom.tom, {
          name: 'sealed',
          command: ['sleep', '300'],
          env: { SEALED_VALUE: 'sealed-env-value' },
        });
        const puppet = await api.call<{ user: { id: string } }>(operator, 'POST', '/v1/users', {
          name: `op-puppet-${randomBytes(3).toString('hex')}`,
          roles: ['operator'],
        });
        expect(puppet.status).toBe(201);
        const puppetToken = await api.call<{ secret: string }>(operator, 'POST', '/v1/tokens', {
          name: 'puppet',
          user: puppet.body.user.id,
        });
        expect(puppetToken.status).toBe(201);
        const request = await api.call<{ id: string }>(operator, 'POST', '/v1/approvals', {
          kind: 'break-glass',
          subject: `job:${job.id}`,
          reason: 'debugging',
        });
        expect(request.status).toBe(201);
        // telecom's admin approves (a real member admin), then the operator's own puppet.
        expect((await api.call(people.telecom.admin, 'POST', `/v1/approvals/${request.body.id}/approve`, {})).status).toBe(200);
        const second = await api.call<ErrorBody>(puppetToken.body.secret, 'POST', `/v1/approvals/${request.body.id}/approve`, {});
        expect(second.status).toBe(403);
        // Still sealed, by every route that shows a job: get, events, logs, list, cancel.
        expect((await api.call(operator, 'GET', `/v1/jobs/${job.id}`)).status).toBe(403);
        expect((await api.call(operator, 'GET', `/v1/jobs/${job.id}/events`)).status).toBe(403);
        expect((await api.call(operator, 'GET', `/v1/jobs/${job.id}/logs`)).status).toBe(403);
        const list = JSON.stringify((await api.call(operator, 'GET', '/v1/jobs?member=telecom')).body);
        expect(list).not.toContain('sealed-env-value');
        const cancel = await api.call<JobView>(operator, 'POST', `/v1/jobs/${job.id}/cancel`);
        expect([200, 403]).toContain(cancel.status);
        expect(JSON.stringify(cancel.body)).not.toContain('sealed-env-value');
        expect(JSON.stringify(cancel.body)).not.toContain('sleep');
      });

      it('refuses OIDC identities that combine operator with a member, or never expire', async () => {
        const both = await sign({ sub: 'mallory', fabrik_role: 'operator', fabrik_member: 'pharma' });
        expect((await api.call(both, 'GET', '/v1/jobs')).status).toBe(401);
        const forever = await sign({ sub: 'eve', fabrik_role: 'researcher', fabrik_member: 'bank' }, null);
        expect((await api.call(forever, 'GET', '/v1/jobs')).status).toBe(401);
        // Two subjects that share a display name are two people, and neither is pia.
        const a = await sign({ sub: 'oidc-a', preferred_username: 'pia', fabrik_role: 'researcher', fabrik_member: 'pharma' });
        const mine = await api.call<{ jobs: JobView[] }>(a, 'GET', '/v1/jobs?user=pia');
        expect(mine.status).toBe(200);
        const pias = await api.call<{ jobs: JobView[] }>(people.pharma.pia, 'POST', '/v1/jobs', { command: ['true'] });
        expect(pias.status).toBe(201);
        expect((await api.call(a, 'POST', `/v1/jobs/${pias.body.jobs[0].id}/cancel`)).status).toBe(403);
      });
    });

    describe('side doors', () => {
      it("answers another member's ids exactly as absent ones, on every route", async () => {
        const pia = people.pharma.pia;
        const tom = people.telecom.tom;
        const ds = `trials-${randomBytes(3).toString('hex')}`;
        const made = await api.call(pia, 'POST', '/v1/datasets', {
          id: ds,
          classification: 'confidential',
          zones: ['general'],
          location: '/lustre/pharma/trials',
        });
        expect(made.status, JSON.stringify(made.body)).toBe(201);
        const absent = `absent-${randomBytes(3).toString('hex')}`;
        for (const [method, path, body] of [
          ['GET', (id: string) => `/v1/datasets/${id}/uses`, undefined],
          [
            'POST',
            () => '/v1/datasets',
            (id: string) => ({ id, classification: 'internal', zones: ['general'], location: '/x' }),
          ],
        ] as const) {
          const theirs = await api.call<ErrorBody>(tom, method, path(ds), body?.(ds));
          const none = await api.call<ErrorBody>(tom, method, path(absent), body?.(absent));
          expect(theirs.status, `${method} ${path(ds)}`).toBe(none.status);
          if (none.status >= 400) expect(theirs.body.error.code).toBe(none.body.error.code);
        }
        // Jobs: get, cancel, events, logs, explain of pharma's job are telecom's 404s.
        const job = (await api.call<{ jobs: JobView[] }>(pia, 'POST', '/v1/jobs', { command: ['sleep', '30'] })).body.jobs[0];
        for (const [method, path] of [
          ['GET', `/v1/jobs/${job.id}`],
          ['POST', `/v1/jobs/${job.id}/cancel`],
          ['GET', `/v1/jobs/${job.id}/events`],
          ['GET', `/v1/jobs/${job.id}/logs`],
          ['GET', `/v1/jobs/${job.id}/explain`],
        ] as const) {
          const r = await api.call<ErrorBody>(tom, method, path);
          expect(r.status, `${method} ${path}`).toBe(404);
          expect(JSON.stringify(r.body)).not.toContain('pharma');
        }
        await api.call(pia, 'POST', `/v1/jobs/${job.id}/cancel`);
      });

      it("shows a member the other members' use of a rack only as 'others'", async () => {
        const nodes = JSON.stringify((await api.call(people.telecom.tom, 'GET', '/v1/nodes')).body);
        for (const other of ['pharma', 'defense', 'bank', 'invest']) expect(nodes).not.toContain(`"${other}"`);
      });

      it("gives a member proofs whose sibling hashes are not any neighbour's unsalted leaf", async () => {
        const tom = people.telecom.tom;
        const pia = people.pharma.pia;
        // A neighbour whose event is fully guessable: pharma submits right after telecom.
        const mine = (await api.call<{ jobs: JobView[] }>(tom, 'POST', '/v1/jobs', { name: 'n', command: ['true'] })).body
          .jobs[0];
        await api.call(pia, 'POST', '/v1/jobs', { name: 'n', command: ['true'] });
        const events = await api.waitFor('telecom to see its event in a checkpoint', async () => {
          const e = (
            await api.call<{ events: { seq: number; kind: string; subject: string }[] }>(
              tom,
              'GET',
              '/v1/audit/events?limit=1000',
            )
          ).body.events;
          const cp = (await api.call<{ size: number }>(tom, 'GET', '/v1/audit/checkpoint')).body;
          const ev = e.find((x) => x.kind === 'job.submitted' && x.subject === mine.id);
          return ev && cp.size > ev.seq + 1 ? ev : undefined;
        });
        const proof = (await api.call<{ proof: string[] }>(tom, 'GET', `/v1/audit/proofs/inclusion?seq=${events.seq}`)).body;
        // Every event of the whole log, as the operator sees it, hashed the way an unsalted leaf
        // would be: none of them may be a sibling in telecom's proof.
        const all = (await api.call<{ events: Record<string, unknown>[] }>(operator, 'GET', '/v1/audit/events?limit=1000')).body
          .events;
        const canon = (v: unknown): string =>
          Array.isArray(v)
            ? `[${v.map(canon).join(',')}]`
            : v && typeof v === 'object'
              ? `{${Object.keys(v)
                  .filter((k) => k !== 'salt')
                  .sort()
                  .map((k) => `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`)
                  .join(',')}}`
              : JSON.stringify(v);
        const unsalted = new Set(
          all.map((e) =>
            createHash('sha256')
              .update(Buffer.concat([Buffer.from([0]), Buffer.from(canon(e))]))
              .digest('base64'),
          ),
        );
        expect(proof.proof.length).toBeGreaterThan(0);
        for (const h of proof.proof) expect(unsalted.has(h)).toBe(false);
      });
    });

    describe('inputs that answered 500', () => {
      it('answers a cursor beyond any id with 4xx, never 500', async () => {
        for (const after of ['999999999999999999', '9223372036854775808']) {
          const r = await api.call(people.telecom.tom, 'GET', `/v1/jobs?after=${after}`);
          expect(r.status, after).toBeLessThan(500);
        }
        expect((await api.call(people.telecom.tom, 'GET', '/v1/jobs/999999999999999999')).status).toBe(404);
      });

      it('answers a deeply nested policy with 400', async () => {
        const deep = `permit(principal, action, resource) when { ${'('.repeat(5000)}true${')'.repeat(5000)} };`;
        const r = await api.call<ErrorBody>(operator, 'PUT', '/v1/policies/deep', { cedar: deep });
        expect(r.status).toBe(400);
      });

      it('prints names with escape sequences harmlessly in queue and jobs', async () => {
        const tom = people.telecom.tom;
        const evil = 'x\u001b[2J\u001b[Hfake\rrow\u009b31m\u202e';
        const r = await api.call(tom, 'POST', '/v1/jobs', { name: evil, command: ['sleep', '5'] });
        // Refused at the door, or accepted and printed without its control characters.
        if (r.status === 201) {
          for (const cmd of [['queue'], ['jobs']]) {
            const { out } = await api.cli(tom, cmd);
            expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
          }
        } else expect(r.status).toBe(400);
      });
    });
  });
});

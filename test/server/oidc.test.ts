// OIDC bearer tokens from the consortium's identity provider, checked against its JWKS (here a
// local JWKS file and a key pair made for the test): the member and the role come from claims.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

type CryptoKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView, UserView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';

const ISSUER = 'https://idp.consortium.example';
const AUDIENCE = 'fabrik';
let t: TestServer;
let sign: (
  claims: JWTPayload,
  o?: { issuer?: string; audience?: string; expires?: string | null; key?: CryptoKey },
) => Promise<string>;
let otherKey: CryptoKey;

beforeAll(async () => {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  otherKey = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const file = join(mkdtempSync(join(tmpdir(), 'fabrik-jwks-')), 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [jwk] }));
  sign = (claims, o = {}) => {
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(o.issuer ?? ISSUER)
      .setAudience(o.audience ?? AUDIENCE)
      .setIssuedAt();
    if (o.expires !== null) jwt.setExpirationTime(o.expires ?? '10m');
    return jwt.sign(o.key ?? privateKey);
  };
  t = await testServer({ oidc: { issuer: ISSUER, jwksFile: file, audience: AUDIENCE } });
});
afterAll(async () => {
  await t.close();
});

describe('OIDC bearer tokens', () => {
  it('accepts a valid token and acts as its subject, member and role', async () => {
    const token = await sign({ sub: 'u-123', preferred_username: 'dana', fabrik_member: 'bank', fabrik_role: 'researcher' });
    const r = await t.call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', { command: ['true'] });
    expect(r.status).toBe(201);
    expect(r.body.jobs[0]).toMatchObject({ member: 'bank', user: 'dana' });
    const members = await t.call<{ members: { id: string }[] }>(token, 'GET', '/v1/members');
    expect(members.body.members.map((m) => m.id)).toEqual(['bank']);
  });

  it.each([
    ['another issuer', { issuer: 'https://evil.example' }],
    ['another audience', { audience: 'someone-else' }],
    ['an expired token', { expires: '-1m' }],
  ])('refuses %s with 401', async (_what, o) => {
    const token = await sign({ sub: 'x', fabrik_member: 'bank', fabrik_role: 'researcher' }, o);
    const r = await t.call<{ error: { code: string } }>(token, 'GET', '/v1/jobs');
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('UNAUTHENTICATED');
  });

  it('refuses a token signed by a key the issuer did not publish', async () => {
    const token = await sign({ sub: 'x', fabrik_member: 'bank', fabrik_role: 'researcher' }, { key: otherKey });
    expect((await t.call(token, 'GET', '/v1/jobs')).status).toBe(401);
  });

  it('refuses tokens whose claims name no known member or role', async () => {
    for (const claims of [
      { sub: 'x', fabrik_member: 'nobody', fabrik_role: 'researcher' },
      { sub: 'x', fabrik_member: 'bank', fabrik_role: 'root' },
      { sub: 'x', fabrik_role: 'researcher' },
    ]) {
      const r = await t.call<{ error: { code: string; message: string } }>(await sign(claims), 'GET', '/v1/jobs');
      expect(r.status).toBe(401);
      expect(r.body.error.message).not.toMatch(/at .*\.ts/);
    }
  });

  it('refuses a token without exp: it would be good for ever', async () => {
    const token = await sign({ sub: 'u-noexp', fabrik_member: 'bank', fabrik_role: 'researcher' }, { expires: null });
    const r = await t.call<{ error: { code: string; message: string } }>(token, 'GET', '/v1/jobs');
    expect(r.status).toBe(401);
    expect(r.body.error).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringContaining('"exp"') });
  });

  it('refuses an identity that is an operator and a member at once', async () => {
    const token = await sign({ sub: 'u-both', fabrik_member: 'pharma', fabrik_role: 'operator' });
    const r = await t.call<{ error: { code: string; message: string } }>(token, 'GET', '/v1/jobs');
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('an operator belongs to no member: the token also claims member pharma');
    // Nothing was recorded for it: no user record of that subject.
    const users = await t.call<{ users: UserView[] }>(t.operator, 'GET', '/v1/users');
    expect(users.body.users.some((u) => u.subject === 'u-both')).toBe(false);
  });

  it('makes a user record of each subject; two subjects with one preferred_username are two people', async () => {
    const first = await sign({ sub: 'u-kim-1', preferred_username: 'kim', fabrik_member: 'bank', fabrik_role: 'member-admin' });
    const second = await sign({ sub: 'u-kim-2', preferred_username: 'kim', fabrik_member: 'bank', fabrik_role: 'researcher' });
    const a = await t.call<{ jobs: JobView[] }>(first, 'POST', '/v1/jobs', { command: ['true'] });
    const b = await t.call<{ jobs: JobView[] }>(second, 'POST', '/v1/jobs', { command: ['true'] });
    expect(a.body.jobs[0].user).toBe('kim');
    // The second kim is shown with a piece of its subject's hash: its jobs are not the first kim's.
    expect(b.body.jobs[0].user).toMatch(/^kim~[0-9a-f]{8}$/);
    const users = (await t.call<{ users: UserView[] }>(first, 'GET', '/v1/users')).body.users;
    const kims = users.filter((u) => u.subject?.startsWith('u-kim-'));
    expect(kims.map((u) => [u.subject, u.issuer, u.origin, u.createdBy, u.roles])).toEqual([
      ['u-kim-1', ISSUER, 'oidc', 'idp', ['member-admin']],
      ['u-kim-2', ISSUER, 'oidc', 'idp', ['researcher']],
    ]);
    // The researcher kim does not own the admin kim's job: a researcher cancels only its own.
    const cancel = await t.call(second, 'POST', `/v1/jobs/${a.body.jobs[0].id}/cancel`);
    expect(cancel.status).toBe(403);
  });

  it("follows the identity provider: a subject's new role replaces the old one; a disabled subject is refused", async () => {
    const as = (role: string) => sign({ sub: 'u-lee', preferred_username: 'lee', fabrik_member: 'bank', fabrik_role: role });
    expect((await t.call(await as('researcher'), 'GET', '/v1/jobs')).status).toBe(200);
    expect((await t.call(await as('auditor'), 'GET', '/v1/jobs')).status).toBe(200);
    const admin = await sign({
      sub: 'u-bank-admin',
      preferred_username: 'bea',
      fabrik_member: 'bank',
      fabrik_role: 'member-admin',
    });
    const lee = (await t.call<{ users: UserView[] }>(admin, 'GET', '/v1/users')).body.users.find((u) => u.subject === 'u-lee')!;
    expect(lee.roles).toEqual(['auditor']);
    expect((await t.call(admin, 'POST', `/v1/users/${lee.id}/disable`)).status).toBe(200);
    const r = await t.call<{ error: { code: string; message: string } }>(await as('researcher'), 'GET', '/v1/jobs');
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('user lee is disabled');
  });
});

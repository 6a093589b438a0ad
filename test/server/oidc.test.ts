// OIDC bearer tokens from the consortium's identity provider, checked against its JWKS (here a
// local JWKS file and a key pair made for the test): the member and the role come from claims.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

type CryptoKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';

const ISSUER = 'https://idp.consortium.example';
const AUDIENCE = 'fabrik';
let t: TestServer;
let sign: (claims: JWTPayload, o?: { issuer?: string; audience?: string; expires?: string; key?: CryptoKey }) => Promise<string>;
let otherKey: CryptoKey;

beforeAll(async () => {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  otherKey = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const file = join(mkdtempSync(join(tmpdir(), 'fabrik-jwks-')), 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [jwk] }));
  sign = (claims, o = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(o.issuer ?? ISSUER)
      .setAudience(o.audience ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(o.expires ?? '10m')
      .sign(o.key ?? privateKey);
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
});

// People, not names, as a new user meets them: the README's first steps on the command line (the
// operator makes pharma's first admin, who makes pia and her token), the bootstrap rule (a member's
// first two admins, once, before it has people of its own), who may make whose tokens, and a
// disabled user's tokens refused at once. On a fresh server: its members have nobody yet.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenView, UserView } from '../../src/api/contract.js';
import { testServer, type TestServer } from './helpers.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
let t: TestServer;
type Err = { error: { code: string; message: string; field?: string } };

function fabrik(token: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
      env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: token },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}
/** The secret a command printed on its last line. */
const secretOf = (out: string) => {
  const last = out.trim().split('\n').at(-1)!;
  expect(last).toMatch(/^fbk_/);
  return last;
};

beforeAll(async () => {
  t = await testServer();
});
afterAll(() => t.close());

describe("the README's first steps", () => {
  it('the operator makes pharma its first admin; the admin makes pia and her token; pia submits', async () => {
    const pam = await fabrik(t.operator, ['users', 'create', 'pam', '--member', 'pharma', '--role', 'member-admin']);
    expect(pam.code, pam.err).toBe(0);
    expect(pam.out).toMatch(/^user pam \(usr_\w+\) created for pharma: member-admin\npharma's first admin: its token expires /);
    const PAM = secretOf(pam.out);
    const pia = await fabrik(PAM, ['users', 'create', 'pia', '--role', 'researcher']);
    expect(pia.code, pia.err).toBe(0);
    expect(pia.out).toContain('its token: fabrik tokens create --user pia');
    const PIA = secretOf((await fabrik(PAM, ['tokens', 'create', '--user', 'pia'])).out);
    const job = await fabrik(PIA, ['submit', '--wrap', 'true']);
    expect(job.out).toMatch(/^Submitted batch job \d+/);
    // pam makes her own token, as the bootstrap one lasts a day.
    const own = await fabrik(PAM, ['tokens', 'create', '--user', 'pam', '--name', 'laptop', '--json']);
    expect(JSON.parse(own.out)).toMatchObject({ token: { user: 'pam', member: 'pharma', role: 'member-admin' } });

    const list = await fabrik(PAM, ['users', '--json']);
    const users = JSON.parse(list.out) as UserView[];
    const pamId = users.find((u) => u.name === 'pam')!.id;
    expect(users.map((u) => [u.name, u.createdBy])).toEqual([
      ['pam', 'bootstrap'],
      ['pia', pamId],
    ]);
    // The operator makes nobody else of pharma's, and no token of pharma's people.
    const refused = await fabrik(t.operator, ['tokens', 'create', '--user', 'pia', '--member', 'pharma']);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("an operator does not create tokens for pharma's users: its member admins do");
    expect(refused.err).toContain('[FORBIDDEN]');
    const late = await fabrik(t.operator, ['users', 'create', 'pat', '--member', 'pharma', '--role', 'member-admin']);
    expect(late.err.trim()).toBe(
      'fabrik: member pharma has people of its own: only its member admins create its users now (body.member) [FORBIDDEN]',
    );
    const badRole = await fabrik(t.operator, ['users', 'create', 'x', '--role', 'root']);
    expect(badRole.code).not.toBe(0);
    expect(badRole.err).toContain("--role: 'root' is not a role");
  }, 60_000);
});

describe('bootstrap', () => {
  it("makes a member's first two admins, each a person of its own, and then no more", async () => {
    const made: { user: UserView; token: TokenView; secret: string }[] = [];
    for (const name of ['tim', 'tess']) {
      const r = await t.call<{ user: UserView; token: TokenView; secret: string }>(t.operator, 'POST', '/v1/users', {
        name,
        roles: ['member-admin'],
        member: 'telecom',
      });
      expect(r.status).toBe(201);
      made.push(r.body);
    }
    expect(made.map((m) => m.user.createdBy)).toEqual(['bootstrap', 'bootstrap']);
    const day = Date.parse(made[0].token.expiresAt!) - Date.parse(made[0].token.createdAt);
    expect(day).toBe(86_400_000);
    const third = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'tom', roles: ['member-admin'], member: 'telecom' });
    expect([third.status, third.body.error.code, third.body.error.field]).toEqual([409, 'CONFLICT', 'body.member']);
    expect(third.body.error.message).toBe('member telecom has its 2 first admins already');
    // Only admins: a member's researchers are its admins' to make.
    const researcher = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'r', roles: ['researcher'], member: 'bank' });
    expect([researcher.status, researcher.body.error.field]).toEqual([403, 'body.roles']);
    const taken = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'tim', roles: ['member-admin'], member: 'bank' });
    expect(taken.status).toBe(201);
    const again = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'tim', roles: ['member-admin'], member: 'bank' });
    expect([again.status, again.body.error.field]).toEqual([409, 'body.name']);
    const nowhere = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'x', roles: ['member-admin'], member: 'nope' });
    expect([nowhere.status, nowhere.body.error.field]).toEqual([400, 'body.member']);

    // tim may not make tess's tokens: she is another person (and so each of them is).
    const steal = await t.call<Err>(made[0].secret, 'POST', '/v1/tokens', { name: 'x', user: 'tess' });
    expect([steal.status, steal.body.error.field]).toEqual([403, 'body.user']);
    expect(steal.body.error.message).toBe('tokens are made by their user or by whoever created it; tess was not created by you');
    // The bootstrap is in the audit log, with the operator who did it.
    const events = await t.server.audit.events({ after: -1, limit: 1000 });
    const boot = events.filter((e) => e.kind === 'user.bootstrapped' && e.member === 'telecom');
    expect(boot.map((e) => [e.actor, (e.data as { name: string }).name])).toEqual([
      ['operator', 'tim'],
      ['operator', 'tess'],
    ]);
  });

  it('operators make operators and consortium auditors, not members’ roles in no member', async () => {
    const aud = await t.call<{ user: UserView }>(t.operator, 'POST', '/v1/users', { name: 'cara', roles: ['auditor'] });
    expect(aud.body.user).toMatchObject({ member: null, roles: ['auditor'] });
    const tok = await t.call<{ secret: string }>(t.operator, 'POST', '/v1/tokens', { name: 'c', user: 'cara' });
    expect(tok.status).toBe(201);
    const wide = await t.call<{ users: UserView[] }>(tok.body.secret, 'GET', '/v1/users');
    expect(new Set(wide.body.users.map((u) => u.member))).toEqual(new Set([null, 'pharma', 'telecom', 'bank']));
    const admin = await t.call<Err>(t.operator, 'POST', '/v1/users', { name: 'x', roles: ['member-admin'] });
    expect([admin.status, admin.body.error.field]).toEqual([403, 'body.roles']);
    // A consortium auditor reads users but makes none.
    expect((await t.call(tok.body.secret, 'POST', '/v1/users', { name: 'y', roles: ['auditor'] })).status).toBe(403);
  });
});

describe('disabling a user', () => {
  it("refuses its tokens at once, even one just used; only its member's admins disable it", async () => {
    const boot = await t.call<{ secret: string }>(t.operator, 'POST', '/v1/users', {
      name: 'ida',
      roles: ['member-admin'],
      member: 'invest',
    });
    const admin = boot.body.secret;
    const made = await t.call<{ user: UserView }>(admin, 'POST', '/v1/users', { name: 'ivo', roles: ['researcher'] });
    const ivo = (await t.call<{ secret: string }>(admin, 'POST', '/v1/tokens', { name: 'i', user: 'ivo' })).body.secret;
    expect((await t.call(ivo, 'GET', '/v1/jobs')).status).toBe(200);
    const byOperator = await t.call<Err>(t.operator, 'POST', `/v1/users/${made.body.user.id}/disable`);
    expect(byOperator.status).toBe(403);
    const self = await t.call<Err>(
      admin,
      'POST',
      `/v1/users/${(await t.call<{ users: UserView[] }>(admin, 'GET', '/v1/users')).body.users[0].id}/disable`,
    );
    expect([self.status, self.body.error.message]).toEqual([409, 'you cannot disable yourself']);
    const otherMember = await t.call<{ secret: string }>(t.operator, 'POST', '/v1/users', {
      name: 'x1',
      roles: ['member-admin'],
      member: 'defense',
    });
    expect((await t.call(otherMember.body.secret, 'POST', `/v1/users/${made.body.user.id}/disable`)).status).toBe(404);
    const off = await t.call<UserView>(admin, 'POST', `/v1/users/${made.body.user.id}/disable`);
    expect(off.body.disabledAt).not.toBeNull();
    const r = await t.call<Err>(ivo, 'GET', '/v1/jobs');
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe('user ivo is disabled');
    const token = await t.call<Err>(admin, 'POST', '/v1/tokens', { name: 'again', user: 'ivo' });
    expect([token.status, token.body.error.field]).toEqual([409, 'body.user']);
    // With the CLI, by name.
    await t.call(admin, 'POST', '/v1/users', { name: 'iris', roles: ['auditor'] });
    const cli = await fabrik(admin, ['users', 'disable', 'iris']);
    expect(cli.out).toMatch(/^user iris \(usr_\w+\) disabled$/m);
  }, 30_000);
});

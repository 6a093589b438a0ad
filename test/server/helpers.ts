// A real server on a free port with a temporary data folder, and tokens for a few people. Each name
// the helper gives a token is a person of its own, as an identity provider's subject would be (an
// operator could not mint a member's token through the API any more, and a member admin's users
// would all count as that admin for the two-person rule): tests that are about who created whom
// create their users through the API instead (test/server/identities.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import type { Role } from '../../src/api/contract.js';
import { issueToken } from '../../src/server/auth.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/index.js';
import { newUserId } from '../../src/store/schema.js';
import { VOUCHED, type UserRecord } from '../../src/store/store.js';
import { consortium, site } from '../../src/testing/builders.js';

/** The issuer of the helper's people: they are subjects of a test identity provider. */
export const HELPER_ISSUER = 'https://people.fabrik.test';

const root = new URL('../../', import.meta.url).pathname;
export const SITE = loadSite(`${root}sites/se-factory.yaml`);
export const CONSORTIUM = loadConsortium(`${root}consortia/demo.yaml`, SITE);

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  operator: string;
  call<T = unknown>(
    token: string | null,
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: T }>;
  token(member: string | null, role: string, user: string): Promise<string>;
  waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

/** A request to the API at `url` as `token`: the status and the body, parsed when it is JSON. */
export function apiCall(url: string) {
  return async <T = unknown>(
    token: string | null,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: T }> => {
    const h: Record<string, string> = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(url + path, {
      method,
      headers: h,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* text bodies (logs, metrics) stay text */
    }
    return { status: res.status, body: parsed as T };
  };
}

export async function testServer(o: Partial<ServerOptions> = {}, dataDir?: string): Promise<TestServer> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'fabrik-server-'));
  const server = await startServer({
    dataDir: dir,
    executor: 'local',
    site: SITE,
    consortium: CONSORTIUM,
    port: 0,
    localGpus: 4,
    cycleSeconds: 1,
    logger: pino({ level: process.env.FABRIK_TEST_LOG ?? 'silent' }),
    ...o,
  });
  const operator = server.bootstrapToken!;
  const call = apiCall(server.url);
  return {
    server,
    dataDir: dir,
    operator,
    call,
    async token(member, role, user) {
      const store = server.store;
      let u = await store.userByName(member, user);
      if (!u) {
        u = {
          id: newUserId(),
          member,
          name: user,
          roles: [role as Role],
          origin: 'oidc',
          issuer: HELPER_ISSUER,
          subject: `${member ?? '*'}/${user}`,
          createdBy: VOUCHED.idp,
          createdAt: Date.now() / 1000,
          disabledAt: null,
        } satisfies UserRecord;
        await store.createUser(u);
      } else if (!u.roles.includes(role as Role)) {
        const roles = [...u.roles, role as Role];
        await store.updateUser(u.id, { roles });
        u = { ...u, roles };
      }
      const { record, secret } = await issueToken(
        store,
        { name: `${user}-${role}`, user: u, role: role as Role, ttlSeconds: 90 * 86400 },
        Date.now() / 1000,
      );
      // Every token is in the audit log, as one the API made would be.
      await server.audit.append({
        kind: 'token.issued',
        actor: 'test-helper',
        member,
        subject: record.id,
        data: { name: record.name, role, user, userId: u.id, expiresAt: record.expiresAt },
      });
      return secret;
    },
    async waitFor(what, fn, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const v = await fn();
        if (v !== undefined && v !== false) return v as never;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      await server.close();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One node of 4 GPUs, pharma and telecom entitled to 2 each (nothing is scaled), with a
 * researcher token of each: the smallest machine on which lending and reclaim happen.
 */
export async function lendingPair(): Promise<{ server: TestServer; telecom: string; pharma: string }> {
  const s = site().racksPerSuperpod(1).traysPerRack(1).gpusPerTray(4).build();
  const c = consortium().member('pharma', { entitlement: 2 }).member('telecom', { entitlement: 2 }).build();
  const server = await testServer({ site: s, consortium: c, localGpus: 4 });
  return {
    server,
    telecom: await server.token('telecom', 'researcher', 'tom'),
    pharma: await server.token('pharma', 'researcher', 'pia'),
  };
}

// A real server on a free port with a temporary data folder, and tokens for a few people.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/index.js';

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
  const call = async <T>(
    token: string | null,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const h: Record<string, string> = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(server.url + path, {
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
  return {
    server,
    dataDir: dir,
    operator,
    call,
    async token(member, role, user) {
      const r = await call<{ secret: string }>(operator, 'POST', '/v1/tokens', { name: `${user}-${role}`, user, role, member });
      if (r.status !== 201) throw new Error(`token: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.secret;
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

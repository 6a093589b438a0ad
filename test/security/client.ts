// A member's view of a running Fabrik, over HTTP and through the real CLI only: what an attacker
// with an ordinary account has. Nothing here reaches into the server's process.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { FINAL_STATES, type JobView } from '../../src/api/contract.js';
import type { Location } from '../audit/engines.js';
import { apiCall } from '../server/helpers.js';
import { killHard, operatorToken, spawnServer, type SpawnedServer } from '../server/spawned.js';

const root = new URL('../../', import.meta.url).pathname;
export const FINAL: readonly string[] = FINAL_STATES;

export interface ApiClient {
  readonly url: string;
  call<T = unknown>(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  /** Submits, waits until it runs. */
  startRunning(token: string, body: Record<string, unknown>): Promise<JobView>;
  waitEnded(token: string, id: string, timeoutMs?: number): Promise<JobView>;
  /** Submits, waits for the end; the final view and both logs. */
  runToEnd(token: string, body: Record<string, unknown>, timeoutMs?: number): Promise<{ job: JobView; log: string; err: string }>;
  /**
   * Runs `fabrik <args>` as a person with `token` (and `env` besides); when the command submitted a
   * job, waits for it and returns its log too.
   */
  cli(token: string, args: readonly string[], env?: Record<string, string>): Promise<{ out: string; log: string }>;
  /**
   * Tokens for people of members, made the way a real consortium makes them: the operator bootstraps
   * each member's first admin (its token is `admin`), who creates its member's researchers.
   */
  people<M extends string>(operator: string, who: Record<M, readonly string[]>): Promise<Record<M, Record<string, string>>>;
}

export function apiClient(url: string): ApiClient {
  const call = apiCall(url);
  const waitFor = async <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };
  const job = async (token: string, id: string) => (await call<JobView>(token, 'GET', `/v1/jobs/${id}`)).body;
  const waitEnded = (token: string, id: string, timeoutMs = 60_000) =>
    waitFor(
      `job ${id} to end`,
      async () => {
        const j = await job(token, id);
        return FINAL.includes(j.state) ? j : undefined;
      },
      timeoutMs,
    );
  const submit = async (token: string, body: Record<string, unknown>) => {
    const r = await call<{ jobs: JobView[] }>(token, 'POST', '/v1/jobs', body);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.jobs[0].id;
  };
  const logs = async (token: string, id: string) => ({
    log: String((await call<string>(token, 'GET', `/v1/jobs/${id}/logs`)).body),
    err: String((await call<string>(token, 'GET', `/v1/jobs/${id}/logs?stream=error`)).body),
  });
  return {
    url,
    call,
    waitFor,
    waitEnded,
    async startRunning(token, body) {
      const id = await submit(token, body);
      return waitFor(`job ${id} to run`, async () => {
        const j = await job(token, id);
        if (FINAL.includes(j.state)) throw new Error(`job ${id} ended before it ran: ${JSON.stringify(j)}`);
        return j.state === 'running' ? j : undefined;
      });
    },
    async runToEnd(token, body, timeoutMs) {
      const id = await submit(token, body);
      const j = await waitEnded(token, id, timeoutMs);
      return { job: j, ...(await logs(token, id)) };
    },
    async cli(token, args, env = {}) {
      const out = await new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          ['--import', 'tsx', `${root}src/cli/main.ts`, ...args],
          { env: { PATH: process.env.PATH ?? '', ...env, FABRIK_URL: url, FABRIK_TOKEN: token }, cwd: root },
          (err, stdout, stderr) =>
            err ? reject(new Error(`fabrik ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout + stderr),
        ),
      );
      const id = /Submitted batch job (\d+)/.exec(out)?.[1];
      if (!id) return { out, log: '' };
      await waitEnded(token, id);
      return { out, log: (await logs(token, id)).log };
    },
    async people(operator, who) {
      const post = async <T>(token: string, path: string, body: unknown) => {
        const r = await call<T>(token, 'POST', path, body);
        expect(r.status, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`).toBe(201);
        return r.body;
      };
      const result = {} as Record<string, Record<string, string>>;
      for (const [member, users] of Object.entries(who) as [string, readonly string[]][]) {
        const admin = await post<{ secret: string }>(operator, '/v1/users', {
          name: `${member}-admin`,
          roles: ['member-admin'],
          member,
        });
        result[member] = { admin: admin.secret };
        for (const user of users) {
          await post(admin.secret, '/v1/users', { name: user, roles: ['researcher'] });
          result[member][user] = (
            await post<{ secret: string }>(admin.secret, '/v1/tokens', { name: `${user}-token`, user })
          ).secret;
        }
      }
      return result as never;
    },
  };
}

/** A real `fabrik up` to attack, in its own process, with tokens for pharma's pia and telecom's tom. */
export interface Target {
  readonly dir: string;
  /** Its data folder. */
  readonly data: string;
  readonly server: SpawnedServer;
  readonly api: ApiClient;
  readonly operator: string;
  readonly people: Record<'pharma' | 'telecom', Record<string, string>>;
  close(): Promise<void>;
}

/**
 * Starts `fabrik up` on a fresh data folder and the store of `engine` at `loc`, with `flags` and
 * `env` (a secret planted in its own environment), and makes pharma's pia and telecom's tom.
 */
export async function startTarget(
  engine: 'sqlite' | 'postgres',
  loc: Location,
  o: { flags?: readonly string[]; env?: Record<string, string>; folderMode?: number } = {},
): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-attack-'));
  // The Slurm executor's users pass through to their own job folders.
  if (o.folderMode !== undefined) chmodSync(dir, o.folderMode);
  const data = join(dir, 'data');
  const store = engine === 'sqlite' ? `sqlite:${join(data, 'fabrik.db')}` : loc.url;
  const server = await spawnServer(data, [...(o.flags ?? []), '--store', store], o.env ?? {});
  const api = apiClient(server.url);
  const operator = operatorToken(data);
  const people = await api.people(operator, { pharma: ['pia'], telecom: ['tom'] });
  return {
    dir,
    data,
    server,
    api,
    operator,
    people,
    async close() {
      // Nothing outlives the test: a Slurm job keeps running after its server is killed, and a
      // deployment would replace a cancelled replica. The operator may stop both (operations).
      const deployments = (await api.call<{ deployments: { id: string }[] }>(operator, 'GET', '/v1/deployments')).body
        .deployments;
      for (const d of deployments ?? []) await api.call(operator, 'DELETE', `/v1/deployments/${d.id}`);
      const active = async () =>
        (await api.call<{ jobs: JobView[] }>(operator, 'GET', '/v1/jobs?state=pending,starting,running,preempting&limit=1000'))
          .body.jobs ?? [];
      for (const j of await active()) await api.call(operator, 'POST', `/v1/jobs/${j.id}/cancel`);
      await api.waitFor('every job of the test to end', async () => (await active()).length === 0, 60_000).catch(() => undefined);
      await killHard(server);
      await loc.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The gateway's limits as an operator sets them: the `gateway` section of `fabrik up --config`
// reaches the running server, and members read where they stand with `fabrik gateway limits`; a
// member the consortium lacks stops the start with the file and the key named.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killHard, operatorToken, spawnServer, type SpawnedServer } from '../server/spawned.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fabrik-gateway-config-'));
const servers: SpawnedServer[] = [];
afterAll(async () => {
  for (const s of servers) await killHard(s);
  rmSync(dir, { recursive: true, force: true });
});

const fabrik = (env: Record<string, string>, args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });

describe('fabrik up --config: the gateway section', () => {
  it("sets the members' limits and month budgets; fabrik gateway limits shows them, with each key's own", async () => {
    const config = join(dir, 'fabrik.yaml');
    writeFileSync(
      config,
      'gateway:\n  tokensPerGpuMonth: 1000000\n  members:\n    pharma: { tokensPerDay: 50000, requestsPerMinute: null }\n',
    );
    const server = await spawnServer(join(dir, 'data'), ['--config', config]);
    servers.push(server);
    const operator = { FABRIK_URL: server.url, FABRIK_TOKEN: operatorToken(join(dir, 'data')) };
    // Pharma's first admin, made by the operator (bootstrap): its token is on the last line.
    const made = await fabrik(operator, ['users', 'create', 'pam', '--member', 'pharma', '--role', 'member-admin']);
    expect(made.code, made.err).toBe(0);
    const pam = { FABRIK_URL: server.url, FABRIK_TOKEN: made.out.trim().split('\n').at(-1)! };
    const key = await fabrik(pam, ['keys', 'create', '--name', 'app', '--tokens-per-month', '5000', '--json']);
    expect(key.code, key.err).toBe(0);
    const keyId = (JSON.parse(key.out) as { key: { id: string; limits: object } }).key.id;
    expect(JSON.parse(key.out).key.limits).toEqual({
      requestsPerMinute: null,
      tokensPerMinute: null,
      tokensPerDay: null,
      tokensPerMonth: 5000,
    });

    const [asJson, asTable, operatorView] = await Promise.all([
      fabrik(pam, ['gateway', 'limits', '--json']),
      fabrik(pam, ['gateway', 'limits']),
      fabrik(operator, ['gateway', 'limits', '--member', 'telecom', '--json']),
    ]);
    expect(asJson.code, asJson.err).toBe(0);
    const [pharma, ...others] = (
      JSON.parse(asJson.out) as {
        members: { member: string; limits: Record<string, { limit: number | null }>; keys: { id: string }[] }[];
      }
    ).members;
    expect(others).toEqual([]);
    expect(pharma.member).toBe('pharma');
    expect(pharma.limits.tokensPerDay.limit).toBe(50_000);
    expect(pharma.limits.requestsPerMinute.limit).toBeNull();
    // Not set for pharma: derived from its entitlement (1.2 GPUs of this 4-GPU host) × the file's tokensPerGpuMonth.
    expect(pharma.limits.tokensPerMonth.limit).toBeGreaterThan(1_000_000);
    expect(pharma.limits.tokensPerMonth.limit).toBeLessThan(2_000_000);
    expect(pharma.keys.map((k) => k.id)).toEqual([keyId]);

    expect(asTable.code, asTable.err).toBe(0);
    const lines = asTable.out.trim().split('\n');
    expect(lines[0]).toMatch(/^MEMBER\s+WHO\s+LIMIT\s+USED\s+OF\s+LEFT\s+RESETS IN$/);
    expect(lines[1]).toMatch(/^pharma\s+member\s+requests\/minute\s+0\s+unlimited\s*$/);
    expect(lines.find((l) => l.includes('tokens/day'))).toMatch(
      /^pharma\s+member\s+tokens\/day\s+0\s+50000\s+50000\s+0-\d\d:\d\d:\d\d$/,
    );
    // A key's row only for a limit of its own.
    expect(lines.filter((l) => l.includes('key app'))).toEqual([
      expect.stringMatching(
        new RegExp(
          `^pharma\\s+key app \\(${keyId.slice(0, 8)}\\)\\s+tokens/month\\s+0\\s+5000\\s+5000\\s+\\d+-\\d\\d:\\d\\d:\\d\\d$`,
        ),
      ),
    ]);

    // Operators name the member they look at; telecom keeps the limits its entitlement gives it.
    expect(operatorView.code, operatorView.err).toBe(0);
    const [telecom] = (
      JSON.parse(operatorView.out) as { members: { member: string; limits: Record<string, { limit: number | null }> }[] }
    ).members;
    expect(telecom.member).toBe('telecom');
    expect(telecom.limits.requestsPerMinute.limit).toBeGreaterThan(0);
    // Another member's standing does not exist for pam.
    const other = await fabrik(pam, ['gateway', 'limits', '--member', 'telecom']);
    expect(other.code).toBe(1);
    expect(other.err).toContain('[NOT_FOUND]');
  });

  it('a member the consortium does not have: the start stops, naming the file and the key', async () => {
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'gateway:\n  members:\n    nobody: { tokensPerDay: 5 }\n');
    const r = await fabrik({}, ['up', '--data', join(dir, 'bad'), '--port', '0', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.err.trim()).toBe(
      `fabrik: ${config}: gateway.members.nobody: no member nobody in the consortium (its members: pharma, telecom, defense, bank, invest, academy)`,
    );
  });
});

// Replica tokens are derived from the server's secrets key, never stored: the same replica gets
// the same token after a restart, every replica and installation another, and a member can never
// set the variable a replica's engine takes it from.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SubmitRequest } from '../../src/api/contract.js';
import { REPLICA_TOKEN_ENV } from '../../src/inference/replicas.js';
import { SecretBox } from '../../src/server/secrets.js';

const dir = mkdtempSync(join(tmpdir(), 'fabrik-replica-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('replica tokens', () => {
  it('are derived again alike from the same key file, and differ by subject, purpose and key', () => {
    const file = join(dir, 'secrets.key');
    const a = new SecretBox(file, true).derive('replica token', 'inst\0dep\x000');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // A restarted server (a new box on the same file) computes the same token.
    expect(new SecretBox(file, false).derive('replica token', 'inst\0dep\x000')).toBe(a);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const box = new SecretBox(file, false);
    const others = [
      box.derive('replica token', 'inst\0dep\x001'),
      box.derive('replica token', 'other\0dep\x000'),
      box.derive('another purpose', 'inst\0dep\x000'),
      new SecretBox(join(dir, 'other.key'), true).derive('replica token', 'inst\0dep\x000'),
      box.fingerprint('inst\0dep\x000'),
    ];
    expect(new Set([a, ...others]).size).toBe(others.length + 1);
  });

  it(`keeps ${REPLICA_TOKEN_ENV} out of every member's job: only the deployments controller sets it`, () => {
    for (const field of ['env', 'secretEnv'] as const) {
      const r = SubmitRequest.safeParse({ command: ['true'], [field]: { [REPLICA_TOKEN_ENV]: 'x' } });
      expect(r.success).toBe(false);
      expect(r.error?.issues[0].path).toEqual([field, REPLICA_TOKEN_ENV]);
    }
  });
});

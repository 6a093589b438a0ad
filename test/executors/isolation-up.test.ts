// `fabrik up` with the local executor where jobs cannot be isolated (here: started as `nobody`,
// who cannot switch users or make network namespaces): refused for the demo consortium's several
// members, with the reason and what to install; started with --single-tenant, saying so.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = new URL('../../', import.meta.url).pathname;
const asRoot = process.getuid?.() === 0;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabrik-up-'));
fs.chmodSync(dir, 0o777);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The command line of `fabrik up` as nobody, on a data folder of its own. */
const asNobody = (data: string, flags: string[]) => [
  'setpriv',
  ...['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups'],
  process.execPath,
  ...['--import', 'tsx', `${repo}src/cli/main.ts`, 'up', '--data', path.join(dir, data), '--port', '0', ...flags],
];
const options = {
  cwd: repo,
  encoding: 'utf8',
  timeout: 60_000,
  env: { ...process.env, HOME: dir, FABRIK_LOG_LEVEL: 'warn' },
  killSignal: 'SIGKILL',
} as const;

/** `fabrik up` as nobody: refused before it listens, so it ends by itself. */
function upAsNobody(...flags: string[]) {
  const [cmd, ...args] = asNobody(flags.join('') || 'plain', flags);
  return spawnSync(cmd, args, options);
}

// Needs root to become nobody (CI runs as root); visible in the report when skipped.
describe.skipIf(!asRoot)(`fabrik up without isolation${asRoot ? '' : ' (skipped: not root)'}`, () => {
  it('refuses several members, saying why and what to install', () => {
    const r = upAsNobody();
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing to run the local executor for \d+ members: this host cannot isolate their jobs/);
    expect(r.stderr).toContain('does not run as root');
    expect(r.stderr).toContain('--single-tenant');
  }, 90_000);

  it('starts with --single-tenant and says that jobs are not isolated', () => {
    const up = upAsNobodyUntilListening('--single-tenant');
    expect(up).toContain('listening on');
    expect(up).toContain('jobs are NOT isolated');
  }, 90_000);
});

function upAsNobodyUntilListening(...flags: string[]): string {
  // `timeout` stops it after it started: the check comes before listening, so its output is complete.
  return spawnSync('timeout', ['-s', 'KILL', '15', ...asNobody('single', flags)], options).stderr;
}

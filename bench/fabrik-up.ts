// A real `fabrik up` in its own process for a benchmark: a fresh data folder, any free port, and
// the operator token it prints on its first start. Benchmarks measure the server as it runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../', import.meta.url).pathname;

export interface FabrikProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly token: string;
  /** SIGTERM, wait for the exit, remove the data folder. */
  stop(): Promise<void>;
}

export async function startFabrik(flags: readonly string[]): Promise<FabrikProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-bench-'));
  // The slurm executor's jobs run as members' Unix users, who write their logs in it: they may pass
  // through (0711, what `fabrik up` accepts for it); every other executor's folder is the server's alone.
  chmodSync(dir, flags.includes('slurm') ? 0o711 : 0o700);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', `${root}src/cli/main.ts`, 'up', '--data', dir, '--port', '0', ...flags],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FABRIK_LOG_LEVEL: 'warn' },
    },
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const url = /listening on (\S+);/.exec(err)?.[1];
    const token = out.trim().split('\n')[0];
    if (url && token) return { child, url, token, stop };
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`fabrik up did not start:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A token of `member`'s first member admin, made by the operator (the bootstrap; good for a day):
 * only a member's people submit jobs or make gateway keys, and a fresh server has only the operator.
 */
export async function memberAdminToken(url: string, operator: string, member: string): Promise<string> {
  const res = await fetch(`${url}/v1/users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `${member}-bench`, roles: ['member-admin'], member }),
  });
  const body = (await res.json()) as { secret?: string };
  if (res.status !== 201 || !body.secret)
    throw new Error(`bootstrapping ${member}'s admin: ${res.status} ${JSON.stringify(body)}`);
  return body.secret;
}

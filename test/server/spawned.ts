// `fabrik up` as its own process, for what a test server in this process cannot show: kill -9.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;

export interface SpawnedServer {
  readonly child: ChildProcess;
  readonly url: string;
}

/**
 * Starts `fabrik up` on `dir` (1 s cycles; the local executor offers 4 GPUs; `more` flags; `env` added
 * to this process's environment) and resolves once it listens.
 */
export async function spawnServer(
  dir: string,
  more: readonly string[] = [],
  env: Readonly<Record<string, string>> = {},
): Promise<SpawnedServer> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      `${root}src/cli/main.ts`,
      'up',
      '--data',
      dir,
      '--port',
      '0',
      '--gpus',
      '4',
      '--cycle-seconds',
      '1',
      ...more,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FABRIK_LOG_LEVEL: 'warn', ...env },
    },
  );
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  child.stdout!.resume();
  const deadline = Date.now() + 60_000;
  for (;;) {
    const url = /listening on (\S+);/.exec(err)?.[1];
    if (url) return { child, url };
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`fabrik up did not start:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** kill -9, and wait until it is gone. */
export async function killHard(s: SpawnedServer): Promise<void> {
  const c = s.child;
  c.kill('SIGKILL');
  if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once('exit', r));
}

/** The operator token `fabrik up` wrote on its first start. */
export const operatorToken = (dir: string) => readFileSync(join(dir, 'operator-token'), 'utf8').trim();

/**
 * A token of `member`'s first member admin, made by the operator (the bootstrap: once per member, the
 * token good for a day). Only a member's people submit jobs, deploy models or make gateway keys, and a
 * spawned server has only the operator's token at first.
 */
export async function bootstrapAdmin(url: string, operator: string, member: string): Promise<string> {
  const res = await fetch(`${url}/v1/users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: `${member}-admin`, roles: ['member-admin'], member }),
  });
  const body = (await res.json()) as { secret?: string };
  if (res.status !== 201 || !body.secret)
    throw new Error(`bootstrapping ${member}'s first admin: ${res.status} ${JSON.stringify(body)}`);
  return body.secret;
}

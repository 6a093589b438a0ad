// One network namespace per job, named so that it outlives a restart of the server (`ip netns`
// keeps it as a file under /run/netns): only a loopback of its own, so the job reaches nothing of
// the host (the store, the API, the sandbox control port) and nothing of other jobs, while the
// ranks of a gang, which share it, still meet on 127.0.0.1:MASTER_PORT.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 15_000 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Creates the namespace with its loopback up; one left by an earlier run of the same job is reused. */
export async function createNetns(name: string): Promise<string> {
  if (!fs.existsSync(netnsPath(name))) await ip(['netns', 'add', name]);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  return netnsPath(name);
}

/** Removes the namespace; one that is gone already is fine. */
export async function deleteNetns(name: string): Promise<void> {
  if (!fs.existsSync(netnsPath(name))) return;
  await ip(['netns', 'delete', name]);
}

// An acknowledged submission survives kill -9: a child process submits in a loop and prints
// each id once submit() resolved; it is killed mid-stream, and every printed id must be in the
// store when it is opened again (SQLite: WAL with synchronous=FULL).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';

const ACKNOWLEDGED = 300;
const child = fileURLToPath(new URL('./durability-child.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

/** Runs the child until it has acknowledged `count` ids, kills it with SIGKILL, returns the ids it printed. */
function submitUntilKilled(path: string, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child, path], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.split('\n').length > count) proc.kill('SIGKILL');
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`the child exited on its own (code ${code}): ${err}`));
      // A line cut short by the kill was never fully acknowledged.
      resolve(out.split('\n').slice(0, -1));
    });
  });
}

it('keeps every acknowledged submission after the writer is killed with SIGKILL', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'fabrik-durable-'));
  try {
    const path = join(folder, 'fabrik.db');
    const acknowledged = await submitUntilKilled(path, ACKNOWLEDGED);
    expect(acknowledged.length).toBeGreaterThanOrEqual(ACKNOWLEDGED);
    const store = await openStore(path);
    try {
      const stored = new Set<string>();
      for (
        let page = await store.jobs({ limit: 1000 });
        page.length > 0;
        page = await store.jobs({ after: page.at(-1)!.id, limit: 1000 })
      ) {
        for (const job of page) stored.add(job.id);
      }
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    } finally {
      await store.close();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

// The conformance suite on SQLite (a file in a fresh temporary folder per test), and what only
// SQLite has: the pragmas that make an acknowledged write durable, and the folder it creates.
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { created, single, storeConformance } from './conformance.js';

storeConformance('sqlite', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'fabrik-store-'));
  return {
    open: () => openStore(`sqlite:${join(folder, 'fabrik.db')}`),
    dispose: () => rm(folder, { recursive: true, force: true }),
  };
});

describe('SQLite specifics', () => {
  const folders: string[] = [];
  afterEach(async () => {
    await Promise.all(folders.splice(0).map((f) => rm(f, { recursive: true, force: true })));
  });

  it('creates the missing folder and opens the file with WAL, synchronous=FULL, a busy timeout and foreign keys', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'fabrik-store-'));
    folders.push(folder);
    const path = join(folder, 'deep', 'er', 'fabrik.db');
    const store = await openStore(path, { busyTimeoutMs: 1234 });
    try {
      expect(existsSync(path)).toBe(true);
      const pragma = async (name: string) =>
        Object.values((await sql.raw(`pragma ${name}`).execute(store.db)).rows[0] as object)[0];
      expect(await pragma('journal_mode')).toBe('wal');
      expect(await pragma('synchronous')).toBe(2);
      expect(await pragma('busy_timeout')).toBe(1234);
      expect(await pragma('foreign_keys')).toBe(1);
    } finally {
      await store.close();
    }
  });

  it('opens in memory with :memory: and sqlite::memory:', async () => {
    for (const url of [':memory:', 'sqlite::memory:']) {
      const store = await openStore(url);
      expect(store.engine).toBe('sqlite');
      expect(created(await store.submit(single()))[0].id).toBe('1');
      await store.close();
    }
  });
});

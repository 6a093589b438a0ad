// Store URLs: what each form opens, and that a wrong or unreachable one is reported as a named
// error with a sentence (and a masked password), not as a driver's stack trace.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore, parseStoreUrl, STORE_URL_HELP, StoreUnavailableError, StoreUrlError } from '../../src/store/index.js';

describe('parseStoreUrl', () => {
  it.each([
    ['sqlite:data/fabrik.db', 'data/fabrik.db'],
    ['sqlite:///var/lib/fabrik.db', '/var/lib/fabrik.db'],
    ['sqlite://data/fabrik.db', 'data/fabrik.db'],
    ['/var/lib/fabrik/fabrik.db', '/var/lib/fabrik/fabrik.db'],
    ['.fabrik/fabrik.db', '.fabrik/fabrik.db'],
    [':memory:', ':memory:'],
    ['sqlite::memory:', ':memory:'],
    ['C:\\fabrik\\fabrik.db', 'C:\\fabrik\\fabrik.db'],
  ])('reads %s as the SQLite file %s', (url, path) => {
    expect(parseStoreUrl(url)).toMatchObject({ engine: 'sqlite', path });
  });

  it('reads a PostgreSQL URL, takes the schema out of it and masks the password', () => {
    const location = parseStoreUrl('postgresql://fabrik:s3cret@db.example:6543/fabrik?schema=prod&sslmode=require');
    expect(location).toMatchObject({ engine: 'postgres', schema: 'prod', shown: expect.not.stringContaining('s3cret') });
    if (location.engine !== 'postgres') throw new Error('unreachable');
    expect(location.connectionString).toBe('postgresql://fabrik:s3cret@db.example:6543/fabrik?sslmode=require');
    expect(parseStoreUrl('postgres://db/fabrik')).toMatchObject({ engine: 'postgres', schema: null });
  });

  it.each([
    ['', /empty/],
    ['   ', /empty/],
    ['sqlite:', /no file path/],
    ['mysql://db/fabrik', /unknown scheme 'mysql:'/],
    ['postgress://db/fabrik', /unknown scheme 'postgress:'/],
    ['postgres://user:pw@host:port/db', /not a valid URL/],
    ['postgres://db/fabrik?schema=drop;table', /not a plain identifier/],
    ['postgres://db/fabrik?schema=Prod', /lower-case/],
  ])('refuses %j', (url, problem) => {
    expect(() => parseStoreUrl(url)).toThrow(StoreUrlError);
    expect(() => parseStoreUrl(url)).toThrow(problem);
  });

  it('never shows the password of a URL it refuses', () => {
    expect(() => parseStoreUrl('postgres://u:hunter2@host:port/db')).toThrow(/u:\*\*\*@/);
    expect(() => parseStoreUrl('postgres://u:hunter2@host:port/db')).not.toThrow(/hunter2/);
  });

  it('documents every accepted form', () => {
    for (const form of ['sqlite:', ':memory:', 'postgres://', 'schema']) expect(STORE_URL_HELP).toContain(form);
  });
});

describe('openStore errors', () => {
  it('reports a bad URL as StoreUrlError before opening anything', async () => {
    await expect(openStore('redis://localhost')).rejects.toBeInstanceOf(StoreUrlError);
  });

  it('reports an unreachable PostgreSQL as StoreUnavailableError naming the cause, password masked', async () => {
    const error = await openStore('postgres://fabrik:hunter2@127.0.0.1:1/fabrik', { connectTimeoutMs: 2000 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreUnavailableError);
    const message = (error as Error).message;
    expect(message).toMatch(/^cannot open the store at 'postgres:\/\/fabrik:\*\*\*@127\.0\.0\.1:1\/fabrik': .*ECONNREFUSED/);
    expect(message).not.toContain('hunter2');
    expect(message.split('\n')).toHaveLength(1);
  });

  it('reports a SQLite file that cannot be created as StoreUnavailableError', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'fabrik-store-'));
    try {
      await writeFile(join(folder, 'plain-file'), '');
      await expect(openStore(`sqlite:${join(folder, 'plain-file', 'fabrik.db')}`)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(openStore(folder)).rejects.toThrow(/^cannot open the store at .*: unable to open database file$/);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

// The conformance suite on PostgreSQL. Each test gets its own schema in the test database
// (dropped afterwards), so this file runs beside other suites that use the same database.
// Where PostgreSQL cannot be reached the suite fails under CI and is skipped, with a notice,
// on a developer's machine.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { migrations } from '../../src/store/schema.js';
import { created, single, storeConformance } from './conformance.js';

const URL_BASE = process.env.FABRIK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function schemaUrl(schema: string): string {
  const url = new URL(URL_BASE);
  url.searchParams.set('schema', schema);
  return url.toString();
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: URL_BASE, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function unreachable(): Promise<string | null> {
  try {
    await admin((client) => client.query('select 1'));
    return null;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  }
}

function freshSchema() {
  const schema = `fabrik_test_${randomBytes(6).toString('hex')}`;
  return {
    schema,
    url: schemaUrl(schema),
    dispose: () => admin((client) => client.query(`drop schema if exists ${schema} cascade`)).then(() => undefined),
  };
}

const problem = await unreachable();
if (problem !== null && process.env.CI) {
  describe('store conformance (postgres)', () => {
    it(`reaches PostgreSQL at ${URL_BASE} (required under CI)`, () => {
      throw new Error(`PostgreSQL is unreachable at ${URL_BASE}: ${problem}`);
    });
  });
} else if (problem !== null) {
  console.warn(
    `[store] skipping the PostgreSQL suite: ${URL_BASE} is unreachable (${problem}). Set FABRIK_TEST_POSTGRES_URL to run it.`,
  );
  describe.skip('store conformance (postgres)', () => {
    it('needs PostgreSQL', () => undefined);
  });
} else {
  storeConformance('postgres', async () => {
    const { url, dispose } = freshSchema();
    return { open: () => openStore(url, { poolSize: 4 }), dispose };
  });

  describe('PostgreSQL specifics', () => {
    it('migrates once when several replicas start together on an empty schema', async () => {
      const { schema, url, dispose } = freshSchema();
      try {
        const stores = await Promise.all([1, 2, 3].map(() => openStore(url, { poolSize: 2 })));
        const [job] = created(await stores[0].submit(single()));
        for (const store of stores) expect(await store.job(job.id)).toEqual(job);
        const ids = await Promise.all(stores.map((s) => s.installationId()));
        expect(new Set(ids).size).toBe(1);
        await Promise.all(stores.map((s) => s.close()));
        const rows = await admin((c) => c.query(`select name from ${schema}.kysely_migration order by name`));
        expect(rows.rows).toEqual(Object.keys(migrations('postgres')).map((name) => ({ name })));
      } finally {
        await dispose();
      }
    });

    it('reads int8 as strings from the driver, which the store turns into numbers and ids', async () => {
      const { url, dispose } = freshSchema();
      const store = await openStore(url);
      try {
        const [job] = created(await store.submit(single()));
        const raw = await store.db.selectFrom('job_events').select(['id', 'job_id']).executeTakeFirstOrThrow();
        expect(typeof raw.job_id).toBe('string');
        expect((await store.events(job.id))[0].job).toBe(job.id);
        expect(await store.countTokens()).toBe(0);
      } finally {
        await store.close();
        await dispose();
      }
    });
  });
}

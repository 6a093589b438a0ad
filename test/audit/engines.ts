// Both store engines for the audit tests: SQLite in a fresh folder, and PostgreSQL in a fresh
// schema of the test database. Where PostgreSQL cannot be reached its suite fails under CI and
// is skipped, with a notice, on a developer's machine (as the store's own suite does).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { describe, it } from 'vitest';
import { migrations, type Database } from '../../src/store/schema.js';
import { parseStoreUrl } from '../../src/store/url.js';

const PG_BASE = process.env.FABRIK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh, empty store location: its URL, and how to remove it. */
export interface Location {
  readonly url: string;
  dispose(): Promise<void>;
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_BASE, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function sqliteLocation(): Promise<Location> {
  const folder = await mkdtemp(join(tmpdir(), 'fabrik-audit-'));
  return { url: `sqlite:${join(folder, 'fabrik.db')}`, dispose: () => rm(folder, { recursive: true, force: true }) };
}

async function postgresLocation(): Promise<Location> {
  const schema = `fabrik_audit_${randomBytes(6).toString('hex')}`;
  const url = new URL(PG_BASE);
  url.searchParams.set('schema', schema);
  return {
    url: url.toString(),
    dispose: () => admin((c) => c.query(`drop schema if exists ${schema} cascade`)).then(() => undefined),
  };
}

const pgProblem = await admin((c) => c.query('select 1')).then(
  () => null,
  (e: unknown) => (e instanceof Error ? e.message || e.name : String(e)),
);

/** Runs `suite` once per engine, with a function that makes a fresh location. */
export function forEachEngine(title: string, suite: (engine: 'sqlite' | 'postgres', location: () => Promise<Location>) => void) {
  suite('sqlite', sqliteLocation);
  if (pgProblem === null) return suite('postgres', postgresLocation);
  if (process.env.CI)
    describe(`${title} (postgres)`, () => {
      it(`reaches PostgreSQL at ${PG_BASE} (required under CI)`, () => {
        throw new Error(`PostgreSQL is unreachable at ${PG_BASE}: ${pgProblem}`);
      });
    });
  else {
    console.warn(`[audit] skipping the PostgreSQL suite: ${PG_BASE} is unreachable (${pgProblem}).`);
    describe.skip(`${title} (postgres)`, () => it('needs PostgreSQL', () => undefined));
  }
}

/**
 * A raw Kysely on the location, migrated up to (not including) `migration`: the store an older
 * Fabrik left, for tests of what that migration does to it. Close it with `destroy()`.
 */
export async function storeMigratedBefore(place: Location, migration: string): Promise<Kysely<Database>> {
  const location = parseStoreUrl(place.url);
  let db: Kysely<Database>;
  let schema: string | undefined;
  if (location.engine === 'sqlite') {
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: new BetterSqlite3(location.path) }) });
  } else {
    schema = location.schema!;
    const pool = new pg.Pool({ connectionString: location.connectionString, max: 2, options: `-c search_path=${schema}` });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    await sql`create schema if not exists ${sql.id(schema)}`.execute(db);
  }
  const before = Object.fromEntries(Object.entries(migrations(location.engine)).filter(([name]) => name < migration));
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => before },
    migrationTableSchema: schema,
    allowUnorderedMigrations: true,
  });
  const { error } = await migrator.migrateToLatest();
  if (error) throw error;
  return db;
}

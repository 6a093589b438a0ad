// Opens the store a URL names, migrates it, and hands it over ready. Whatever goes wrong on the
// way comes out as one of the store's named errors with a sentence, never a driver's trace.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type SqliteDatabase } from 'kysely';
import pg from 'pg';
import { StoreMigrationError, StoreUnavailableError, describeCause } from './errors.js';
import { KyselyStore } from './kysely-store.js';
import type { Database } from './schema.js';
import { parseStoreUrl, type StoreLocation } from './url.js';

export { STORE_URL_HELP } from './url.js';

export interface OpenStoreOptions {
  /** PostgreSQL: connections per process (default 10). */
  readonly poolSize?: number;
  /** PostgreSQL: how long to wait for a connection before giving up, ms (default 10,000). */
  readonly connectTimeoutMs?: number;
  /** SQLite: how long a write waits for another process's lock, ms (default 5,000). */
  readonly busyTimeoutMs?: number;
  /** Submissions committed in one transaction at most (default 256). */
  readonly maxBatch?: number;
}

/** Opens (creating if needed) and migrates the store at `url`; see STORE_URL_HELP. */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<KyselyStore> {
  const location = parseStoreUrl(url);
  let db: Kysely<Database> | undefined;
  try {
    db = location.engine === 'sqlite' ? openSqlite(location.path, options) : await openPostgres(location, options);
    const store = new KyselyStore(db, location.engine, { maxBatch: options.maxBatch });
    await store.migrate();
    return store;
  } catch (error) {
    await db?.destroy().catch(() => undefined);
    if (error instanceof StoreMigrationError) throw error;
    throw new StoreUnavailableError(location.shown, describeCause(error), { cause: error });
  }
}

function openSqlite(path: string, options: OpenStoreOptions): Kysely<Database> {
  const inMemory = path === ':memory:';
  if (!inMemory) mkdirSync(dirname(path), { recursive: true });
  const database = new BetterSqlite3(path);
  try {
    // WAL lets readers run beside the writer; synchronous=FULL fsyncs the WAL at every commit,
    // so an acknowledged submission survives kill -9 and power loss alike.
    if (!inMemory) database.pragma('journal_mode = WAL');
    database.pragma('synchronous = FULL');
    database.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs ?? 5000)}`);
    database.pragma('foreign_keys = ON');
  } catch (error) {
    database.close();
    throw error;
  }
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) });
}

/**
 * Kysely prepares every statement again on each call; parsing the SQL was a tenth of a
 * submission's cost. The store's statements are few and repeat, so prepared ones are kept
 * (better-sqlite3 statements are reusable; Kysely runs them to completion one at a time).
 */
function withStatementCache(database: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => database.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (!statement) {
        // Multi-row inserts of every batch size make distinct statements: keep the cache bounded.
        if (cache.size >= 512) cache.clear();
        statement = database.prepare(sql);
        cache.set(sql, statement);
      }
      return statement as unknown as ReturnType<SqliteDatabase['prepare']>;
    },
  };
}

async function openPostgres(location: Extract<StoreLocation, { engine: 'postgres' }>, options: OpenStoreOptions) {
  const pool = new pg.Pool({
    connectionString: location.connectionString,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    options: location.schema === null ? undefined : `-c search_path=${location.schema}`,
  });
  // An idle connection that the server drops emits 'error' on the pool, which would kill the
  // process unheard; the next query takes a fresh connection and reports any lasting trouble.
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  if (location.schema !== null) {
    try {
      await createSchema(db, location.schema);
    } catch (error) {
      await db.destroy();
      throw error;
    }
  }
  return db;
}

/** Under an advisory lock: two replicas creating the same schema at once would otherwise collide. */
async function createSchema(db: Kysely<Database>, schema: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext(${'fabrik schema ' + schema}))`.execute(trx);
    await sql`create schema if not exists ${sql.id(schema)}`.execute(trx);
  });
}

// Where the store lives, from one string: what an operator writes in a config file or an
// environment variable. Parsing happens before anything is opened, so a typo is reported as a
// typo and not as a driver's stack trace.
import { StoreUrlError } from './errors.js';

export const STORE_URL_HELP = [
  'The store URL is one of:',
  '  sqlite:<path>       a SQLite file, created with its folder if missing (e.g. sqlite:.fabrik/fabrik.db)',
  '  <path>              the same without the prefix (e.g. /var/lib/fabrik/fabrik.db)',
  '  :memory:            a SQLite database in memory, gone when the process ends (also sqlite::memory:)',
  '  postgres://user:password@host:5432/database[?schema=name]',
  "                      PostgreSQL (also postgresql://); schema keeps Fabrik's tables in that schema, created if missing",
].join('\n');

export type StoreLocation =
  | { readonly engine: 'sqlite'; readonly path: string; readonly shown: string }
  | { readonly engine: 'postgres'; readonly connectionString: string; readonly schema: string | null; readonly shown: string };

/** Lower case only: search_path folds an unquoted name to lower case, CREATE SCHEMA quotes it. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The URL as it may be printed or logged: the password masked. */
export function maskPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:)[^@]*@/i, '$1***@');
}

export function parseStoreUrl(url: string): StoreLocation {
  const shown = maskPassword(url.trim());
  const text = url.trim();
  if (text === '') throw new StoreUrlError(shown, 'empty (give sqlite:<path>, a file path, :memory: or postgres://…)');
  if (/^postgres(ql)?:\/\//i.test(text)) return postgresAt(text, shown);
  if (/^sqlite:/i.test(text)) return sqliteAt(text.slice('sqlite:'.length).replace(/^\/\//, ''), shown);
  // Two letters or more, so that a Windows drive letter still reads as a path.
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(text);
  if (scheme) throw new StoreUrlError(shown, `unknown scheme '${scheme[1]}:' (expected sqlite: or postgres://)`);
  return sqliteAt(text, shown);
}

function sqliteAt(path: string, shown: string): StoreLocation {
  if (path === '') throw new StoreUrlError(shown, "no file path after 'sqlite:'");
  return { engine: 'sqlite', path, shown };
}

function postgresAt(text: string, shown: string): StoreLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StoreUrlError(shown, 'not a valid URL (postgres://user:password@host:5432/database)');
  }
  const schema = url.searchParams.get('schema');
  if (schema !== null && !SCHEMA_NAME.test(schema)) {
    throw new StoreUrlError(shown, `schema '${schema}' is not a plain identifier (lower-case letters, digits, underscore)`);
  }
  // pg would pass an unknown query parameter on as a connection setting; the schema is ours.
  url.searchParams.delete('schema');
  return { engine: 'postgres', connectionString: url.toString(), schema, shown };
}

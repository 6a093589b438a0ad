// The store's public face: the port, the one implementation, and how to open it from a URL.
export type * from './store.js';
export { KyselyStore, type KyselyStoreOptions } from './kysely-store.js';
export type { GroupCommitStats } from './group-commit.js';
export { openStore, STORE_URL_HELP, type OpenStoreOptions } from './open.js';
export { parseStoreUrl, maskPassword, type StoreLocation } from './url.js';
export { StoreClosedError, StoreMigrationError, StoreUnavailableError, StoreUrlError } from './errors.js';
export type { Database, Engine } from './schema.js';

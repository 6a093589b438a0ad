// The gateway's tables (migration 006): its API keys (hashed), the usage it meters (one row per
// member, key and model per flush, so the table grows with time, not with requests), each
// member's logging setting, and the prompts and completions of the members that turned it on.
import type { Kysely, Migration } from 'kysely';

export interface GatewayKeysTable {
  id: string;
  hash: string;
  prefix: string;
  name: string;
  member: string;
  username: string;
  /** JSON array of model names; `["*"]`: every model of the member. */
  models: string;
  classification: string;
  /** JSON array of zones, or null: any zone the member may use. */
  zones: string | null;
  /** JSON of the key's own limits (requests and tokens per minute, tokens per day). */
  limits: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface GatewayUsageTable {
  member: string;
  key_id: string;
  model: string;
  /** When the batch was flushed. */
  at: number;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
}

export interface GatewaySettingsTable {
  member: string;
  logging: number;
  updated_at: number;
  updated_by: string;
}

export interface GatewayLogsTable {
  member: string;
  key_id: string;
  model: string;
  at: number;
  /** JSON of the request's messages or prompt. */
  request: string;
  completion: string;
}

export interface GatewayTables {
  gateway_keys: GatewayKeysTable;
  gateway_usage: GatewayUsageTable;
  gateway_settings: GatewaySettingsTable;
  gateway_logs: GatewayLogsTable;
}

export const gatewayMigrations: Record<string, Migration> = {
  '006_gateway': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('gateway_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('models', 'text', (c) => c.notNull())
        .addColumn('classification', 'text', (c) => c.notNull())
        .addColumn('zones', 'text')
        .addColumn('limits', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('expires_at', 'double precision')
        .addColumn('revoked_at', 'double precision')
        .execute();
      await db.schema.createIndex('gateway_keys_member').on('gateway_keys').columns(['member', 'created_at']).execute();
      await db.schema
        .createTable('gateway_usage')
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('at', 'double precision', (c) => c.notNull())
        .addColumn('requests', 'bigint', (c) => c.notNull())
        .addColumn('prompt_tokens', 'bigint', (c) => c.notNull())
        .addColumn('completion_tokens', 'bigint', (c) => c.notNull())
        .addColumn('reasoning_tokens', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('gateway_usage_member_at').on('gateway_usage').columns(['member', 'at']).execute();
      await db.schema.createIndex('gateway_usage_at').on('gateway_usage').column('at').execute();
      await db.schema
        .createTable('gateway_settings')
        .addColumn('member', 'text', (c) => c.primaryKey())
        .addColumn('logging', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'double precision', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('gateway_logs')
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('at', 'double precision', (c) => c.notNull())
        .addColumn('request', 'text', (c) => c.notNull())
        .addColumn('completion', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('gateway_logs_member_at').on('gateway_logs').columns(['member', 'at']).execute();
    },
  },
};

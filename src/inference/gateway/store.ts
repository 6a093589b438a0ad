// The gateway's rows on either engine: keys, batched usage, the members' logging setting and logs.
import { sql, type Kysely } from 'kysely';
import type { Classification } from '../../governance/model.js';
import type { Database } from '../../store/schema.js';
import type { LimitSettings } from './limits.js';
import type { GatewayKeysTable } from './schema.js';

/** A key's own limits; null: only the member's limits apply. */
export type KeyLimits = LimitSettings;

export interface GatewayKey {
  readonly id: string;
  readonly hash: string;
  readonly prefix: string;
  readonly name: string;
  readonly member: string;
  readonly user: string;
  /** `['*']`: every model of the member. */
  readonly models: readonly string[];
  readonly classification: Classification;
  /** null: any zone the member may use. */
  readonly zones: readonly string[] | null;
  readonly limits: KeyLimits;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
}

/** Tokens used by one member with one key on one model. */
export interface UsageRow {
  readonly member: string;
  readonly keyId: string;
  readonly model: string;
  readonly requests: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly reasoningTokens: number;
}

/** Usage as the gateway writes it: the second its requests ended. */
export interface MeteredUsage extends UsageRow {
  readonly at: number;
}

export interface LogRow {
  readonly member: string;
  readonly keyId: string;
  readonly model: string;
  readonly at: number;
  readonly request: string;
  readonly completion: string;
}

const keyOf = (r: GatewayKeysTable): GatewayKey => ({
  id: r.id,
  hash: r.hash,
  prefix: r.prefix,
  name: r.name,
  member: r.member,
  user: r.username,
  models: JSON.parse(r.models) as string[],
  classification: r.classification as Classification,
  zones: r.zones === null ? null : (JSON.parse(r.zones) as string[]),
  // Keys made before month budgets existed have none.
  limits: { tokensPerMonth: null, ...(JSON.parse(r.limits) as Partial<KeyLimits>) } as KeyLimits,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
});

export class GatewayStore {
  constructor(private readonly db: Kysely<Database>) {}

  async createKey(k: GatewayKey): Promise<void> {
    await this.db
      .insertInto('gateway_keys')
      .values({
        id: k.id,
        hash: k.hash,
        prefix: k.prefix,
        name: k.name,
        member: k.member,
        username: k.user,
        models: JSON.stringify(k.models),
        classification: k.classification,
        zones: k.zones === null ? null : JSON.stringify(k.zones),
        limits: JSON.stringify(k.limits),
        created_at: k.createdAt,
        expires_at: k.expiresAt,
        revoked_at: k.revokedAt,
      })
      .execute();
  }

  async keyByHash(hash: string): Promise<GatewayKey | undefined> {
    const r = await this.db.selectFrom('gateway_keys').selectAll().where('hash', '=', hash).executeTakeFirst();
    return r && keyOf(r);
  }

  async key(id: string): Promise<GatewayKey | undefined> {
    const r = await this.db.selectFrom('gateway_keys').selectAll().where('id', '=', id).executeTakeFirst();
    return r && keyOf(r);
  }

  /** The member's keys (every member's for null), oldest first. */
  async keys(member: string | null): Promise<GatewayKey[]> {
    let q = this.db.selectFrom('gateway_keys').selectAll();
    if (member !== null) q = q.where('member', '=', member);
    return (await q.orderBy('created_at').orderBy('id').execute()).map(keyOf);
  }

  /** Revokes once: false when it already was. */
  async revokeKey(id: string, at: number): Promise<boolean> {
    const r = await this.db
      .updateTable('gateway_keys')
      .set({ revoked_at: at })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** One batch of metered usage, in one statement. */
  async addUsage(rows: readonly MeteredUsage[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db
      .insertInto('gateway_usage')
      .values(
        rows.map((r) => ({
          member: r.member,
          key_id: r.keyId,
          model: r.model,
          at: r.at,
          requests: r.requests,
          prompt_tokens: r.promptTokens,
          completion_tokens: r.completionTokens,
          reasoning_tokens: r.reasoningTokens,
        })),
      )
      .execute();
  }

  /** Usage since `since` (and before `until`), summed per member, key and model; every member's for null. */
  async usage(member: string | null, since: number, until = Number.MAX_SAFE_INTEGER): Promise<UsageRow[]> {
    return (await this.usageRows(member, since, until, null)).map(({ start: _, ...u }) => u);
  }

  /**
   * The same, summed per period as well: `width` seconds from the epoch (3600: hours, 86400: UTC days),
   * each row with its period's `start`, oldest first.
   */
  usageByPeriod(member: string | null, since: number, until: number, width: number): Promise<(UsageRow & { start: number })[]> {
    if (!Number.isInteger(width) || width < 1) throw new RangeError(`period width ${width}`);
    return this.usageRows(member, since, until, width) as Promise<(UsageRow & { start: number })[]>;
  }

  private async usageRows(member: string | null, since: number, until: number, width: number | null) {
    // The width is a whole number checked above, written into the statement: the same expression in
    // SELECT and GROUP BY (PostgreSQL would not match two parameters as the same expression).
    const start = width === null ? sql<number>`0` : sql<number>`floor(at / ${sql.lit(width)}) * ${sql.lit(width)}`;
    let q = this.db
      .selectFrom('gateway_usage')
      .select((eb) => [
        start.as('start'),
        'member',
        'key_id',
        'model',
        eb.fn.sum<string | number>('requests').as('requests'),
        eb.fn.sum<string | number>('prompt_tokens').as('prompt_tokens'),
        eb.fn.sum<string | number>('completion_tokens').as('completion_tokens'),
        eb.fn.sum<string | number>('reasoning_tokens').as('reasoning_tokens'),
      ])
      .where('at', '>=', since)
      .where('at', '<', until);
    if (member !== null) q = q.where('member', '=', member);
    // No period: one group per member, key and model (a constant in GROUP BY would read as a column number).
    if (width !== null) q = q.groupBy(start).orderBy(start);
    const rows = await q.groupBy(['member', 'key_id', 'model']).orderBy('member').orderBy('key_id').orderBy('model').execute();
    return rows.map((r) => ({
      start: Number(r.start),
      member: r.member,
      keyId: r.key_id,
      model: r.model,
      requests: Number(r.requests),
      promptTokens: Number(r.prompt_tokens),
      completionTokens: Number(r.completion_tokens),
      reasoningTokens: Number(r.reasoning_tokens),
    }));
  }

  async logging(member: string): Promise<boolean> {
    const r = await this.db.selectFrom('gateway_settings').select('logging').where('member', '=', member).executeTakeFirst();
    return r?.logging === 1;
  }

  /** Every member that turned logging on. */
  async loggingMembers(): Promise<string[]> {
    const rows = await this.db.selectFrom('gateway_settings').select('member').where('logging', '=', 1).execute();
    return rows.map((r) => r.member);
  }

  async setLogging(member: string, on: boolean, by: string, at: number): Promise<void> {
    await this.db
      .insertInto('gateway_settings')
      .values({ member, logging: on ? 1 : 0, updated_at: at, updated_by: by })
      .onConflict((oc) => oc.column('member').doUpdateSet({ logging: on ? 1 : 0, updated_at: at, updated_by: by }))
      .execute();
  }

  async addLogs(rows: readonly LogRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db
      .insertInto('gateway_logs')
      .values(
        rows.map((r) => ({
          member: r.member,
          key_id: r.keyId,
          model: r.model,
          at: r.at,
          request: r.request,
          completion: r.completion,
        })),
      )
      .execute();
  }

  /** The member's kept prompts and completions with `since` <= at < `until`, newest first, at most `limit`. */
  async logs(member: string, o: { since?: number; until?: number; limit?: number } = {}): Promise<LogRow[]> {
    let q = this.db.selectFrom('gateway_logs').selectAll().where('member', '=', member);
    if (o.since !== undefined) q = q.where('at', '>=', o.since);
    if (o.until !== undefined) q = q.where('at', '<', o.until);
    const rows = await q
      .orderBy('at', 'desc')
      .limit(o.limit ?? 100)
      .execute();
    return rows.map((r) => ({
      member: r.member,
      keyId: r.key_id,
      model: r.model,
      at: r.at,
      request: r.request,
      completion: r.completion,
    }));
  }
}

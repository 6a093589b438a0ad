// The gateway's store on both engines: keys round-trip and revoke once; usage batches sum per
// member, key and model within a time range; the logging setting upserts; logs are kept per member
// and read newest first within a time range, bounded.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatewayStore, type GatewayKey, type UsageRow } from '../../src/inference/gateway/store.js';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { forEachEngine, type Location } from '../audit/engines.js';

const key: GatewayKey = {
  id: 'k1',
  hash: 'h1',
  prefix: 'fgk_abcdef',
  name: 'assistant',
  member: 'bank',
  user: 'bob',
  models: ['chat', 'embed'],
  classification: 'confidential',
  zones: ['general'],
  limits: { requestsPerMinute: 60, tokensPerMinute: null, tokensPerDay: 1_000_000, tokensPerMonth: 20_000_000 },
  createdAt: 1_700_000_000.25,
  expiresAt: 1_800_000_000,
  revokedAt: null,
};

forEachEngine('gateway store', (engine, location) => {
  describe(`gateway store (${engine})`, () => {
    let where: Location;
    let store: KyselyStore;
    let g: GatewayStore;
    beforeEach(async () => {
      where = await location();
      store = (await openStore(where.url)) as KyselyStore;
      g = new GatewayStore(store.db);
    });
    /** A batch whose requests all ended at `at`. */
    const addAt = (rows: UsageRow[], at: number) => g.addUsage(rows.map((r) => ({ ...r, at })));
    afterEach(async () => {
      await store.close();
      await where.dispose();
    });

    it('keeps keys by hash and id, lists them per member, and revokes once', async () => {
      await g.createKey(key);
      await g.createKey({ ...key, id: 'k2', hash: 'h2', member: 'pharma', zones: null, createdAt: key.createdAt + 1 });
      await expect(g.createKey({ ...key, id: 'k3' })).rejects.toThrow();
      expect(await g.keyByHash('h1')).toEqual(key);
      expect(await g.key('k2')).toMatchObject({ member: 'pharma', zones: null });
      expect(await g.keyByHash('nope')).toBeUndefined();
      expect((await g.keys('bank')).map((k) => k.id)).toEqual(['k1']);
      expect((await g.keys(null)).map((k) => k.id)).toEqual(['k1', 'k2']);
      expect(await g.revokeKey('k1', 5)).toBe(true);
      expect(await g.revokeKey('k1', 6)).toBe(false);
      expect((await g.key('k1'))!.revokedAt).toBe(5);
    });

    it('sums usage batches per member, key and model within a range', async () => {
      const row = {
        member: 'bank',
        keyId: 'k1',
        model: 'chat',
        requests: 2,
        promptTokens: 10,
        completionTokens: 30,
        reasoningTokens: 5,
      };
      await addAt([row, { ...row, model: 'embed', completionTokens: 0, reasoningTokens: 0 }], 100);
      await addAt([row], 200);
      await addAt([{ ...row, member: 'pharma', keyId: 'k2' }], 200);
      await addAt([], 300);
      expect(await g.usage('bank', 0)).toEqual([
        { ...row, requests: 4, promptTokens: 20, completionTokens: 60, reasoningTokens: 10 },
        { ...row, model: 'embed', completionTokens: 0, reasoningTokens: 0 },
      ]);
      expect(await g.usage('bank', 150)).toEqual([row]);
      expect(await g.usage('bank', 0, 150)).toHaveLength(2);
      expect((await g.usage(null, 0)).map((u) => u.member)).toEqual(['bank', 'bank', 'pharma']);
    });

    it('sums usage per hour or per UTC day as well, oldest period first', async () => {
      const row = {
        member: 'bank',
        keyId: 'k1',
        model: 'chat',
        requests: 1,
        promptTokens: 1,
        completionTokens: 2,
        reasoningTokens: 0,
      };
      const day = 86_400 * 20_000; // a midnight, UTC
      await addAt([row], day + 10.5); // 00:00:10.5
      await addAt([row, { ...row, model: 'embed' }], day + 3599.9); // 00:59:59.9
      await addAt([row], day + 3600); // 01:00:00
      await addAt([row], day + 86_400 + 7); // the next day
      await addAt([{ ...row, member: 'pharma' }], day + 20);
      const hours = await g.usageByPeriod('bank', day, day + 2 * 86_400, 3600);
      expect(hours.map((u) => [u.start - day, u.model, u.requests])).toEqual([
        [0, 'chat', 2],
        [0, 'embed', 1],
        [3600, 'chat', 1],
        [86_400, 'chat', 1],
      ]);
      expect(hours[0]).toEqual({ ...row, start: day, requests: 2, promptTokens: 2, completionTokens: 4 });
      const days = await g.usageByPeriod(null, day, day + 2 * 86_400, 86_400);
      expect(days.map((u) => [u.start - day, u.member, u.model, u.requests])).toEqual([
        [0, 'bank', 'chat', 3],
        [0, 'bank', 'embed', 1],
        [0, 'pharma', 'chat', 1],
        [86_400, 'bank', 'chat', 1],
      ]);
      // `until` is exclusive; the sums without periods are unchanged.
      expect((await g.usageByPeriod('bank', day, day + 3600, 86_400)).map((u) => u.requests)).toEqual([2, 1]);
      expect(await g.usage('bank', day)).toEqual([
        { ...row, requests: 4, promptTokens: 4, completionTokens: 8 },
        { ...row, model: 'embed' },
      ]);
    });

    it('keeps the logging setting (off by default) and the logs of members that turned it on', async () => {
      expect(await g.logging('bank')).toBe(false);
      await g.setLogging('bank', true, 'bea', 1);
      expect(await g.logging('bank')).toBe(true);
      expect(await g.loggingMembers()).toEqual(['bank']);
      await g.setLogging('bank', false, 'bea', 2);
      expect(await g.logging('bank')).toBe(false);
      await g.addLogs([{ member: 'bank', keyId: 'k1', model: 'chat', at: 3, request: '"hi"', completion: 'hello' }]);
      expect(await g.logs('bank')).toEqual([
        { member: 'bank', keyId: 'k1', model: 'chat', at: 3, request: '"hi"', completion: 'hello' },
      ]);
      expect(await g.logs('pharma')).toEqual([]);
    });

    it("reads a member's logs newest first, within [since, until), at most limit", async () => {
      const log = (member: string, at: number) => ({
        member,
        keyId: 'k1',
        model: 'chat',
        at,
        request: JSON.stringify([{ role: 'user', content: `q${at}` }]),
        completion: `a${at}`,
      });
      await g.addLogs([log('bank', 10.5), log('bank', 30.25), log('pharma', 25), log('bank', 20)]);
      await g.addLogs([log('bank', 40)]);
      const ats = async (o: Parameters<GatewayStore['logs']>[1]) => (await g.logs('bank', o)).map((l) => l.at);
      expect(await ats({})).toEqual([40, 30.25, 20, 10.5]);
      expect(await g.logs('bank', { limit: 1 })).toEqual([log('bank', 40)]);
      expect(await ats({ since: 20 })).toEqual([40, 30.25, 20]);
      expect(await ats({ until: 30.25 })).toEqual([20, 10.5]);
      expect(await ats({ since: 11, until: 40, limit: 1 })).toEqual([30.25]);
      expect(await ats({ since: 50 })).toEqual([]);
      expect((await g.logs('pharma')).map((l) => l.completion)).toEqual(['a25']);
      // The default bound is 100.
      await g.addLogs(Array.from({ length: 120 }, (_, i) => log('invest', i)));
      expect(await g.logs('invest')).toHaveLength(100);
      expect((await g.logs('invest', { limit: 1000 })).at(-1)!.at).toBe(0);
    });
  });
});

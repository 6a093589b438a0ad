// The gateway's limits and member-facing capabilities end to end, on a real server with a clock the
// test moves: requests and tokens per minute (per key, and per member across its keys), day budgets
// that survive a restart, key zones, reasoning models and their budget caps, embeddings, keeping
// and reading prompts and completions (API and CLI), and expired keys.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Replica, ReplicaSource } from '../../src/inference/replicas.js';
import { testServer, type TestServer } from '../server/helpers.js';
import { ANSWER, fakeEngine, THOUGHT, type FakeEngine } from './upstream.js';

// Seconds since the epoch, moved by the tests only: a minute window never turns over mid-test.
let clock = Math.floor(Date.now() / 60_000) * 60 + 0.5;
const now = () => clock;
const tick = (s: number) => void (clock += s);

const replicas: Replica[] = [];
const source: ReplicaSource = {
  replicas: (member, model) => replicas.filter((r) => r.member === member && r.model === model),
  models: (member) =>
    [...new Set(replicas.filter((r) => r.member === member).map((r) => r.model))].map((model) => ({
      model,
      deployment: model,
      createdAt: 1,
    })),
};
const replica = (id: string, member: string, model: string, url: string, more: Partial<Replica> = {}): Replica => ({
  id,
  deployment: model,
  member,
  model,
  url,
  zone: 'general',
  accreditations: ['public', 'internal', 'confidential'],
  reasoning: false,
  healthy: true,
  ...more,
});

/** The gateway settings of these tests: small caps, so the numbers below are easy to follow. */
const GATEWAY = { flushSeconds: 0.2, defaultMaxTokens: 10, reasoningMaxTokens: 12 };

let t: TestServer;
let engine: FakeEngine, sovereign: FakeEngine, thinker: FakeEngine;
const engines = () => [engine, sovereign, thinker];
const calls = () => engines().reduce((n, e) => n + e.calls.length, 0);
let pharmaAdmin: string;

async function key(
  server: TestServer,
  token: string,
  body: Record<string, unknown> = {},
): Promise<{ secret: string; id: string }> {
  const r = await server.call<{ secret: string; key: { id: string } }>(token, 'POST', '/v1/keys', { name: 'k', ...body });
  if (r.status !== 201) throw new Error(`key: ${r.status} ${JSON.stringify(r.body)}`);
  return { secret: r.body.secret, id: r.body.key.id };
}

/** A request through fetch: status, headers and the body (JSON when it is). */
async function post(server: TestServer, secret: string, path: string, body: Record<string, unknown>) {
  const res = await fetch(`${server.server.url}/v1/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    /* a stream */
  }
  return {
    status: res.status,
    headers: res.headers,
    text,
    body: json as { error: { code: string; type: string; message: string } },
  };
}
const chat = (content: string, more: Record<string, unknown> = {}) => ({
  model: 'chat',
  messages: [{ role: 'user', content }],
  ...more,
});
const client = (server: TestServer, apiKey: string) => new OpenAI({ apiKey, baseURL: `${server.server.url}/v1`, maxRetries: 0 });

interface Usage {
  keyId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
}
async function usageOf(server: TestServer, token: string, keyId: string): Promise<Usage[]> {
  const u = await server.call<{ usage: Usage[] }>(token, 'GET', `/v1/usage?since=0`);
  expect(u.status).toBe(200);
  return u.body.usage.filter((x) => x.keyId === keyId);
}

beforeAll(async () => {
  [engine, sovereign, thinker] = await Promise.all([fakeEngine(), fakeEngine(), fakeEngine()]);
  replicas.push(
    replica('p-chat', 'pharma', 'chat', engine.url),
    replica('p-embed', 'pharma', 'embed', engine.url),
    replica('p-zoned', 'pharma', 'zoned', engine.url),
    replica('p-sov', 'pharma', 'sovonly', sovereign.url, { zone: 'sovereign' }),
    replica('p-think', 'pharma', 'thinker', thinker.url, { reasoning: true }),
    // defense's data stays in the sovereign zone (consortia/demo.yaml): one replica outside it, one in it.
    replica('d-chat', 'defense', 'chat', engine.url),
    replica('d-secure', 'defense', 'secure', sovereign.url, { zone: 'sovereign' }),
    replica('a-chat', 'academy', 'chat', engine.url),
    replica('b-chat', 'bank', 'chat', engine.url),
  );
  t = await testServer({ replicas: source, now, gateway: GATEWAY });
  pharmaAdmin = await t.token('pharma', 'member-admin', 'alice');
});
afterAll(async () => {
  await t?.close();
  await Promise.all(engines().map((e) => e?.close()));
});
beforeEach(() => {
  // A fresh minute for every test.
  tick(60);
  for (const e of engines()) {
    e.calls.length = 0;
    e.ignoreMaxTokens = false;
    e.reasoning = 0;
  }
  thinker.reasoning = 5;
});

describe('requests and tokens per minute', () => {
  it("a key's requests per minute: the third of 2 is 429 rate_limit_exceeded with retry-after; the client gets a RateLimitError", async () => {
    const { secret } = await key(t, pharmaAdmin, { requestsPerMinute: 2 });
    for (const left of ['1', '0']) {
      const r = await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 1 }));
      expect(r.status).toBe(200);
      expect(r.headers.get('x-ratelimit-limit-requests')).toBe('2');
      expect(r.headers.get('x-ratelimit-remaining-requests')).toBe(left);
    }
    const r = await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 1 }));
    expect(r.status).toBe(429);
    expect(r.body).toEqual({
      error: {
        message: expect.stringMatching(/requests per minute/),
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
    const retry = Number(r.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(60);
    expect(r.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(r.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(r.headers.get('x-should-retry')).toBeNull();
    expect(engine.calls).toHaveLength(2);

    const err = await client(t, secret)
      .chat.completions.create(chat('hi') as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect(engine.calls).toHaveLength(2);

    // The next minute the key may send again.
    tick(retry);
    expect((await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 1 }))).status).toBe(200);
  });

  it("a key's tokens per minute: a prompt beyond what is left is refused; one beyond the whole minute is not retried", async () => {
    const { secret } = await key(t, pharmaAdmin, { tokensPerMinute: 40 });
    // "user: hi" is 3 tokens; with max_tokens 5 it reserves 8, then settles to the engine's 7 + 5.
    const first = await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 5 }));
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-tokens')).toBe('40');
    expect(first.headers.get('x-ratelimit-remaining-tokens')).toBe('32');
    // 28 left: a prompt of 32 tokens does not fit this minute.
    const long = chat(Array.from({ length: 30 }, (_, i) => `w${i}`).join(' '), { max_tokens: 1 });
    const r = await post(t, secret, 'chat/completions', long);
    expect(r.status).toBe(429);
    expect(r.body.error).toMatchObject({ code: 'rate_limit_exceeded', type: 'tokens' });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(r.headers.get('x-ratelimit-remaining-tokens')).toBe('28');
    expect(engine.calls).toHaveLength(1);
    // A short one still fits, capped at what is left.
    expect((await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 5 }))).status).toBe(200);
    expect(engine.calls).toHaveLength(2);

    // A prompt larger than the whole minute's tokens can never pass: no retry-after, x-should-retry: false.
    tick(60);
    const huge = chat(Array.from({ length: 45 }, (_, i) => `w${i}`).join(' '));
    const h = await post(t, secret, 'chat/completions', huge);
    expect(h.status).toBe(429);
    expect(h.body.error.code).toBe('rate_limit_exceeded');
    expect(h.headers.get('x-should-retry')).toBe('false');
    expect(h.headers.get('retry-after')).toBeNull();
    const c = new OpenAI({ apiKey: secret, baseURL: `${t.server.url}/v1`, maxRetries: 2 });
    await expect(c.chat.completions.create(huge as OpenAI.ChatCompletionCreateParamsNonStreaming)).rejects.toBeInstanceOf(
      OpenAI.RateLimitError,
    );
    expect(engine.calls).toHaveLength(2);
  });

  it("a member's derived limit (requestsPerMinutePerGpu × its GPUs) binds across two of its keys", async () => {
    // academy's entitlement comes to less than one GPU here: it gets one GPU's worth, 3 a minute.
    const s = await testServer({ replicas: source, now, gateway: { ...GATEWAY, requestsPerMinutePerGpu: 3 } });
    try {
      const admin = await s.token('academy', 'member-admin', 'ada');
      const a = await key(s, admin);
      const b = await key(s, admin);
      const send = (k: { secret: string }) => post(s, k.secret, 'chat/completions', chat('hi', { max_tokens: 1 }));
      const sent = [await send(a), await send(a), await send(b)];
      expect(sent.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(sent.map((r) => r.headers.get('x-ratelimit-limit-requests'))).toEqual(['3', '3', '3']);
      expect(sent.map((r) => r.headers.get('x-ratelimit-remaining-requests'))).toEqual(['2', '1', '0']);
      for (const k of [b, a]) {
        const r = await send(k);
        expect(r.status).toBe(429);
        expect(r.body.error.code).toBe('rate_limit_exceeded');
        expect(r.body.error.message).toContain('academy');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      expect(engine.calls).toHaveLength(3);
      // Another member's keys are not held by academy's limit.
      const bank = await key(s, await s.token('bank', 'member-admin', 'bo'));
      expect((await send(bank)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('day budgets', () => {
  it("a key's and a member's day budget survive a server restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-gateway-restart-'));
    const options = { replicas: source, now, gateway: { ...GATEWAY, members: { academy: { tokensPerDay: 30 } } } };
    try {
      const s1 = await testServer(options, dir);
      const pharma = await s1.token('pharma', 'member-admin', 'pat');
      const academy = await s1.token('academy', 'member-admin', 'ada');
      // 30 tokens a day; one answer costs the engine's 7 prompt tokens + 10 completion tokens.
      const k = await key(s1, pharma, { tokensPerDay: 30 });
      const first = await post(s1, k.secret, 'chat/completions', chat('hi'));
      expect(first.status).toBe(200);
      // The second answer gets the 13 left (10 as its cap): the key has 30 - 17 - 17 < 0 left.
      expect((await post(s1, k.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      const x = await key(s1, academy);
      expect((await post(s1, x.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      expect((await post(s1, x.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      await s1.close();

      const s2 = await testServer(options, dir);
      try {
        const before = calls();
        const r = await post(s2, k.secret, 'chat/completions', chat('hi'));
        expect(r.status).toBe(429);
        expect(r.body.error.code).toBe('insufficient_quota');
        expect(r.body.error.message).toContain('this key');
        expect(r.headers.get('x-should-retry')).toBe('false');
        // academy's budget is spent by its first key: a key made after the restart is refused too.
        const y = await key(s2, academy);
        const ry = await post(s2, y.secret, 'chat/completions', chat('hi'));
        expect(ry.status).toBe(429);
        expect(ry.body.error).toMatchObject({ code: 'insufficient_quota', message: expect.stringContaining('member academy') });
        expect(calls()).toBe(before);
        // What was metered before the restart is still there; pharma's other keys still work.
        expect(await usageOf(s2, pharma, k.id)).toMatchObject([{ requests: 2, promptTokens: 14 }]);
        expect((await post(s2, (await key(s2, pharma)).secret, 'chat/completions', chat('hi'))).status).toBe(200);
        // The budget renews with the UTC day.
        tick(86_400);
        expect((await post(s2, k.secret, 'chat/completions', chat('hi', { max_tokens: 1 }))).status).toBe(200);
      } finally {
        await s2.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('month budgets', () => {
  it("a key's and a member's month budget: refused once spent, kept across a restart on another day, renewed on the 1st; /v1/gateway/limits says where they stand", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabrik-gateway-month-'));
    // A clock of its own: the evening of 30 January 2027 (UTC).
    let at = Date.UTC(2027, 0, 30, 22) / 1000;
    const options = {
      replicas: source,
      now: () => at,
      gateway: { ...GATEWAY, tokensPerGpuMonth: 1_000_000, members: { academy: { tokensPerMonth: 30, tokensPerDay: null } } },
    };
    type Standing = { limit: number | null; used: number; remaining: number | null; resetsAt: string };
    type Limits = Record<'requestsPerMinute' | 'tokensPerMinute' | 'tokensPerDay' | 'tokensPerMonth', Standing>;
    const standing = async (s: TestServer, token: string) => {
      const r = await s.call<{ members: { member: string; limits: Limits; keys: { id: string; limits: Limits }[] }[] }>(
        token,
        'GET',
        '/v1/gateway/limits',
      );
      expect(r.status).toBe(200);
      return r.body.members[0];
    };
    try {
      const s1 = await testServer(options, dir);
      const pharma = await s1.token('pharma', 'member-admin', 'pat');
      const academy = await s1.token('academy', 'researcher', 'ada');
      // One answer costs the engine's 7 prompt tokens + 10 completion tokens: 30 a month holds two.
      const k = await key(s1, pharma, { tokensPerMonth: 30 });
      expect((await post(s1, k.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      expect((await post(s1, k.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      const spent = await post(s1, k.secret, 'chat/completions', chat('hi'));
      expect(spent.status).toBe(429);
      expect(spent.headers.get('x-should-retry')).toBe('false');
      expect(spent.body.error).toMatchObject({ code: 'insufficient_quota' });
      expect(spent.body.error.message).toContain('this key for this month (30 tokens)');
      expect(spent.body.error.message).toContain('renews at 2027-02-01T00:00:00.000Z');

      // The member's standing: its day budget from its entitlement, its month budget from tokensPerGpuMonth,
      // and the key's month budget spent (used can pass the limit: the engine counts its own prompt tokens).
      const p = await standing(s1, pharma);
      expect(p.member).toBe('pharma');
      expect(p.limits.tokensPerDay).toMatchObject({ used: 34, resetsAt: '2027-01-31T00:00:00.000Z' });
      expect(p.limits.tokensPerMonth.limit).toBe(Math.floor(p.limits.tokensPerDay.limit! / 10));
      expect(p.limits.tokensPerMonth).toMatchObject({ used: 34, resetsAt: '2027-02-01T00:00:00.000Z' });
      expect(p.limits.requestsPerMinute).toMatchObject({ used: 2, remaining: p.limits.requestsPerMinute.limit! - 2 });
      const kl = p.keys.find((x) => x.id === k.id)!.limits;
      expect(kl.tokensPerMonth).toMatchObject({ limit: 30, remaining: 0 });
      expect(kl.tokensPerDay).toMatchObject({ limit: null, remaining: null, used: 34 });

      // academy: a month budget of its own and no day budget, shared by all its keys.
      const a = await key(s1, academy);
      expect((await post(s1, a.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      expect((await post(s1, a.secret, 'chat/completions', chat('hi'))).status).toBe(200);
      const as = await standing(s1, academy);
      expect(as.limits.tokensPerDay.limit).toBeNull();
      expect(as.limits.tokensPerMonth).toMatchObject({ limit: 30, remaining: 0 });
      await s1.close();

      // The next day, after a restart: the day budgets start afresh, the month budgets are still spent.
      at += 3 * 3600;
      const s2 = await testServer(options, dir);
      try {
        const before = calls();
        expect((await post(s2, k.secret, 'chat/completions', chat('hi'))).status).toBe(429);
        const b = await post(s2, (await key(s2, academy)).secret, 'chat/completions', chat('hi'));
        expect(b.status).toBe(429);
        expect(b.body.error.message).toContain('member academy for this month');
        expect(calls()).toBe(before);
        const p2 = await standing(s2, pharma);
        expect(p2.limits.tokensPerDay.used).toBe(0);
        expect(p2.limits.tokensPerMonth.used).toBe(34);
        expect(p2.keys.find((x) => x.id === k.id)!.limits.tokensPerMonth.remaining).toBe(0);

        // 1 February: renewed.
        at = Date.UTC(2027, 1, 1, 0, 0, 1) / 1000;
        expect((await post(s2, k.secret, 'chat/completions', chat('hi'))).status).toBe(200);
        expect((await post(s2, a.secret, 'chat/completions', chat('hi'))).status).toBe(200);
        const p3 = await standing(s2, pharma);
        expect(p3.keys.find((x) => x.id === k.id)!.limits.tokensPerMonth).toMatchObject({
          used: 17,
          resetsAt: '2027-03-01T00:00:00.000Z',
        });
      } finally {
        await s2.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('zones', () => {
  it("a key's zones: a replica in another zone is never reached (503 no_replica_available)", async () => {
    const sov = await key(t, pharmaAdmin, { zones: ['sovereign'] });
    const r = await post(t, sov.secret, 'chat/completions', { ...chat('hi'), model: 'zoned' });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('no_replica_available');
    expect(engine.calls).toHaveLength(0);
    expect((await post(t, sov.secret, 'chat/completions', { ...chat('hi'), model: 'sovonly' })).status).toBe(200);
    expect(sovereign.calls).toHaveLength(1);

    const gen = await key(t, pharmaAdmin, { zones: ['general'] });
    expect((await post(t, gen.secret, 'chat/completions', { ...chat('hi'), model: 'zoned' })).status).toBe(200);
    expect(engine.calls).toHaveLength(1);
    const refused = await client(t, gen.secret)
      .chat.completions.create({ ...chat('hi'), model: 'sovonly' } as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 503, code: 'no_replica_available' });
    expect(sovereign.calls).toHaveLength(1);
  });

  it('a member bound to a zone is served there only, whatever its keys say', async () => {
    const admin = await t.token('defense', 'member-admin', 'dana');
    const d = await key(t, admin);
    const r = await post(t, d.secret, 'chat/completions', chat('hi'));
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('no_replica_available');
    expect(engine.calls).toHaveLength(0);
    expect((await post(t, d.secret, 'chat/completions', { ...chat('hi'), model: 'secure' })).status).toBe(200);
    expect(sovereign.calls).toHaveLength(1);
    // A key for a zone the member may not use could never be served: refused when it is made.
    const bad = await t.call<{ error: { code: string; field: string } }>(admin, 'POST', '/v1/keys', {
      name: 'k',
      zones: ['general'],
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.zones' });
  });
});

describe('reasoning models', () => {
  it('reserves reasoningMaxTokens for a request that names none and sends it as the cap', async () => {
    const { secret, id } = await key(t, pharmaAdmin);
    const c = client(t, secret);
    const r = await c.chat.completions.create({ model: 'thinker', messages: [{ role: 'user', content: 'think' }] });
    expect(thinker.calls[0].body.max_completion_tokens).toBe(12);
    expect(thinker.calls[0].body.max_tokens).toBeUndefined();
    // 5 words of reasoning, then the answer up to the cap of 12.
    expect(r.choices[0].message.content).toBe(ANSWER.slice(0, 7).join(' '));
    expect(r.usage).toMatchObject({ completion_tokens: 12, completion_tokens_details: { reasoning_tokens: 5 } });
    // A request that names its cap keeps it; the legacy completions API gets max_tokens.
    await c.chat.completions.create({ model: 'thinker', messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 8 });
    expect(thinker.calls[1].body.max_completion_tokens).toBe(8);
    await c.completions.create({ model: 'thinker', prompt: 'think' });
    expect(thinker.calls[2].body.max_tokens).toBe(12);
    // A reasoning stream, with usage: the reasoning is metered.
    const stream = await c.chat.completions.create({
      model: 'thinker',
      messages: [{ role: 'user', content: 'think' }],
      stream: true,
    });
    let thought = '';
    for await (const chunk of stream)
      thought += (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    expect(thought).toBe(THOUGHT.slice(0, 5).join(' '));
    expect(await usageOf(t, pharmaAdmin, id)).toEqual([
      // 12 + 8 + 12 + 12 completion tokens; reasoning 5 each (the completions API carries none, the engine says 5).
      expect.objectContaining({ model: 'thinker', requests: 4, completionTokens: 44, reasoningTokens: 20 }),
    ]);
  });

  it('a day budget smaller than the cap: the engine gets what is left, and a stream is cut cleanly there', async () => {
    const { secret, id } = await key(t, pharmaAdmin, { tokensPerDay: 10 });
    thinker.ignoreMaxTokens = true;
    // "user: think" is 3 tokens: 7 of the 10 are left for reasoning and answer.
    const r = await post(t, secret, 'chat/completions', { ...chat('think'), model: 'thinker', stream: true });
    expect(r.status).toBe(200);
    expect(thinker.calls[0].body.max_completion_tokens).toBe(7);
    const events = r.text
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const error = JSON.parse(events.at(-2)!) as { error: { code: string } };
    expect(error.error.code).toBe('insufficient_quota');
    const deltas = events
      .slice(0, -2)
      .map((e) => (JSON.parse(e) as { choices: { delta: { content?: string; reasoning_content?: string } }[] }).choices[0].delta);
    expect(deltas.map((d) => d.reasoning_content ?? '').join('')).toBe(THOUGHT.slice(0, 5).join(' '));
    expect(deltas.map((d) => d.content ?? '').join('')).toBe(ANSWER.slice(0, 2).join(' '));
    // Metered as the gateway counted it: 3 + 7, of which 5 reasoning; nothing is left.
    expect(await usageOf(t, pharmaAdmin, id)).toEqual([
      expect.objectContaining({ promptTokens: 3, completionTokens: 7, reasoningTokens: 5 }),
    ]);
    const again = await post(t, secret, 'chat/completions', { ...chat('think'), model: 'thinker' });
    expect(again.status).toBe(429);
    expect(again.body.error.code).toBe('insufficient_quota');
    expect(thinker.calls).toHaveLength(1);

    // Cut in the middle of the reasoning: only the reasoning that was sent is metered.
    const small = await key(t, pharmaAdmin, { tokensPerDay: 6 });
    const cut = await post(t, small.secret, 'chat/completions', { ...chat('think'), model: 'thinker', stream: true });
    expect(thinker.calls[1].body.max_completion_tokens).toBe(3);
    expect(cut.text).toContain('"code":"insufficient_quota"');
    expect(cut.text.match(/reasoning_content/g)).toHaveLength(3);
    expect(await usageOf(t, pharmaAdmin, small.id)).toEqual([
      expect.objectContaining({ promptTokens: 3, completionTokens: 3, reasoningTokens: 3 }),
    ]);
  });

  it('a chat request without a cap on a plain model: the engine stops at the reserved worst case, the stream ends whole', async () => {
    engine.ignoreMaxTokens = false;
    const { secret } = await key(t, pharmaAdmin);
    const r = await post(t, secret, 'chat/completions', chat('hi', { stream: true }));
    expect(engine.calls[0].body.max_completion_tokens).toBe(10);
    expect(r.text).not.toContain('"error"');
    expect(r.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const whole = await client(t, secret).chat.completions.create(chat('hi') as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(whole.usage?.completion_tokens).toBe(10);
  });

  it('a completion without a cap whose engine outruns the reserved worst case: cut there, and said so (not a budget)', async () => {
    // Completions keep the engine's own default length; this engine's is longer than the 10 reserved.
    engine.ignoreMaxTokens = true;
    const { secret, id } = await key(t, pharmaAdmin);
    const r = await post(t, secret, 'completions', { model: 'chat', prompt: 'Once', stream: true });
    expect(engine.calls[0].body.max_tokens).toBeUndefined();
    expect(r.text).toContain('"code":"max_tokens_reached"');
    expect(r.text).not.toContain('insufficient_quota');
    expect(r.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const [u] = await usageOf(t, pharmaAdmin, id);
    expect(u.completionTokens).toBe(10);
  });
});

describe('usage per period', () => {
  it('sums per UTC hour or day with the key names, through the API and fabrik usage --period', async () => {
    const { secret, id } = await key(t, pharmaAdmin, { name: 'ledger' });
    const hour = Math.floor(clock / 3600) * 3600;
    type Row = { start?: number; keyId: string; keyName: string | null; requests: number; promptTokens: number };
    const per = async (period: string) =>
      (await t.call<{ usage: Row[] }>(pharmaAdmin, 'GET', `/v1/usage?since=${hour}&period=${period}`)).body.usage.filter(
        (u) => u.keyId === id,
      );
    await post(t, secret, 'chat/completions', chat('hi'));
    await post(t, secret, 'chat/completions', chat('hi'));
    // An hour later, before anything was written: usage is stamped with the second each request ended.
    tick(3600);
    await post(t, secret, 'chat/completions', chat('hi'));
    expect(await per('hour')).toEqual([
      expect.objectContaining({ start: hour, keyName: 'ledger', requests: 2, promptTokens: 14 }),
      expect.objectContaining({ start: hour + 3600, keyName: 'ledger', requests: 1, promptTokens: 7 }),
    ]);
    const days = await per('day');
    expect(days.map((u) => u.requests).reduce((a, b) => a + b)).toBe(3);
    expect(days.every((u) => u.start! % 86_400 === 0)).toBe(true);
    const whole = (await t.call<{ usage: Row[] }>(pharmaAdmin, 'GET', `/v1/usage?since=${hour}`)).body.usage;
    expect(whole.filter((u) => u.keyId === id)).toEqual([expect.not.objectContaining({ start: expect.anything() })]);
    const bad = await t.call<{ error: { code: string; field: string } }>(pharmaAdmin, 'GET', '/v1/usage?period=week');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'query.period' });

    const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const since = new Date(hour * 1000).toISOString();
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', main, 'usage', '--since', since, '--period', 'hour'], {
        env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: pharmaAdmin },
      });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`exit ${code}`))));
    });
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^START\s+MEMBER\s+KEY\s+NAME\s+MODEL\s+REQUESTS\s+PROMPT\s+COMPLETION\s+REASONING$/);
    const mine = lines.filter((l) => l.includes(id)).map((l) => l.trim().split(/\s+/));
    expect(mine.map((c) => [c[0], c[3], c[5]])).toEqual([
      [new Date(hour * 1000).toISOString().slice(0, 16) + 'Z', 'ledger', '2'],
      [new Date((hour + 3600) * 1000).toISOString().slice(0, 16) + 'Z', 'ledger', '1'],
    ]);
  });
});

describe('embeddings', () => {
  it('answers, meters prompt tokens and no completion tokens, and refuses a model the key may not use', async () => {
    const { secret, id } = await key(t, pharmaAdmin, { models: ['embed'] });
    const e = await client(t, secret).embeddings.create({ model: 'embed', input: 'hello world', encoding_format: 'float' });
    expect(e.data[0].embedding).toEqual([0.1, 0.2]);
    expect(engine.calls[0].path).toBe('/v1/embeddings');
    expect(engine.calls[0].body.max_tokens).toBeUndefined();
    expect(engine.calls[0].body.max_completion_tokens).toBeUndefined();
    expect(await usageOf(t, pharmaAdmin, id)).toEqual([
      {
        member: 'pharma',
        keyId: id,
        keyName: 'k',
        model: 'embed',
        requests: 1,
        promptTokens: 3,
        completionTokens: 0,
        reasoningTokens: 0,
      },
    ]);
    const chatOnly = await key(t, pharmaAdmin, { models: ['chat'] });
    const err = await client(t, chatOnly.secret)
      .embeddings.create({ model: 'embed', input: 'x' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, code: 'model_not_found' });
    expect(engine.calls).toHaveLength(1);
  });
});

interface LogView {
  keyId: string;
  model: string;
  at: string;
  request: unknown;
  completion: string;
}
const logs = (token: string, query = '') =>
  t.call<{ member: string; logs: LogView[]; error?: { code: string; field?: string } }>(token, 'GET', `/v1/gateway/logs${query}`);

describe('prompt and completion logging', () => {
  it('off by default; a member admin turns it on (not an operator or a researcher), reads its own; off again stops it', async () => {
    const researcher = await t.token('pharma', 'researcher', 'rita');
    const bankAdmin = await t.token('bank', 'member-admin', 'ben');
    const { secret, id } = await key(t, pharmaAdmin);
    const c = client(t, secret);
    await c.chat.completions.create(chat('do not keep this') as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect((await t.call(pharmaAdmin, 'GET', '/v1/gateway/settings')).body).toEqual({ member: 'pharma', logging: false });
    expect((await logs(pharmaAdmin)).body.logs).toEqual([]);

    const on = { logging: true };
    expect((await t.call(t.operator, 'PUT', '/v1/gateway/settings', { ...on, member: 'pharma' })).status).toBe(403);
    expect((await t.call(researcher, 'PUT', '/v1/gateway/settings', on)).status).toBe(403);
    expect((await t.call(bankAdmin, 'PUT', '/v1/gateway/settings', { ...on, member: 'pharma' })).status).toBe(403);
    expect((await t.call(pharmaAdmin, 'PUT', '/v1/gateway/settings', on)).body).toEqual({ member: 'pharma', logging: true });

    const t0 = clock;
    await c.chat.completions.create(chat('remember the milk') as OpenAI.ChatCompletionCreateParamsNonStreaming);
    tick(1);
    const stream = await c.chat.completions.create({
      ...chat('and the eggs'),
      stream: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    for await (const chunk of stream) void chunk;
    tick(1);
    await c.completions.create({ model: 'chat', prompt: 'once upon', max_tokens: 3 });

    const all = await logs(pharmaAdmin);
    expect(all.status).toBe(200);
    expect(all.body.member).toBe('pharma');
    const answer = ANSWER.slice(0, 10).join(' ');
    expect(all.body.logs).toEqual([
      {
        keyId: id,
        model: 'chat',
        at: new Date((t0 + 2) * 1000).toISOString(),
        request: 'once upon',
        completion: 'The quick brown',
      },
      {
        keyId: id,
        model: 'chat',
        at: new Date((t0 + 1) * 1000).toISOString(),
        request: [{ role: 'user', content: 'and the eggs' }],
        completion: answer,
      },
      {
        keyId: id,
        model: 'chat',
        at: new Date(t0 * 1000).toISOString(),
        request: [{ role: 'user', content: 'remember the milk' }],
        completion: answer,
      },
    ]);
    // Newest first, bounded, and by time.
    expect((await logs(pharmaAdmin, '?limit=1')).body.logs.map((l) => l.request)).toEqual(['once upon']);
    expect((await logs(pharmaAdmin, `?since=${t0 + 1}`)).body.logs).toHaveLength(2);
    expect((await logs(pharmaAdmin, `?until=${t0 + 1}`)).body.logs).toHaveLength(1);
    for (const q of ['?limit=0', '?limit=1001', '?limit=x', '?since=-1', '?until=soon', '?colour=red']) {
      const r = await logs(pharmaAdmin, q);
      expect(r.status, q).toBe(400);
      expect(r.body.error?.code, q).toBe('VALIDATION_FAILED');
    }

    // Only pharma's admins read pharma's logs; another member reads its own (none); never a 5xx.
    expect((await logs(t.operator)).status).toBe(403);
    expect((await logs(t.operator, '?member=pharma')).status).toBe(403);
    expect((await logs(researcher)).status).toBe(403);
    expect((await logs(bankAdmin)).body).toEqual({ member: 'bank', logs: [] });
    expect((await logs(bankAdmin, '?member=pharma')).status).toBe(404);

    const audit = await t.call<{ events: { kind: string; actor: string; member: string | null; data: { count?: number } }[] }>(
      t.operator,
      'GET',
      '/v1/audit/events?limit=1000',
    );
    const reads = audit.body.events.filter((e) => e.kind === 'gateway.logs.read');
    expect(reads.filter((e) => e.member === 'pharma' && e.actor === 'alice').length).toBeGreaterThanOrEqual(5);
    expect(reads.some((e) => e.member === 'pharma' && e.data.count === 3)).toBe(true);
    expect(audit.body.events.some((e) => e.kind === 'gateway.logging.changed' && e.member === 'pharma')).toBe(true);

    // A stream cut at the budget is kept as the client got it.
    const small = await key(t, pharmaAdmin, { tokensPerDay: 8 });
    engine.ignoreMaxTokens = true;
    tick(1);
    const cut = await post(t, small.secret, 'chat/completions', chat('cut', { stream: true }));
    expect(cut.text).toContain('"code":"insufficient_quota"');
    const [kept] = (await logs(pharmaAdmin, '?limit=1')).body.logs;
    expect(kept).toMatchObject({ keyId: small.id, completion: ANSWER.slice(0, 5).join(' ') });

    // Off again: nothing new is kept.
    expect((await t.call(pharmaAdmin, 'PUT', '/v1/gateway/settings', { logging: false })).status).toBe(200);
    tick(1);
    await c.chat.completions.create(chat('forget this') as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect((await logs(pharmaAdmin)).body.logs).toHaveLength(4);
  });

  it('fabrik gateway logging on|off and fabrik gateway logs', async () => {
    const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const admin = await t.token('invest', 'member-admin', 'ivy');
    const fabrik = (token: string, args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', main, 'gateway', ...args], {
          env: { ...process.env, FABRIK_URL: t.server.url, FABRIK_TOKEN: token },
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('close', (code) => resolve({ code, out, err }));
      });
    replicas.push(replica('i-chat', 'invest', 'chat', engine.url));
    const { secret, id } = await key(t, admin);
    const on = await fabrik(admin, ['logging', 'on']);
    expect(on.code, on.err).toBe(0);
    expect(on.out.trim()).toBe('logging on for invest: prompts and completions are kept');
    await client(t, secret).chat.completions.create(chat('what is\nthe yield') as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const [table, asJson, denied] = await Promise.all([
      fabrik(admin, ['logs', '--limit', '10']),
      fabrik(admin, ['logs', '--json']),
      fabrik(t.operator, ['logs']),
    ]);
    expect(table.code, table.err).toBe(0);
    const lines = table.out.trim().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+KEY\s+MODEL\s+REQUEST\s+COMPLETION$/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(id);
    expect(lines[1]).toContain('what is the yield');
    expect(lines[1]).toContain('The quick brown');
    expect(JSON.parse(asJson.out)).toEqual([expect.objectContaining({ keyId: id, completion: ANSWER.slice(0, 10).join(' ') })]);
    expect(denied.code).toBe(1);
    expect(denied.err).toContain('[FORBIDDEN]');
    const off = await fabrik(admin, ['logging', 'off']);
    expect(off.out.trim()).toBe('logging off for invest: prompts and completions are not kept');
    expect((await t.call(admin, 'GET', '/v1/gateway/settings')).body).toEqual({ member: 'invest', logging: false });
  });
});

describe('expired keys', () => {
  it('a key whose time ran out is refused with 401 and reaches no replica', async () => {
    const { secret } = await key(t, pharmaAdmin, { ttlDays: 1 });
    expect((await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 1 }))).status).toBe(200);
    tick(86_400);
    const r = await post(t, secret, 'chat/completions', chat('hi', { max_tokens: 1 }));
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('invalid_api_key');
    expect(r.body.error).toMatchObject({ message: expect.stringContaining('expired') });
    expect(engine.calls).toHaveLength(1);
  });
});

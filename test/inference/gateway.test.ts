// The gateway through the official `openai` client: answers, streams, usage, errors, budgets and
// their cut streams, a replica dying mid-stream, and isolation between members and classifications.
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEngine } from '../../src/inference/engine/index.js';
import type { Replica, ReplicaSource } from '../../src/inference/replicas.js';
import { testServer, type TestServer } from '../server/helpers.js';
import { ANSWER, fakeEngine, type FakeEngine } from './upstream.js';

type R = Replica & { healthy: boolean };
const replicas: R[] = [];
const woken: string[] = [];
const source: ReplicaSource = {
  replicas: (member, model) => replicas.filter((r) => r.member === member && r.model === model),
  // `sleepy` is a deployment scaled to zero: asking wakes it.
  wake: (member, model) => (model === 'sleepy' ? woken.push(`${member}/${model}`) > 0 : false),
  models: (member) =>
    [...new Set(replicas.filter((r) => r.member === member).map((r) => r.model))].map((model) => ({
      model,
      deployment: model,
      createdAt: 1,
    })),
};
const replica = (id: string, member: string, model: string, url: string, more: Partial<R> = {}): R => ({
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

let t: TestServer;
let a1: FakeEngine, a2: FakeEngine, b1: FakeEngine, restricted: FakeEngine;
let pharmaAdmin: string;
const base = () => `${t.server.url}/v1`;
const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: base(), maxRetries: 2 });

async function key(body: Record<string, unknown>, token = pharmaAdmin): Promise<string> {
  const r = await t.call<{ secret: string }>(token, 'POST', '/v1/keys', { name: 'k', ...body });
  if (r.status !== 201) throw new Error(`key: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.secret;
}
const allCalls = () => a1.calls.length + a2.calls.length;

beforeAll(async () => {
  [a1, a2, b1, restricted] = await Promise.all([fakeEngine(), fakeEngine(), fakeEngine(), fakeEngine()]);
  replicas.push(
    replica('a1', 'pharma', 'chat', a1.url),
    replica('a2', 'pharma', 'chat', a2.url),
    replica('b1', 'bank', 'chat', b1.url),
    replica('r1', 'pharma', 'secret', restricted.url, { accreditations: ['restricted'] }),
    replica('r2', 'pharma', 'open', restricted.url, { accreditations: ['public'] }),
  );
  t = await testServer({ replicas: source, gateway: { downSeconds: 60, flushSeconds: 0.2 } });
  pharmaAdmin = await t.token('pharma', 'member-admin', 'alice');
});
afterAll(async () => {
  await t?.close();
  await Promise.all([a1, a2, b1, restricted].map((e) => e?.close()));
});
beforeEach(() => {
  for (const e of [a1, a2, b1, restricted]) {
    e.calls.length = 0;
    e.ignoreMaxTokens = false;
    e.dieAfter = null;
    e.fail = false;
    e.omitUsage = false;
  }
});

describe('the OpenAI API', () => {
  it('answers chat and completions, whole and streamed, with usage and rate-limit headers', async () => {
    const c = client(await key({}));
    const chat = await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hello there' }] });
    expect(chat.choices[0].message.content).toBe(ANSWER.join(' '));
    expect(chat.usage?.completion_tokens).toBe(ANSWER.length);
    const done = await c.completions.create({ model: 'chat', prompt: 'once upon' });
    expect(done.choices[0].text).toBe(ANSWER.join(' '));

    const stream = await c.chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(ANSWER.join(' '));
    expect(usage?.completion_tokens).toBe(ANSWER.length);
    // Upstream got the member's cache salt and was asked for usage.
    const sent = [...a1.calls, ...a2.calls].at(-1)!.body;
    expect(typeof sent.cache_salt).toBe('string');

    const { response } = await c.completions.create({ model: 'chat', prompt: 'x', stream: true }).withResponse();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBeTruthy();
    expect(response.headers.get('x-ratelimit-remaining-tokens')).toBeTruthy();
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/s$/);
    const raw = await response.text();
    expect(raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(raw).not.toContain('"usage"');
  });

  it('lists the models the key may call, and meters usage per member, key and model', async () => {
    const secret = await key({ models: ['chat'] });
    const c = client(secret);
    const models = await c.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['chat']);
    await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'one two' }], max_tokens: 3 });
    const u = await t.call<{ usage: { keyId: string; model: string; completionTokens: number; requests: number }[] }>(
      pharmaAdmin,
      'GET',
      '/v1/usage',
    );
    expect(u.status).toBe(200);
    const keys = await t.call<{ keys: { id: string; prefix: string }[] }>(pharmaAdmin, 'GET', '/v1/keys');
    const id = keys.body.keys.find((k) => secret.startsWith(k.prefix))!.id;
    expect(u.body.usage.find((x) => x.keyId === id)).toMatchObject({ model: 'chat', requests: 1, completionTokens: 3 });
    // Another member sees none of it.
    const bank = await t.token('bank', 'member-admin', 'bob');
    const ub = await t.call<{ usage: { member: string }[] }>(bank, 'GET', '/v1/usage');
    expect(ub.body.usage.every((x) => x.member === 'bank')).toBe(true);
  });

  it('reports time to first token, inter-token latency and duration per member and model in /metrics', async () => {
    const metric = async (name: string) => {
      const text = String((await t.call(t.operator, 'GET', '/metrics')).body);
      const value = (suffix: string) =>
        Number(new RegExp(`^${name}_${suffix}\\{member="pharma",model="chat"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
      return { count: value('count'), sum: value('sum') };
    };
    const before = await Promise.all(
      ['time_to_first_token', 'inter_token_latency', 'request_duration'].map((m) => metric(`fabrik_gateway_${m}_seconds`)),
    );
    const c = client(await key({ models: ['chat'], name: 'timed' }));
    const stream = await c.chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'go' }],
      max_tokens: 5,
      stream: true,
    });
    for await (const _ of stream) void _;
    await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'go' }], max_tokens: 5 });
    const [ttft, itl, duration] = (
      await Promise.all(
        ['time_to_first_token', 'inter_token_latency', 'request_duration'].map((m) => metric(`fabrik_gateway_${m}_seconds`)),
      )
    ).map((m, i) => ({ count: m.count - before[i].count, sum: m.sum - before[i].sum }));
    // One stream: one TTFT and one mean ITL (the fake engine waits 1 ms between its tokens); two requests timed whole.
    expect(ttft.count).toBe(1);
    expect(ttft.sum).toBeGreaterThan(0);
    expect(itl.count).toBe(1);
    expect(itl.sum).toBeGreaterThanOrEqual(0.0005);
    expect(itl.sum).toBeLessThan(0.5);
    expect(duration.count).toBe(2);
    expect(duration.sum).toBeGreaterThan(ttft.sum);
  });

  it('counts the tokens itself when the engine reports no usage: every choice of n, apart', async () => {
    for (const e of [a1, a2]) e.omitUsage = true;
    const secret = await key({ models: ['chat'], name: 'counting' });
    const r = await client(secret).chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'one two' }],
      max_tokens: 3,
      n: 2,
    });
    expect(r.choices.map((c) => c.message.content)).toEqual(['The quick brown', 'The quick brown']);
    expect(r.usage).toBeUndefined();
    const keys = await t.call<{ keys: { id: string; prefix: string }[] }>(pharmaAdmin, 'GET', '/v1/keys');
    const id = keys.body.keys.find((k) => secret.startsWith(k.prefix))!.id;
    const u = await t.call<{ usage: { keyId: string; completionTokens: number }[] }>(pharmaAdmin, 'GET', '/v1/usage');
    // 3 words a choice: 6, not 5 as "brownThe" would count joined.
    expect(u.body.usage.find((x) => x.keyId === id)).toMatchObject({ completionTokens: 6 });
  });

  it('refuses in the OpenAI error shape: no key, revoked key, unknown model, bad input', async () => {
    const secret = await key({ models: ['chat'] });
    const c = client(secret);
    await expect(c.chat.completions.create({ model: 'other', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject(
      { status: 404, code: 'model_not_found' },
    );
    const bad = await fetch(`${base()}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: '{"model":"chat"',
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { type: expect.any(String), message: expect.any(String) } });
    const none = await fetch(`${base()}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    const keys = await t.call<{ keys: { id: string; prefix: string }[] }>(pharmaAdmin, 'GET', '/v1/keys');
    const id = keys.body.keys.find((k) => secret.startsWith(k.prefix))!.id;
    expect((await t.call(pharmaAdmin, 'DELETE', `/v1/keys/${id}`)).status).toBe(200);
    // Revocation holds at once, in this process.
    await expect(
      client(secret).chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 401 });
    const audit = await t.call<{ events: { kind: string }[] }>(t.operator, 'GET', '/v1/audit/events?limit=1000');
    const kinds = audit.body.events.map((e) => e.kind);
    expect(kinds).toContain('gateway.key.created');
    expect(kinds).toContain('gateway.key.revoked');
  });

  it('answers bad bodies with an OpenAI-shaped 4xx, never a 5xx', async () => {
    const secret = await key({});
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.json(),
          fc
            .record(
              {
                model: fc.oneof(fc.string(), fc.integer(), fc.constant('chat')),
                messages: fc.anything(),
                prompt: fc.anything(),
                max_tokens: fc.anything(),
                stream: fc.anything(),
                n: fc.anything(),
              },
              { requiredKeys: [] },
            )
            .map((v) => JSON.stringify(v)),
        ),
        fc.constantFrom('chat/completions', 'completions', 'embeddings'),
        async (body, path) => {
          const r = await fetch(`${base()}/${path}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
            body,
          });
          const text = await r.text();
          expect(r.status, text).toBeLessThan(500);
          if (r.status >= 400) expect((JSON.parse(text) as { error: { message: string } }).error.message).toBeTruthy();
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('budgets', () => {
  it('refuses an exhausted budget with 429 and x-should-retry: false, and the client does not retry', async () => {
    const c = client(await key({ tokensPerDay: 30 }));
    await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'a b c' }] });
    const before = allCalls();
    const err = await c.chat.completions
      .create({ model: 'chat', messages: [{ role: 'user', content: 'a b c' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toMatchObject({ status: 429, code: 'insufficient_quota' });
    expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('false');
    expect(allCalls()).toBe(before);
    // Operators see refusals and metered tokens per member and model in /metrics.
    const metrics = String((await t.call(t.operator, 'GET', '/metrics')).body);
    expect(metrics).toMatch(/^fabrik_gateway_errors_total\{status="429",code="insufficient_quota"\} [1-9]/m);
    expect(metrics).toMatch(/^fabrik_gateway_requests_total\{member="pharma",model="chat"\} [1-9]/m);
    expect(metrics).toMatch(/^fabrik_gateway_tokens_total\{member="pharma",model="chat",kind="completion"\} [1-9]/m);
  });

  it('cuts a stream cleanly when the budget runs out mid-stream, and settles to what was produced', async () => {
    a1.ignoreMaxTokens = a2.ignoreMaxTokens = true;
    const c = client(await key({ tokensPerDay: 15 }));
    const stream = await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'go' }], stream: true });
    let text = '';
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(String((err as Error).message)).toMatch(/budget/);
    // "user: go" is 3 prompt tokens; 12 completion tokens fit in 15.
    expect(text.split(' ').length).toBe(12);
    // Nothing left: the next request is refused before it reaches a replica.
    await expect(c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'go' }] })).rejects.toMatchObject(
      { status: 429 },
    );
  });
});

describe('replicas', () => {
  it('a replica killed mid-stream: a clean error, the budget settles to what was produced, the next request goes to a healthy replica', async () => {
    const secret = await key({ tokensPerDay: 1000 });
    const c = client(secret);
    a1.dieAfter = a2.dieAfter = 4;
    const stream = await c.chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'tell me' }],
      stream: true,
    });
    let text = '';
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(text.split(' ').length).toBe(4);
    const dead = a1.calls.length ? a1 : a2;
    const alive = dead === a1 ? a2 : a1;
    a1.dieAfter = a2.dieAfter = null;
    await dead.close();
    try {
      const r = await c.chat.completions.create({
        model: 'chat',
        messages: [{ role: 'user', content: 'tell me' }],
        max_tokens: 5,
      });
      expect(r.choices[0].message.content).toBe(ANSWER.slice(0, 5).join(' '));
      expect(alive.calls.length).toBe(1);
      // 4 prompt tokens + 4 produced, then 4 + 5 with exact usage from the engine (7 prompt tokens there).
      const u = await t.call<{ usage: { keyId: string; promptTokens: number; completionTokens: number }[] }>(
        pharmaAdmin,
        'GET',
        '/v1/usage',
      );
      const keys = await t.call<{ keys: { id: string; prefix: string }[] }>(pharmaAdmin, 'GET', '/v1/keys');
      const id = keys.body.keys.find((k) => secret.startsWith(k.prefix))!.id;
      expect(u.body.usage.find((x) => x.keyId === id)).toMatchObject({ completionTokens: 9 });
    } finally {
      // Back for the other tests.
      const again = await fakeEngine();
      const i = replicas.findIndex((r) => r.url === dead.url);
      replicas[i] = { ...replicas[i], id: `${replicas[i].id}-new`, url: again.url };
      if (dead === a1) a1 = again;
      else a2 = again;
    }
  });

  it('retries on another replica when one fails before the first byte', async () => {
    const c = client(await key({}));
    a1.fail = true;
    a2.fail = false;
    for (let i = 0; i < 4; i++)
      await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: `q${i} x` }], max_tokens: 2 });
    expect(a2.calls.length).toBeGreaterThanOrEqual(4);
  });
});

describe('replica tokens: a replica serves the gateway only', () => {
  it("presents each replica's token upstream, and a replica that refuses it is a failed replica, never the client's 401", async () => {
    // The bundled engine as a replica job runs it: it requires its key on every route.
    const engine = await startEngine({ model: 'guarded', apiKey: 'token-of-g1' });
    try {
      const k = await key({ models: ['guarded'] });
      const ask = () =>
        fetch(`${base()}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'guarded',
            messages: [{ role: 'user', content: 'Shall I compare thee' }],
            max_tokens: 3,
          }),
        });
      // A replica whose token the engine does not take (its key replaced since it started).
      replicas.push(replica('g0', 'pharma', 'guarded', engine.url, { authorization: 'Bearer token-of-another' }));
      const refused = await ask();
      expect(refused.status).toBe(502);
      const err = ((await refused.json()) as { error: { code: string; message: string } }).error;
      expect(err.code).toBe('upstream_unavailable');
      expect(err.message).toContain('replica answered 401');

      replicas.push(replica('g1', 'pharma', 'guarded', engine.url, { authorization: 'Bearer token-of-g1' }));
      const served = await ask();
      expect(served.status).toBe(200);
      expect(((await served.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(3);
      // The same engine called without the gateway (another job on the node): refused.
      expect((await fetch(`${engine.url}/v1/models`)).status).toBe(401);
    } finally {
      for (const id of ['g0', 'g1']) {
        const i = replicas.findIndex((r) => r.id === id);
        if (i >= 0) replicas.splice(i, 1);
      }
      await engine.close();
    }
  });
});

describe('scale to zero', () => {
  it('wakes a deployment scaled to zero and answers 503 with retry-after, not 404', async () => {
    const k = await key({ models: ['sleepy'] });
    const res = await fetch(`${base()}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sleepy', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('model_waking');
    expect(woken).toEqual(['pharma/sleepy']);
  });
});

describe('isolation', () => {
  it("a key of member A never reaches member B's deployment", async () => {
    const c = client(await key({}));
    // bank serves `chat` too, but only bank's keys reach it.
    for (let i = 0; i < 10; i++) await c.completions.create({ model: 'chat', prompt: `p${i}`, max_tokens: 1 });
    expect(b1.calls.length).toBe(0);
    const bankAdmin = await t.token('bank', 'member-admin', 'bea');
    const cb = client(await key({}, bankAdmin));
    for (let i = 0; i < 5; i++) await cb.completions.create({ model: 'chat', prompt: `p${i}`, max_tokens: 1 });
    expect(b1.calls.length).toBe(5);
    // The cache salts differ: the engines' prefix caches never mix members.
    expect(b1.calls[0].body.cache_salt).not.toBe([...a1.calls, ...a2.calls][0].body.cache_salt);
  });

  it('a restricted key never reaches a replica not accredited for restricted data (fail closed: 503)', async () => {
    const c = client(await key({ classification: 'restricted' }));
    const err = await c.chat.completions
      .create({ model: 'open', messages: [{ role: 'user', content: 'x' }] }, { maxRetries: 0 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: 'no_replica_available' });
    expect(restricted.calls.length).toBe(0);
    await c.chat.completions.create({ model: 'secret', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    expect(restricted.calls.length).toBe(1);
    // And a public-only replica answers public keys.
    const p = client(await key({ classification: 'public' }));
    await p.chat.completions.create({ model: 'open', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    expect(restricted.calls.length).toBe(2);
  });

  it("prefix affinity: one member's shared prefix goes to one replica; another member never shares it", async () => {
    const c = client(await key({}));
    const prefix = 'You are a careful assistant for a pharmaceutical company. '.repeat(12);
    for (let i = 0; i < 8; i++) await c.completions.create({ model: 'chat', prompt: prefix + `question ${i}`, max_tokens: 1 });
    expect([a1.calls.length, a2.calls.length].sort()).toEqual([0, 8]);
    const bankAdmin = await t.token('bank', 'member-admin', 'bart');
    const cb = client(await key({}, bankAdmin));
    await cb.completions.create({ model: 'chat', prompt: prefix, max_tokens: 1 });
    expect(a1.calls.length + a2.calls.length).toBe(8);
  });
});

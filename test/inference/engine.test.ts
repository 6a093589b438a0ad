// The bundled engine through the official `openai` client: if that client is content, so are the
// tools members use, and the gateway can be tested against the engine as against vLLM.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEngine, type RunningEngine } from '../../src/inference/engine/index.js';
import { countTokens } from '../../src/inference/tokens.js';

const FABRIK = new URL('../../bin/fabrik', import.meta.url).pathname;

let plain: RunningEngine;
let thinker: RunningEngine;
let timed: RunningEngine;

const client = (e: RunningEngine) => new OpenAI({ baseURL: `${e.url}/v1`, apiKey: 'unused', maxRetries: 0 });
const ask = (content: string) => [{ role: 'user' as const, content }];

/** What the engine adds to the OpenAI types: vLLM's field for the reasoning text. */
type WithReasoning = { reasoning_content?: string };

beforeAll(async () => {
  plain = await startEngine({ model: 'fab-small' });
  thinker = await startEngine({ model: 'fab-think', reasoning: true });
  timed = await startEngine({ model: 'fab-timed', ttftMs: 80, itlMs: 15 });
});

afterAll(async () => {
  await Promise.all([plain?.close(), thinker?.close(), timed?.close()]);
});

describe('chat completions', () => {
  it('answers with text learned from the corpus, and usage counted with the shared tokenizer', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are a poet.' },
      { role: 'user' as const, content: 'Shall I compare thee to a summer' },
    ];
    const r = await client(plain).chat.completions.create({ model: 'fab-small', messages, seed: 1 });
    const text = r.choices[0].message.content ?? '';
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('fab-small');
    expect(text.length).toBeGreaterThan(0);
    expect(r.choices[0].finish_reason).toBe('stop');
    // The prompt's last words seed the chain: "…to a summer" goes on as in sonnet 18.
    expect(text.startsWith("'s")).toBe(true);
    expect(r.usage?.prompt_tokens).toBe(countTokens('You are a poet.') + countTokens('Shall I compare thee to a summer'));
    expect(r.usage?.completion_tokens).toBe(countTokens(text));
    expect(r.usage?.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
    expect(r.usage?.completion_tokens_details?.reasoning_tokens).toBe(0);
  });

  it('streams one token per chunk, ends with [DONE], and reports usage in a last chunk when asked', async () => {
    const stream = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('We hold these truths'),
      stream: true,
      stream_options: { include_usage: true },
      seed: 2,
    });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      const choice = c.choices[0];
      if (!choice) continue;
      if (choice.delta.content) {
        text += choice.delta.content;
        chunks++;
      }
      finish = choice.finish_reason ?? finish;
    }
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBe(chunks);
    expect(usage?.completion_tokens).toBe(countTokens(text));
    expect(usage?.prompt_tokens).toBe(4);
    // The same seed gives the same text, streamed or not.
    const whole = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('We hold these truths'),
      seed: 2,
    });
    expect(whole.choices[0].message.content).toBe(text);
  });

  it('honours max_completion_tokens exactly, and max_tokens too', async () => {
    for (const cap of [1, 7, 23]) {
      const r = await client(plain).chat.completions.create({
        model: 'fab-small',
        messages: ask('Liberty'),
        max_completion_tokens: cap,
      });
      expect(r.choices[0].finish_reason).toBe('length');
      expect(r.usage?.completion_tokens).toBe(cap);
      expect(countTokens(r.choices[0].message.content ?? '')).toBe(cap);
    }
    const r = await client(plain).chat.completions.create({ model: 'fab-small', messages: ask('Liberty'), max_tokens: 5 });
    expect(r.usage?.completion_tokens).toBe(5);
  });

  it('stops before a stop sequence', async () => {
    const first = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('time'),
      seed: 9,
      max_tokens: 30,
    });
    const words = (first.choices[0].message.content ?? '').split(' ');
    const stop = ` ${words[5]}`;
    const r = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('time'),
      seed: 9,
      max_tokens: 30,
      stop,
    });
    const text = r.choices[0].message.content ?? '';
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(text).toBe(first.choices[0].message.content!.slice(0, first.choices[0].message.content!.indexOf(stop)));
    expect(r.usage?.completion_tokens).toBe(countTokens(text));
  });

  it('samples greedily at temperature 0, whatever the seed', async () => {
    const a = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('And God said'),
      temperature: 0,
      seed: 1,
    });
    const b = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('And God said'),
      temperature: 0,
      seed: 2,
    });
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
  });
});

describe('a reasoning model', () => {
  it('thinks first (reasoning_content, counted inside completion_tokens), then answers', async () => {
    const r = await client(thinker).chat.completions.create({
      model: 'fab-think',
      messages: ask('Four score and seven years ago'),
      reasoning_effort: 'low',
    });
    const m = r.choices[0].message as (typeof r.choices)[0]['message'] & WithReasoning;
    expect(countTokens(m.reasoning_content ?? '')).toBe(32);
    expect(r.usage?.completion_tokens_details?.reasoning_tokens).toBe(32);
    expect(r.usage?.completion_tokens).toBe(32 + countTokens(m.content ?? ''));
    const high = await client(thinker).chat.completions.create({
      model: 'fab-think',
      messages: ask('x'),
      reasoning_effort: 'high',
    });
    expect(high.usage?.completion_tokens_details?.reasoning_tokens).toBe(512);
  });

  it('streams the reasoning as delta.reasoning_content, and max_completion_tokens caps reasoning plus answer', async () => {
    const stream = await client(thinker).chat.completions.create({
      model: 'fab-think',
      messages: ask('Liberty'),
      reasoning_effort: 'low',
      max_completion_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
    let reasoning = 0;
    let answer = 0;
    let order = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      const d = c.choices[0]?.delta as (OpenAI.Chat.ChatCompletionChunk.Choice.Delta & WithReasoning) | undefined;
      if (d?.reasoning_content) {
        reasoning++;
        order += 'r';
      }
      if (d?.content) {
        answer++;
        order += 'a';
      }
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(order).toMatch(/^r+a+$/);
    expect(reasoning).toBe(32);
    expect(answer).toBe(8);
    expect(finish).toBe('length');
    expect(usage).toMatchObject({ completion_tokens: 40, completion_tokens_details: { reasoning_tokens: 32 } });

    // A cap below the reasoning budget: all of it is thinking, no answer.
    const cut = await client(thinker).chat.completions.create({
      model: 'fab-think',
      messages: ask('x'),
      max_completion_tokens: 10,
    });
    expect(cut.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: '' } });
    expect(cut.usage).toMatchObject({ completion_tokens: 10, completion_tokens_details: { reasoning_tokens: 10 } });
  });
});

describe('completions', () => {
  it('continues the prompt, streamed or not, with the same usage', async () => {
    const r = await client(plain).completions.create({
      model: 'fab-small',
      prompt: 'Four score and seven',
      max_tokens: 12,
      seed: 4,
    });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text.startsWith(' years ago')).toBe(true);
    expect(r.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 12, total_tokens: 16 });
    const stream = await client(plain).completions.create({
      model: 'fab-small',
      prompt: 'Four score and seven',
      max_tokens: 12,
      seed: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.text ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(r.choices[0].text);
    expect(usage?.completion_tokens).toBe(12);
  });
});

describe('timing', () => {
  it('gives the first token after about ttft and the next ones every itl', async () => {
    const started = performance.now();
    const stream = await client(timed).chat.completions.create({
      model: 'fab-timed',
      messages: ask('Liberty'),
      max_tokens: 21,
      stream: true,
    });
    const at: number[] = [];
    for await (const c of stream) if (c.choices[0]?.delta.content) at.push(performance.now() - started);
    expect(at).toHaveLength(21);
    expect(at[0]).toBeGreaterThanOrEqual(78);
    // Upper bounds leave room for a busy CI machine running other test files at the same time.
    expect(at[0]).toBeLessThan(80 + 80);
    const itl = (at[20] - at[0]) / 20;
    expect(itl).toBeGreaterThan(13);
    expect(itl).toBeLessThan(22);
  });

  it('answers a request that does not stream once the last token would have been generated', async () => {
    const started = performance.now();
    await client(timed).chat.completions.create({ model: 'fab-timed', messages: ask('Liberty'), max_tokens: 11 });
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(80 + 10 * 15 - 2);
    expect(took).toBeLessThan(80 + 10 * 15 + 100);
  });
});

describe('embeddings', () => {
  it('are deterministic unit vectors of the asked dimension, as floats or base64', async () => {
    const c = client(plain);
    // The openai client asks for base64 by default and decodes it.
    const a = await c.embeddings.create({
      model: 'fab-small',
      input: ['the pursuit of happiness', 'a summer day'],
      dimensions: 64,
    });
    const f = await c.embeddings.create({
      model: 'fab-small',
      input: 'the pursuit of happiness',
      dimensions: 64,
      encoding_format: 'float',
    });
    expect(a.data).toHaveLength(2);
    expect(a.data[0].embedding).toHaveLength(64);
    expect(Math.hypot(...a.data[0].embedding)).toBeCloseTo(1, 5);
    expect(f.data[0].embedding).toEqual(a.data[0].embedding);
    expect(a.usage).toEqual({ prompt_tokens: 7, total_tokens: 7 });
    const d = await c.embeddings.create({ model: 'fab-small', input: 'x' });
    expect(d.data[0].embedding).toHaveLength(384);
  });
});

describe('models, health and errors', () => {
  it('lists its one model and answers /health', async () => {
    const list = await client(plain).models.list();
    expect(list.data.map((m) => m.id)).toEqual(['fab-small']);
    expect((await fetch(`${plain.url}/health`)).status).toBe(200);
  });

  it('answers an unknown model with 404 and n=2 with 400, in the OpenAI shape', async () => {
    const c = client(plain);
    const notFound = await c.chat.completions.create({ model: 'gpt-4o', messages: ask('hi') }).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    expect((notFound as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    });
    const twoChoices = await c.chat.completions
      .create({ model: 'fab-small', messages: ask('hi'), n: 2 })
      .catch((e: unknown) => e);
    expect(twoChoices).toBeInstanceOf(OpenAI.BadRequestError);
    expect((twoChoices as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('n');

    for (const [body, param] of [
      [{ model: 'fab-small', messages: [] }, 'messages'],
      [{ model: 'fab-small', messages: ask('hi'), max_completion_tokens: 0 }, 'max_completion_tokens'],
      [{ model: 'fab-small', messages: ask('hi'), temperature: 3 }, 'temperature'],
      [{ model: 'fab-small', messages: ask('hi'), stream_options: { include_usage: true } }, 'stream_options'],
      [{ model: 'fab-small', messages: ask('hi'), reasoning_effort: 'extreme' }, 'reasoning_effort'],
    ] as const) {
      const res = await fetch(`${plain.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).toBe(400);
      const err = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(err.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(err.error.param).toBe(param);
    }
    const bad = await fetch(`${plain.url}/v1/chat/completions`, { method: 'POST', body: '{' });
    expect(bad.status).toBe(400);
    expect((await fetch(`${plain.url}/v1/nothing`)).status).toBe(404);
  });

  it('accepts cache_salt', async () => {
    const r = await client(plain).chat.completions.create({
      model: 'fab-small',
      messages: ask('hi'),
      max_tokens: 3,
      ...({ cache_salt: 'member-pharma' } as object),
    });
    expect(r.usage?.completion_tokens).toBe(3);
  });
});

describe("a replica's key (FABRIK_ENGINE_API_KEY)", () => {
  const key = 'replica-key-9f3b2c';
  let guarded: RunningEngine;
  beforeAll(async () => {
    guarded = await startEngine({ model: 'fab-guarded', apiKey: key });
  });
  afterAll(async () => {
    await guarded?.close();
  });

  it('refuses every route without the key or with a wrong one, in the OpenAI shape, and serves the right one', async () => {
    const chat = JSON.stringify({ model: 'fab-guarded', messages: ask('hello'), max_tokens: 2 });
    const wrong = [undefined, '', `Bearer ${key}x`, `Bearer ${key.slice(0, -1)}`, key, `Basic ${key}`, `bearer ${key}`];
    for (const authorization of wrong)
      for (const [method, path, body] of [
        ['GET', '/health', undefined],
        ['GET', '/v1/models', undefined],
        ['GET', '/v1/models/fab-guarded', undefined],
        ['POST', '/v1/chat/completions', chat],
        ['POST', '/v1/embeddings', JSON.stringify({ model: 'fab-guarded', input: 'x' })],
      ] as const) {
        const res = await fetch(guarded.url + path, {
          method,
          body,
          headers: authorization === undefined ? {} : { authorization },
        });
        expect(res.status, `${method} ${path} with ${authorization}`).toBe(401);
        const err = (await res.json()) as { error: Record<string, unknown> };
        expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key', param: null });
        expect(String(err.error.message)).toMatch(/(Missing|Incorrect) API key.*gateway/);
        expect(String(err.error.message)).not.toContain(key);
      }
    // The openai client sends `Authorization: Bearer <apiKey>`: the right key is served, a wrong one is refused.
    const refused = await new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'not-the-key', maxRetries: 0 }).chat.completions
      .create({ model: 'fab-guarded', messages: ask('hello') })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    const right = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: key, maxRetries: 0 });
    const r = await right.chat.completions.create({ model: 'fab-guarded', messages: ask('Shall I compare thee'), max_tokens: 3 });
    expect(r.usage?.completion_tokens).toBe(3);
    expect((await right.models.list()).data.map((m) => m.id)).toEqual(['fab-guarded']);
    expect((await fetch(`${guarded.url}/health`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
  });

  it('keeps the connection usable after refusing a request whose body it did not read', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = (authorization: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          `${guarded.url}/v1/completions`,
          { method: 'POST', agent, headers: { authorization, 'content-type': 'application/json' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'fab-guarded', prompt: 'x'.repeat(200_000), max_tokens: 1 }));
      });
    expect(await post('Bearer wrong')).toBe(401);
    expect(await post(`Bearer ${key}`)).toBe(200);
    agent.destroy();
  });

  it('an engine without a key ignores the header, as replicas started before keys existed do', async () => {
    const res = await fetch(`${plain.url}/health`, { headers: { authorization: 'Bearer anything' } });
    expect(res.status).toBe(200);
  });

  it('refuses an empty key instead of serving everyone', async () => {
    await expect(startEngine({ model: 'fab-open', apiKey: '' })).rejects.toThrow(/empty/);
  });
});

describe('usage', () => {
  it('completion_tokens equals the tokens streamed, whatever the prompt, seed, cap, temperature and effort', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 60 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.integer({ min: 1, max: 80 }),
        fc.constantFrom(0, 0.5, 1, 1.7),
        fc.constantFrom('minimal', 'low', undefined),
        fc.constantFrom(undefined, 'e', ', and'),
        async (prompt, seed, cap, temperature, effort, stop) => {
          const stream = await client(thinker).chat.completions.create({
            model: 'fab-think',
            messages: ask(prompt),
            seed,
            max_completion_tokens: cap,
            temperature,
            ...(effort ? { reasoning_effort: effort as 'low' } : {}),
            ...(stop ? { stop } : {}),
            stream: true,
            stream_options: { include_usage: true },
          });
          let reasoning = '';
          let content = '';
          let chunks = 0;
          let usage: OpenAI.CompletionUsage | undefined;
          for await (const c of stream) {
            if (c.usage) usage = c.usage;
            const d = c.choices[0]?.delta as (OpenAI.Chat.ChatCompletionChunk.Choice.Delta & WithReasoning) | undefined;
            if (d?.reasoning_content) {
              chunks++;
              reasoning += d.reasoning_content;
            }
            if (d?.content) {
              chunks++;
              content += d.content;
            }
          }
          expect(usage?.completion_tokens).toBe(countTokens(reasoning) + countTokens(content));
          expect(usage?.completion_tokens_details?.reasoning_tokens).toBe(countTokens(reasoning));
          expect(usage?.completion_tokens).toBeLessThanOrEqual(cap);
          // Without a stop sequence every chunk is exactly one token.
          if (!stop) expect(usage?.completion_tokens).toBe(chunks);
          expect(usage?.prompt_tokens).toBe(countTokens(prompt));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('fabrik engine (the command)', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  /** Starts the command and resolves with the URL it prints on stdout once listening. */
  async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(FABRIK, ['engine', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /^FABRIK_ENGINE_URL=(\S+)$/m.exec(out);
        if (m) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
    });
    expect(err).toContain(`${url}/v1`);
    return { url, child };
  }

  it('serves the openai client on the port it prints, and stops cleanly on SIGTERM', async () => {
    const { url, child } = await start(['--model', 'cli-think', '--port', '0', '--reasoning', '--ttft-ms', '0', '--itl-ms', '0']);
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'cli-think', messages: ask('Liberty'), reasoning_effort: 'minimal' });
    expect(r.usage?.completion_tokens_details?.reasoning_tokens).toBe(8);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });

  it('takes its port from FABRIK_ENGINE_PORT when --port is absent', async () => {
    const free = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const { url, child } = await start(['--model', 'cli-env'], { FABRIK_ENGINE_PORT: String(free), PORT: '1' });
    expect(url).toBe(`http://127.0.0.1:${free}`);
    child.kill('SIGTERM');
    await once(child, 'exit');
  });

  it('requires FABRIK_ENGINE_API_KEY from callers when it is set, and refuses to start when it is empty', async () => {
    const key = 'cli-replica-key-4e1d';
    const { url, child } = await start(['--model', 'cli-key', '--port', '0'], { FABRIK_ENGINE_API_KEY: key });
    expect((await fetch(`${url}/health`)).status).toBe(401);
    expect((await fetch(`${url}/health`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
    expect(
      (await c.chat.completions.create({ model: 'cli-key', messages: ask('Liberty'), max_tokens: 2 })).usage?.completion_tokens,
    ).toBe(2);
    child.kill('SIGTERM');
    await once(child, 'exit');
    await expect(start(['--model', 'cli-empty', '--port', '0'], { FABRIK_ENGINE_API_KEY: ' ' })).rejects.toThrow(
      /FABRIK_ENGINE_API_KEY is set but empty/,
    );
  });

  it('listens where FABRIK_ENGINE_HOST says when --host is absent (replicas on cluster nodes get 0.0.0.0)', async () => {
    // Any 127/8 address is this host's loopback: one that is not 127.0.0.1 shows the variable was read.
    const { url, child } = await start(['--model', 'cli-host', '--port', '0'], { FABRIK_ENGINE_HOST: '127.0.0.2' });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    child.kill('SIGTERM');
    await once(child, 'exit');
  });
});

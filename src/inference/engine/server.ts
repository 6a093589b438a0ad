// The bundled engine's OpenAI-compatible HTTP server. node:http, no framework: the gateway's
// benchmark subtracts the time of calling this engine directly from the time through the gateway,
// so everything here that is not the configured latency is noise in that figure. Per request the
// work is one JSON.parse, a few microseconds of Markov generation (done up front, so `stop`
// sequences need no hold-back while streaming) and prebuilt chunk strings written on a timer.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { countTokens, splitTokens } from '../tokens.js';
import { corpusModel, generate, rng, type MarkovModel } from './model.js';

export interface EngineOptions {
  /** The model name clients call; any other name is a 404, as on a real engine. */
  readonly model: string;
  /** A reasoning model thinks first (`reasoning_content`), then answers. */
  readonly reasoning?: boolean;
  /** Milliseconds from the request's arrival to its first token. */
  readonly ttftMs?: number;
  /** Milliseconds between tokens. */
  readonly itlMs?: number;
  /** Makes requests without a `seed` reproducible too: request k of the process uses seed + k. */
  readonly seed?: number;
  readonly corpusDir?: string;
  /**
   * When set, every route (`/health` and `/v1/models` too) answers only a caller that presents
   * `Authorization: Bearer <apiKey>`, and any other with an OpenAI-shaped 401. A deployment's
   * replica gets its key from the deployments controller (FABRIK_ENGINE_API_KEY, a secret of its
   * job) so that it serves the gateway and no other job that can reach its port. Not empty.
   */
  readonly apiKey?: string;
}

export interface RunningEngine {
  /** Root of the API, without `/v1`, e.g. `http://127.0.0.1:8000`. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** The text of a chat message's content: a string, or an array of parts of which the text parts count. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    const t = (part as { text?: unknown } | null)?.text;
    if (typeof t === 'string') text += (text ? ' ' : '') + t;
  }
  return text;
}

/**
 * The prompt tokens of a chat request as this engine bills them: the tokens of every message's text,
 * with no per-message overhead, so a gateway can count the same number with the shared tokenizer.
 */
export function countMessageTokens(messages: readonly { content?: unknown }[]): number {
  let n = 0;
  for (const m of messages) n += countTokens(contentText(m.content));
  return n;
}

/** Reasoning tokens per `reasoning_effort`; `medium` when absent, as OpenAI's reasoning models do. */
export const REASONING_TOKENS = { none: 0, minimal: 8, low: 32, medium: 128, high: 512 } as const;
/** An answer ends at the first sentence end after this many tokens (finish_reason `stop`). */
const MIN_ANSWER_TOKENS = 24;
/** The cap when the request sets none (the context left on a real engine). */
const DEFAULT_MAX_TOKENS = 1024;
const DEFAULT_EMBEDDING_DIMENSIONS = 384;
const MAX_BODY = 4 << 20;

class BadRequest extends Error {
  constructor(
    message: string,
    readonly param: string | null,
    readonly status = 400,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function sendError(res: ServerResponse, e: BadRequest): void {
  const type = e.status >= 500 ? 'server_error' : 'invalid_request_error';
  send(res, e.status, JSON.stringify({ error: { message: e.message, type, param: e.param, code: e.code } }));
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

type Body = Record<string, unknown>;

function optInt(b: Body, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new BadRequest(`'${name}' must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}.`, name);
  }
  return v;
}

/** A generation request, checked: what chat and completions share. */
interface Sampling {
  readonly maxTokens: number;
  readonly temperature: number;
  readonly seed: number | undefined;
  readonly stop: readonly string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly reasoningTokens: number;
}

function sampling(b: Body, reasoning: boolean): Sampling {
  const n = b.n;
  if (n !== undefined && n !== null && n !== 1)
    throw new BadRequest(`this engine generates one choice: 'n' must be 1, got ${JSON.stringify(n)}.`, 'n');
  const maxCompletion = optInt(b, 'max_completion_tokens', 1);
  const maxTokens = optInt(b, 'max_tokens', 1);
  const t = b.temperature;
  if (t !== undefined && t !== null && (typeof t !== 'number' || !(t >= 0 && t <= 2))) {
    throw new BadRequest(`'temperature' must be a number between 0 and 2, got ${JSON.stringify(t)}.`, 'temperature');
  }
  const seed = optInt(b, 'seed', Number.MIN_SAFE_INTEGER);
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop) && b.stop.length <= 4 && b.stop.every((s) => typeof s === 'string')) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) throw new BadRequest(`'stop' must be a string or up to 4 strings.`, 'stop');
  stop = stop.filter((s) => s.length > 0);
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean')
    throw new BadRequest(`'stream' must be a boolean.`, 'stream');
  const stream = b.stream === true;
  const so = b.stream_options;
  if (so !== undefined && so !== null) {
    if (!stream) throw new BadRequest(`'stream_options' is only allowed when 'stream' is enabled.`, 'stream_options');
    if (typeof so !== 'object') throw new BadRequest(`'stream_options' must be an object.`, 'stream_options');
  }
  const effort = b.reasoning_effort;
  if (effort !== undefined && effort !== null && !(typeof effort === 'string' && Object.hasOwn(REASONING_TOKENS, effort))) {
    throw new BadRequest(`'reasoning_effort' must be one of ${Object.keys(REASONING_TOKENS).join(', ')}.`, 'reasoning_effort');
  }
  // A real engine keys its prefix cache by cache_salt; this one has no cache, but checks the type
  // so a gateway that sends a malformed salt learns it here rather than from vLLM.
  if (b.cache_salt !== undefined && b.cache_salt !== null && typeof b.cache_salt !== 'string') {
    throw new BadRequest(`'cache_salt' must be a string.`, 'cache_salt');
  }
  return {
    maxTokens: maxCompletion ?? maxTokens ?? DEFAULT_MAX_TOKENS,
    temperature: typeof t === 'number' ? t : 1,
    seed,
    stop,
    stream,
    includeUsage: stream && (so as { include_usage?: unknown } | undefined)?.include_usage === true,
    reasoningTokens: reasoning ? REASONING_TOKENS[(effort as keyof typeof REASONING_TOKENS | undefined) ?? 'medium'] : 0,
  };
}

/** What a request produced: reasoning pieces, then answer pieces, one token each (a stop may cut the last). */
interface Output {
  readonly reasoning: string[];
  readonly answer: string[];
  readonly finish: 'stop' | 'length';
  readonly completionTokens: number;
  readonly reasoningTokens: number;
}

function cutAtStop(pieces: string[], stop: readonly string[]): string[] | undefined {
  if (stop.length === 0) return undefined;
  const text = pieces.join('');
  let at = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  if (at < 0) return undefined;
  const kept: string[] = [];
  let pos = 0;
  for (const p of pieces) {
    if (pos + p.length <= at) kept.push(p);
    else {
      if (pos < at) kept.push(p.slice(0, at - pos));
      break;
    }
    pos += p.length;
  }
  return kept;
}

function produce(model: MarkovModel, context: string, s: Sampling, random: () => number, continues: boolean): Output {
  const thinking = Math.min(s.reasoningTokens, s.maxTokens);
  const reasoning =
    thinking > 0
      ? generate(model, { context, maxTokens: thinking, temperature: s.temperature, random, minTokens: Infinity }).pieces
      : [];
  const left = s.maxTokens - reasoning.length;
  const gen =
    left > 0
      ? generate(model, { context, maxTokens: left, temperature: s.temperature, random, minTokens: MIN_ANSWER_TOKENS, continues })
      : { pieces: [], natural: false };
  let answer = gen.pieces;
  let finish: 'stop' | 'length' = gen.natural ? 'stop' : 'length';
  const cut = cutAtStop(answer, s.stop);
  if (cut) {
    answer = cut;
    finish = 'stop';
  }
  // Counted with the shared tokenizer, not as pieces: what the gateway counts from the same text.
  const reasoningTokens = countTokens(reasoning.join(''));
  return { reasoning, answer, finish, reasoningTokens, completionTokens: reasoningTokens + countTokens(answer.join('')) };
}

function usage(promptTokens: number, o: Output) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: o.completionTokens,
    total_tokens: promptTokens + o.completionTokens,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: o.reasoningTokens },
  };
}

/** 32-bit FNV-1a: a stable hash, the same in every process, for the embeddings' buckets. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A hashed bag of words, L2-normalised: texts sharing words are close, and the same text gives the same vector. */
export function embed(text: string, dimensions: number): Float32Array {
  const v = new Float32Array(dimensions);
  for (const tok of splitTokens(text)) {
    const h = fnv1a(tok.toLowerCase());
    v[h % dimensions] += h & 0x80000000 ? -1 : 1;
  }
  let norm = 0;
  for (let i = 0; i < dimensions; i++) norm += v[i] * v[i];
  if (norm > 0) {
    const k = 1 / Math.sqrt(norm);
    for (let i = 0; i < dimensions; i++) v[i] *= k;
  }
  return v;
}

export function createEngine(o: EngineOptions): (req: IncomingMessage, res: ServerResponse) => void {
  if (o.apiKey === '') throw new Error('the engine API key is empty: give a key, or none to serve without one');
  const expected = o.apiKey === undefined ? null : Buffer.from(`Bearer ${o.apiKey}`, 'utf8');
  const model = corpusModel(o.corpusDir);
  const ttft = Math.max(0, o.ttftMs ?? 0);
  const itl = Math.max(0, o.itlMs ?? 0);
  const reasoningModel = o.reasoning === true;
  const created = Math.floor(Date.now() / 1000);
  const modelCard = { id: o.model, object: 'model', created, owned_by: 'fabrik' };
  const modelsBody = JSON.stringify({ object: 'list', data: [modelCard] });
  const modelJson = JSON.stringify(o.model);
  let requests = 0;

  const randomFor = (seed: number | undefined) => {
    requests++;
    if (seed !== undefined) return rng(seed);
    return rng(o.seed !== undefined ? o.seed + requests : Math.floor(Math.random() * 2 ** 32));
  };

  const checkModel = (b: Body) => {
    if (typeof b.model !== 'string' || b.model === '') throw new BadRequest(`'model' is required.`, 'model');
    if (b.model !== o.model) {
      throw new BadRequest(
        `The model \`${b.model}\` does not exist or you do not have access to it.`,
        'model',
        404,
        'model_not_found',
      );
    }
  };

  /** Writes `output` as it would be generated: token i at arrival + ttft + i·itl. */
  const respond = (
    res: ServerResponse,
    arrival: number,
    kind: 'chat' | 'text',
    s: Sampling,
    promptTokens: number,
    out: Output,
  ) => {
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
    const now = Math.floor(Date.now() / 1000);
    const total = out.reasoning.length + out.answer.length;
    const doneAt = arrival + ttft + Math.max(0, total - 1) * itl;
    if (!s.stream) {
      const reply = () => {
        const text = out.answer.join('');
        const choice =
          kind === 'chat'
            ? {
                index: 0,
                message: {
                  role: 'assistant',
                  content: text,
                  refusal: null,
                  ...(reasoningModel ? { reasoning_content: out.reasoning.join('') } : {}),
                },
                logprobs: null,
                finish_reason: out.finish,
              }
            : { index: 0, text, logprobs: null, finish_reason: out.finish };
        const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
        send(
          res,
          200,
          JSON.stringify({ id, object, created: now, model: o.model, choices: [choice], usage: usage(promptTokens, out) }),
        );
      };
      const wait = doneAt - performance.now();
      if (wait <= 0) return reply();
      const timer = setTimeout(reply, wait);
      res.on('close', () => clearTimeout(timer));
      return;
    }

    // Prebuilt halves of every chunk: per token only the piece is serialised.
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const usageNull = s.includeUsage ? ',"usage":null' : '';
    const head = `data: {"id":"${id}","object":"${object}","created":${now},"model":${modelJson},"choices":[{"index":0,`;
    const tail = (finish: string | null) =>
      `,"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]${usageNull}}\n\n`;
    const contentTail = tail(null);
    const chunk = (i: number): string => {
      if (i < out.reasoning.length)
        return `${head}"delta":{"reasoning_content":${JSON.stringify(out.reasoning[i])}}${contentTail}`;
      const p = JSON.stringify(out.answer[i - out.reasoning.length]);
      return kind === 'chat' ? `${head}"delta":{"content":${p}}${contentTail}` : `${head}"text":${p}${contentTail}`;
    };
    const end = (): string => {
      let s2 = kind === 'chat' ? `${head}"delta":{}${tail(out.finish)}` : `${head}"text":""${tail(out.finish)}`;
      if (s.includeUsage) {
        s2 += `data: ${JSON.stringify({ id, object, created: now, model: o.model, choices: [], usage: usage(promptTokens, out) })}\n\n`;
      }
      return `${s2}data: [DONE]\n\n`;
    };

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    // The first byte goes out now, as from a real engine that accepted the request: a gateway
    // retries elsewhere only before it, so it must mean "accepted", not "first token".
    if (kind === 'chat') res.write(`${head}"delta":{"role":"assistant","content":""}${contentTail}`);
    else res.flushHeaders();

    let next = 0;
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      const t = performance.now();
      let batch = '';
      // Every token already due goes out in one write (a late timer catches up, it does not drift).
      while (next < total && arrival + ttft + next * itl <= t) batch += chunk(next++);
      if (next === total) {
        res.end(batch + end());
        return;
      }
      if (batch) res.write(batch);
      timer = setTimeout(pump, arrival + ttft + next * itl - t);
    };
    res.on('close', () => {
      if (timer) clearTimeout(timer);
    });
    pump();
  };

  const chat = (res: ServerResponse, arrival: number, b: Body) => {
    checkModel(b);
    const messages = b.messages;
    if (!Array.isArray(messages) || messages.length === 0)
      throw new BadRequest(`'messages' must be a non-empty array.`, 'messages');
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as { role?: unknown } | null;
      if (!m || typeof m !== 'object' || typeof m.role !== 'string')
        throw new BadRequest(`'messages[${i}]' must be an object with a 'role'.`, `messages[${i}]`);
    }
    const s = sampling(b, reasoningModel);
    const msgs = messages as { content?: unknown }[];
    const out = produce(model, contentText(msgs[msgs.length - 1].content), s, randomFor(s.seed), false);
    respond(res, arrival, 'chat', s, countMessageTokens(msgs), out);
  };

  const completions = (res: ServerResponse, arrival: number, b: Body) => {
    checkModel(b);
    let prompt = b.prompt;
    if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
    if (typeof prompt !== 'string') throw new BadRequest(`'prompt' must be a string (one prompt per request).`, 'prompt');
    // The completions API has no reasoning channel; a reasoning model continues the text directly.
    const s = { ...sampling(b, false) };
    const out = produce(model, prompt, s, randomFor(s.seed), true);
    respond(res, arrival, 'text', s, countTokens(prompt), out);
  };

  const embeddings = (res: ServerResponse, b: Body) => {
    checkModel(b);
    const input = b.input;
    const inputs = typeof input === 'string' ? [input] : input;
    if (!Array.isArray(inputs) || inputs.length === 0 || inputs.length > 2048 || !inputs.every((x) => typeof x === 'string')) {
      throw new BadRequest(`'input' must be a string or an array of up to 2048 strings.`, 'input');
    }
    if (inputs.some((x) => x === '')) throw new BadRequest(`'input' cannot be an empty string.`, 'input');
    const dimensions = optInt(b, 'dimensions', 1, 4096) ?? DEFAULT_EMBEDDING_DIMENSIONS;
    const format = b.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64')
      throw new BadRequest(`'encoding_format' must be 'float' or 'base64'.`, 'encoding_format');
    let tokens = 0;
    const data = (inputs as string[]).map((text, index) => {
      tokens += countTokens(text);
      const v = embed(text, dimensions);
      const embedding =
        format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v);
      return { object: 'embedding', index, embedding };
    });
    send(
      res,
      200,
      JSON.stringify({ object: 'list', data, model: o.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }),
    );
  };

  return (req, res) => {
    const arrival = performance.now();
    const q = req.url?.indexOf('?') ?? -1;
    const path = q >= 0 ? req.url!.slice(0, q) : (req.url ?? '/');
    try {
      if (expected !== null) {
        const why = refusal(req.headers.authorization, expected);
        if (why !== null) {
          // The body is not read; draining it keeps the connection usable for the next request.
          req.resume();
          throw new BadRequest(why, null, 401, 'invalid_api_key');
        }
      }
      if (req.method === 'GET') {
        if (path === '/health') return send(res, 200, '{"status":"ok"}');
        if (path === '/v1/models') return send(res, 200, modelsBody);
        if (path.startsWith('/v1/models/')) {
          const name = decodeURIComponent(path.slice('/v1/models/'.length));
          if (name === o.model) return send(res, 200, JSON.stringify(modelCard));
          throw new BadRequest(
            `The model \`${name}\` does not exist or you do not have access to it.`,
            'model',
            404,
            'model_not_found',
          );
        }
      }
      const route =
        path === '/v1/chat/completions'
          ? chat
          : path === '/v1/completions'
            ? completions
            : path === '/v1/embeddings'
              ? embeddings
              : undefined;
      if (!route) throw new BadRequest(`No route ${req.method} ${path}.`, null, 404, 'not_found');
      if (req.method !== 'POST') throw new BadRequest(`${path} takes POST.`, null, 405, 'method_not_allowed');
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      req.on('end', () => {
        try {
          if (size > MAX_BODY) throw new BadRequest(`The request body exceeds ${MAX_BODY} bytes.`, null, 413);
          let b: unknown;
          try {
            b = JSON.parse(chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8'));
          } catch {
            throw new BadRequest('The request body is not valid JSON.', null);
          }
          if (!b || typeof b !== 'object' || Array.isArray(b))
            throw new BadRequest('The request body must be a JSON object.', null);
          if (route === embeddings) embeddings(res, b as Body);
          else (route as typeof chat)(res, arrival, b as Body);
        } catch (e) {
          fail(res, e);
        }
      });
    } catch (e) {
      fail(res, e);
    }
  };
}

/**
 * Why `header` is not the engine's key, or null when it is. Constant-time in the key: the lengths
 * compared first are those of the presented header and of a key whose length is no secret.
 */
function refusal(header: string | undefined, expected: Buffer): string | null {
  const through = 'this engine serves its deployment through the Fabrik gateway only: call the model there with a gateway key';
  if (header === undefined || header === '') return `Missing API key (Authorization: Bearer …): ${through}.`;
  const got = Buffer.from(header, 'utf8');
  if (got.length === expected.length && timingSafeEqual(got, expected)) return null;
  return `Incorrect API key provided: ${through}.`;
}

function fail(res: ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendError(res, e instanceof BadRequest ? e : new BadRequest(`internal error: ${(e as Error).message}`, null, 500));
}

/** Starts the engine on host:port (port 0: any free port) and resolves once it listens. */
export async function startEngine(o: EngineOptions & { host?: string; port?: number }): Promise<RunningEngine> {
  const server = createServer(createEngine(o));
  // Gateways keep connections to replicas open; a short idle timeout would make them reconnect
  // (and race the close) under steady load.
  server.keepAliveTimeout = 65_000;
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

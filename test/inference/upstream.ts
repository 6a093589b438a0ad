// A stand-in OpenAI-compatible engine for the gateway's tests: streams a fixed answer word by word,
// counts the calls it got, and can be told to ignore max_tokens, to die mid-stream, or to think
// first (a reasoning model: `reasoning_content` before the answer, counted in completion tokens).
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeEngine {
  readonly url: string;
  readonly calls: { path: string; body: Record<string, unknown> }[];
  /** Ignore max_tokens (so only the gateway can stop the stream). */
  ignoreMaxTokens: boolean;
  /** Destroy the socket after this many content chunks (a replica that dies mid-stream). */
  dieAfter: number | null;
  /** Answer 500 before any byte. */
  fail: boolean;
  /** Words of reasoning (`reasoning_content`) before the answer; max tokens cover both, as in OpenAI's API. */
  reasoning: number;
  /** Leave `usage` out of whole answers (engines that do not count: the gateway counts itself). */
  omitUsage: boolean;
  close(): Promise<void>;
}

export const ANSWER = 'The quick brown fox jumps over the lazy dog and runs far away into the deep dark forest tonight'.split(
  ' ',
);

export const THOUGHT = 'Let me think about what the user asked and then answer in a short and clear way'.split(' ');

export async function fakeEngine(o: { itlMs?: number } = {}): Promise<FakeEngine> {
  const itl = o.itlMs ?? 1;
  const calls: FakeEngine['calls'] = [];
  const sockets = new Set<import('node:net').Socket>();
  const engine: FakeEngine = {
    url: '',
    calls,
    ignoreMaxTokens: false,
    dieAfter: null,
    fail: false,
    reasoning: 0,
    omitUsage: false,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      const body = JSON.parse(raw) as Record<string, unknown>;
      calls.push({ path: req.url!, body });
      if (engine.fail) {
        res.writeHead(500, { 'content-type': 'application/json' });
        return res.end('{"error":{"message":"boom","type":"server_error","param":null,"code":null}}');
      }
      void answer(req.url!, body, res);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  async function answer(path: string, body: Record<string, unknown>, res: ServerResponse) {
    const model = body.model as string;
    if (path === '/v1/embeddings') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          object: 'list',
          data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
          model,
          usage: { prompt_tokens: 3, total_tokens: 3 },
        }),
      );
    }
    const max = engine.ignoreMaxTokens ? Infinity : ((body.max_completion_tokens ?? body.max_tokens ?? Infinity) as number);
    const thought = Array.from({ length: Math.min(engine.reasoning, max) }, (_, i) => THOUGHT[i % THOUGHT.length]);
    const words = ANSWER.slice(0, Math.max(0, Math.min(ANSWER.length, max - thought.length)));
    const chat = path === '/v1/chat/completions';
    const usage = {
      prompt_tokens: 7,
      completion_tokens: thought.length + words.length,
      total_tokens: 7 + thought.length + words.length,
      completion_tokens_details: { reasoning_tokens: thought.length },
    };
    const id = 'cmpl-1';
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      const text = words.join(' ');
      const message = thought.length
        ? { role: 'assistant', content: text, reasoning_content: thought.join(' ') }
        : { role: 'assistant', content: text };
      // n choices, all alike.
      const choices = Array.from({ length: (body.n as number | undefined) ?? 1 }, (_, index) =>
        chat ? { index, message, finish_reason: 'stop' } : { index, text, finish_reason: 'stop' },
      );
      const object = chat ? 'chat.completion' : 'text_completion';
      return res.end(JSON.stringify({ id, object, created: 1, model, choices, ...(engine.omitUsage ? {} : { usage }) }));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    // Reasoning first (chat only, as engines send it), then the answer; dieAfter counts both.
    const deltas: { content?: string; reasoning_content?: string }[] = [
      ...(chat ? thought.map((w, i) => ({ reasoning_content: (i ? ' ' : '') + w })) : []),
      ...words.map((w, i) => ({ content: (i ? ' ' : '') + w })),
    ];
    for (let i = 0; i < deltas.length; i++) {
      if (engine.dieAfter !== null && i >= engine.dieAfter) {
        res.socket?.destroy();
        return;
      }
      const d = deltas[i];
      const choice = chat
        ? { index: 0, delta: d, finish_reason: null }
        : { index: 0, text: d.content ?? '', finish_reason: null };
      res.write(`data: ${JSON.stringify({ id, object, created: 1, model, choices: [choice] })}\n\n`);
      await new Promise((r) => setTimeout(r, itl));
      if (res.destroyed) return;
    }
    const last = chat ? { index: 0, delta: {}, finish_reason: 'stop' } : { index: 0, text: '', finish_reason: 'stop' };
    res.write(`data: ${JSON.stringify({ id, object, created: 1, model, choices: [last] })}\n\n`);
    if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage)
      res.write(`data: ${JSON.stringify({ id, object, created: 1, model, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (engine as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return engine;
}

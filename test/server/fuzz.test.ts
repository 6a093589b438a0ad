// Fuzzing the HTTP API with fast-check against one real server: random JSON, malformed JSON, wrong
// content types, oversized strings, arrays and bodies, odd unicode, prototype-pollution keys,
// random headers, paths and methods. Whatever comes in, what goes out is a 4xx with the error body
// ({ error: { code, message, field? } }, a code from ERROR_CODES, the field for validation errors)
// or a success: never a 5xx, a stack trace, a file path, a hang or a crash; and the server still
// works afterwards and has lost nothing.
//
// Valid fuzzed submissions must not run anything: POST /v1/jobs is fuzzed while the only node is
// drained, and what was taken is cancelled before it comes back; commands and scripts are `true`
// anyway, and paths stay in the data folder. Elsewhere random bodies go out with tokens that cannot
// have a job made: an auditor's, or one of `defense`, bound to a zone this host lacks (409).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, ErrorBody, type JobView } from '../../src/api/contract.js';
import { forEachEngine, type Location } from '../audit/engines.js';
import { testServer, type TestServer } from './helpers.js';

const RUNS = Number(process.env.FABRIK_FUZZ_RUNS ?? 250);
const ROOT = new URL('../../', import.meta.url).pathname;

let t: TestServer;
let alice: string;
let padmin: string;
let paud: string;
let defense: string;
let fuzzer: string;
let doneJob: JobView;
let nodeName: string;

interface Raw {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}
interface Answer {
  status: number;
  type: string;
  text: string;
}

async function raw(r: Raw): Promise<Answer> {
  const res = await fetch(t.server.url + r.path, {
    method: r.method,
    headers: r.headers,
    body: r.body,
    // A hang is a failure, not a stuck test run.
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** The quality bar, for every answer. */
function check(r: Raw, a: Answer): void {
  const what = `${r.method} ${r.path.slice(0, 200)} -> ${a.status} ${a.text.slice(0, 300)}`;
  expect(a.status, what).toBeLessThan(500);
  expect(a.text, what).not.toMatch(/^\s*at .*:\d+:\d+\)?$/m);
  expect(a.text, what).not.toContain(`${ROOT}src`);
  expect(a.text, what).not.toContain('node_modules');
  if (r.method === 'HEAD') return;
  const text = r.path.startsWith('/metrics') || /^\/v1\/jobs\/[^/]+\/logs/.test(r.path);
  if (a.status < 400 && text && a.type.startsWith('text/plain')) return;
  expect(a.type, what).toMatch(/^application\/json/);
  const body = JSON.parse(a.text) as unknown;
  if (a.status < 400) return;
  expect(Object.keys(body as object), what).toEqual(['error']);
  const e = ErrorBody.parse(body).error;
  expect(ERROR_CODES, what).toContain(e.code);
  expect(e.message.length, what).toBeGreaterThan(0);
  if (e.code === 'VALIDATION_FAILED') expect(e.field, what).toMatch(/^(body|query|params|headers)\b/);
}

async function send(r: Raw): Promise<Answer> {
  const a = await raw(r);
  check(r, a);
  return a;
}

const json = (token: string | null, method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Raw => ({
  method,
  path,
  headers: {
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...extra,
  },
  body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
});

// ---- arbitraries ------------------------------------------------------------------------------

const oddString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\ud800',
    '\u202e',
    '😀'.repeat(3),
    '__proto__',
    'constructor',
    '../..',
    '%00',
    'a'.repeat(300),
  ),
);
const oddNumber = fc.oneof(
  fc.integer({ min: -10, max: 200_000 }),
  fc.double(),
  fc.constantFrom(0, -1, 1.5, 1e308, -0, Number.MAX_SAFE_INTEGER + 2, 4),
);
const oddValue = fc.oneof(oddString, oddNumber, fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}));

/** A field of a submission: valid values (that never do harm), and invalid ones. */
interface Field {
  readonly valid: fc.Arbitrary<unknown>;
  readonly invalid: fc.Arbitrary<unknown>;
}
const field = (valid: fc.Arbitrary<unknown>, ...invalid: unknown[]): Field => ({
  valid,
  invalid: fc.oneof(oddValue, fc.constantFrom(...(invalid.length > 0 ? invalid : [null]))),
});
const int = (min: number, max: number, ...invalid: unknown[]) =>
  field(fc.integer({ min, max }), min - 1, max + 1, 1.5, `${min}`, ...invalid);
/** Paths stay in the data folder or one that is never created: the tests may run as root. */
const logPath = field(fc.constantFrom('out-%j.log', '%x-%a.%A.err', 'logs/fabrik-%j.out'), '', 'x'.repeat(4097), 7);
const FIELDS: Record<string, Field> = {
  name: field(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), '', 'x'.repeat(129)),
  member: field(fc.constant('pharma'), 'defense', 'telecom', 'PHARMA', 'x'.repeat(65), '__proto__'),
  project: field(fc.constantFrom('protein-folding', 'clinical-nlp'), 'sensor-fusion', 'nope', 'Upper'),
  // Commands and scripts that do nothing if they ever ran; otherwise the wrong shapes.
  command: field(fc.constant(['true']), [], 'true', [1], [['true']], Array(4097).fill('true'), ['x'.repeat(65_537)]),
  script: field(fc.constant('true'), '', ['true'], 1),
  env: field(
    fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,10}$/), fc.string({ unit: 'binary', maxLength: 20 }), {
      maxKeys: 4,
    }),
    { '1BAD': 'x' },
    { 'A-B': 'x' },
    { '': 'x' },
    { A: 1 },
    { A: null },
    { A: { B: 'c' } },
    [],
  ),
  workdir: field(fc.constant('/tmp/fabrik-fuzz-workdir-never-created'), '', 5, 'x'.repeat(4097)),
  gpus: int(1, 8, 100_001, 1e308, -0.5),
  nodes: int(1, 2, 10_001),
  gpusPerNode: int(1, 4, 65),
  cpusPerTask: int(1, 1024),
  memoryMb: int(1, 100_000_000),
  topology: field(fc.constantFrom('required', 'preferred', 'none'), 'REQUIRED'),
  priorityClass: field(fc.constantFrom('inference', 'training', 'batch', 'lab'), 'urgent'),
  walltimeSeconds: int(1, 366 * 86_400),
  minRuntimeSeconds: int(0, 366 * 86_400),
  checkpointIntervalSeconds: field(fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 366 * 86_400 })), 0, -1, 'x'),
  gracePeriodSeconds: int(0, 3600),
  signal: field(fc.constantFrom('TERM', 'USR1', 'USR2', 'INT', 'HUP'), 'KILL', 9, 'SIGTERM'),
  exclusive: field(fc.boolean(), 'true', 0),
  zone: field(fc.constantFrom(null, 'general'), 'sovereign', 'Bad Zone', 'x'.repeat(65)),
  output: logPath,
  error: logPath,
  afterOk: field(fc.constant([]), ['1', 'x'], [1], Array(1001).fill('1'), ['9'.repeat(40)], ['999999']),
  array: field(
    fc.record(
      {
        indices: fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 5 }),
        throttle: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 10_000 })),
      },
      { requiredKeys: ['indices'] },
    ),
    { indices: [] },
    { indices: [-1] },
    { indices: [1_000_001] },
    { indices: [1], throttle: 0 },
    { indices: [1], extra: 1 },
    { throttle: 1 },
  ),
  requeue: field(fc.boolean(), 'false', 1),
};
const OPTIONAL = Object.keys(FIELDS).filter((k) => !['command', 'script', 'gpus', 'nodes', 'gpusPerNode'].includes(k));

/** A valid submission (command or script; gpus, or nodes × gpusPerNode, or neither), often valid. */
const validSubmission = fc
  .tuple(
    fc.record(Object.fromEntries(OPTIONAL.map((k) => [k, FIELDS[k].valid])), { requiredKeys: [] }),
    fc.constantFrom('command', 'script'),
    fc.oneof(
      fc.constant({}),
      fc.record({ gpus: FIELDS.gpus.valid }),
      fc.record({ nodes: FIELDS.nodes.valid, gpusPerNode: FIELDS.gpusPerNode.valid }),
    ),
  )
  .map(([rest, which, shape]) => ({ ...rest, ...shape, [which]: which === 'command' ? ['true'] : 'true' }));

/** Up to three fields of a valid submission made wrong (or dropped, or joined by unknown keys). */
const mutation = fc.oneof(
  fc.constantFrom(...Object.keys(FIELDS)).chain((k) => fc.tuple(fc.constant(k), FIELDS[k].invalid)),
  fc.constantFrom(...Object.keys(FIELDS)).map((k) => [k, undefined] as const),
  fc.tuple(
    fc.oneof(oddString, fc.constantFrom('__proto__', 'constructor', 'prototype', 'Name', 'gpus ')),
    fc.jsonValue({ maxDepth: 2 }),
  ),
);
const submitBody = fc.oneof(
  { weight: 3, arbitrary: validSubmission },
  {
    weight: 6,
    arbitrary: fc.tuple(validSubmission, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([body, changes]) => {
      const out: Record<string, unknown> = { ...body };
      for (const [k, v] of changes)
        if (v === undefined) delete out[k];
        // defineProperty: `__proto__` becomes an own key that JSON.stringify writes out.
        else Object.defineProperty(out, k, { value: v, enumerable: true, configurable: true, writable: true });
      return out;
    }),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** Header names a client may send (fetch refuses the connection-level ones itself). */
const headerName = fc
  .stringMatching(/^[a-z][a-z0-9-]{0,15}$/)
  .filter(
    (h) =>
      !['host', 'connection', 'content-length', 'transfer-encoding', 'expect', 'upgrade', 'keep-alive', 'te', 'trailer'].includes(
        h,
      ),
  );
const headerValue = fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,200}$/);

/** A path segment: ids, garbage, traversal, over-long, bad percent-encoding, unicode. */
const segment = fc.oneof(
  fc.stringMatching(/^\d{1,25}$/),
  fc.webSegment(),
  fc.constantFrom(
    '..',
    '.',
    '%2e%2e',
    '%2F',
    '%00',
    '%',
    '%zz',
    '%E0%A4%A',
    '%ff',
    '',
    '__proto__',
    'constructor',
    'x'.repeat(250),
  ),
  fc
    .array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 12 })
    .map((b) => b.map((x) => `%${x.toString(16).padStart(2, '0')}`).join('')),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }).map(encodeURIComponent),
);
const queryString = fc
  .array(
    fc.tuple(
      fc.oneof(
        fc.constantFrom('state', 'member', 'user', 'project', 'name', 'array', 'after', 'limit', 'stream', 'offset', 'follow'),
        fc.constantFrom('__proto__', 'constructor', 'toString', '', 'a[b]', 'a.b'),
        fc.webSegment(),
      ),
      fc.oneof(
        fc.webSegment(),
        fc.constantFrom(
          '',
          '0',
          '-1',
          '1e3',
          '1000',
          '1001',
          'NaN',
          'pending,running',
          'pending,bogus',
          'true',
          'error',
          '%ff',
          'x'.repeat(300),
          // Ids and cursors beyond every engine's integer (SQLite's and PostgreSQL's int8, JavaScript's safe integers).
          '999999999999999999',
          '9223372036854775808',
          '9007199254740993',
          '000000000000000001',
        ),
        fc.string({ unit: 'grapheme', maxLength: 10 }).map(encodeURIComponent),
      ),
    ),
    { maxLength: 4 },
  )
  .map((kv) => (kv.length === 0 ? '' : `?${kv.map(([k, v]) => `${k}=${v}`).join('&')}`));

// ---- the server -------------------------------------------------------------------------------

beforeAll(async () => {
  t = await testServer();
  alice = await t.token('pharma', 'researcher', 'alice');
  padmin = await t.token('pharma', 'member-admin', 'padmin');
  paud = await t.token('pharma', 'auditor', 'paud');
  defense = await t.token('defense', 'researcher', 'dana');
  fuzzer = await t.token('pharma', 'researcher', 'fuzz');
  const r = await t.call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', { name: 'kept', command: ['sh', '-c', 'echo kept'] });
  doneJob = await t.waitFor('the job to end', async () => {
    const j = (await t.call<JobView>(alice, 'GET', `/v1/jobs/${r.body.jobs[0].id}`)).body;
    return j.state === 'succeeded' ? j : undefined;
  });
  nodeName = (await t.call<{ nodes: { name: string }[] }>(t.operator, 'GET', '/v1/nodes')).body.nodes[0].name;
});

afterAll(async () => {
  await t.close();
});

describe('fuzzing the API', () => {
  it('POST /v1/jobs: random and almost-valid bodies, random Idempotency-Keys', async () => {
    await send(json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'draining', reason: 'fuzzing' }));
    try {
      let taken = 0;
      await fc.assert(
        fc.asyncProperty(submitBody, fc.option(fc.stringMatching(/^[\x21-\x7e]{1,300}$/)), async (body, key) => {
          const a = await send(json(fuzzer, 'POST', '/v1/jobs', body, key ? { 'idempotency-key': key } : {}));
          if (a.status < 300) taken++;
        }),
        { numRuns: RUNS * 2 },
      );
      // The fuzzer reached the depths: some submissions were valid. None started; all are cancelled.
      expect(taken).toBeGreaterThan(0);
      let after: string | null = '0';
      while (after !== null) {
        const page: { status: number; body: { jobs: JobView[]; next: string | null } } = await t.call(
          t.operator,
          'GET',
          `/v1/jobs?member=pharma&user=fuzz&limit=1000&after=${after}`,
        );
        for (const j of page.body.jobs) {
          expect(j.startedAt, `job ${j.id} started`).toBeNull();
          if (j.state === 'pending') expect((await t.call(t.operator, 'POST', `/v1/jobs/${j.id}/cancel`)).status).toBe(200);
        }
        after = page.body.next;
      }
    } finally {
      await send(json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'up' }));
    }
  });

  it('POST /v1/jobs: prototype-pollution keys anywhere in the body', async () => {
    const proto = fc.constantFrom('__proto__', 'constructor', 'prototype');
    const polluted = fc
      .tuple(proto, fc.constantFrom('top', 'env', 'array', 'nested'), fc.jsonValue({ maxDepth: 2 }))
      .map(([k, where, v]) => {
        const inner = `{"${k}": ${JSON.stringify(v)}, "x": 1}`;
        const proto2 = `{"prototype": {"polluted": true}}`;
        if (where === 'top') return `{"command": ["true"], "${k}": ${k === 'constructor' ? proto2 : JSON.stringify(v)}}`;
        if (where === 'env') return `{"command": ["true"], "env": ${inner}}`;
        if (where === 'array') return `{"command": ["true"], "array": ${inner}}`;
        return `[${inner}, {"command": ["true"], "env": {"a": ${inner}}}]`;
      });
    await fc.assert(
      fc.asyncProperty(polluted, async (text) => {
        await send(json(defense, 'POST', '/v1/jobs', text));
        await send(json(t.operator, 'POST', '/v1/tokens', text.replace('"command": ["true"]', '"name": "x"')));
      }),
      { numRuns: RUNS / 2 },
    );
    // The server runs in this process: a polluted Object.prototype would show here.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('malformed JSON text and wrong content types', async () => {
    const valid = JSON.stringify({ command: ['true'], name: 'ct' });
    const text = fc.oneof(
      fc.string({ maxLength: 50 }),
      fc.string({ unit: 'binary', maxLength: 50 }),
      fc.nat({ max: valid.length - 1 }).map((n) => valid.slice(0, n)),
      fc.constantFrom(
        '{"command": ["true"],}',
        "{'a':1}",
        'NaN',
        '{"a":1}{"b":2}',
        '\ufeff{}',
        '[',
        '"',
        'null',
        '{"a":"\\u12"}',
        valid + 'x',
      ),
    );
    const contentType = fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/json; charset=utf-16',
        'APPLICATION/JSON',
        'text/plain',
        'text/json',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'application/octet-stream',
        'application/json-patch+json',
        ';',
      ),
      headerValue,
    );
    const route = fc.constantFrom(
      ['POST', '/v1/jobs'],
      ['POST', '/v1/tokens'],
      ['PUT', '/v1/nodes/NODE/state'],
      ['POST', '/v1/jobs/1/cancel'],
      ['DELETE', '/v1/tokens/x'],
    );
    await fc.assert(
      fc.asyncProperty(route, text, fc.option(contentType), async ([method, path], body, type) => {
        await send({
          method,
          path: path.replace('NODE', nodeName),
          headers: { authorization: `Bearer ${defense}`, ...(type !== null ? { 'content-type': type } : {}) },
          body,
        });
      }),
      { numRuns: RUNS },
    );
  });

  it('GET /v1/jobs with random query strings, as every role', async () => {
    const token = fc.constantFrom(alice, padmin, paud, t.operator);
    await fc.assert(
      fc.asyncProperty(token, queryString, async (tok, q) => {
        await send(json(tok, 'GET', `/v1/jobs${q}`));
      }),
      { numRuns: RUNS },
    );
  });

  it('/v1/jobs/:id/* with random ids, sub-paths, methods and query strings', async () => {
    // Pharma's tokens only: fuzzed `follow=true` on a job that never ends would (rightly) stream for ever.
    const token = fc.constantFrom(alice, padmin, paud);
    const id = fc.oneof(fc.constant(doneJob.id), segment);
    const sub = fc.constantFrom('', '/events', '/explain', '/logs', '/cancel', '/logs/x', '/', '/%2e%2e', '/../../tokens');
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');
    await fc.assert(
      fc.asyncProperty(token, id, sub, method, queryString, async (tok, i, s, m, q) => {
        await send(json(tok, m, `/v1/jobs/${i}${s}${q}`));
      }),
      { numRuns: RUNS },
    );
  });

  it('/v1/tokens, /v1/nodes/:name/state and /v1/members with random bodies and params', async () => {
    const tokenBody = fc.oneof(
      fc.record(
        {
          name: oddValue,
          user: fc.oneof(fc.constantFrom('bob', 'a@b.c', 'x'.repeat(129), 'bad user'), oddValue),
          role: fc.oneof(fc.constantFrom('operator', 'member-admin', 'researcher', 'auditor', 'root'), oddValue),
          member: fc.oneof(fc.constantFrom('pharma', 'telecom', null, 'nope'), oddValue),
          ttlDays: fc.oneof(fc.constantFrom(1, 3650, 3651, 0, null), oddNumber),
        },
        { requiredKeys: [] },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const nodeBody = fc.oneof(
      fc.record(
        {
          state: fc.oneof(fc.constantFrom('up', 'draining', 'down', 'maintenance', 'UP'), oddValue),
          reason: fc.oneof(oddString, fc.constant('r'.repeat(1025)), fc.constant(null)),
        },
        { requiredKeys: [] },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const request = fc.oneof(
      fc.tuple(fc.constantFrom(t.operator, padmin, alice), tokenBody).map(([tok, b]) => json(tok, 'POST', '/v1/tokens', b)),
      fc.tuple(fc.constantFrom(t.operator, padmin, paud), segment).map(([tok, s]) => json(tok, 'DELETE', `/v1/tokens/${s}`)),
      fc
        .tuple(fc.constantFrom(t.operator, padmin), fc.oneof(fc.constant(nodeName), segment), nodeBody)
        .map(([tok, n, b]) => json(tok, 'PUT', `/v1/nodes/${n}/state`, b)),
      fc
        .tuple(
          fc.constantFrom(t.operator, padmin, paud, alice),
          fc.constantFrom('/v1/members', '/v1/nodes', '/v1/tokens', '/metrics'),
          queryString,
        )
        .map(([tok, p, q]) => json(tok, 'GET', p + q)),
    );
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        await send(r);
      }),
      { numRuns: RUNS },
    );
    // Whatever the fuzzer did to the node, it is back up.
    await send(json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'up' }));
  });

  it('the inference management API: /v1/deployments, /v1/keys, /v1/usage, /v1/gateway/settings', async () => {
    // Replicas of a deployment the fuzzer makes run `true` at most, and only once the node is back.
    await send(json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'draining', reason: 'fuzzing' }));
    const member = fc.oneof(fc.constantFrom('pharma', 'telecom', 'defense', 'nope', '__proto__'), oddValue);
    const deployBody = fc.oneof(
      fc.record(
        {
          member,
          project: fc.oneof(fc.constantFrom('protein-folding', 'sensor-fusion', 'Bad'), oddValue),
          model: fc.oneof(fc.constantFrom('m', 'org/model:7b@v1', '-bad', 'x'.repeat(129)), oddValue),
          command: FIELDS.command.invalid,
          gpus: fc.oneof(fc.constantFrom(1, 0, 100_001, 1e9), oddNumber),
          min: fc.oneof(fc.constantFrom(1, 2, 0, 1001), oddNumber),
          max: fc.oneof(fc.constantFrom(1, 3, 0, 1001), oddNumber),
          accreditations: fc.oneof(fc.constantFrom(['public'], ['restricted', 'restricted'], [], ['secret']), oddValue),
          zone: fc.oneof(fc.constantFrom(null, 'general', 'sovereign', 'Bad Zone'), oddValue),
          reasoning: fc.oneof(fc.boolean(), oddValue),
          scaleToZeroSeconds: fc.oneof(fc.constantFrom(null, 1, 0, 30 * 86_400 + 1), oddNumber),
        },
        { requiredKeys: [] },
      ),
      // Valid but for a field or two: commands are `true` only.
      fc
        .record({ model: fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/), min: fc.integer({ min: 1, max: 3 }), max: oddValue })
        .map((b) => ({ ...b, command: ['true'] })),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const scaleBody = fc.oneof(
      fc.record(
        {
          min: fc.oneof(fc.integer({ min: 1, max: 3 }), oddValue),
          max: fc.oneof(fc.integer({ min: 1, max: 3 }), oddValue),
          scaleToZeroSeconds: fc.oneof(fc.constantFrom(null, 60), oddValue),
        },
        { requiredKeys: [] },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const keyBody = fc.oneof(
      fc.record(
        {
          name: oddValue,
          member,
          models: fc.oneof(fc.constantFrom(['*'], [], [''], Array(101).fill('m')), oddValue),
          classification: fc.oneof(fc.constantFrom('public', 'internal', 'restricted', 'secret'), oddValue),
          zones: fc.oneof(fc.constantFrom(null, ['general'], [], ['x'.repeat(65)]), oddValue),
          ttlDays: fc.oneof(fc.constantFrom(null, 1, 0, 3651), oddNumber),
          requestsPerMinute: fc.oneof(fc.constantFrom(null, 1, 0), oddNumber),
          tokensPerMinute: oddNumber,
          tokensPerDay: oddNumber,
          tokensPerMonth: oddNumber,
        },
        { requiredKeys: [] },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const settingsBody = fc.oneof(
      fc.record({ member, logging: fc.oneof(fc.boolean(), oddValue) }, { requiredKeys: [] }),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const writer = fc.constantFrom(t.operator, padmin, alice, paud, defense);
    const request = fc.oneof(
      fc.tuple(writer, deployBody).map(([tok, b]) => json(tok, 'POST', '/v1/deployments', b)),
      fc.tuple(writer, segment, scaleBody).map(([tok, s, b]) => json(tok, 'PATCH', `/v1/deployments/${s}`, b)),
      fc.tuple(writer, segment, fc.constantFrom('GET', 'DELETE')).map(([tok, s, m]) => json(tok, m, `/v1/deployments/${s}`)),
      fc.tuple(writer, keyBody).map(([tok, b]) => json(tok, 'POST', '/v1/keys', b)),
      fc.tuple(writer, segment).map(([tok, s]) => json(tok, 'DELETE', `/v1/keys/${s}`)),
      fc.tuple(writer, settingsBody).map(([tok, b]) => json(tok, 'PUT', '/v1/gateway/settings', b)),
      fc
        .tuple(
          writer,
          fc.constantFrom('/v1/deployments', '/v1/keys', '/v1/usage', '/v1/gateway/settings', '/v1/gateway/limits'),
          fc.oneof(
            queryString,
            fc.constantFrom(
              '?since=-1',
              '?since=1e400',
              '?until=x',
              '?member=telecom',
              '?member=',
              '?since=0&until=0',
              '?period=hour&since=0',
              '?period=year',
              '?period=day&until=1e400',
            ),
          ),
        )
        .map(([tok, p, q]) => json(tok, 'GET', p + q)),
    );
    try {
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          await send(r);
        }),
        { numRuns: RUNS },
      );
    } finally {
      for (const d of (await t.call<{ deployments: { id: string }[] }>(t.operator, 'GET', '/v1/deployments')).body.deployments)
        await send(json(t.operator, 'DELETE', `/v1/deployments/${d.id}`));
      await send(json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'up' }));
    }
  });

  it('unknown routes, wrong methods, random headers and Authorization values', async () => {
    const path = fc.oneof(
      fc.constantFrom(
        '/v1/jobs',
        '/v1/tokens',
        '/v1/members',
        '/v1/nodes',
        '/metrics',
        '/healthz',
        '/readyz',
        '/openapi.json',
        '/',
        '/v2/jobs',
        '//v1//jobs',
      ),
      fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`),
      fc.webPath().map((p) => p || '/'),
    );
    const method = fc.constantFrom(
      'GET',
      'POST',
      'PUT',
      'DELETE',
      'PATCH',
      'HEAD',
      'OPTIONS',
      'PROPFIND',
      'SEARCH',
      'FOO',
      'get',
    );
    const authorization = fc.oneof(
      fc.constantFrom(
        `Bearer ${defense}`,
        `Bearer ${paud}`,
        'Bearer',
        'Bearer ',
        'bearer fbk_',
        'Basic Zm9vOmJhcg==',
        `Bearer ${'x'.repeat(9000)}`,
      ),
      headerValue,
      headerValue.map((v) => `Bearer ${v}`),
      headerValue.map((v) => `Bearer fbk_${v}`),
    );
    const headers = fc
      .tuple(fc.option(authorization), fc.option(headerValue), fc.dictionary(headerName, headerValue, { maxKeys: 4 }))
      .map(([auth, key, rest]) => ({
        ...rest,
        ...(auth !== null ? { authorization: auth } : {}),
        ...(key !== null ? { 'idempotency-key': key } : {}),
      }));
    await fc.assert(
      fc.asyncProperty(method, path, headers, fc.option(fc.jsonValue({ maxDepth: 2 })), async (m, p, h, body) => {
        // Only tokens whose valid submissions never run (defense) or are refused (an auditor).
        const withBody = body !== null && !['GET', 'HEAD'].includes(m.toUpperCase());
        await send({
          method: m,
          path: p,
          headers: { ...h, ...(withBody ? { 'content-type': 'application/json' } : {}) },
          body: withBody ? JSON.stringify(body) : undefined,
        });
      }),
      { numRuns: RUNS },
    );
  });

  it('oversized inputs: beyond every schema limit, over the body limit, huge headers and paths', async () => {
    const big = (n: number) => 'x'.repeat(n);
    const sub = (b: Record<string, unknown>) => json(fuzzer, 'POST', '/v1/jobs', { command: ['true'], ...b });
    const cases: [Raw, number, string?][] = [
      [sub({ name: big(129) }), 400, 'body.name'],
      [sub({ command: Array(4097).fill('true') }), 400, 'body.command'],
      [sub({ command: [big(65_537)] }), 400, 'body.command.0'],
      [json(fuzzer, 'POST', '/v1/jobs', { script: big(1_048_577) }), 400, 'body.script'],
      [sub({ env: { A: big(65_537) } }), 400, 'body.env.A'],
      [sub({ env: { [big(257)]: 'x' } }), 400, `body.env.${big(257)}`],
      [sub({ workdir: big(4097) }), 400, 'body.workdir'],
      [sub({ output: big(4097) }), 400, 'body.output'],
      [sub({ afterOk: Array(1001).fill('1') }), 400, 'body.afterOk'],
      [sub({ array: { indices: Array.from({ length: 10_001 }, (_, i) => i) } }), 400, 'body.array.indices'],
      [sub({ gpus: 100_001 }), 400, 'body.gpus'],
      [sub({ gpus: 1e308 }), 400, 'body.gpus'],
      [sub({ name: big(3 * 1024 * 1024) }), 413],
      [json(fuzzer, 'POST', '/v1/jobs', `[${Array(300_000).fill('{"a":[1,2,3]}').join(',')}]`), 413],
      [json(fuzzer, 'POST', '/v1/jobs', `${'['.repeat(100_000)}${']'.repeat(100_000)}`), 400],
      [json(t.operator, 'POST', '/v1/tokens', { name: big(129), user: 'u', role: 'auditor' }), 400, 'body.name'],
      [json(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'up', reason: big(1025) }), 400, 'body.reason'],
      [json(alice, 'GET', `/v1/jobs?state=${big(201)}`), 400, 'query.state'],
      [json(alice, 'GET', `/v1/jobs?member=${big(65)}`), 400, 'query.member'],
      [json(alice, 'GET', `/v1/jobs?limit=1001`), 400, 'query.limit'],
      [json(alice, 'GET', `/v1/jobs?after=${'9'.repeat(18)}`), 200],
      [json(alice, 'GET', `/v1/jobs?after=${'9'.repeat(19)}`), 400, 'query.after'],
      [json(alice, 'GET', `/v1/jobs/${'9'.repeat(18)}`), 404],
      [sub({ afterOk: ['9'.repeat(18)] }), 400, 'body.afterOk'],
      [json(alice, 'GET', `/v1/jobs?name=${big(10_000)}`), 400, 'query.name'],
      [json(alice, 'GET', `/v1/jobs/${'1'.repeat(19)}`), 400, 'params.id'],
      [json(alice, 'GET', `/v1/jobs/${'1'.repeat(201)}`), 414],
      [json(alice, 'GET', `/v1/jobs/${doneJob.id}/logs?offset=${'9'.repeat(30)}`), 400, 'query.offset'],
      [json(alice, 'POST', '/v1/jobs', { command: ['true'] }, { 'idempotency-key': big(257) }), 400, 'headers.idempotency-key'],
      [json(alice, 'GET', '/v1/jobs', undefined, { 'x-big': big(20_000) }), 431],
      [json(alice, 'GET', `/v1/jobs?user=${big(20_000)}`), 431],
    ];
    for (const [r, status, field] of cases) {
      const a = await send(r);
      expect(a.status, `${r.method} ${r.path.slice(0, 80)}: ${a.text.slice(0, 200)}`).toBe(status);
      if (field) expect((JSON.parse(a.text) as ErrorBody).error.field).toBe(field);
    }
  });

  it('a member bound to a zone this site lacks is refused (409), not left to stop the scheduling loop', async () => {
    for (const [tok, body] of [
      [defense, { command: ['true'] }],
      [defense, { member: 'defense', command: ['true'] }],
    ] as const) {
      const a = await send(json(tok, 'POST', '/v1/jobs', body));
      expect(a.status, a.text).toBe(409);
      expect((JSON.parse(a.text) as ErrorBody).error.code).toBe('CONFLICT');
    }
  });

  it('afterwards the server still answers, and lost nothing', async () => {
    expect((await send({ method: 'GET', path: '/healthz' })).status).toBe(200);
    expect((await send({ method: 'GET', path: '/readyz' })).status).toBe(200);
    const kept = await t.call<JobView>(alice, 'GET', `/v1/jobs/${doneJob.id}`);
    expect(kept.body).toEqual(doneJob);
    expect((await t.call(alice, 'GET', `/v1/jobs/${doneJob.id}/logs`)).body).toBe('kept\n');
    // A valid submission is taken and runs.
    const r = await t.call<{ jobs: JobView[] }>(alice, 'POST', '/v1/jobs', { name: 'after', command: ['true'] });
    expect(r.status).toBe(201);
    await t.waitFor('the job to succeed', async () => {
      const j = (await t.call<JobView>(alice, 'GET', `/v1/jobs/${r.body.jobs[0].id}`)).body;
      return j.state === 'succeeded';
    });
  });
});

// Cedar parses and evaluates by recursion: a few hundred nested brackets or chained operators took
// its stack and answered 500. Deep, long and random policies get a 200 or a 400 naming body.cedar.
describe('fuzzing Cedar policies (PUT /v1/policies/:id)', () => {
  const deep = fc.tuple(
    fc.constantFrom(
      (n: number) => `${'('.repeat(n)}true${')'.repeat(n)}`,
      (n: number) => `${'['.repeat(n)}1${']'.repeat(n)} == 1`,
      (n: number) => `${'{a:'.repeat(n)}1${'}'.repeat(n)} == 1`,
      (n: number) => `${Array(n).fill('1').join(' + ')} == 1`,
      (n: number) => `context${'.a'.repeat(n)}`,
      (n: number) => `${'if true then '.repeat(n)}true${' else false'.repeat(n)}`,
      (n: number) => `${'!'.repeat(n)}true`,
    ),
    fc.integer({ min: 1, max: 6000 }),
  );
  const when = fc.oneof(
    deep.map(([shape, n]) => shape(n)),
    fc.string({ maxLength: 200 }),
    fc.stringMatching(/^[()[\]{}!+.&|=a-z0-9" ]{0,2000}$/),
  );
  const cedar = fc.oneof(
    when.map((w) => `forbid (principal, action, resource) when { ${w} };`),
    when.map((w) => `permit (principal, action, resource) unless { ${w} };`),
    fc.string({ maxLength: 300 }),
  );

  it('answers 200 or 400 (field body.cedar), never a 5xx; the policies still read and admission still decides', async () => {
    const accepted: string[] = [];
    let n = 0;
    await fc.assert(
      fc.asyncProperty(cedar, async (text) => {
        const id = `fuzz-${++n}`;
        const a = await send(json(t.operator, 'PUT', `/v1/policies/${id}`, { cedar: text }));
        if (a.status === 200) accepted.push(id);
        else {
          expect(a.status, a.text).toBe(400);
          expect((JSON.parse(a.text) as ErrorBody).error.field).toMatch(/^body(\.cedar)?$/);
        }
      }),
      { numRuns: RUNS },
    );
    expect((await send(json(t.operator, 'GET', '/v1/policies'))).status).toBe(200);
    // Admission evaluates every site policy, the accepted fuzz among them: it still decides.
    const ds = await send(
      json(padmin, 'POST', '/v1/datasets', {
        id: 'fuzz-policies',
        classification: 'internal',
        zones: ['general'],
        location: '/x',
      }),
    );
    expect(ds.status, ds.text).toBe(201);
    expect((await send(json(padmin, 'GET', '/v1/datasets/fuzz-policies/uses'))).status).toBe(200);
    for (const id of accepted) expect((await send(json(t.operator, 'DELETE', `/v1/policies/${id}`))).status).toBe(200);
  });
});

// Ids beyond the engines' integers, in every id parameter and cursor: 4xx (or an empty page), never
// a 500, on both stores (PostgreSQL's int8 overflows where SQLite's compare quietly).
forEachEngine('ids beyond the integer range', (engine, location) => {
  describe(`ids beyond every integer answer 4xx, not 500 (${engine})`, () => {
    let loc: Location;
    let s: TestServer;
    beforeAll(async () => {
      loc = await location();
      s = await testServer(engine === 'postgres' ? { store: loc.url } : {});
    });
    afterAll(async () => {
      await s?.close();
      await loc?.dispose();
    });

    it('every id parameter and cursor', async () => {
      const tok = await s.token('pharma', 'member-admin', 'big');
      const ids = ['999999999999999999', '9223372036854775808', '9007199254740993', '18446744073709551616', '0', '-1', '1e99'];
      const requests: [string, string, unknown?][] = [];
      for (const id of ids) {
        for (const sub of ['', '/events', '/explain', '/logs']) requests.push(['GET', `/v1/jobs/${id}${sub}`]);
        requests.push(['POST', `/v1/jobs/${id}/cancel`]);
        for (const q of ['after', 'array']) requests.push(['GET', `/v1/jobs?${q}=${id}`]);
        requests.push(['POST', '/v1/jobs', { command: ['true'], afterOk: [id] }]);
        requests.push(['DELETE', `/v1/tokens/${id}`]);
        requests.push(['POST', `/v1/users/${id}/disable`]);
        for (const p of ['/v1/deployments/', '/v1/agreements/', '/v1/policies/', '/v1/datasets/', '/v1/members/'])
          requests.push(['GET', `${p}${id}${p === '/v1/datasets/' ? '/uses' : p === '/v1/members/' ? '/break-glass' : ''}`]);
        requests.push(['DELETE', `/v1/deployments/${id}`]);
        requests.push(['DELETE', `/v1/keys/${id}`]);
        requests.push(['POST', `/v1/approvals/${id}/approve`, {}]);
        requests.push(['GET', `/v1/models/m/versions/${id}`]);
        requests.push(['GET', `/v1/audit/events?after=${id}`]);
        requests.push(['GET', `/v1/audit/proofs/inclusion?index=${id}&size=${id}`]);
      }
      for (const [method, path, body] of requests)
        for (const token of [tok, s.operator]) {
          const r = await s.call(token, method, path, body);
          const what = `${method} ${path} -> ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
          expect(r.status, what).toBeLessThan(500);
          if (path.startsWith('/v1/jobs?after=') || path.startsWith('/v1/jobs?array='))
            expect(r.status === 400 || (r.body as { jobs: unknown[] }).jobs.length === 0, what).toBe(true);
        }
    });
  });
});

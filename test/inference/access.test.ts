// The authorization matrix of the inference management API (deployments, gateway keys, usage,
// the prompt-keeping setting and the kept prompts): every endpoint × every role × an object of the asker's own member
// and one of another member, against the access rules (src/server/access.ts for deployments, the
// gateway's own in src/inference/gateway/routes.ts: copied below, so a change there has to be
// made here too). Another member's objects do not exist for you (404), a member named in the
// body or query that is not yours is a scope escape (403), and nothing of another member appears
// in any answer. The simulated executor runs no process: replicas are jobs that never serve.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type Role } from '../../src/api/contract.js';
import { GatewayStore } from '../../src/inference/gateway/store.js';
import type { KyselyStore } from '../../src/store/index.js';
import { testServer, type TestServer } from '../server/helpers.js';

type Action =
  | 'logs.read'
  | 'deployment.create'
  | 'deployment.scale'
  | 'deployment.delete'
  | 'deployment.read'
  | 'key.create'
  | 'key.read'
  | 'key.revoke'
  | 'usage.read'
  | 'limits.read'
  | 'logging.read'
  | 'logging.manage';
/** all: every member's; member: the asker's member's (everyone's for an asker of no member);
 * own: only what the asker made; none: never. */
type Scope = 'all' | 'member' | 'own' | 'none';

const TABLE: Record<Action, Record<Role, Scope>> = {
  // Deploying and scaling are a member's own work: an operator deploying as pharma would serve code
  // under pharma's name. Deleting stops replicas, an operational act like cancelling a job.
  'deployment.create': { operator: 'none', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'deployment.scale': { operator: 'none', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'deployment.delete': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'deployment.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  // A key an operator made for pharma would call pharma's models: only a member's people create keys.
  'key.create': { operator: 'none', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'key.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  // A researcher revokes only the keys they made themselves.
  'key.revoke': { operator: 'all', 'member-admin': 'member', researcher: 'own', auditor: 'none' },
  'usage.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  'limits.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  'logging.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  // Whether a member's prompts are kept is the member's own decision: not even an operator's.
  'logging.manage': { operator: 'none', 'member-admin': 'member', researcher: 'none', auditor: 'none' },
  // The kept prompts themselves: the member's admins only.
  'logs.read': { operator: 'none', 'member-admin': 'member', researcher: 'none', auditor: 'none' },
};

const OWN = 'pharma';
const OTHER = 'telecom';
type Whose = 'own' | 'other';
interface Asker {
  readonly label: string;
  readonly role: Role;
  readonly member: string | null;
  readonly user: string;
}
const ASKERS: readonly Asker[] = [
  { label: 'operator', role: 'operator', member: null, user: 'operator' },
  { label: 'member-admin', role: 'member-admin', member: OWN, user: 'padmin' },
  { label: 'researcher', role: 'researcher', member: OWN, user: 'bob' },
  { label: 'auditor', role: 'auditor', member: OWN, user: 'paud' },
  { label: 'consortium auditor', role: 'auditor', member: null, user: 'caud' },
];
/** Strings only telecom's objects hold: none may reach a pharma asker. */
const MARKERS = ['telecom-secret-model', 'telecom-key-name', 'carol'];

interface Req {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
}
interface Row {
  readonly endpoint: string;
  readonly action: Action;
  readonly object: boolean;
  /** 404: the object does not exist for you; 403: you named another member yourself. */
  readonly hidden?: 403 | 404;
  readonly ok: number;
  request(whose: Whose): Promise<Req>;
  check?(body: unknown, asker: Asker, whose: Whose): void;
}

let t: TestServer;
const tokens = new Map<string, string>();
/** Who owns the objects: a researcher of each member (alice is a colleague of the researcher asker). */
const owner: Record<Whose, string> = {} as never;
const deployment: Record<Whose, string> = {} as never;
const memberOf = (w: Whose) => (w === 'own' ? OWN : OTHER);
const modelOf = (w: Whose) => (w === 'own' ? 'pharma-model' : 'telecom-secret-model');
let serial = 0;

async function deploy(w: Whose, model = `${modelOf(w)}-${++serial}`): Promise<string> {
  const r = await t.call<{ id: string }>(owner[w], 'POST', '/v1/deployments', { model, command: ['true'] });
  if (r.status !== 201) throw new Error(`deploy: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id;
}
async function newKey(w: Whose): Promise<string> {
  const name = w === 'own' ? 'pharma-key' : 'telecom-key-name';
  const r = await t.call<{ key: { id: string } }>(owner[w], 'POST', '/v1/keys', { name });
  if (r.status !== 201) throw new Error(`key: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.key.id;
}
const listOf = <T>(body: unknown, field: string) => (body as Record<string, T[]>)[field];
/** The members in a list answer: only the asker's own, or both for an asker of no member. */
const onlyVisible = (members: Iterable<string>, asker: Asker) =>
  expect([...new Set(members)].sort()).toEqual(asker.member === null ? [OWN, OTHER] : [asker.member]);

const ROWS: readonly Row[] = [
  {
    endpoint: 'POST /v1/deployments {member}',
    action: 'deployment.create',
    object: true,
    hidden: 403,
    ok: 201,
    request: async (w) => ({
      method: 'POST',
      path: '/v1/deployments',
      body: { member: memberOf(w), model: `m-${++serial}`, command: ['true'] },
    }),
    check: (body, asker, w) => expect(body).toMatchObject({ member: memberOf(w), createdBy: asker.user, target: 1 }),
  },
  {
    endpoint: 'GET /v1/deployments',
    action: 'deployment.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/deployments' }),
    check: (body, asker) =>
      onlyVisible(
        listOf<{ member: string }>(body, 'deployments').map((d) => d.member),
        asker,
      ),
  },
  {
    endpoint: 'GET /v1/deployments/:id',
    action: 'deployment.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/deployments/${deployment[w]}` }),
    check: (body, _a, w) => expect(body).toMatchObject({ id: deployment[w], member: memberOf(w) }),
  },
  {
    endpoint: 'PATCH /v1/deployments/:id',
    action: 'deployment.scale',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'PATCH', path: `/v1/deployments/${deployment[w]}`, body: { max: 2 } }),
    check: (body) => expect(body).toMatchObject({ max: 2 }),
  },
  {
    endpoint: 'DELETE /v1/deployments/:id',
    action: 'deployment.delete',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'DELETE', path: `/v1/deployments/${await deploy(w)}` }),
    check: (body) => expect(body).toMatchObject({ state: 'deleted' }),
  },
  {
    endpoint: 'POST /v1/keys {member}',
    action: 'key.create',
    object: true,
    hidden: 403,
    ok: 201,
    request: async (w) => ({ method: 'POST', path: '/v1/keys', body: { name: 'matrix', member: memberOf(w) } }),
    check: (body, asker, w) => {
      expect(body).toMatchObject({ key: { member: memberOf(w), user: asker.user }, secret: expect.stringMatching(/^fgk_/) });
    },
  },
  {
    endpoint: 'GET /v1/keys',
    action: 'key.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/keys' }),
    check(body, asker) {
      const keys = listOf<{ member: string; hash?: string }>(body, 'keys');
      onlyVisible(
        keys.map((k) => k.member),
        asker,
      );
      // Secrets are shown once, at creation; not even their hashes are listed.
      for (const k of keys) expect(k).not.toHaveProperty('hash');
      expect(JSON.stringify(body)).not.toMatch(/fgk_[A-Za-z0-9_-]{20,}/);
    },
  },
  {
    endpoint: 'DELETE /v1/keys/:id',
    action: 'key.revoke',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'DELETE', path: `/v1/keys/${await newKey(w)}` }),
    check: (body, _a, w) => expect(body).toMatchObject({ member: memberOf(w), revokedAt: expect.any(String) }),
  },
  {
    endpoint: 'GET /v1/usage?member=',
    action: 'usage.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/usage?since=0&member=${memberOf(w)}` }),
    check: (body, _a, w) => {
      const usage = listOf<{ member: string; model: string; promptTokens: number }>(body, 'usage');
      expect(usage).toEqual([expect.objectContaining({ member: memberOf(w), model: modelOf(w), promptTokens: 100 })]);
    },
  },
  {
    endpoint: 'GET /v1/usage',
    action: 'usage.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/usage?since=0' }),
    check: (body, asker) =>
      onlyVisible(
        listOf<{ member: string }>(body, 'usage').map((u) => u.member),
        asker,
      ),
  },
  {
    endpoint: 'GET /v1/gateway/limits?member=',
    action: 'limits.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/gateway/limits?member=${memberOf(w)}` }),
    check: (body, _a, w) => {
      const [m, ...more] = listOf<{ member: string; keys: { name: string }[] }>(body, 'members');
      expect(more).toEqual([]);
      expect(m.member).toBe(memberOf(w));
      expect(m.keys.map((k) => k.name)).toContain(w === 'own' ? 'pharma-key' : 'telecom-key-name');
    },
  },
  {
    endpoint: 'GET /v1/gateway/limits',
    action: 'limits.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/gateway/limits' }),
    check: (body, asker) => {
      const members = listOf<{ member: string }>(body, 'members').map((m) => m.member);
      // Operators and consortium auditors see every member of the consortium, with keys or without.
      if (asker.member === null) expect(members).toEqual(expect.arrayContaining([OWN, OTHER, 'defense']));
      else expect(members).toEqual([asker.member]);
    },
  },
  {
    endpoint: 'GET /v1/gateway/settings?member=',
    action: 'logging.read',
    object: true,
    hidden: 403,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/gateway/settings?member=${memberOf(w)}` }),
    check: (body, _a, w) => expect(body).toEqual({ member: memberOf(w), logging: false }),
  },
  {
    endpoint: 'PUT /v1/gateway/settings {member}',
    action: 'logging.manage',
    object: true,
    hidden: 403,
    ok: 200,
    request: async (w) => ({ method: 'PUT', path: '/v1/gateway/settings', body: { member: memberOf(w), logging: false } }),
    check: (body, _a, w) => expect(body).toEqual({ member: memberOf(w), logging: false }),
  },
  {
    endpoint: 'GET /v1/gateway/logs?member=',
    action: 'logs.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/gateway/logs?member=${memberOf(w)}` }),
    check: (body, _a, w) => expect(body).toEqual({ member: memberOf(w), logs: [] }),
  },
];

function expected(row: Row, asker: Asker, whose: Whose): number {
  const scope = TABLE[row.action][asker.role];
  if (row.object && whose === 'other' && asker.member !== null) return row.hidden ?? 404;
  if (scope === 'none') return 403;
  // The own-member objects are alice's: the researcher asker is her colleague, not their maker.
  if (scope === 'own') return 403;
  return row.ok;
}

beforeAll(async () => {
  t = await testServer({ executor: 'simulated' });
  owner.own = await t.token(OWN, 'researcher', 'alice');
  owner.other = await t.token(OTHER, 'researcher', 'carol');
  tokens.set('operator', t.operator);
  for (const a of ASKERS.slice(1)) tokens.set(a.label, await t.token(a.member, a.role, a.user));
  deployment.own = await deploy('own', modelOf('own'));
  deployment.other = await deploy('other', modelOf('other'));
  await newKey('own');
  await newKey('other');
  // Metered usage of each member, as the gateway's flush writes it.
  const gw = new GatewayStore((t.server.store as KyselyStore).db);
  await gw.addUsage(
    (['own', 'other'] as const).map((w) => ({
      member: memberOf(w),
      keyId: `key-${w}`,
      model: modelOf(w),
      requests: 1,
      promptTokens: 100,
      completionTokens: 10,
      reasoningTokens: 0,
      at: Math.floor(Date.now() / 1000),
    })),
  );
});
afterAll(() => t?.close());

describe('the inference access matrix: endpoint × role × own or other member', () => {
  for (const row of ROWS) {
    describe(row.endpoint, () => {
      for (const asker of ASKERS) {
        for (const whose of row.object ? (['own', 'other'] as const) : (['own'] as const)) {
          const want = expected(row, asker, whose);
          const what = row.object ? ` on ${whose === 'own' ? 'its own' : 'another'} member's object` : '';
          it(`${asker.label}${what}: ${want}`, async () => {
            const req = await row.request(whose);
            const r = await t.call(tokens.get(asker.label)!, req.method, req.path, req.body);
            expect(r.status, JSON.stringify(r.body)).toBe(want);
            if (r.status >= 400) {
              const e = (r.body as { error: { code: string; message: string } }).error;
              expect(ERROR_CODES).toContain(e.code);
              if (want === 404) expect(e.code).toBe('NOT_FOUND');
              if (want === 403) expect(e.code).toBe('FORBIDDEN');
            } else row.check?.(r.body, asker, whose);
            if (asker.member !== null) {
              const text = JSON.stringify(r.body);
              for (const m of MARKERS) expect(text, `${m} leaked`).not.toContain(m);
            }
          });
        }
      }
    });
  }

  it("an operator does no member's work: it is told who does, and the field naming the member", async () => {
    const cases: [string, string, unknown, string, string | undefined][] = [
      ['POST', '/v1/deployments', { member: OWN, model: 'by-operator', command: ['true'] }, 'models are deployed', 'body.member'],
      ['PATCH', `/v1/deployments/${deployment.own}`, { max: 3 }, 'deployments are scaled', undefined],
      ['POST', '/v1/keys', { name: 'by-operator', member: OWN }, 'gateway keys are created', 'body.member'],
      // Without naming a member, too: there is no member to act for.
      ['POST', '/v1/keys', { name: 'by-operator' }, 'gateway keys are created', 'body.member'],
    ];
    for (const [method, path, body, says, field] of cases) {
      const r = await t.call<{ error: { code: string; message: string; field?: string } }>(t.operator, method, path, body);
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      expect(r.body.error.message).toContain(says);
      expect(r.body.error.message).toContain("by a member's people; an operator runs the machine, not a member's work");
      expect(r.body.error.field).toBe(field);
    }
    // Nothing was made or changed.
    const deployments = await t.call<{ deployments: { model: string; max: number; id: string }[] }>(
      t.operator,
      'GET',
      '/v1/deployments',
    );
    expect(deployments.body.deployments.map((d) => d.model)).not.toContain('by-operator');
    expect(deployments.body.deployments.find((d) => d.id === deployment.own)!.max).not.toBe(3);
    const keys = await t.call<{ keys: { name: string }[] }>(t.operator, 'GET', '/v1/keys');
    expect(keys.body.keys.map((k) => k.name)).not.toContain('by-operator');
  });

  it('a researcher revokes the keys they made', async () => {
    const bob = tokens.get('researcher')!;
    const made = await t.call<{ key: { id: string } }>(bob, 'POST', '/v1/keys', { name: 'bobs' });
    const r = await t.call(bob, 'DELETE', `/v1/keys/${made.body.key.id}`);
    expect(r.status).toBe(200);
  });

  it('no token, or a gateway key in place of a token: 401 on every management endpoint', async () => {
    const key = await t.call<{ secret: string }>(owner.own, 'POST', '/v1/keys', { name: 'not-a-token' });
    for (const row of ROWS) {
      const req = await row.request('own');
      for (const token of [null, key.body.secret]) {
        const r = await t.call(token, req.method, req.path, req.body);
        expect(r.status, `${row.endpoint} with ${token ? 'a gateway key' : 'no token'}`).toBe(401);
      }
    }
  });
});

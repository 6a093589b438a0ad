// The authorization matrix over HTTP: every endpoint × every role × an object of the asker's own
// member and one of another member, checked against the access table in src/server/access.ts
// (copied below, so that a change there has to be made here too). Another member's objects do
// not exist for you: 404, never 403, and nothing of them in lists, error messages, logs, events,
// explanations, or usage figures. Adding an endpoint means adding a row to ROWS.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type JobView, type Role } from '../../src/api/contract.js';
import { CONSORTIUM, testServer, type TestServer } from './helpers.js';

type Action =
  | 'job.submit'
  | 'job.read'
  | 'job.logs'
  | 'job.cancel'
  | 'token.manage'
  | 'token.issue'
  | 'user.manage'
  | 'user.read'
  | 'node.manage'
  | 'member.read'
  | 'metrics.read';
/** all: every member's; member: the asker's member's (everyone's for a consortium-wide asker);
 * own-jobs: only the asker's own jobs; consortium: only askers of no member; none: never. */
type Scope = 'all' | 'member' | 'own-jobs' | 'consortium' | 'none';

const TABLE: Record<Action, Record<Role, Scope>> = {
  // A member's work, done by its people: an operator runs the machine and submits for no member.
  'job.submit': { operator: 'none', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'job.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  'job.logs': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'none' },
  'job.cancel': { operator: 'all', 'member-admin': 'member', researcher: 'own-jobs', auditor: 'none' },
  // Listing and revoking: an operator may stop any token, and see them all.
  'token.manage': { operator: 'all', 'member-admin': 'member', researcher: 'none', auditor: 'none' },
  // Making a member's users and their tokens: the member's admins only, never an operator (people, not names).
  'token.issue': { operator: 'none', 'member-admin': 'member', researcher: 'none', auditor: 'none' },
  'user.manage': { operator: 'none', 'member-admin': 'member', researcher: 'none', auditor: 'none' },
  'user.read': { operator: 'all', 'member-admin': 'member', researcher: 'none', auditor: 'member' },
  'node.manage': { operator: 'all', 'member-admin': 'none', researcher: 'none', auditor: 'none' },
  'member.read': { operator: 'all', 'member-admin': 'member', researcher: 'member', auditor: 'member' },
  // Metrics carry every member's GPUs in use: operators and consortium-wide auditors only.
  'metrics.read': { operator: 'all', 'member-admin': 'none', researcher: 'none', auditor: 'consortium' },
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
/** Who asks: one of each role in pharma (the operator has no member), and a consortium-wide auditor. */
const ASKERS: readonly Asker[] = [
  { label: 'operator', role: 'operator', member: null, user: 'operator' },
  { label: 'member-admin', role: 'member-admin', member: OWN, user: 'padmin' },
  { label: 'researcher', role: 'researcher', member: OWN, user: 'bob' },
  { label: 'auditor', role: 'auditor', member: OWN, user: 'paud' },
  { label: 'consortium auditor', role: 'auditor', member: null, user: 'caud' },
];

/** Strings only telecom's objects contain: none may reach a pharma asker, in any response. */
const MARKERS = ['carol', 'telecom-secret-job', 'TELECOM-LOG-SECRET', 'TELECOM-ENV-SECRET', 'network-digital-twin', 'tel-token'];

interface Req {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
}
interface Row {
  readonly endpoint: string;
  readonly action: Action;
  /** Whether the endpoint acts on one member's object; false: it is asked once per asker. */
  readonly object: boolean;
  /** The answer when the object is another member's: 404 (it does not exist for you), or 403 where
   * the asker names the other member itself (a scope escape in the body). */
  readonly hidden?: 403 | 404;
  readonly ok: number;
  /** The request, on an object of `whose` member (owned by alice, a colleague of the researcher). */
  request(whose: Whose): Promise<Req>;
  /** More checks on a successful answer. */
  check?(body: unknown, asker: Asker, whose: Whose): void;
}

let t: TestServer;
const tokens = new Map<string, string>();
let alice: string;
let carol: string;
/** Telecom's member admin: it makes telecom's users and their tokens. */
let carolAdmin: string;
let made = 0;
/** A finished job of each member with a log, an env value and (telecom) an array. */
const done: Record<Whose, JobView> = {} as never;
let telecomArray: string;
let telecomRunning: string;
let nodeName: string;

const tokenOf = (a: Asker) => tokens.get(a.label)!;
const memberOf = (whose: Whose) => (whose === 'own' ? OWN : OTHER);
const ownerOf = (whose: Whose) => (whose === 'own' ? alice : carol);
const jobsOf = (r: { body: unknown }) => (r.body as { jobs: JobView[] }).jobs;

async function submit(token: string, body: Record<string, unknown>): Promise<JobView> {
  const r = await t.call(token, 'POST', '/v1/jobs', body);
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${JSON.stringify(r.body)}`);
  return jobsOf(r)[0];
}
async function finished(id: string): Promise<JobView> {
  return t.waitFor(`job ${id} to end`, async () => {
    const j = (await t.call<JobView>(t.operator, 'GET', `/v1/jobs/${id}`)).body;
    return ['succeeded', 'failed', 'cancelled', 'lost'].includes(j.state) ? j : undefined;
  });
}
/** Per member, a long job (running or queued) that the waiting jobs depend on; cancelled at the end. */
const blockers = new Map<Whose, Promise<JobView>>();
/** A job that waits while the file runs: it depends (afterOk) on its member's blocker. */
async function waiting(whose: Whose): Promise<JobView> {
  let blocker = blockers.get(whose);
  if (!blocker) {
    blocker = submit(ownerOf(whose), { name: 'blocker', command: ['sleep', '600'], gracePeriodSeconds: 0 });
    blockers.set(whose, blocker);
  }
  return submit(ownerOf(whose), { name: 'waiting', command: ['true'], afterOk: [(await blocker).id] });
}
/** The member admin of `whose` member: the one who makes its users. */
const adminOf = (whose: Whose) => (whose === 'own' ? tokenOf(ASKERS[1]) : carolAdmin);
/** A new researcher of `whose` member, made by its member admin; its id. */
async function newUser(whose: Whose): Promise<string> {
  const name = `${whose === 'own' ? 'dave' : 'erin'}-${++made}`;
  const r = await t.call<{ user: { id: string } }>(adminOf(whose), 'POST', '/v1/users', { name, roles: ['researcher'] });
  expect(r.status).toBe(201);
  return r.body.user.id;
}
async function newToken(whose: Whose): Promise<string> {
  const r = await t.call<{ token: { id: string } }>(adminOf(whose), 'POST', '/v1/tokens', {
    name: whose === 'own' ? 'pharma-token' : 'tel-token',
    user: await newUser(whose),
  });
  expect(r.status).toBe(201);
  return r.body.token.id;
}

const ROWS: readonly Row[] = [
  {
    endpoint: 'GET /v1/jobs/:id',
    action: 'job.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/jobs/${done[w].id}` }),
    check(body, asker, w) {
      const j = body as JobView;
      expect(j.member).toBe(memberOf(w));
      // Env values are the owner's business: colleagues and operators see the names only.
      expect(j.spec.env).toEqual({ SECRET_ENV: '(hidden)' });
    },
  },
  {
    endpoint: 'GET /v1/jobs/:id/events',
    action: 'job.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/jobs/${done[w].id}/events` }),
    check: (body) => expect((body as { events: unknown[] }).events.length).toBeGreaterThan(0),
  },
  {
    endpoint: 'GET /v1/jobs/:id/explain',
    action: 'job.read',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/jobs/${done[w].id}/explain` }),
    check: (body, _a, w) => expect(body).toMatchObject({ job: done[w].id, state: 'succeeded' }),
  },
  {
    endpoint: 'GET /v1/jobs/:id/logs',
    action: 'job.logs',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/jobs/${done[w].id}/logs` }),
    check: (body, _a, w) => expect(body).toBe(w === 'own' ? 'PHARMA-LOG\n' : 'TELECOM-LOG-SECRET\n'),
  },
  {
    endpoint: 'GET /v1/jobs/:id/logs?stream=error&follow=true&offset=1',
    action: 'job.logs',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'GET', path: `/v1/jobs/${done[w].id}/logs?stream=error&follow=true&offset=1` }),
    check: (body, _a, w) => expect(body).toBe(w === 'own' ? 'HARMA-LOG\n' : 'ELECOM-LOG-SECRET\n'),
  },
  {
    endpoint: 'POST /v1/jobs/:id/cancel',
    action: 'job.cancel',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'POST', path: `/v1/jobs/${(await waiting(w)).id}/cancel` }),
    check: (body) => expect(body).toMatchObject({ state: 'cancelled' }),
  },
  {
    endpoint: 'POST /v1/jobs {member}',
    action: 'job.submit',
    object: true,
    hidden: 403,
    ok: 201,
    request: async (w) => ({ method: 'POST', path: '/v1/jobs', body: { member: memberOf(w), command: ['true'], gpus: 1 } }),
    check: (body, asker, w) => expect(jobsOf({ body })[0]).toMatchObject({ member: memberOf(w), user: asker.user }),
  },
  {
    // frank: a researcher that each member's admin created (so only that admin may make his tokens).
    endpoint: 'POST /v1/tokens {member}',
    action: 'token.issue',
    object: true,
    hidden: 403,
    ok: 201,
    request: async (w) => ({
      method: 'POST',
      path: '/v1/tokens',
      body: { name: 'matrix', user: 'frank', role: 'researcher', member: memberOf(w) },
    }),
    check: (body, _a, w) => expect(body).toMatchObject({ token: { member: memberOf(w), role: 'researcher', user: 'frank' } }),
  },
  {
    endpoint: 'POST /v1/users {member}',
    action: 'user.manage',
    object: true,
    hidden: 403,
    ok: 201,
    request: async (w) => ({
      method: 'POST',
      path: '/v1/users',
      body: { name: `matrix-${++made}`, roles: ['researcher'], member: memberOf(w) },
    }),
    check: (body, _a, w) => expect(body).toMatchObject({ user: { member: memberOf(w), roles: ['researcher'], origin: 'local' } }),
  },
  {
    endpoint: 'POST /v1/users/:id/disable',
    action: 'user.manage',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'POST', path: `/v1/users/${await newUser(w)}/disable` }),
    check: (body, _a, w) => expect(body).toMatchObject({ member: memberOf(w), disabledAt: expect.any(String) }),
  },
  {
    endpoint: 'GET /v1/users',
    action: 'user.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: `/v1/users?member=${OTHER}` }),
    check(body, asker) {
      const members = new Set((body as { users: { member: string | null }[] }).users.map((x) => x.member));
      // member= narrows a consortium-wide list; it never widens a member's.
      expect([...members]).toEqual(asker.member === null ? [OTHER] : []);
    },
  },
  {
    endpoint: 'DELETE /v1/tokens/:id',
    action: 'token.manage',
    object: true,
    ok: 200,
    request: async (w) => ({ method: 'DELETE', path: `/v1/tokens/${await newToken(w)}` }),
    check: (body, _a, w) => expect(body).toMatchObject({ member: memberOf(w), revokedAt: expect.any(String) }),
  },
  {
    endpoint: 'GET /v1/jobs',
    action: 'job.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/jobs?limit=1000' }),
    check(body, asker) {
      const members = new Set(jobsOf({ body }).map((j) => j.member));
      expect([...members].sort()).toEqual(asker.member === null ? [OWN, OTHER].sort() : [OWN]);
    },
  },
  {
    endpoint: 'GET /v1/tokens',
    action: 'token.manage',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/tokens' }),
    check(body, asker) {
      const members = new Set((body as { tokens: { member: string | null }[] }).tokens.map((x) => x.member));
      if (asker.member === null) expect(members).toContain(OTHER);
      else expect([...members]).toEqual([asker.member]);
    },
  },
  {
    endpoint: 'GET /v1/members',
    action: 'member.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/members' }),
    check(body, asker) {
      const members = (body as { members: { id: string; runningGpus: number }[] }).members;
      if (asker.member !== null) expect(members.map((m) => m.id)).toEqual([asker.member]);
      else {
        expect(members).toHaveLength(6);
        // Telecom holds a GPU right now: only askers of no member see it.
        expect(members.find((m) => m.id === OTHER)!.runningGpus).toBeGreaterThanOrEqual(1);
      }
    },
  },
  {
    endpoint: 'GET /v1/nodes',
    action: 'member.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/v1/nodes' }),
    check: (body) => expect((body as { nodes: unknown[] }).nodes.length).toBeGreaterThan(0),
  },
  {
    endpoint: 'PUT /v1/nodes/:name/state',
    action: 'node.manage',
    object: false,
    ok: 200,
    request: async () => ({ method: 'PUT', path: `/v1/nodes/${nodeName}/state`, body: { state: 'up', reason: 'matrix' } }),
    check: (body) => expect(body).toMatchObject({ name: nodeName, state: 'up' }),
  },
  {
    endpoint: 'GET /metrics',
    action: 'metrics.read',
    object: false,
    ok: 200,
    request: async () => ({ method: 'GET', path: '/metrics' }),
    check: (body) => expect(String(body)).toContain(`fabrik_gpus_running{member="${OTHER}"}`),
  },
];

/** What the table says `asker` gets on an object of `whose` member owned by alice. */
function expected(row: Row, asker: Asker, whose: Whose): number {
  const scope = TABLE[row.action][asker.role];
  if (row.object && whose === 'other' && asker.member !== null) return row.hidden ?? 404;
  if (scope === 'none' || (scope === 'consortium' && asker.member !== null)) return 403;
  // The askers' own-member objects are alice's: a researcher asker is her colleague.
  if (scope === 'own-jobs') return 403;
  return row.ok;
}

/** Every answer: JSON with the error shape on failure, and nothing of telecom for a pharma asker. */
function checkAnswer(r: { status: number; body: unknown }, asker: Asker | null): void {
  expect(r.status).toBeLessThan(500);
  if (r.status >= 400) {
    const e = (r.body as { error?: { code?: string; message?: string } }).error;
    expect(e, JSON.stringify(r.body)).toBeDefined();
    expect(ERROR_CODES).toContain(e!.code);
    expect(typeof e!.message).toBe('string');
  }
  if (asker && asker.member !== null) {
    const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
    for (const m of MARKERS) expect(text, `${m} leaked`).not.toContain(m);
  }
}

beforeAll(async () => {
  t = await testServer();
  alice = await t.token(OWN, 'researcher', 'alice');
  carol = await t.token(OTHER, 'researcher', 'carol');
  tokens.set('operator', t.operator);
  for (const a of ASKERS.slice(1)) tokens.set(a.label, await t.token(a.member, a.role, a.user));
  carolAdmin = await t.token(OTHER, 'member-admin', 'carol-admin');
  for (const whose of ['own', 'other'] as const) {
    const r = await t.call(adminOf(whose), 'POST', '/v1/users', { name: 'frank', roles: ['researcher'] });
    expect(r.status).toBe(201);
  }
  const own = await submit(alice, {
    name: 'pharma-job',
    command: ['sh', '-c', 'echo PHARMA-LOG'],
    env: { SECRET_ENV: 'pharma-env-value' },
  });
  const other = await submit(carol, {
    name: 'telecom-secret-job',
    project: 'network-digital-twin',
    command: ['sh', '-c', 'echo TELECOM-LOG-SECRET'],
    env: { SECRET_ENV: 'TELECOM-ENV-SECRET' },
  });
  telecomArray = (await submit(carol, { name: 'telecom-secret-job', command: ['true'], array: { indices: [0, 1] } })).arrayJobId!;
  done.own = await finished(own.id);
  done.other = await finished(other.id);
  expect([done.own.state, done.other.state]).toEqual(['succeeded', 'succeeded']);
  // Telecom holds a GPU while the matrix runs: its usage must show to nobody of pharma.
  telecomRunning = (await submit(carol, { name: 'telecom-secret-job', command: ['sleep', '120'], gracePeriodSeconds: 0 })).id;
  await t.waitFor('telecom to hold a GPU', async () => {
    const j = (await t.call<JobView>(carol, 'GET', `/v1/jobs/${telecomRunning}`)).body;
    return j.state === 'running';
  });
  nodeName = (await t.call<{ nodes: { name: string }[] }>(t.operator, 'GET', '/v1/nodes')).body.nodes[0].name;
});
afterAll(async () => {
  await t.call(t.operator, 'POST', `/v1/jobs/${telecomRunning}/cancel`);
  for (const b of blockers.values()) await t.call(t.operator, 'POST', `/v1/jobs/${(await b).id}/cancel`);
  await t.close();
});

describe('the access matrix: endpoint × role × own or other member', () => {
  for (const row of ROWS) {
    describe(row.endpoint, () => {
      for (const asker of ASKERS) {
        for (const whose of row.object ? (['own', 'other'] as const) : (['own'] as const)) {
          const want = expected(row, asker, whose);
          const what = row.object ? ` on ${whose === 'own' ? 'its own' : 'another'} member's object` : '';
          it(`${asker.label}${what}: ${want}`, async () => {
            const req = await row.request(whose);
            const r = await t.call(tokenOf(asker), req.method, req.path, req.body);
            expect(r.status, JSON.stringify(r.body)).toBe(want);
            checkAnswer(r, asker);
            if (want === 404) expect((r.body as { error: { code: string } }).error.code).toBe('NOT_FOUND');
            if (want === 403) expect((r.body as { error: { code: string } }).error.code).toBe('FORBIDDEN');
            if (want < 300) row.check?.(r.body, asker, whose);
          });
        }
      }
    });
  }
});

describe('lists never show another member', () => {
  const filters = () => [
    '',
    `member=${OTHER}`,
    `member=${OTHER}&user=carol`,
    'user=carol',
    'project=network-digital-twin',
    'name=telecom-secret-job',
    `array=${telecomArray}`,
    'state=succeeded,running,pending,cancelled',
    'after=0&limit=1',
    `after=${Number(done.other.id) - 1}`,
  ];
  for (const asker of ASKERS) {
    it(`GET /v1/jobs with every filter, as ${asker.label}`, async () => {
      for (const q of filters()) {
        const r = await t.call<{ jobs: JobView[] }>(tokenOf(asker), 'GET', `/v1/jobs?${q}`);
        expect(r.status, q).toBe(200);
        checkAnswer(r, asker);
        if (asker.member !== null)
          expect(
            r.body.jobs.every((j) => j.member === asker.member),
            q,
          ).toBe(true);
      }
      // The filters do find telecom's jobs for those who may see them.
      const wide = await t.call<{ jobs: JobView[] }>(tokenOf(asker), 'GET', `/v1/jobs?member=${OTHER}&user=carol`);
      expect(wide.body.jobs.length > 0).toBe(asker.member === null);
    });
  }

  it('a member query parameter does not widen /v1/tokens or /v1/members', async () => {
    const admin = tokenOf(ASKERS[1]);
    const list = await t.call<{ tokens: { member: string }[] }>(admin, 'GET', `/v1/tokens?member=${OTHER}`);
    expect(list.status).toBe(200);
    expect(list.body.tokens.every((x) => x.member === OWN)).toBe(true);
    checkAnswer(list, ASKERS[1]);
    for (const asker of ASKERS.slice(1, 4)) {
      const m = await t.call<{ members: { id: string }[] }>(tokenOf(asker), 'GET', `/v1/members?member=${OTHER}`);
      expect(m.body.members.map((x) => x.id)).toEqual([OWN]);
    }
  });

  it('no member sees another member usage: members and metrics', async () => {
    for (const asker of ASKERS.filter((a) => a.member !== null)) {
      const m = await t.call<{ members: { id: string; runningGpus: number }[] }>(tokenOf(asker), 'GET', '/v1/members');
      expect(m.body.members).toEqual([expect.objectContaining({ id: OWN })]);
      const metrics = await t.call(tokenOf(asker), 'GET', '/metrics');
      expect(metrics.status).toBe(403);
      checkAnswer(metrics, asker);
    }
    const op = await t.call<{ members: { id: string; runningGpus: number }[] }>(t.operator, 'GET', '/v1/members');
    expect(op.body.members.find((x) => x.id === OTHER)!.runningGpus).toBeGreaterThanOrEqual(1);
  });
});

describe('scopes that cannot be escaped', () => {
  it('researchers cancel their own jobs, not a colleague job', async () => {
    const mine = await waiting('own');
    const bob = tokenOf(ASKERS[2]);
    const colleague = await t.call(bob, 'POST', `/v1/jobs/${mine.id}/cancel`);
    expect(colleague.status).toBe(403);
    checkAnswer(colleague, ASKERS[2]);
    const self = await t.call<JobView>(alice, 'POST', `/v1/jobs/${mine.id}/cancel`);
    expect(self.status).toBe(200);
    expect(self.body.state).toBe('cancelled');
  });

  it('the job owner sees env values; colleagues see the names only', async () => {
    const own = await t.call<JobView>(alice, 'GET', `/v1/jobs/${done.own.id}`);
    expect(own.body.spec.env).toEqual({ SECRET_ENV: 'pharma-env-value' });
    for (const asker of ASKERS.slice(1, 4)) {
      const r = await t.call<JobView>(tokenOf(asker), 'GET', `/v1/jobs/${done.own.id}`);
      expect(JSON.stringify(r.body)).not.toContain('pharma-env-value');
    }
  });

  it('auditors cannot submit, cancel or read logs, not even in their own member', async () => {
    for (const auditor of ASKERS.filter((a) => a.role === 'auditor')) {
      const tok = tokenOf(auditor);
      const sub = await t.call(tok, 'POST', '/v1/jobs', { command: ['true'], member: OWN });
      const cancel = await t.call(tok, 'POST', `/v1/jobs/${(await waiting('own')).id}/cancel`);
      const logs = await t.call<{ error: { message: string } }>(tok, 'GET', `/v1/jobs/${done.own.id}/logs`);
      expect([sub.status, cancel.status, logs.status]).toEqual([403, 403, 403]);
      expect(logs.body.error.message).toBe('an auditor may not read job logs');
    }
  });

  it('a submission cannot name another member, and afterOk cannot reach its jobs', async () => {
    for (const asker of ASKERS.slice(1, 3)) {
      const r = await t.call<{ error: { code: string; field: string } }>(tokenOf(asker), 'POST', '/v1/jobs', {
        member: OTHER,
        command: ['true'],
      });
      expect(r.status).toBe(403);
      expect(r.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.member' });
      checkAnswer(r, asker);
    }
    // Depending on another member's job reads exactly as depending on a job that does not exist.
    const theirs = await t.call<{ error: { message: string } }>(alice, 'POST', '/v1/jobs', {
      command: ['true'],
      afterOk: [done.other.id],
    });
    const none = await t.call<{ error: { message: string } }>(alice, 'POST', '/v1/jobs', {
      command: ['true'],
      afterOk: ['999999'],
    });
    expect([theirs.status, none.status]).toEqual([400, 400]);
    expect(theirs.body.error.message.replace(done.other.id, 'N')).toBe(none.body.error.message.replace('999999', 'N'));
  });

  it("a submission cannot leave its member's zone, nor enter one bound to other members", async () => {
    // The full site (simulated) has the sovereign zone that defense is bound to.
    const s = await testServer({ executor: 'simulated' });
    try {
      const pharma = await s.token(OWN, 'researcher', 'alice');
      const defense = await s.token('defense', 'researcher', 'dana');
      const cases: [string, Record<string, unknown>, number][] = [
        [pharma, { zone: 'sovereign' }, 403],
        [defense, { zone: 'general' }, 403],
        [pharma, { zone: 'general' }, 201],
        [defense, { zone: 'sovereign' }, 201],
        [defense, {}, 201],
      ];
      for (const [tok, extra, status] of cases) {
        const r = await s.call<{ error: { code: string; field: string } }>(tok, 'POST', '/v1/jobs', {
          command: ['true'],
          ...extra,
        });
        expect(r.status, JSON.stringify([extra, r.body])).toBe(status);
        if (status === 403) expect(r.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.zone' });
      }
    } finally {
      await s.close();
    }
  });

  it("an operator does no member's work: submitting, registering data, proposing agreements", async () => {
    type Err = { error: { code: string; message: string; field?: string } };
    // A job for telecom naming pharma's data would be admitted under telecom's agreement with pharma.
    const cases: [string, unknown, string, string | undefined][] = [
      [
        '/v1/jobs',
        { member: OTHER, command: ['true'], datasets: ['trials'], purpose: 'drug-discovery' },
        'jobs are submitted',
        'body.member',
      ],
      ['/v1/jobs', { command: ['true'] }, 'jobs are submitted', 'body.member'],
      [
        '/v1/datasets',
        { id: 'by-operator', owner: OWN, classification: 'internal', zones: ['general'], location: '/x' },
        'datasets are registered',
        'body.owner',
      ],
      [
        '/v1/agreements',
        {
          id: 'by-operator',
          grantee: OTHER,
          datasets: [`${OWN}/trials`],
          purposes: ['drug-discovery'],
          zones: ['general'],
          expires: '2099-01-01T00:00:00Z',
          produces: 'confidential',
        },
        'agreements are proposed',
        undefined,
      ],
    ];
    const before = (await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?limit=1000')).body.jobs.length;
    for (const [path, body, says, field] of cases) {
      const r = await t.call<Err>(t.operator, 'POST', path, body);
      expect(r.status, `${path}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      expect(r.body.error.message).toContain(says);
      expect(r.body.error.message).toContain("by a member's people; an operator runs the machine, not a member's work");
      expect(r.body.error.field).toBe(field);
    }
    expect((await t.call<{ jobs: JobView[] }>(t.operator, 'GET', '/v1/jobs?limit=1000')).body.jobs).toHaveLength(before);
    const datasets = await t.call<{ datasets: { id: string }[] }>(t.operator, 'GET', '/v1/datasets');
    expect(datasets.body.datasets.map((d) => d.id)).not.toContain('by-operator');
    // What stays an operator's: protecting the machine (cancel, drain) is in the matrix above.
  });

  it('an Idempotency-Key of one member says nothing about another', async () => {
    const a = await t.call(alice, 'POST', '/v1/jobs', { command: ['true'], gpus: 1 }, { 'idempotency-key': 'shared-key' });
    const c = await t.call(carol, 'POST', '/v1/jobs', { command: ['false'], gpus: 1 }, { 'idempotency-key': 'shared-key' });
    expect([a.status, c.status]).toEqual([201, 201]);
    expect(jobsOf(c)[0].id).not.toBe(jobsOf(a)[0].id);
  });

  it('member admins make users and tokens of their own member only, and never operator ones', async () => {
    const admin = tokenOf(ASKERS[1]);
    const mallory = await t.call(admin, 'POST', '/v1/users', {
      name: 'mallory',
      roles: ['member-admin', 'researcher', 'auditor'],
    });
    expect(mallory.status).toBe(201);
    const op = await t.call<{ error: { code: string; field: string } }>(admin, 'POST', '/v1/tokens', {
      name: 'x',
      user: 'mallory',
      role: 'operator',
    });
    expect(op.status).toBe(403);
    expect(op.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.role' });
    const opNull = await t.call(admin, 'POST', '/v1/tokens', { name: 'x', user: 'mallory', role: 'operator', member: null });
    expect(opNull.status).toBe(403);
    const other = await t.call(admin, 'POST', '/v1/tokens', { name: 'x', user: 'mallory', role: 'researcher', member: OTHER });
    expect(other.status).toBe(403);
    const opUser = await t.call<{ error: { field: string } }>(admin, 'POST', '/v1/users', { name: 'o', roles: ['operator'] });
    expect([opUser.status, opUser.body.error.field]).toEqual([403, 'body.roles']);
    const wideUser = await t.call(admin, 'POST', '/v1/users', { name: 'o', roles: ['auditor'], member: OTHER });
    expect(wideUser.status).toBe(403);
    // An auditor token asked for without a member is one of the admin's member, not consortium-wide.
    const aud = await t.call<{ token: { member: string | null } }>(admin, 'POST', '/v1/tokens', {
      name: 'x',
      user: 'mallory',
      role: 'auditor',
      member: null,
    });
    expect(aud.status).toBe(201);
    expect(aud.body.token.member).toBe(OWN);
    for (const role of ['member-admin', 'researcher', 'auditor']) {
      const r = await t.call<{ token: { member: string } }>(admin, 'POST', '/v1/tokens', { name: 'x', user: 'mallory', role });
      expect(r.status).toBe(201);
      expect(r.body.token.member).toBe(OWN);
    }
    // A user of several roles: the token says which; a role the user lacks is refused.
    const which = await t.call<{ error: { field: string } }>(admin, 'POST', '/v1/tokens', { name: 'x', user: 'mallory' });
    expect([which.status, which.body.error.field]).toEqual([400, 'body.role']);
    const lacks = await t.call<{ error: { field: string } }>(admin, 'POST', '/v1/tokens', {
      name: 'x',
      user: 'frank',
      role: 'auditor',
    });
    expect([lacks.status, lacks.body.error.field]).toEqual([400, 'body.role']);
    // Not a user the admin created: alice is a person of her own.
    const notMine = await t.call<{ error: { code: string; field: string } }>(admin, 'POST', '/v1/tokens', {
      name: 'x',
      user: 'alice',
    });
    expect(notMine.status).toBe(403);
    expect(notMine.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.user' });
    const nobody = await t.call<{ error: { code: string; field: string } }>(admin, 'POST', '/v1/tokens', {
      name: 'x',
      user: 'nobody',
    });
    expect(nobody.body.error).toMatchObject({ code: 'NOT_FOUND', field: 'body.user' });
    // Operator tokens are no member's: a member admin cannot even find one to revoke.
    const all = await t.call<{ tokens: { id: string; role: string }[] }>(t.operator, 'GET', '/v1/tokens');
    const opToken = all.body.tokens.find((x) => x.role === 'operator')!;
    const revoke = await t.call<{ error: { code: string } }>(admin, 'DELETE', `/v1/tokens/${opToken.id}`);
    expect([revoke.status, revoke.body.error.code]).toEqual([404, 'NOT_FOUND']);
    // An operator makes no token of a member's user, and no operator token with a member.
    for (const body of [
      { name: 'x', user: 'mallory', role: 'researcher', member: OWN },
      { name: 'x', user: 'operator', role: 'operator', member: OWN },
    ]) {
      const r = await t.call<{ error: { code: string; field: string } }>(t.operator, 'POST', '/v1/tokens', body);
      expect(r.status).toBe(403);
      expect(r.body.error).toMatchObject({ code: 'FORBIDDEN', field: 'body.member' });
    }
  });

  it('only operators drain nodes', async () => {
    for (const asker of ASKERS.slice(1)) {
      const r = await t.call(tokenOf(asker), 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'draining' });
      expect(r.status).toBe(403);
    }
    const drain = await t.call(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'draining', reason: 'test' });
    expect(drain.body).toMatchObject({ state: 'draining' });
    const resume = await t.call(t.operator, 'PUT', `/v1/nodes/${nodeName}/state`, { state: 'up' });
    expect(resume.body).toMatchObject({ state: 'up' });
  });

  it("another member's job log stays unreadable through a job whose output names it", async () => {
    const own = `${t.dataDir}/jobs/${done.own.id}/fabrik-${done.own.id}.out`;
    for (const output of [
      own,
      `../${done.own.id}/fabrik-${done.own.id}.out`,
      `${t.dataDir}/operator-token`,
      `${t.dataDir}/fabrik.db`,
      '/',
    ]) {
      // Refused at submit: logs go in the job's own folder (test/server/job-files.test.ts has the rest).
      const r = await t.call<{ error: { code: string; field: string } }>(carol, 'POST', '/v1/jobs', {
        command: ['true'],
        gpus: 1,
        output,
      });
      expect(r.status, output).toBe(400);
      checkAnswer(r, null);
      expect(r.body.error).toMatchObject({ code: 'VALIDATION_FAILED', field: 'body.output' });
      expect(JSON.stringify(r.body)).not.toContain('PHARMA-LOG');
      expect(JSON.stringify(r.body)).not.toContain(t.operator);
    }
  });
});

describe('who is not let in', () => {
  const paths: Req[] = [
    { method: 'GET', path: '/v1/jobs' },
    { method: 'POST', path: '/v1/jobs', body: { command: ['true'] } },
    { method: 'GET', path: '/v1/tokens' },
    { method: 'GET', path: '/v1/members' },
    { method: 'GET', path: '/metrics' },
  ];
  const headers: Record<string, Record<string, string>> = {
    'no Authorization header': {},
    'a Basic header': { authorization: 'Basic YWxpY2U6cHc=' },
    'an unknown fbk_ token': { authorization: 'Bearer fbk_not-a-token' },
    'a JWT without an identity provider': { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' },
  };
  for (const [label, h] of Object.entries(headers)) {
    it(`${label}: 401`, async () => {
      for (const p of paths) {
        const r = await t.call<{ error: { code: string } }>(null, p.method, p.path, p.body, h);
        expect(r.status).toBe(401);
        expect(r.body.error.code).toBe('UNAUTHENTICATED');
      }
    });
  }

  it('a revoked token is refused at once, also when it was just used (cached)', async () => {
    await t.call(tokenOf(ASKERS[1]), 'POST', '/v1/users', { name: 'gina', roles: ['researcher'] });
    const r = await t.call<{ token: { id: string }; secret: string }>(tokenOf(ASKERS[1]), 'POST', '/v1/tokens', {
      name: 'short',
      user: 'gina',
      role: 'researcher',
    });
    expect((await t.call(r.body.secret, 'GET', '/v1/jobs')).status).toBe(200);
    expect((await t.call(tokenOf(ASKERS[1]), 'DELETE', `/v1/tokens/${r.body.token.id}`)).status).toBe(200);
    for (const p of paths) expect((await t.call(r.body.secret, p.method, p.path, p.body)).status).toBe(401);
  });

  it('an expired token is refused, also when it was just used (cached)', async () => {
    let skew = 0;
    const s = await testServer({ now: () => Date.now() / 1000 + skew });
    try {
      // A bootstrap admin's token lives a day.
      const r = await s.call<{ secret: string }>(s.operator, 'POST', '/v1/users', {
        name: 'hank',
        roles: ['member-admin'],
        member: OWN,
      });
      expect((await s.call(r.body.secret, 'GET', '/v1/jobs')).status).toBe(200);
      skew = 86_400 + 1;
      const late = await s.call<{ error: { code: string; message: string } }>(r.body.secret, 'GET', '/v1/jobs');
      expect(late.status).toBe(401);
      expect(late.body.error).toMatchObject({ code: 'UNAUTHENTICATED', message: 'the token has expired' });
    } finally {
      await s.close();
    }
  });
});

describe('preemption', () => {
  it("a job preempted for another member's job does not name it, in its reason, events or explanation", async () => {
    // 8 GPUs: pharma, invest and telecom fill them, borrowing; bank then reclaims its entitlement.
    // Every member lends all it does not use, so no GPU stays idle for bank to take instead.
    const lendsAll = { ...CONSORTIUM, members: CONSORTIUM.members.map((m) => ({ ...m, lendingLimitGpus: null })) };
    const s = await testServer({ localGpus: 8, consortium: lendsAll });
    try {
      const tok: Record<string, string> = {};
      for (const m of ['pharma', 'invest', 'telecom', 'bank']) tok[m] = await s.token(m, 'researcher', `${m}-user`);
      const ids: string[] = [];
      for (const [m, n] of [
        ['pharma', 4],
        ['invest', 2],
        ['telecom', 2],
      ] as const)
        for (let i = 0; i < n; i++) {
          const r = await s.call(tok[m], 'POST', '/v1/jobs', { command: ['sleep', '120'], gracePeriodSeconds: 0 });
          ids.push(jobsOf(r)[0].id);
        }
      const running = async () =>
        (await s.call<{ jobs: JobView[] }>(s.operator, 'GET', '/v1/jobs?state=running&limit=100')).body.jobs.length;
      await s.waitFor('the machine to fill', async () => (await running()) >= 6);
      await new Promise((r) => setTimeout(r, 2000));
      const bank = jobsOf(await s.call(tok.bank, 'POST', '/v1/jobs', { command: ['sleep', '120'], gracePeriodSeconds: 0 }))[0].id;
      ids.push(bank);
      type Events = { events: { kind: string; reason: string | null; data: Record<string, unknown> | null }[] };
      const victim = await s.waitFor('a job preempted for the bank job', async () => {
        for (const id of ids.slice(0, -1)) {
          const ev = (await s.call<Events>(s.operator, 'GET', `/v1/jobs/${id}/events`)).body.events;
          if (ev.some((e) => e.kind === 'preempting' && e.data?.for === bank)) return id;
        }
        return undefined;
      });
      const member = (await s.call<JobView>(s.operator, 'GET', `/v1/jobs/${victim}`)).body.member;
      // Its member sees that it was preempted, and why, but not for which job of whom.
      await s.waitFor('the victim to be requeued', async () => {
        const ev = (await s.call<Events>(tok[member], 'GET', `/v1/jobs/${victim}/events`)).body.events;
        return ev.some((e) => e.kind === 'requeued');
      });
      const ev = await s.call<Events>(tok[member], 'GET', `/v1/jobs/${victim}/events`);
      const pre = ev.body.events.find((e) => e.kind === 'preempting')!;
      expect(pre.reason).toBe('Reclaim');
      expect(pre.data).not.toHaveProperty('for');
      expect(ev.body.events.find((e) => e.kind === 'requeued')!.reason).toBe('Preempted (Reclaim)');
      for (const path of [
        `/v1/jobs/${victim}`,
        `/v1/jobs/${victim}/explain`,
        `/v1/jobs?limit=100`,
        `/v1/jobs/${victim}/events`,
      ]) {
        const text = JSON.stringify((await s.call(tok[member], 'GET', path)).body);
        expect(text, path).not.toMatch(new RegExp(`\\b${bank}\\b`));
      }
      // Operators see everything.
      const op = await s.call<Events>(s.operator, 'GET', `/v1/jobs/${victim}/events`);
      expect(op.body.events.find((e) => e.kind === 'preempting')!.data).toMatchObject({ for: bank });
      expect(op.body.events.find((e) => e.kind === 'requeued')!.reason).toBe(`Preempted (Reclaim) for job ${bank}`);
      for (const id of ids) await s.call(s.operator, 'POST', `/v1/jobs/${id}/cancel`);
    } finally {
      await s.close();
    }
  });
});

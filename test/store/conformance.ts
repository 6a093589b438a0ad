// The store's conformance suite: one set of behaviours, run against every engine (SQLite and
// PostgreSQL) through a harness that gives each test a fresh, empty store location.
//
// Reproduce a property failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/store.
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SubmitRequest, type JobState } from '../../src/api/contract.js';
import { StoreClosedError, type KyselyStore } from '../../src/store/index.js';
import { sql } from 'kysely';
import {
  UserExistsError,
  VOUCHED,
  type JobRequest,
  type JobUpdate,
  type NewJob,
  type StoredJob,
  type Submission,
  type SubmitOutcome,
  type TokenRecord,
  type UserRecord,
} from '../../src/store/store.js';

/** A fresh location for one test; open() may be called again for a second connection to it. */
export interface StoreHarness {
  open(): Promise<KyselyStore>;
  dispose(): Promise<void>;
}

const T0 = 1_700_000_000.25;
const {
  member: _member,
  project: _project,
  name: _name,
  array: _array,
  ...parsed
} = SubmitRequest.parse({
  command: ['python', 'train.py'],
  gpus: 8,
  env: { SEED: '7' },
});
const REQUEST: JobRequest = parsed;

export function newJob(overrides: Partial<NewJob> = {}): NewJob {
  return {
    name: 'train',
    member: 'pharma',
    project: 'discovery',
    user: 'ada',
    request: REQUEST,
    gpus: 8,
    submittedAt: T0,
    arrayTaskId: null,
    arrayThrottle: null,
    ...overrides,
  };
}

export function single(job: Partial<NewJob> = {}, key: string | null = null, requestHash = 'h1'): Submission {
  const idempotency = key === null ? null : { member: job.member ?? 'pharma', user: job.user ?? 'ada', key, requestHash };
  return { jobs: [newJob(job)], idempotency };
}

function arrayOf(indices: readonly number[], throttle: number | null = null): Submission {
  return { jobs: indices.map((i) => newJob({ name: 'sweep', arrayTaskId: i, arrayThrottle: throttle })), idempotency: null };
}

export function created(outcome: SubmitOutcome): readonly StoredJob[] {
  if (outcome.kind !== 'created') throw new Error(`expected created, got ${outcome.kind}`);
  return outcome.jobs;
}

const ids = (jobs: readonly StoredJob[]) => jobs.map((j) => j.id);

function token(overrides: Partial<TokenRecord>): TokenRecord {
  return {
    id: 'tok-1',
    hash: 'a'.repeat(64),
    prefix: 'fbk_aaaa',
    name: 'laptop',
    member: 'pharma',
    role: 'researcher',
    user: 'ada',
    userId: 'usr_ada',
    createdAt: T0,
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  };
}

function user(overrides: Partial<UserRecord>): UserRecord {
  return {
    id: 'usr_ada',
    member: 'pharma',
    name: 'ada',
    roles: ['researcher'],
    origin: 'local',
    issuer: null,
    subject: null,
    createdBy: 'usr_pam',
    createdAt: T0,
    disabledAt: null,
    ...overrides,
  };
}

export function storeConformance(engine: 'sqlite' | 'postgres', newHarness: () => Promise<StoreHarness>): void {
  describe(`store conformance (${engine})`, () => {
    let harness: StoreHarness;
    let store: KyselyStore;
    const opened: KyselyStore[] = [];
    const open = async () => {
      const another = await harness.open();
      opened.push(another);
      return another;
    };

    beforeEach(async () => {
      harness = await newHarness();
      store = await open();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
      await harness.dispose();
    });

    describe('schema', () => {
      it('migrates again without harm, on the same connection and from a second one', async () => {
        const [job] = created(await store.submit(single()));
        await store.migrate();
        const second = await open();
        await second.migrate();
        expect(second.engine).toBe(engine);
        expect(await second.job(job.id)).toEqual(job);
      });

      it('keeps what was committed across a close and a reopen', async () => {
        const [job] = created(await store.submit(single()));
        await store.close();
        expect(await (await open()).job(job.id)).toEqual(job);
      });
    });

    describe('submit and read jobs', () => {
      it('stores a job as given and reads it back by id', async () => {
        const [job] = created(await store.submit(single({ name: 'fold', gpus: 16, submittedAt: T0 + 0.5 })));
        expect(job).toMatchObject({ name: 'fold', member: 'pharma', project: 'discovery', user: 'ada', gpus: 16 });
        expect(job).toMatchObject({
          state: 'pending',
          reason: null,
          placement: null,
          handle: null,
          preemptedBy: [],
          requeues: 0,
        });
        expect(job).toMatchObject({ submittedAt: T0 + 0.5, updatedAt: T0 + 0.5, arrayJobId: null, arrayTaskId: null });
        expect(job.request).toEqual(REQUEST);
        expect(job.id).toMatch(/^[1-9][0-9]*$/);
        expect(await store.job(job.id)).toEqual(job);
        expect(await store.events(job.id)).toEqual([
          { job: job.id, at: T0 + 0.5, kind: 'submitted', actor: 'ada', member: 'pharma', reason: null, data: null },
        ]);
      });

      it('answers undefined for ids that name no job, however they are spelled', async () => {
        created(await store.submit(single()));
        for (const id of ['999', '0', 'abc', '', '1.5', '-1', '01', '99999999999999999999']) {
          expect(await store.job(id)).toBeUndefined();
        }
        expect(await store.events('abc')).toEqual([]);
      });

      it('returns numbers as numbers and ids as decimal strings', async () => {
        const [job] = created(await store.submit(arrayOf([3])));
        await store.updateJobs([
          { id: job.id, from: ['pending'], set: { exitCode: 0, holdSince: T0 + 1, startedAt: T0 + 2 }, event: null },
        ]);
        const read = (await store.job(job.id))!;
        for (const value of [
          read.gpus,
          read.submittedAt,
          read.updatedAt,
          read.requeues,
          read.arrayTaskId,
          read.exitCode,
          read.holdSince,
        ]) {
          expect(typeof value).toBe('number');
        }
        expect(typeof read.id).toBe('string');
        expect(typeof read.arrayJobId).toBe('string');
        expect(typeof (await store.countTokens())).toBe('number');
        expect(typeof (await store.events(job.id))[0].at).toBe('number');
      });

      it('filters by member, user, project, name and state, ids ascending', async () => {
        const specs: Partial<NewJob>[] = [
          { member: 'pharma', user: 'ada', project: 'discovery', name: 'a' },
          { member: 'defense', user: 'bob', project: 'radar', name: 'b' },
          { member: 'pharma', user: 'cy', project: 'trials', name: 'a' },
          { member: 'pharma', user: 'ada', project: 'trials', name: 'c' },
        ];
        const jobs = [];
        for (const spec of specs) jobs.push(...created(await store.submit(single(spec))));
        await store.updateJobs([{ id: jobs[3].id, from: ['pending'], set: { state: 'running' }, event: null }]);
        const names = async (filter: Omit<Parameters<KyselyStore['jobs']>[0], 'limit'>) =>
          ids(await store.jobs({ ...filter, limit: 100 }));
        expect(await names({})).toEqual(ids(jobs));
        expect(await names({ member: 'pharma' })).toEqual(ids([jobs[0], jobs[2], jobs[3]]));
        expect(await names({ member: 'pharma', user: 'ada' })).toEqual(ids([jobs[0], jobs[3]]));
        expect(await names({ project: 'trials' })).toEqual(ids([jobs[2], jobs[3]]));
        expect(await names({ name: 'a' })).toEqual(ids([jobs[0], jobs[2]]));
        expect(await names({ states: ['running'] })).toEqual(ids([jobs[3]]));
        expect(await names({ states: ['pending', 'running'], member: 'defense' })).toEqual(ids([jobs[1]]));
        expect(await names({ states: [] })).toEqual([]);
        expect(await names({ member: 'nobody' })).toEqual([]);
        expect(ids(await store.jobs({ limit: 2 }))).toEqual(ids(jobs.slice(0, 2)));
        expect(await store.jobs({ limit: 0 })).toEqual([]);
      });

      it('pages with the id cursor as integers (job 10 comes after job 9)', async () => {
        const all: StoredJob[] = [];
        for (let i = 0; i < 25; i++) all.push(...created(await store.submit(single({ name: `j${i}` }))));
        const pages: string[][] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.jobs({ after, limit: 7 });
          if (page.length === 0) break;
          pages.push(ids(page));
          after = page[page.length - 1].id;
        }
        expect(pages.map((p) => p.length)).toEqual([7, 7, 7, 4]);
        expect(pages.flat()).toEqual(ids(all));
        const ninth = all[8].id;
        expect(ids(await store.jobs({ after: ninth, limit: 3 }))).toEqual(ids(all.slice(9, 12)));
        expect(await store.jobs({ after: all[24].id, limit: 10 })).toEqual([]);
        expect(ids(await store.jobs({ after: '0', limit: 1 }))).toEqual([all[0].id]);
      });

      it('caps a page at 1000 jobs', async () => {
        const tasks = created(await store.submit(arrayOf(Array.from({ length: 1005 }, (_, i) => i))));
        expect(tasks).toHaveLength(1005);
        const page = await store.jobs({ limit: 5000 });
        expect(page).toHaveLength(1000);
        expect(ids(page)).toEqual(ids(tasks.slice(0, 1000)));
        expect(ids(await store.jobs({ after: page[999].id, limit: 5000 }))).toEqual(ids(tasks.slice(1000)));
      });

      it('lists every active job by id, and no finished one', async () => {
        const states: JobState[] = ['pending', 'starting', 'running', 'preempting', 'succeeded', 'failed', 'cancelled', 'lost'];
        const jobs: StoredJob[] = [];
        for (let i = 0; i < states.length; i++) jobs.push(...created(await store.submit(single({ name: `s${i}` }))));
        await store.updateJobs(jobs.map((job, i) => ({ id: job.id, from: ['pending'], set: { state: states[i] }, event: null })));
        const active = await store.activeJobs();
        expect(ids(active)).toEqual(ids(jobs.slice(0, 4)));
        expect(active.map((j) => j.state)).toEqual(states.slice(0, 4));
      });
    });

    describe('arrays', () => {
      it("gives every task the first task's id as its array job id", async () => {
        const tasks = created(await store.submit(arrayOf([0, 1, 2, 7], 2)));
        expect(tasks.map((t) => t.arrayTaskId)).toEqual([0, 1, 2, 7]);
        expect(tasks.map((t) => t.arrayJobId)).toEqual(tasks.map(() => tasks[0].id));
        expect(tasks.map((t) => t.arrayThrottle)).toEqual([2, 2, 2, 2]);
        expect(tasks.map((t) => Number(t.id))).toEqual([0, 1, 2, 3].map((i) => Number(tasks[0].id) + i));
        expect(await store.job(tasks[2].id)).toEqual(tasks[2]);
        expect(ids(await store.jobs({ arrayJobId: tasks[0].id, limit: 10 }))).toEqual(ids(tasks));
        for (const task of tasks) expect((await store.events(task.id)).map((e) => e.kind)).toEqual(['submitted']);
      });

      it('makes a one-task array its own array job, and leaves a plain job out of arrays', async () => {
        const [plain] = created(await store.submit(single()));
        const [task] = created(await store.submit(arrayOf([5])));
        expect(plain.arrayJobId).toBeNull();
        expect(task.arrayJobId).toBe(task.id);
        expect(ids(await store.jobs({ arrayJobId: task.id, limit: 10 }))).toEqual([task.id]);
        expect(await store.jobs({ arrayJobId: 'abc', limit: 10 })).toEqual([]);
      });
    });

    describe('idempotency', () => {
      it('replays a retry with the same request and refuses the key for another', async () => {
        const first = created(await store.submit(single({}, 'k-1', 'hash-a')));
        await store.updateJobs([{ id: first[0].id, from: ['pending'], set: { state: 'running' }, event: null }]);
        const retry = await store.submit(single({ submittedAt: T0 + 60 }, 'k-1', 'hash-a'));
        expect(retry).toEqual({ kind: 'replayed', jobs: [{ ...first[0], state: 'running', updatedAt: expect.any(Number) }] });
        expect(await store.submit(single({}, 'k-1', 'hash-b'))).toEqual({ kind: 'conflict' });
        expect(await store.jobs({ limit: 10 })).toHaveLength(1);
      });

      it('scopes a key to its member and user', async () => {
        const a = created(await store.submit(single({ user: 'ada' }, 'k')));
        const b = created(await store.submit(single({ user: 'bob' }, 'k')));
        const c = created(await store.submit(single({ member: 'defense' }, 'k')));
        expect(new Set([a[0].id, b[0].id, c[0].id]).size).toBe(3);
      });

      it('replays an array whole', async () => {
        const array = { ...arrayOf([0, 1, 2]), idempotency: { member: 'pharma', user: 'ada', key: 'sweep', requestHash: 'h' } };
        const first = created(await store.submit(array));
        expect(await store.submit(array)).toEqual({ kind: 'replayed', jobs: first });
      });

      it('treats the same key twice in one batch as two calls in a row', async () => {
        const before = store.stats.commits;
        const [first, again, other] = await Promise.all([
          store.submit(single({}, 'dup', 'h')),
          store.submit(single({}, 'dup', 'h')),
          store.submit(single({}, 'dup', 'other')),
        ]);
        expect(again).toEqual({ kind: 'replayed', jobs: created(first) });
        expect(other).toEqual({ kind: 'conflict' });
        expect(store.stats.commits - before).toBe(1);
        expect(await store.jobs({ limit: 10 })).toHaveLength(1);
      });
    });

    describe('group commit', () => {
      it('commits 200 concurrent submissions in fewer transactions, each with its own job', async () => {
        const before = { ...store.stats };
        const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => store.submit(single({ name: `burst-${i}` }))));
        const jobs = outcomes.map((o) => created(o)[0]);
        expect(jobs.map((j) => j.name)).toEqual(jobs.map((_, i) => `burst-${i}`));
        expect(new Set(ids(jobs)).size).toBe(200);
        expect(store.stats.items - before.items).toBe(200);
        expect(store.stats.commits - before.commits).toBeLessThan(200);
        expect(store.stats.commits - before.commits).toBeGreaterThanOrEqual(1);
        const reader = await open();
        expect(ids(await reader.jobs({ limit: 1000 }))).toEqual(ids(jobs).sort((a, b) => Number(a) - Number(b)));
      });

      it('answers a mixed batch (plain jobs, arrays, keys, the same object twice) as if one call came after the other', async () => {
        const stored = created(await store.submit(single({ name: 'stored' }, 'old', 'h')));
        const twice = single({ name: 'twice' });
        const batch = [
          twice,
          arrayOf([0, 1]),
          single({ name: 'keyed' }, 'new', 'h'),
          twice,
          single({}, 'old', 'h'),
          single({}, 'old', 'other'),
          single({}, 'new', 'h'),
          arrayOf([4]),
        ];
        const outcomes = await Promise.all(batch.map((s) => store.submit(s)));
        expect(outcomes.map((o) => o.kind)).toEqual([
          'created',
          'created',
          'created',
          'created',
          'replayed',
          'conflict',
          'replayed',
          'created',
        ]);
        const [a, sweep, keyed, b, , , again, lone] = outcomes.map((o) => (o.kind === 'conflict' ? [] : o.jobs));
        expect(a[0].id).not.toBe(b[0].id);
        expect(sweep.map((t) => t.arrayJobId)).toEqual([sweep[0].id, sweep[0].id]);
        expect(lone[0].arrayJobId).toBe(lone[0].id);
        expect(outcomes[4]).toEqual({ kind: 'replayed', jobs: stored });
        expect(again).toEqual(keyed);
        const all = await store.jobs({ limit: 100 });
        expect(all).toHaveLength(1 + 6);
        for (const job of all) expect((await store.events(job.id)).map((e) => e.kind)).toEqual(['submitted']);
        expect(await store.submit(single({}, 'new', 'h'))).toEqual({ kind: 'replayed', jobs: keyed });
      });

      it('fails only the submission whose write fails; the others of its batch are committed', async () => {
        const broken = single({ name: null as unknown as string });
        const results = await Promise.allSettled([
          store.submit(single({ name: 'a' })),
          store.submit(broken),
          store.submit(single({ name: 'b' })),
        ]);
        expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
        expect(store.stats.retries).toBe(3);
        expect((await store.jobs({ limit: 10 })).map((j) => j.name)).toEqual(['a', 'b']);
      });

      it('writes what is queued before it closes, then refuses more', async () => {
        const pending = store.submit(single({ name: 'last' }));
        await store.close();
        expect(created(await pending)[0].name).toBe('last');
        await expect(store.submit(single())).rejects.toBeInstanceOf(StoreClosedError);
        expect((await (await open()).jobs({ limit: 10 })).map((j) => j.name)).toEqual(['last']);
      });

      it('refuses an empty submission', async () => {
        await expect(store.submit({ jobs: [], idempotency: null })).rejects.toThrow(/at least one job/);
      });
    });

    describe('updates', () => {
      it('applies an update only from the states it names, and reports the ones skipped', async () => {
        const [a, b] = [...created(await store.submit(single())), ...created(await store.submit(single()))];
        const event = { at: T0 + 10, kind: 'started', actor: 'scheduler', reason: null, data: { nodes: 1 } };
        const skipped = await store.updateJobs([
          { id: a.id, from: ['pending'], set: { state: 'starting', startedAt: T0 + 10 }, event },
          { id: b.id, from: ['running'], set: { state: 'failed' }, event },
          { id: a.id, from: ['starting'], set: { state: 'running' }, event: null },
          { id: '424242', from: ['pending'], set: { state: 'running' }, event },
          { id: b.id, from: [], set: { state: 'running' }, event },
        ]);
        expect(skipped).toEqual([b.id, '424242', b.id]);
        expect(await store.job(a.id)).toMatchObject({ state: 'running', startedAt: T0 + 10, updatedAt: expect.any(Number) });
        expect(await store.job(b.id)).toEqual(b);
        expect(await store.events(a.id)).toEqual([
          expect.objectContaining({ kind: 'submitted' }),
          { job: a.id, at: T0 + 10, kind: 'started', actor: 'scheduler', member: 'pharma', reason: null, data: { nodes: 1 } },
        ]);
        expect(await store.events(b.id)).toHaveLength(1);
      });

      it("stamps updatedAt with the event's time, or the current time without one", async () => {
        const [a, b] = [...created(await store.submit(single())), ...created(await store.submit(single()))];
        const before = Date.now() / 1000;
        await store.updateJobs([
          {
            id: a.id,
            from: ['pending'],
            set: { reason: 'Priority' },
            event: { at: T0 + 5, kind: 'reserved', actor: 'scheduler', reason: null, data: null },
          },
          { id: b.id, from: ['pending'], set: { reason: 'QuotaExhausted' }, event: null },
        ]);
        expect((await store.job(a.id))!.updatedAt).toBe(T0 + 5);
        expect((await store.job(b.id))!.updatedAt).toBeGreaterThanOrEqual(before - 1);
        expect((await store.job(b.id))!.reason).toBe('QuotaExhausted');
      });

      it('sets every field it names, clears those set to null, and leaves the rest alone', async () => {
        const [job] = created(await store.submit(single()));
        const placement = [{ node: 'sp1-r01-n01', gpus: [0, 1, 2, 3] }];
        await store.updateJobs([
          {
            id: job.id,
            from: ['pending'],
            set: {
              state: 'running',
              placement,
              handle: { pid: 42, host: 'h' },
              holdSince: T0 + 1,
              preemptedBy: ['7', '9'],
              requeues: 2,
            },
            event: null,
          },
        ]);
        expect(await store.job(job.id)).toMatchObject({
          placement,
          handle: { pid: 42, host: 'h' },
          holdSince: T0 + 1,
          preemptedBy: ['7', '9'],
          requeues: 2,
        });
        const set = {
          state: 'failed',
          placement: null,
          handle: null,
          holdSince: null,
          exitCode: 137,
          endedAt: T0 + 9,
          reason: 'OOM',
        } as const;
        await store.updateJobs([{ id: job.id, from: ['running'], set, event: null }]);
        const ended = (await store.job(job.id))!;
        expect(ended).toMatchObject(set);
        expect(ended).toMatchObject({ preemptedBy: ['7', '9'], requeues: 2, name: job.name, submittedAt: job.submittedAt });
      });

      it('keeps a requeued job its place: false for a new job, set and cleared as a boolean', async () => {
        const [job] = created(await store.submit(single()));
        expect(job.keepsPlace).toBe(false);
        expect((await store.job(job.id))!.keepsPlace).toBe(false);
        await store.updateJobs([{ id: job.id, from: ['pending'], set: { keepsPlace: true }, event: null }]);
        expect((await store.job(job.id))!.keepsPlace).toBe(true);
        expect((await store.activeJobs()).find((j) => j.id === job.id)?.keepsPlace).toBe(true);
        // An update that does not name it leaves it alone.
        await store.updateJobs([{ id: job.id, from: ['pending'], set: { state: 'running' }, event: null }]);
        expect((await store.job(job.id))!.keepsPlace).toBe(true);
        await store.updateJobs([{ id: job.id, from: ['running'], set: { keepsPlace: false }, event: null }]);
        expect((await store.job(job.id))!.keepsPlace).toBe(false);
      });

      it('keeps to `from` under any interleaving of updates (property)', async () => {
        const states = ['pending', 'starting', 'running', 'preempting', 'succeeded', 'failed'] as const;
        const update = fc.record({
          job: fc.nat({ max: 3 }),
          from: fc.subarray([...states]),
          to: fc.constantFrom(...states),
          withEvent: fc.boolean(),
        });
        await fc.assert(
          fc.asyncProperty(fc.array(fc.array(update, { maxLength: 5 }), { minLength: 1, maxLength: 4 }), async (batches) => {
            const jobs = created(
              await store.submit({ jobs: [0, 1, 2, 3].map((i) => newJob({ arrayTaskId: i })), idempotency: null }),
            );
            const model = new Map<string, JobState>(jobs.map((j) => [j.id, 'pending']));
            const events = new Map<string, number>(jobs.map((j) => [j.id, 1]));
            for (const batch of batches) {
              const updates: JobUpdate[] = batch.map((u) => ({
                id: jobs[u.job].id,
                from: u.from,
                set: { state: u.to },
                event: u.withEvent ? { at: T0, kind: u.to, actor: 'scheduler', reason: null, data: null } : null,
              }));
              const expectedSkips: string[] = [];
              for (const u of updates) {
                if (!u.from.includes(model.get(u.id)!)) expectedSkips.push(u.id);
                else {
                  model.set(u.id, u.set.state!);
                  if (u.event) events.set(u.id, events.get(u.id)! + 1);
                }
              }
              expect(await store.updateJobs(updates)).toEqual(expectedSkips);
            }
            for (const job of jobs) {
              expect((await store.job(job.id))!.state).toBe(model.get(job.id));
              expect(await store.events(job.id)).toHaveLength(events.get(job.id)!);
            }
          }),
          { numRuns: 25 },
        );
      });
    });

    describe('tokens', () => {
      const operator = token({ id: 'op', hash: 'b'.repeat(64), member: null, role: 'operator', user: 'root', createdAt: T0 + 1 });
      const pharma = token({ id: 'ph', createdAt: T0 + 2, expiresAt: T0 + 86_400 });
      const defense = token({ id: 'de', hash: 'c'.repeat(64), member: 'defense', role: 'member-admin', createdAt: T0 + 3 });

      it('finds a token by hash and by id, and lists them newest first, per member or operator', async () => {
        for (const t of [operator, pharma, defense]) await store.createToken(t);
        expect(await store.tokenByHash(pharma.hash)).toEqual(pharma);
        expect(await store.tokenByHash('f'.repeat(64))).toBeUndefined();
        expect(await store.tokenById('op')).toEqual(operator);
        expect(await store.tokenById('nope')).toBeUndefined();
        expect(await store.listTokens()).toEqual([defense, pharma, operator]);
        expect(await store.listTokens('pharma')).toEqual([pharma]);
        expect(await store.listTokens(null)).toEqual([operator]);
        expect(await store.listTokens('nobody')).toEqual([]);
        expect(await store.countTokens()).toBe(3);
      });

      it('refuses a second token with the same hash', async () => {
        await store.createToken(pharma);
        await expect(store.createToken({ ...pharma, id: 'other' })).rejects.toThrow();
        expect(await store.countTokens()).toBe(1);
      });

      it('revokes a token once: a second revocation keeps the first time; an unknown id is false', async () => {
        await store.createToken(pharma);
        expect(await store.revokeToken('ph', T0 + 100)).toBe(true);
        expect(await store.revokeToken('ph', T0 + 200)).toBe(true);
        expect((await store.tokenById('ph'))!.revokedAt).toBe(T0 + 100);
        expect(await store.revokeToken('nope', T0)).toBe(false);
      });
    });

    describe('users', () => {
      const pam = user({ id: 'usr_pam', name: 'pam', roles: ['member-admin'], createdBy: VOUCHED.bootstrap });
      const ada = user({});
      const op = user({ id: 'usr_op', member: null, name: 'root', roles: ['operator'], createdBy: VOUCHED.server });
      const oidc = user({
        id: 'usr_oidc',
        member: 'bank',
        name: 'dana',
        origin: 'oidc',
        issuer: 'https://idp',
        subject: 'u-1',
        createdBy: VOUCHED.idp,
        createdAt: T0 + 1,
      });

      it('finds users by id, name within their member, and OIDC subject; lists them oldest first', async () => {
        for (const u of [pam, ada, op, oidc]) await store.createUser(u);
        expect(await store.userById('usr_ada')).toEqual(ada);
        expect(await store.userById('nope')).toBeUndefined();
        expect(await store.userByName('pharma', 'ada')).toEqual(ada);
        expect(await store.userByName('bank', 'ada')).toBeUndefined();
        expect(await store.userByName(null, 'root')).toEqual(op);
        expect(await store.userByName('pharma', 'root')).toBeUndefined();
        expect(await store.userBySubject('https://idp', 'u-1')).toEqual(oidc);
        expect(await store.userBySubject('https://other', 'u-1')).toBeUndefined();
        expect((await store.listUsers()).map((u) => u.id)).toEqual(['usr_ada', 'usr_op', 'usr_pam', 'usr_oidc']);
        expect(await store.listUsers('pharma')).toEqual([ada, pam]);
        expect(await store.listUsers(null)).toEqual([op]);
      });

      it('refuses a name taken in the same member (or among those of no member) and a subject taken', async () => {
        for (const u of [ada, op, oidc]) await store.createUser(u);
        await expect(store.createUser(user({ id: 'usr_2' }))).rejects.toBeInstanceOf(UserExistsError);
        await expect(store.createUser({ ...op, id: 'usr_3' })).rejects.toBeInstanceOf(UserExistsError);
        await expect(store.createUser({ ...oidc, id: 'usr_4', name: 'other' })).rejects.toBeInstanceOf(UserExistsError);
        // The same name in another member is another person.
        await store.createUser(user({ id: 'usr_5', member: 'telecom' }));
        expect(await store.listUsers()).toHaveLength(4);
      });

      it('updates a user in place; a name taken by another is refused', async () => {
        for (const u of [ada, pam]) await store.createUser(u);
        expect(await store.updateUser('usr_ada', { roles: ['auditor', 'researcher'], disabledAt: T0 + 5 })).toBe(true);
        expect(await store.userById('usr_ada')).toEqual({ ...ada, roles: ['auditor', 'researcher'], disabledAt: T0 + 5 });
        expect(await store.updateUser('nope', { name: 'x' })).toBe(false);
        await expect(store.updateUser('usr_ada', { name: 'pam' })).rejects.toBeInstanceOf(UserExistsError);
        expect(await store.updateUser('usr_ada', { member: 'bank', name: 'pam' })).toBe(true);
      });

      it('bootstraps at most `max` first admins, and none once a member has people of its own', async () => {
        const admin = (n: number) =>
          user({ id: `usr_b${n}`, name: `b${n}`, roles: ['member-admin'], createdBy: VOUCHED.bootstrap });
        expect(await store.bootstrapUser(admin(1), 2)).toBe('created');
        expect(await store.bootstrapUser(admin(2), 2)).toBe('created');
        expect(await store.bootstrapUser(admin(3), 2)).toBe('full');
        await expect(store.bootstrapUser(admin(1), 5)).rejects.toBeInstanceOf(UserExistsError);
        await store.createUser(user({ id: 'usr_t', member: 'telecom', name: 't' }));
        expect(await store.bootstrapUser({ ...admin(4), member: 'telecom' }, 2)).toBe('closed');
        expect((await store.listUsers('pharma')).map((u) => u.name)).toEqual(['b1', 'b2']);
      });

      it('bootstraps from several calls (and PostgreSQL connections) at once without passing the limit', async () => {
        // better-sqlite3 waits for a lock synchronously: a second connection in this process would
        // block the one that holds it. Replicas are processes; on SQLite, calls at once share one.
        const others = engine === 'postgres' ? await Promise.all([open(), open()]) : [store, store];
        const outcomes = await Promise.all(
          [store, ...others, store, ...others].map((s, i) =>
            s.bootstrapUser(user({ id: `usr_c${i}`, name: `c${i}`, roles: ['member-admin'], createdBy: VOUCHED.bootstrap }), 2),
          ),
        );
        expect(outcomes.filter((o) => o === 'created')).toHaveLength(2);
        expect(await store.listUsers('pharma')).toHaveLength(2);
      });

      it("lists a user's tokens, newest first", async () => {
        await store.createToken(token({ id: 'a', createdAt: T0 }));
        await store.createToken(token({ id: 'b', hash: 'b'.repeat(64), createdAt: T0 + 1 }));
        await store.createToken(token({ id: 'c', hash: 'c'.repeat(64), userId: 'usr_other' }));
        expect((await store.userTokens('usr_ada')).map((t) => t.id)).toEqual(['b', 'a']);
      });

      it('migration 008 makes a user of each (member, name) that tokens carried, vouched for by legacy', async () => {
        // Back to the schema before 008, with tokens that name users in free text.
        const db = store.db as unknown as import('kysely').Kysely<Record<string, Record<string, unknown>>>;
        await sql`drop index tokens_user_id`.execute(db);
        await db.schema.dropTable('users').execute();
        await db.schema.alterTable('tokens').dropColumn('user_id').execute();
        await db.schema.alterTable('approvals').dropColumn('requested_by_id').execute();
        await db.deleteFrom('kysely_migration').where('name', '=', '008_users').execute();
        const row = (id: string, member: string | null, username: string, role: string, at: number) => ({
          id,
          hash: id.repeat(64).slice(0, 64),
          prefix: 'fbk_x',
          name: id,
          member,
          role,
          username,
          created_at: at,
          expires_at: null,
          revoked_at: null,
        });
        await db
          .insertInto('tokens')
          .values([
            row('a', 'pharma', 'pam', 'member-admin', T0),
            row('b', 'pharma', 'pam', 'researcher', T0 + 1),
            row('c', 'telecom', 'pam', 'researcher', T0 + 2),
            row('d', null, 'operator', 'operator', T0 + 3),
          ])
          .execute();
        await store.migrate();
        const users = await store.listUsers();
        expect(users.map((u) => [u.member, u.name, u.roles, u.createdBy, u.origin])).toEqual([
          ['pharma', 'pam', ['member-admin', 'researcher'], 'legacy', 'local'],
          ['telecom', 'pam', ['researcher'], 'legacy', 'local'],
          [null, 'operator', ['operator'], 'legacy', 'local'],
        ]);
        expect((await store.tokenById('b'))!.userId).toBe(users[0].id);
        expect((await store.tokenById('c'))!.userId).toBe(users[1].id);
        expect((await store.tokenById('d'))!.userId).toBe(users[2].id);
      });
    });

    describe('members, nodes and usage', () => {
      it('inserts members, then updates them in place', async () => {
        await store.syncMembers([
          { id: 'pharma', name: 'Pharma AB', projects: ['discovery'] },
          { id: 'defense', name: 'Defense', projects: [] },
        ]);
        await store.syncMembers([{ id: 'pharma', name: 'Pharma Group', projects: ['discovery', 'trials'] }]);
        await store.syncMembers([]);
        const rows = await store.db.selectFrom('members').selectAll().orderBy('id').execute();
        expect(rows.map((r) => ({ ...r, projects: JSON.parse(r.projects) }))).toEqual([
          { id: 'defense', name: 'Defense', projects: [] },
          { id: 'pharma', name: 'Pharma Group', projects: ['discovery', 'trials'] },
        ]);
      });

      it('keeps the last state of each node', async () => {
        expect(await store.nodeStates()).toEqual([]);
        const drain = { node: 'sp1-r02-n03', state: 'draining', reason: 'ECC errors', by: 'operator:eve', at: T0 } as const;
        await store.setNodeState(drain);
        await store.setNodeState({ node: 'sp1-r01-n01', state: 'down', reason: null, by: 'executor', at: T0 + 1 });
        await store.setNodeState({ ...drain, state: 'maintenance', at: T0 + 2 });
        expect(await store.nodeStates()).toEqual([
          { node: 'sp1-r01-n01', state: 'down', reason: null, by: 'executor', at: T0 + 1 },
          { ...drain, state: 'maintenance', at: T0 + 2 },
        ]);
      });

      it('saves usage whole and reads back the last save', async () => {
        expect(await store.usage()).toBeNull();
        await store.saveUsage(T0, { pharma: 12.5, defense: 0.125 });
        await store.saveUsage(T0 + 300, { pharma: 13.75 });
        expect(await store.usage()).toEqual({ at: T0 + 300, gpuHours: { pharma: 13.75 } });
      });

      it('has one installation id, the same from a second connection', async () => {
        const id = await store.installationId();
        expect(id).toMatch(/^[0-9a-f-]{36}$/);
        const again = await open();
        try {
          expect(await again.installationId()).toBe(id);
        } finally {
          await again.close();
        }
      });
    });
  });
}

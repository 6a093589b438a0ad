// Advance reservations in the store, on SQLite and on PostgreSQL (where it can be reached; the
// PostgreSQL suite's own rules say when its absence is a failure).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { AdvanceReservation } from '../../src/core/reservation.js';
import { openStore } from '../../src/store/index.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { ReservationExistsError, ReservationStore } from '../../src/store/reservations.js';

const PG = process.env.FABRIK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgAdmin<T>(work: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
const pgReachable = await pgAdmin((c) => c.query('select 1')).then(
  () => true,
  () => false,
);

type Opened = { store: KyselyStore; dispose: () => Promise<void> };
const engines: Record<string, () => Promise<Opened>> = {
  sqlite: async () => {
    const folder = await mkdtemp(join(tmpdir(), 'fabrik-res-'));
    const store = await openStore(`sqlite:${join(folder, 'fabrik.db')}`);
    return { store, dispose: () => rm(folder, { recursive: true, force: true }) };
  },
};
if (pgReachable || process.env.CI)
  engines.postgres = async () => {
    const schema = `fabrik_test_${randomBytes(6).toString('hex')}`;
    const url = new URL(PG);
    url.searchParams.set('schema', schema);
    const store = await openStore(url.toString(), { poolSize: 4 });
    return { store, dispose: () => pgAdmin((c) => c.query(`drop schema if exists ${schema} cascade`)).then(() => undefined) };
  };

const H = 3600;
const r = (id: string, start: number, end: number, nodes: number[]): AdvanceReservation => ({
  id,
  member: 'pharma',
  start,
  end,
  allocation: nodes.map((node) => ({ node, gpus: 4 })),
});

for (const [engine, open] of Object.entries(engines)) {
  describe(`reservations in the store (${engine})`, () => {
    const opened: Opened[] = [];
    afterEach(async () => {
      for (const o of opened.splice(0)) {
        await o.store.close();
        await o.dispose();
      }
    });
    const fresh = async () => {
      const o = await open();
      opened.push(o);
      return new ReservationStore(o.store.db, o.store.engine);
    };

    it('books, lists by start, reads one back and deletes it', async () => {
      const s = await fresh();
      const b = await s.book('late', 0, 'ops', () => r('late', 20 * H, 30 * H, [4, 5]));
      expect(b).toMatchObject({ id: 'late', gpus: 8, createdBy: 'ops', createdAt: 0 });
      await s.book('early', 0, 'ops', () => r('early', 10 * H, 12 * H, [0]));
      expect((await s.list()).map((x) => x.id)).toEqual(['early', 'late']);
      expect(await s.get('late')).toEqual(b);
      // Not over at 15 h: only the late one.
      expect((await s.list(15 * H)).map((x) => x.id)).toEqual(['late']);
      expect(await s.delete('late')).toBe(true);
      expect(await s.delete('late')).toBe(false);
      expect(await s.get('late')).toBeUndefined();
    });

    it('refuses a taken name, and frees the name of one that is over', async () => {
      const s = await fresh();
      await s.book('cap', 0, 'ops', () => r('cap', H, 2 * H, [0]));
      await expect(s.book('cap', 0, 'ops', () => r('cap', 3 * H, 4 * H, [1]))).rejects.toThrow(ReservationExistsError);
      await s.book('cap', 3 * H, 'ops', () => r('cap', 5 * H, 6 * H, [1]));
      expect((await s.list()).map((x) => [x.id, x.start])).toEqual([['cap', 5 * H]]);
    });

    it('books one at a time: a booking sees every one made before it', async () => {
      const s = await fresh();
      // Each takes the first node no earlier booking holds; at once, they still get distinct nodes.
      const firstFree = (existing: readonly AdvanceReservation[], id: string) => {
        const held = new Set(existing.flatMap((x) => x.allocation.map((a) => a.node)));
        let n = 0;
        while (held.has(n)) n++;
        return r(id, H, 2 * H, [n]);
      };
      const ids = ['a', 'b', 'c', 'd', 'e'];
      const booked = await Promise.all(ids.map((id) => s.book(id, 0, 'ops', (e) => firstFree(e, id))));
      expect(new Set(booked.map((x) => x.allocation[0].node)).size).toBe(ids.length);
    });

    it('leaves nothing behind when the decision refuses', async () => {
      const s = await fresh();
      await expect(
        s.book('no', 0, 'ops', () => {
          throw new Error('no room');
        }),
      ).rejects.toThrow('no room');
      expect(await s.list()).toEqual([]);
    });
  });
}

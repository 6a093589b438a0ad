// Advance reservations in the store (migration 012, both engines through the same Kysely db). A
// booking reads every reservation and inserts the new one in one transaction, so two bookings at
// once never pick the same nodes: SQLite's one connection serializes them; on PostgreSQL the table
// is locked for the transaction, so replicas book one after the other.
import { sql, type Kysely, type Migration } from 'kysely';
import type { Allocation } from '../core/job.js';
import type { AdvanceReservation } from '../core/reservation.js';
import type { Database, Engine } from './schema.js';

export interface ReservationsTable {
  id: string;
  member: string;
  start_at: number;
  end_at: number;
  gpus: number;
  /** JSON array of { node, gpus }. */
  allocation: string;
  created_at: number;
  created_by: string;
}

export interface ReservationTables {
  reservations: ReservationsTable;
}

export const reservationMigrations: Record<string, Migration> = {
  '012_reservations': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('reservations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('member', 'text', (c) => c.notNull())
        .addColumn('start_at', 'double precision', (c) => c.notNull())
        .addColumn('end_at', 'double precision', (c) => c.notNull())
        .addColumn('gpus', 'integer', (c) => c.notNull())
        .addColumn('allocation', 'text', (c) => c.notNull())
        .addColumn('created_at', 'double precision', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('reservations_end_at').on('reservations').column('end_at').execute();
    },
  },
};

/** A booked reservation and who booked it. */
export interface StoredReservation extends AdvanceReservation {
  readonly gpus: number;
  readonly createdAt: number;
  /** The booker's user name, as the audit log shows it. */
  readonly createdBy: string;
}

/** The name is taken (reservation names are unique in the factory, as Slurm's). */
export class ReservationExistsError extends Error {
  constructor(readonly id: string) {
    super(`a reservation named ${id} exists`);
    this.name = 'ReservationExistsError';
  }
}

const fromRow = (r: ReservationsTable): StoredReservation => ({
  id: r.id,
  member: r.member,
  start: Number(r.start_at),
  end: Number(r.end_at),
  gpus: Number(r.gpus),
  allocation: JSON.parse(r.allocation) as Allocation[],
  createdAt: Number(r.created_at),
  createdBy: r.created_by,
});

export class ReservationStore {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly engine: Engine,
  ) {}

  /** Reservations not over at `now` (all of them when absent), by start, then name. */
  async list(now?: number): Promise<StoredReservation[]> {
    let q = this.db.selectFrom('reservations').selectAll().orderBy('start_at').orderBy('id');
    if (now !== undefined) q = q.where('end_at', '>', now);
    return (await q.execute()).map(fromRow);
  }

  async get(id: string): Promise<StoredReservation | undefined> {
    const r = await this.db.selectFrom('reservations').selectAll().where('id', '=', id).executeTakeFirst();
    return r && fromRow(r);
  }

  /**
   * Books one named `id`: `decide` sees every reservation not over at `now` and returns the new
   * one, or throws (a refusal); nothing else books meanwhile. Reservations already over are dropped
   * (their record is the audit log), so their names are free again. Throws ReservationExistsError
   * when the name is taken.
   */
  async book(
    id: string,
    now: number,
    createdBy: string,
    decide: (existing: readonly StoredReservation[]) => AdvanceReservation,
  ): Promise<StoredReservation> {
    return this.db.transaction().execute(async (tx) => {
      if (this.engine === 'postgres') await sql`lock table reservations in share row exclusive mode`.execute(tx);
      await tx.deleteFrom('reservations').where('end_at', '<=', now).execute();
      const existing = (await tx.selectFrom('reservations').selectAll().orderBy('start_at').orderBy('id').execute()).map(fromRow);
      if (existing.some((r) => r.id === id)) throw new ReservationExistsError(id);
      const r = decide(existing);
      const gpus = r.allocation.reduce((g, a) => g + a.gpus, 0);
      const inserted = await tx
        .insertInto('reservations')
        .values({
          id: r.id,
          member: r.member,
          start_at: r.start,
          end_at: r.end,
          gpus,
          allocation: JSON.stringify(r.allocation),
          created_at: now,
          created_by: createdBy,
        })
        .onConflict((oc) => oc.column('id').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) throw new ReservationExistsError(r.id);
      return { ...r, gpus, createdAt: now, createdBy };
    });
  }

  /** False when there is none by that name. */
  async delete(id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('reservations').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }
}

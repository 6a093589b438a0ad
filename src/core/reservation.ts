// Advance reservations ("capability runs"): GPUs booked for one member from a start time, as
// Slurm's `scontrol create reservation`. The scheduler keeps every other job off the booked GPUs
// from the start (backfill may use them until then); the member's jobs run inside it.

import type { Allocation } from './job.js';

export interface AdvanceReservation {
  /** Its name, unique in the factory (Slurm's ReservationName). */
  readonly id: string;
  /** The member whose jobs may run in it. */
  readonly member: string;
  /** Seconds (epoch in the server, virtual in the simulator). */
  readonly start: number;
  readonly end: number;
  /** The GPUs it holds: chosen when it is booked (whole nodes, whole NVLink domains first). */
  readonly allocation: readonly Allocation[];
}

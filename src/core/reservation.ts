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

/**
 * What a member admin may book without an operator, from the consortium file's `reservations:`
 * block (Slurm has no such rule; it is the consortium's contract). Operators may book beyond it.
 * A null field sets no limit; an absent block lets members book nothing themselves.
 */
export interface ReservationRules {
  /** Most GPUs one reservation may hold. */
  readonly maxGpus: number | null;
  /** Longest reservation, in hours. */
  readonly maxHours: number | null;
  /** How long before its start it must be booked, in hours. */
  readonly minNoticeHours: number;
  /** How many reservations a member may have starting in any 7 days. */
  readonly perMemberPerWeek: number | null;
}

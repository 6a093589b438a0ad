// The members who own the machine together, and what each has contracted for.
import type { ReservationRules } from './reservation.js';

export type Isolation = 'none' | 'required';

export interface Member {
  readonly id: string;
  readonly name: string;
  /** Nominal quota in GPUs: guaranteed, reclaimed by preemption when lent out. */
  readonly entitlementGpus: number;
  /** At most this many of the member's idle entitled GPUs are lent to others (null: all). */
  readonly lendingLimitGpus: number | null;
  /** At most this many GPUs above entitlement may be borrowed (null: no cap). */
  readonly borrowingLimitGpus: number | null;
  /** `required`: none of its work shares an NVLink domain with another member. */
  readonly isolation: Isolation;
  /** Zone its work must run in (null: any zone). */
  readonly zone: string | null;
  readonly projects: readonly string[];
}

export interface FairSharePolicy {
  /** Past usage loses half its weight every this many hours (Slurm's PriorityDecayHalfLife). */
  readonly halfLifeHours: number;
}

export interface Consortium {
  readonly name: string;
  readonly members: readonly Member[];
  readonly fairShare: FairSharePolicy;
  /** What member admins may book as advance reservations themselves; absent: only operators book. */
  readonly reservations?: ReservationRules;
}

export function memberById(consortium: Consortium, id: string): Member | undefined {
  return consortium.members.find((m) => m.id === id);
}

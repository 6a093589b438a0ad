// The full Fabrik core: entitlements lent and reclaimed, fair share, gangs on NVLink domains,
// backfill with reservations, least-work-lost preemption.
import { cycle } from '../../scheduler/cycle.js';
import { DEFAULT_CONFIG } from '../../scheduler/types.js';
import type { Policy } from '../policy.js';

export const fabrik = {
  type: 'policy/fabrik',
  name: 'fabrik',
  description:
    'Fabrik: guaranteed entitlements with lending and reclaim, fair share, least expected work first within a member, NVLink-aware gangs, backfill with reservations.',
  cycle: (state, now, options) => cycle(state, now, { ...DEFAULT_CONFIG, ...options }),
} satisfies Policy;

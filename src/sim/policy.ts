// A scheduling policy, as the simulator sees it: one pure cycle over the cluster's state.
// Adding a policy is one file in src/sim/policies/ and one line in its index.
import type { ClusterState, CycleResult } from '../scheduler/types.js';

export interface Policy {
  readonly type: `policy/${string}`;
  readonly name: string;
  /** What a reader of the report should know about it, in one sentence. */
  readonly description: string;
  /** `explain: false`: decisions only, no explanation for waiting jobs (the simulator's case). */
  cycle(state: ClusterState, now: number, options?: { readonly explain?: boolean }): CycleResult;
}

// A scheduling policy, as the simulator sees it: one pure cycle over the cluster's state.
// Adding a policy is one file in src/sim/policies/ and one line in its index.
import type { ClusterState, CycleOptions, CycleResult } from '../scheduler/types.js';

export interface Policy {
  readonly type: `policy/${string}`;
  readonly name: string;
  /** What a reader of the report should know about it, in one sentence. */
  readonly description: string;
  /** The simulator asks for decisions only (`explain: false`) and bounds the `queueDepth`. */
  cycle(state: ClusterState, now: number, options?: CycleOptions): CycleResult;
}

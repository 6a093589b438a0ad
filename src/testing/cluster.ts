// Scenarios drive the stepped twin; the name they use for it.
export { SteppedCluster as ScenarioCluster } from '../sim/stepped.js';

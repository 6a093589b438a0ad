// One policy's replay in a worker thread: the policies of a study are independent, so each
// runs on its own core.
import { parentPort, workerData } from 'node:worker_threads';
import { simulate } from './engine.js';
import { summarize } from './metrics.js';
import { POLICIES } from './policies/index.js';
import type { PolicyTask } from './run.js';

const task = workerData as PolicyTask;
const run = simulate({
  site: task.site,
  consortium: task.consortium,
  jobs: task.jobs,
  policy: POLICIES[task.policy],
  nodeEvents: task.nodeEvents,
  reservations: task.reservations,
  cycleSeconds: task.cycleSeconds,
  preemption: task.preemption,
  restartOverheadSeconds: task.restartOverheadSeconds,
  onProgress: (done, total) => parentPort!.postMessage({ kind: 'progress', done, total }),
});
parentPort!.postMessage({ kind: 'result', result: summarize(run, task.consortium, task.site) });

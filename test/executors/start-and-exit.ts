// A "server" in its own process for local.test.ts: starts one job, prints the job and its handle
// as JSON, and exits at once without closing anything, as a crashing server would.
import { createLocalExecutor } from '../../src/executors/local.js';
import { execJob } from './conformance.js';

const [dataDir, logDir, workdir, id] = process.argv.slice(2);
const ex = createLocalExecutor({ dataDir, gpus: [0, 1] });
const job = execJob(id, ex.nodes(), logDir, {
  workdir,
  command: ['sh', '-c', 'while [ ! -e go ]; do sleep 0.05; done; echo "ran to the end"; exit 9'],
});
const handle = await ex.start(job);
process.stdout.write(JSON.stringify({ job, handle }) + '\n');
process.exit(0);

// The server side of bench/gateway.ts, in its own process: `fabrik up` (simulated executor, the demo
// consortium, SQLite in a fresh folder) with one static replica, the engine at the URL given, as the
// gateway's replica source. Prints one JSON line: its URL and the operator token.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConsortium, loadSite } from '../src/config/index.js';
import type { Replica } from '../src/inference/replicas.js';
import { startServer } from '../src/server/index.js';

const root = new URL('../', import.meta.url).pathname;
const engineUrl = process.argv[2];
const site = loadSite(`${root}sites/se-factory.yaml`);
const consortium = loadConsortium(`${root}consortia/demo.yaml`, site);
const replica: Replica = {
  id: 'bench-1',
  deployment: 'bench',
  member: 'pharma',
  model: 'bench',
  url: engineUrl,
  zone: 'general',
  accreditations: ['public', 'internal', 'confidential', 'restricted'],
  reasoning: false,
  healthy: true,
  // The replica token bench/gateway.ts gave the engine (FABRIK_ENGINE_API_KEY), presented as the controller's replicas do.
  authorization: `Bearer ${process.env.FABRIK_ENGINE_API_KEY}`,
};
const dir = mkdtempSync(join(tmpdir(), 'fabrik-gw-bench-'));
const server = await startServer({
  dataDir: dir,
  executor: 'simulated',
  site,
  consortium,
  port: 0,
  logger: pino({ level: 'warn' }, pino.destination(2)),
  replicas: { replicas: (m, model) => (m === 'pharma' && model === 'bench' ? [replica] : []), models: () => [] },
  // The benchmark measures the path, not the limits: far above any rate it offers.
  gateway: { requestsPerMinutePerGpu: 1e9, tokensPerMinutePerGpu: 1e12, tokensPerGpuDay: 1e13 },
});
console.log(JSON.stringify({ url: server.url, token: server.bootstrapToken }));
const stop = async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

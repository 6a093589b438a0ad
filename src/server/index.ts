// `fabrik up`: the store, the executor, the scheduling loop and the HTTP API, wired together.
// The embedded default needs nothing installed: SQLite in the data folder, the demo consortium,
// and the `local` executor on this host's GPUs.
import { chmodSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import type { Consortium } from '../core/consortium.js';
import type { Site } from '../core/site.js';
import type { Executor } from '../executors/executor.js';
import { createLocalExecutor } from '../executors/local.js';
import type { IsolationProbe } from '../executors/isolation/sandbox.js';
import { createSimulatedExecutor, simulatedNodesFor } from '../executors/simulated.js';
import { createSlurmExecutor } from '../executors/slurm.js';
import { SlurmIdentities, type SlurmIdentityOptions } from '../executors/slurm-identity.js';
import { AuditLog } from '../audit/log.js';
import { loadOrCreateSigningKey } from '../audit/checkpoint.js';
import { reconcileSubmissions } from '../audit/reconcile.js';
import { describeRefusal, Governance } from '../governance/governance.js';
import { GovernanceStore } from '../governance/store.js';
import { ReservationStore } from '../store/reservations.js';
import { DeploymentController, rangePorts, type DeploymentSettings } from '../inference/deployments/controller.js';
import type { GatewayConfig } from '../inference/gateway/gateway.js';
import type { LoadSink, ReplicaSource } from '../inference/replicas.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { buildApp } from './app.js';
import { prepareDataDir } from './data-dir.js';
import { Authenticator, firstOperator, type OidcConfig } from './auth.js';
import { Controller } from './controller.js';
import { createMetrics } from './metrics.js';
import { scaleConsortium, siteForExecutor } from './site.js';
import type { FastifyInstance } from 'fastify';

export interface ServerOptions {
  readonly dataDir: string;
  /** `sqlite:<file>` or `postgres://…`; default: SQLite in the data folder. */
  readonly store?: string;
  readonly executor: 'local' | 'simulated' | 'slurm';
  /**
   * `slurm`: slurmrestd's URL and the cluster's JWT key (what Fabrik signs its tokens with), and
   * how members' users become Unix users and Slurm accounts.
   */
  readonly slurm?: {
    readonly url?: string;
    readonly jwtKeyFile?: string;
    readonly partition?: string | null;
  } & SlurmIdentityOptions;
  /** The site the consortium was written for (and what `simulated` runs). */
  readonly site: Site;
  readonly consortium: Consortium;
  readonly host?: string;
  readonly port?: number;
  readonly oidc?: OidcConfig | null;
  readonly cycleSeconds?: number;
  /** `local`: GPUs when nvidia-smi is absent, and how many node slots the host is split into. */
  readonly localGpus?: number;
  readonly localNodes?: number;
  /**
   * `local`: isolate jobs (fabrik up decides from what the host offers; see probeIsolation). Absent
   * or null: jobs run as this process's user, for a single tenant.
   */
  readonly localIsolation?: { readonly probe: IsolationProbe; readonly deviceDir?: string; readonly userName?: string } | null;
  /**
   * The key that seals jobs' secret environment: a file of 32 random bytes in base64, mode 0600
   * (`openssl rand -base64 32`). Default `<data>/secrets.key`, made on first use; a key kept apart
   * from the data folder keeps a copy of the folder (the store) from opening the secrets.
   */
  readonly secretsKeyFile?: string;
  readonly logger?: Logger;
  readonly now?: () => number;
  /** The replicas the gateway routes to, and where it reports their load. */
  readonly replicas?: ReplicaSource;
  readonly replicaLoad?: LoadSink;
  readonly gateway?: Partial<GatewayConfig>;
  /** Autoscaling and health-check settings of model deployments (tests shorten the cool-downs). */
  readonly deployments?: Partial<DeploymentSettings>;
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly controller: Controller;
  readonly store: Store;
  readonly url: string;
  /** The operator token made on first start (null on later starts): printed once. */
  readonly bootstrapToken: string | null;
  readonly site: Site;
  readonly audit: AuditLog;
  readonly deployments: DeploymentController;
  close(): Promise<void>;
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const now = o.now ?? (() => Date.now() / 1000);
  // Logs go to stderr: stdout carries only what a script may capture (the first start's token).
  const log = o.logger ?? pino({ level: process.env.FABRIK_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const dataDir = resolve(o.dataDir);
  // 0700, a umask of 077, and a refusal of a folder or store others can read (data-dir.ts).
  prepareDataDir(dataDir, { store: o.store, jobsByPath: o.executor === 'slurm' });
  const store = await openStore(o.store ?? `sqlite:${join(dataDir, 'fabrik.db')}`);

  // One for the executor's job launches and for governance.
  const governanceStore = new GovernanceStore(store.db);
  const reservations = new ReservationStore(store.db, store.engine);
  let executor: Executor;
  let site: Site;
  let consortium = o.consortium;
  if (o.executor === 'simulated') {
    site = o.site;
    executor = createSimulatedExecutor({ nodes: simulatedNodesFor(o.site) });
  } else {
    executor =
      o.executor === 'slurm'
        ? await createSlurmExecutor({
            ...o.slurm,
            identity: new SlurmIdentities(o.slurm),
            installation: await store.installationId(),
            logger: log,
          })
        : createLocalExecutor({
            dataDir,
            nodes: o.localNodes ?? 1,
            fallbackGpus: o.localGpus ?? 4,
            logger: log,
            isolation: o.localIsolation && {
              ...o.localIsolation,
              // A model replica's engine port (see the deployments controller): served to the gateway only.
              servicePort: (j) => Number(j.env.FABRIK_ENGINE_PORT) || null,
              // The request's limits and the datasets admission allowed, bound read-only at their location.
              resources: async (j) => {
                const stored = await store.job(j.id);
                const ids = stored?.request.datasets ?? [];
                const datasets = stored ? await governanceStore.jobDatasets(stored.member, ids) : [];
                return {
                  cpusPerTask: stored?.request.cpusPerTask ?? null,
                  memoryMb: stored?.request.memoryMb ?? null,
                  datasets: datasets.map((d) => ({
                    name: d.id,
                    location: d.location,
                    owner: d.owner,
                    registeredBy: d.createdBy,
                  })),
                };
              },
            },
          });
    site = siteForExecutor(o.executor, o.site, executor.nodes());
    // The consortium was written for the big site: the same shares of the machine at hand.
    consortium = scaleConsortium(o.consortium, site.totalGpus / o.site.totalGpus);
  }

  // Before the controller and the authenticator, which record placements and logins in it.
  const audit = await AuditLog.open(store.db, {
    origin: `fabrik/${await store.installationId()}`,
    signingKey: loadOrCreateSigningKey(dataDir),
    now,
  });
  // Jobs committed before a crash cut off their `job.submitted`: logged now, before the API, the
  // scheduling loop or the deployments controller can submit (src/audit/reconcile.ts).
  const reconciled = await reconcileSubmissions(audit, store);
  if (reconciled.length > 0)
    log.warn({ jobs: reconciled }, `audit: logged job.submitted for ${reconciled.length} jobs a crash left without one`);
  const governance = new Governance(governanceStore, site.zones, now);
  const controller = new Controller({
    store,
    executor,
    site,
    consortium,
    dataDir,
    now,
    log,
    cycleSeconds: o.cycleSeconds ?? 5,
    secretsKeyFile: o.secretsKeyFile,
    audit,
    reservations: () => reservations.list(now()),
    admitPlacement: async (j, zone, cotenants) => {
      const { member, project } = j;
      const refusals = await governance.checkPlacement(
        { member, project, purpose: j.request.purpose ?? '', datasets: j.request.datasets ?? [] },
        zone,
        cotenants,
      );
      return refusals.length === 0 ? null : refusals.map(describeRefusal).join('; ');
    },
  });
  // Replicas on the local executor run on this host and listen on loopback; on Slurm they listen
  // on every interface of their node and the server reaches them at the node's address (NodeAddr).
  const addresses = new Map(executor.nodes().map((n) => [n.name, n.address ?? n.name]));
  const deployments = new DeploymentController({
    db: store.db,
    store,
    controller,
    audit,
    log,
    now,
    hostOf: o.executor === 'local' ? () => '127.0.0.1' : (node) => addresses.get(node) ?? node,
    endpointOf: executor.endpoint && ((job, port) => executor.endpoint!(job, port)),
    listenHost: o.executor === 'local' ? '127.0.0.1' : '0.0.0.0',
    allocatePort: o.executor === 'local' ? undefined : rangePorts(),
    settings: o.deployments,
  });
  await store.syncMembers(consortium.members.map((m) => ({ id: m.id, name: m.name, projects: m.projects })));
  const auth = new Authenticator(store, new Set(consortium.members.map((m) => m.id)), o.oidc ?? null, now, audit);
  const metrics = createMetrics(controller, consortium);
  const app = await buildApp({
    store,
    controller,
    consortium,
    auth,
    metrics,
    log,
    now,
    audit,
    governance,
    reservations,
    deployments,
    // The deployments are the gateway's replicas and take its load reports, unless a test passes its own.
    replicas: o.replicas ?? deployments,
    replicaLoad: o.replicaLoad ?? deployments,
    gateway: o.gateway,
  });

  let bootstrapToken: string | null = null;
  if ((await store.countTokens()) === 0) {
    const { record, secret } = await firstOperator(store, now());
    await audit.append({
      kind: 'token.issued',
      actor: 'fabrik',
      member: null,
      subject: record.id,
      data: { name: record.name, role: record.role, user: record.user, expiresAt: null, bootstrap: true },
    });
    bootstrapToken = secret;
    // Like k3s's node token: readable by this user only, so the CLI on this host finds it.
    const file = join(dataDir, 'operator-token');
    writeFileSync(file, secret + '\n', { mode: 0o600 });
    chmodSync(file, 0o600);
  }

  await controller.start();
  await deployments.start();
  const address = await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8080 });
  let closing: Promise<void> | null = null;
  return {
    app,
    controller,
    store,
    url: address,
    bootstrapToken,
    site,
    audit,
    deployments,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await deployments.close();
        await controller.close();
        await audit.close();
        await store.close();
      })()),
  };
}

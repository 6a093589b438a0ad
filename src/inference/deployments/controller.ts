// The deployments controller: keeps every active deployment at its target replica count. Replicas
// are ordinary jobs in the `inference` priority class, submitted the way the API submits them
// (store, then the scheduling loop, then the audit log), so the scheduler places them like any job
// (NVLink domains, isolation, zones, preemption). It watches their states, replaces the ones that
// end, health-checks the running ones, tells the gateway where they are (ReplicaSource), and
// scales on the load the gateway reports (LoadSink).
//
// A replica serves the gateway only: its job gets a token of its own as a secret variable
// (REPLICA_TOKEN_ENV), which its engine requires, and the gateway and the health checks present.
// The token is derived, never stored: HMAC of the replica's identity (installation, deployment,
// replica number) under a sub-key of the server's secrets key, so it is computed again after a
// restart, and whoever reads the store learns nothing to call a replica with.
import { createServer } from 'node:net';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { FINAL_STATES, SubmitRequest } from '../../api/contract.js';
import type { AuditSink } from '../../core/audit.js';
import type { Site } from '../../core/site.js';
import type { Controller } from '../../server/controller.js';
import type { Database } from '../../store/schema.js';
import type { NewJob, StoredJob, Store } from '../../store/store.js';
import { getStatus, REPLICA_TOKEN_ENV, VLLM_TOKEN_ENV, type LoadSink, type Replica, type ReplicaSource } from '../replicas.js';
import { DeploymentStore, type Deployment, type ReplicaRecord } from './store.js';

export interface DeploymentSettings {
  /** Requests in flight one replica is meant to carry; more and the deployment scales out. */
  readonly targetInFlight: number;
  /** Tokens still to generate (reasoning budgets included) one replica is meant to carry. */
  readonly targetQueuedTokens: number;
  /** Load must stay below the current replica count this long before replicas are stopped. */
  readonly scaleDownCooldownSeconds: number;
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  /** How often replica states are looked at (they also are on every load report and API change). */
  readonly reconcileMs: number;
  /** A replica that ends before it ever answered a health check is restarted after 1, 2, 4, … s, up to this. */
  readonly maxRestartBackoffSeconds: number;
}

export const DEFAULT_DEPLOYMENT_SETTINGS: DeploymentSettings = {
  targetInFlight: 8,
  targetQueuedTokens: 32_768,
  scaleDownCooldownSeconds: 120,
  healthIntervalMs: 1000,
  healthTimeoutMs: 800,
  reconcileMs: 1000,
  maxRestartBackoffSeconds: 60,
};

/** Replicas run until stopped; the longest time limit a job may have. */
const REPLICA_WALLTIME_SECONDS = 366 * 86_400;
const ACTOR = 'deployments';
/** The purpose of the secrets key's sub-key that replica tokens are derived under. */
const TOKEN_PURPOSE = 'replica token';

export interface DeploymentControllerOptions {
  readonly db: Kysely<Database>;
  readonly store: Store;
  readonly controller: Controller;
  readonly audit: AuditSink;
  readonly log: Logger;
  readonly now: () => number;
  /**
   * The address a replica on `node` is reached at. The local executor runs everything on this host
   * (127.0.0.1); on Slurm the node's name is its hostname on the cluster network (NodeAddr), which
   * is what the server must be able to reach.
   */
  readonly hostOf: (node: string) => string;
  /**
   * Where the replica job serves its port when the executor keeps it off the network
   * (Executor.endpoint: a Unix socket of the local executor's sandbox); null: `hostOf(node):port`.
   */
  readonly endpointOf?: (job: string, port: number) => string | null;
  /** What a replica's engine is told to listen on (`FABRIK_ENGINE_HOST`): loopback, or 0.0.0.0 on cluster nodes. */
  readonly listenHost?: string;
  /**
   * A port for a new replica's engine. Default: one the OS says is free on this host now (right for
   * the local executor); for remote nodes, where nothing can be probed before placement, the next
   * port of 20000–29999 no replica of this factory holds.
   */
  readonly allocatePort?: (inUse: ReadonlySet<number>) => Promise<number>;
  readonly settings?: Partial<DeploymentSettings>;
}

/** What a member asks for; the controller keeps the rest (target, next replica, state). */
export type NewDeployment = Pick<
  Deployment,
  | 'id'
  | 'member'
  | 'project'
  | 'model'
  | 'command'
  | 'gpus'
  | 'min'
  | 'max'
  | 'accreditations'
  | 'zone'
  | 'reasoning'
  | 'scaleToZeroSeconds'
> & { readonly user: string };

/** What the API shows of a replica. */
export interface ReplicaStatus {
  readonly id: string;
  readonly replica: number;
  readonly state: string;
  readonly node: string | null;
  readonly url: string | null;
  readonly healthy: boolean;
  readonly inFlight: number;
  readonly queuedTokens: number;
}

export class DeploymentConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeploymentConflictError';
  }
}

interface ReplicaState {
  readonly rec: ReplicaRecord;
  /** `Bearer <its token>`, what the gateway and the health checks present. */
  readonly authorization: string;
  /** The replica refused its token once (logged once, not every second). */
  refusedToken: boolean;
  job: StoredJob | undefined;
  url: string | null;
  node: string | null;
  zone: string | null;
  healthy: boolean;
  everHealthy: boolean;
  checking: boolean;
  /** Told to stop (scale down, deletion): it no longer counts toward the target. */
  stopping: boolean;
  inFlight: number;
  queuedTokens: number;
}

interface Live {
  d: Deployment;
  readonly replicas: Map<string, ReplicaState>;
  /** Since when the load has asked for fewer replicas than the target (scale-down cool-down). */
  belowSince: number | null;
  /** Last time a request was in flight or queued (scale to zero), or the deployment was woken. */
  lastBusyAt: number;
  /** Replicas that ended in a row without ever becoming healthy: the restart backoff. */
  failures: number;
  retryAt: number;
}

export class DeploymentController implements ReplicaSource, LoadSink {
  private readonly settings: DeploymentSettings;
  private readonly deployments: DeploymentStore;
  private readonly live = new Map<string, Live>();
  /** Replica (job id) → its deployment's id: load reports and `failed` find theirs at once. */
  private readonly replicaOf = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private kicked = false;
  private closed = false;
  private zoneOfNode = new Map<string, string>();
  /** The store's installation id: part of every replica token, so no two installations share one. */
  private installation: string | null = null;

  constructor(private readonly o: DeploymentControllerOptions) {
    this.settings = { ...DEFAULT_DEPLOYMENT_SETTINGS, ...o.settings };
    this.deployments = new DeploymentStore(o.db);
  }

  /** Loads the active deployments and their replicas (after the scheduling loop has loaded its jobs), then keeps them. */
  async start(): Promise<void> {
    this.zoneOfNode = zones(this.o.controller.currentSite());
    this.installation = await this.o.store.installationId();
    const now = this.o.now();
    const records = await this.deployments.replicas();
    for (const d of await this.deployments.active()) {
      const l: Live = { d, replicas: new Map(), belowSince: null, lastBusyAt: now, failures: 0, retryAt: 0 };
      this.live.set(d.id, l);
      for (const r of records.filter((x) => x.deployment === d.id)) this.track(l, r);
      await this.adoptOrphans(l);
    }
    await this.serial(() => this.reconcile());
    this.timers.push(setInterval(() => this.kick(), this.settings.reconcileMs));
    this.timers.push(setInterval(() => this.checkAll(), this.settings.healthIntervalMs));
    for (const t of this.timers) t.unref();
  }

  /** Stops watching; the replicas keep running (they are jobs: the next start finds them again). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.queue.catch(() => undefined);
  }

  // ---- what the API calls ------------------------------------------------------------------

  /** The active deployments of the member, or of all members. */
  async list(member: string | null): Promise<Deployment[]> {
    const all = this.active();
    return member === null ? all : all.filter((d) => d.member === member);
  }

  /** Every active deployment, from memory. */
  active(): Deployment[] {
    return [...this.live.values()].map((l) => l.d);
  }

  async get(id: string): Promise<Deployment | undefined> {
    return this.live.get(id)?.d ?? (await this.deployments.get(id));
  }

  replicaStatus(id: string): ReplicaStatus[] {
    const l = this.live.get(id);
    if (!l) return [];
    return [...l.replicas.values()]
      .sort((a, b) => a.rec.replica - b.rec.replica)
      .map((r) => ({
        id: r.rec.jobId,
        replica: r.rec.replica,
        state: r.stopping && r.job && !FINAL_STATES.includes(r.job.state) ? 'stopping' : (r.job?.state ?? 'unknown'),
        node: r.node,
        url: r.url,
        healthy: r.healthy,
        inFlight: r.inFlight,
        queuedTokens: r.queuedTokens,
      }));
  }

  create(n: NewDeployment): Promise<Deployment> {
    return this.serial(async () => {
      for (const l of this.live.values())
        if (l.d.member === n.member && l.d.model === n.model)
          throw new DeploymentConflictError(`member ${n.member} already deploys model ${n.model} (deployment ${l.d.id})`);
      const now = this.o.now();
      const d: Deployment = {
        ...n,
        target: n.min,
        state: 'active',
        nextReplica: 0,
        createdAt: now,
        createdBy: n.user,
        updatedAt: now,
        deletedAt: null,
        deletedBy: null,
      };
      await this.deployments.add(d);
      await this.o.audit.append({
        kind: 'deployment.created',
        actor: n.user,
        member: n.member,
        subject: d.id,
        data: {
          model: d.model,
          project: d.project,
          gpus: d.gpus,
          min: d.min,
          max: d.max,
          accreditations: [...d.accreditations],
          zone: d.zone,
          reasoning: d.reasoning,
          scaleToZeroSeconds: d.scaleToZeroSeconds,
        },
      });
      this.live.set(d.id, { d, replicas: new Map(), belowSince: null, lastBusyAt: now, failures: 0, retryAt: 0 });
      await this.reconcileOne(this.live.get(d.id)!, now);
      return this.live.get(d.id)!.d;
    });
  }

  /** New bounds (the target moves inside them at once) or a new scale-to-zero setting. */
  scale(
    id: string,
    change: { min?: number; max?: number; scaleToZeroSeconds?: number | null },
    user: string,
  ): Promise<Deployment | undefined> {
    return this.serial(async () => {
      const l = this.live.get(id);
      if (!l) return undefined;
      const now = this.o.now();
      const min = change.min ?? l.d.min;
      const max = change.max ?? l.d.max;
      if (min > max) throw new DeploymentConflictError(`min (${min}) is above max (${max})`);
      const asleep = l.d.target === 0;
      const target = asleep ? 0 : Math.min(max, Math.max(min, l.d.target));
      const scaleToZeroSeconds = change.scaleToZeroSeconds === undefined ? l.d.scaleToZeroSeconds : change.scaleToZeroSeconds;
      // Scale to zero turned off while asleep: the deployment wakes to its floor.
      const woken = asleep && scaleToZeroSeconds === null ? min : target;
      await this.setTarget(l, woken, user, 'set', { min, max, scaleToZeroSeconds });
      await this.reconcileOne(l, now);
      return l.d;
    });
  }

  /** Marks it deleted and stops its replicas. */
  delete(id: string, user: string): Promise<Deployment | undefined> {
    return this.serial(async () => {
      const l = this.live.get(id);
      if (!l) return undefined;
      const now = this.o.now();
      await this.deployments.update(id, { state: 'deleted', deletedAt: now, deletedBy: user, target: 0, updatedAt: now });
      await this.o.audit.append({
        kind: 'deployment.deleted',
        actor: user,
        member: l.d.member,
        subject: id,
        data: { model: l.d.model, replicas: [...l.replicas.keys()] },
      });
      this.live.delete(id);
      for (const r of l.replicas.values()) {
        this.replicaOf.delete(r.rec.jobId);
        await this.deployments.removeReplica(r.rec.jobId);
        if (!r.stopping) await this.stopReplica(r);
      }
      return { ...l.d, state: 'deleted', target: 0, deletedAt: now, deletedBy: user, updatedAt: now };
    });
  }

  /**
   * For the gateway: a request came for `model` of `member` and found no replica (the deployment
   * scaled to zero). Brings it back to its floor; returns false when the member deploys no such
   * model. The gateway answers that request with a retryable 503 (or holds it) until a replica is
   * healthy in `replicas()`.
   */
  wake(member: string, model: string): boolean {
    const now = this.o.now();
    let found = false;
    for (const l of this.live.values()) {
      if (l.d.member !== member || l.d.model !== model) continue;
      found = true;
      l.lastBusyAt = now;
    }
    if (found) this.kick();
    return found;
  }

  // ---- ReplicaSource ------------------------------------------------------------------------

  replicas(member: string, model: string): readonly Replica[] {
    const out: Replica[] = [];
    for (const l of this.live.values()) {
      if (l.d.member !== member || l.d.model !== model) continue;
      for (const r of l.replicas.values()) {
        if (r.url === null || r.stopping) continue;
        out.push({
          id: r.rec.jobId,
          deployment: l.d.id,
          member: l.d.member,
          model: l.d.model,
          url: r.url,
          zone: r.zone ?? l.d.zone ?? '',
          accreditations: l.d.accreditations,
          reasoning: l.d.reasoning,
          healthy: r.healthy,
          authorization: r.authorization,
        });
      }
    }
    return out;
  }

  models(member: string): readonly { readonly model: string; readonly deployment: string; readonly createdAt: number }[] {
    const out: { model: string; deployment: string; createdAt: number }[] = [];
    for (const l of this.live.values())
      if (l.d.member === member) out.push({ model: l.d.model, deployment: l.d.id, createdAt: l.d.createdAt });
    return out;
  }

  // ---- LoadSink -----------------------------------------------------------------------------

  load(replica: string, inFlight: number, queuedTokens: number): void {
    const l = this.live.get(this.replicaOf.get(replica) ?? '');
    const r = l?.replicas.get(replica);
    if (!l || !r) return;
    r.inFlight = Math.max(0, inFlight);
    r.queuedTokens = Math.max(0, queuedTokens);
    if (inFlight > 0 || queuedTokens > 0) l.lastBusyAt = this.o.now();
    // Scale-up is immediate: the next reconcile compares the load to the target.
    if (this.desired(l, this.o.now()) > l.d.target) this.kick();
  }

  failed(replica: string): void {
    const l = this.live.get(this.replicaOf.get(replica) ?? '');
    const r = l?.replicas.get(replica);
    if (!l || !r) return;
    // Unhealthy until a check says otherwise: the gateway stops sending to it now, not in a second.
    r.healthy = false;
    void this.check(r);
  }

  // ---- the loop -----------------------------------------------------------------------------

  private kick(): void {
    if (this.kicked || this.closed) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      void this.serial(() => this.reconcile());
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch((err) => this.o.log.error({ err }, 'deployments step failed'));
    return next;
  }

  private async reconcile(): Promise<void> {
    if (this.closed) return;
    const now = this.o.now();
    for (const l of [...this.live.values()]) {
      try {
        await this.reconcileOne(l, now);
      } catch (err) {
        this.o.log.error({ err, deployment: l.d.id }, 'deployment reconcile failed');
      }
    }
  }

  private async reconcileOne(l: Live, now: number): Promise<void> {
    // 1. Replica states from the scheduling loop's mirror (the store only for those that left it).
    for (const r of [...l.replicas.values()]) {
      const job = this.o.controller.activeJob(r.rec.jobId) ?? (await this.o.store.job(r.rec.jobId));
      r.job = job;
      if (!job || FINAL_STATES.includes(job.state)) {
        l.replicas.delete(r.rec.jobId);
        this.replicaOf.delete(r.rec.jobId);
        await this.deployments.removeReplica(r.rec.jobId);
        if (!r.stopping) {
          // It died (failed, lost, cancelled by someone, or an engine that exited 0): replace it,
          // at once if it had served, with a growing backoff if it never came up.
          l.failures = r.everHealthy ? 0 : l.failures + 1;
          l.retryAt = l.failures === 0 ? now : now + Math.min(2 ** (l.failures - 1), this.settings.maxRestartBackoffSeconds);
          this.o.log.warn(
            { deployment: l.d.id, job: r.rec.jobId, state: job?.state ?? 'missing', reason: job?.reason ?? null },
            'deployment replica ended; replacing it',
          );
        }
        continue;
      }
      const first = job.state === 'running' ? job.placement?.[0] : undefined;
      if (first) {
        r.node = first.node;
        r.zone = this.zoneOfNode.get(first.node) ?? null;
        r.url = this.o.endpointOf?.(r.rec.jobId, r.rec.port) ?? `http://${this.o.hostOf(first.node)}:${r.rec.port}`;
      } else {
        // Pending, starting or preempted back to the queue: not ready, and no load on it.
        r.node = null;
        r.url = null;
        r.healthy = false;
        r.inFlight = 0;
        r.queuedTokens = 0;
      }
    }
    // 2. The target, from the load.
    const desired = this.desired(l, now);
    if (desired > l.d.target) {
      l.belowSince = null;
      await this.setTarget(l, desired, 'autoscaler', 'load');
    } else if (desired < l.d.target) {
      const idle = desired === 0;
      l.belowSince ??= now;
      // The idle time before scaling to zero is its own cool-down.
      if (idle || now - l.belowSince >= this.settings.scaleDownCooldownSeconds) {
        l.belowSince = null;
        await this.setTarget(l, desired, 'autoscaler', idle ? 'idle' : 'load');
      }
    } else l.belowSince = null;
    // 3. Replicas to the target.
    const counted = [...l.replicas.values()].filter((r) => !r.stopping);
    if (counted.length < l.d.target && now >= l.retryAt) {
      for (let i = counted.length; i < l.d.target; i++) await this.submitReplica(l, now);
    } else if (counted.length > l.d.target) {
      // Stop first what serves nobody: waiting replicas, then unhealthy ones, then the least loaded, newest first.
      const rank = (r: ReplicaState) => (r.url === null ? 0 : !r.healthy ? 1 : 2);
      const extra = counted
        .sort((a, b) => rank(a) - rank(b) || a.inFlight - b.inFlight || b.rec.replica - a.rec.replica)
        .slice(0, counted.length - l.d.target);
      for (const r of extra) await this.stopReplica(r);
    }
  }

  /** Replicas the load asks for, between min and max; zero after the idle time when scale to zero is on. */
  private desired(l: Live, now: number): number {
    let inFlight = 0;
    let queued = 0;
    for (const r of l.replicas.values()) {
      if (r.stopping) continue;
      inFlight += r.inFlight;
      queued += r.queuedTokens;
    }
    const { scaleToZeroSeconds: idle, min, max } = l.d;
    // A deployment still coming up (woken, or its replicas restarting) is not idle: its idle clock
    // starts when a replica is ready (see check), so a slow engine start does not put it back to sleep.
    const ready = l.d.target === 0 || [...l.replicas.values()].some((r) => r.healthy && !r.stopping);
    if (idle !== null && ready && inFlight === 0 && queued === 0 && now - l.lastBusyAt >= idle) return 0;
    const need = Math.max(
      Math.ceil(inFlight / this.settings.targetInFlight),
      Math.ceil(queued / this.settings.targetQueuedTokens),
    );
    return Math.min(max, Math.max(min, need));
  }

  private async setTarget(
    l: Live,
    target: number,
    actor: string,
    reason: 'load' | 'idle' | 'set',
    bounds?: { min: number; max: number; scaleToZeroSeconds: number | null },
  ): Promise<void> {
    const from = l.d.target;
    const b = bounds ?? { min: l.d.min, max: l.d.max, scaleToZeroSeconds: l.d.scaleToZeroSeconds };
    const now = this.o.now();
    if (from === target && b.min === l.d.min && b.max === l.d.max && b.scaleToZeroSeconds === l.d.scaleToZeroSeconds) return;
    await this.deployments.update(l.d.id, { ...b, target, updatedAt: now });
    l.d = { ...l.d, ...b, target, updatedAt: now };
    if (target > from) l.retryAt = Math.min(l.retryAt, now);
    await this.o.audit.append({
      kind: 'deployment.scaled',
      actor,
      member: l.d.member,
      subject: l.d.id,
      data: { from, to: target, reason, min: b.min, max: b.max, scaleToZeroSeconds: b.scaleToZeroSeconds },
    });
  }

  /** A replica job, through the same path as POST /v1/jobs: stored, handed to the scheduling loop, audited. */
  private async submitReplica(l: Live, now: number): Promise<void> {
    const d = l.d;
    const k = d.nextReplica;
    // The number is spent before the job exists, so a crash in between never names two jobs alike.
    await this.deployments.update(d.id, { nextReplica: k + 1, updatedAt: now });
    l.d = { ...d, nextReplica: k + 1 };
    const port = await this.allocatePort();
    const name = `deploy-${d.id}-r${k}`;
    const token = this.token(d.id, k);
    const {
      name: _n,
      member: _m,
      project: _p,
      array: _a,
      ...request
    } = SubmitRequest.parse({
      name,
      command: [...d.command],
      env: {
        FABRIK_ENGINE_PORT: String(port),
        FABRIK_ENGINE_HOST: this.o.listenHost ?? '127.0.0.1',
        FABRIK_DEPLOYMENT: d.id,
        FABRIK_MODEL: d.model,
      },
      gpus: d.gpus,
      priorityClass: 'inference',
      walltimeSeconds: REPLICA_WALLTIME_SECONDS,
      zone: d.zone,
    });
    const owner = { member: d.member, user: d.createdBy };
    const job: NewJob = {
      name,
      member: d.member,
      project: d.project,
      user: d.createdBy,
      // The token goes in after SubmitRequest's checks, on purpose: they refuse FABRIK_* credentials
      // from members (fabrikCredentialIn), and this one is the controller's to give. Sealed like any
      // secretEnv (stored encrypted, shown as "(secret)" to everyone), opened only to start the job.
      request: {
        ...request,
        secretEnv: this.o.controller.secrets.sealAll(owner, { [REPLICA_TOKEN_ENV]: token, [VLLM_TOKEN_ENV]: token }),
      },
      gpus: d.gpus,
      submittedAt: now,
      arrayTaskId: null,
      arrayThrottle: null,
    };
    const outcome = await this.o.store.submit({ jobs: [job], idempotency: null });
    if (outcome.kind !== 'created') throw new Error(`replica ${name}: the store answered ${outcome.kind}`);
    const stored = outcome.jobs[0];
    const rec: ReplicaRecord = { jobId: stored.id, deployment: d.id, replica: k, port, createdAt: now };
    await this.deployments.addReplica(rec);
    this.track(l, rec, stored);
    this.o.controller.submitted(outcome.jobs);
    await this.o.audit.append({
      kind: 'job.submitted',
      actor: ACTOR,
      member: d.member,
      subject: stored.id,
      data: { name, project: d.project, gpus: d.gpus, priorityClass: 'inference', deployment: d.id },
    });
  }

  private async stopReplica(r: ReplicaState): Promise<void> {
    r.stopping = true;
    r.healthy = false;
    await this.o.controller.cancel(r.rec.jobId, ACTOR);
  }

  /**
   * The replica's token: computed, never stored. Replicas started before tokens existed have none
   * in their environment; their engines ignore the header, so they keep serving until replaced.
   */
  private token(deployment: string, replica: number): string {
    if (this.installation === null) throw new Error('the deployments controller was not started');
    return this.o.controller.secrets.derive(TOKEN_PURPOSE, `${this.installation}\0${deployment}\0${replica}`);
  }

  private track(l: Live, rec: ReplicaRecord, job?: StoredJob): void {
    l.replicas.set(rec.jobId, {
      rec,
      authorization: `Bearer ${this.token(rec.deployment, rec.replica)}`,
      refusedToken: false,
      job,
      url: null,
      node: null,
      zone: null,
      healthy: false,
      everHealthy: false,
      checking: false,
      stopping: false,
      inFlight: 0,
      queuedTokens: 0,
    });
    this.replicaOf.set(rec.jobId, l.d.id);
  }

  /**
   * A crash between submitting a replica and recording it leaves a job no row names: its number is
   * one of the last spent, so those names are looked up once at start and the job is adopted.
   */
  private async adoptOrphans(l: Live): Promise<void> {
    const known = new Set([...l.replicas.values()].map((r) => r.rec.replica));
    for (let k = Math.max(0, l.d.nextReplica - l.d.max); k < l.d.nextReplica; k++) {
      if (known.has(k)) continue;
      const [job] = await this.o.store.jobs({ member: l.d.member, name: `deploy-${l.d.id}-r${k}`, limit: 1 });
      if (!job || FINAL_STATES.includes(job.state)) continue;
      const port = Number(job.request.env.FABRIK_ENGINE_PORT);
      if (!Number.isInteger(port)) continue;
      const rec: ReplicaRecord = { jobId: job.id, deployment: l.d.id, replica: k, port, createdAt: job.submittedAt };
      await this.deployments.addReplica(rec);
      this.track(l, rec, job);
    }
  }

  private portsInUse(): Set<number> {
    const used = new Set<number>();
    for (const l of this.live.values()) for (const r of l.replicas.values()) used.add(r.rec.port);
    return used;
  }

  private async allocatePort(): Promise<number> {
    const inUse = this.portsInUse();
    if (this.o.allocatePort) return this.o.allocatePort(inUse);
    for (let i = 0; i < 20; i++) {
      const p = await freeLocalPort();
      if (!inUse.has(p)) return p;
    }
    throw new Error('no free TCP port for a replica');
  }

  // ---- health -------------------------------------------------------------------------------

  private checkAll(): void {
    if (this.closed) return;
    for (const l of this.live.values()) for (const r of l.replicas.values()) if (r.url && !r.stopping) void this.check(r);
  }

  /** `/health` (vLLM, SGLang, the bundled engine), else `/v1/models` (any OpenAI-compatible server). */
  private async check(r: ReplicaState): Promise<void> {
    const url = r.url;
    if (url === null || r.checking) return;
    r.checking = true;
    try {
      let ok = false;
      try {
        // node:http rather than fetch: it reaches replicas behind a Unix socket too.
        // With the replica's token: an engine that requires it answers /health only to the gateway.
        let status = await getStatus(url, '/health', this.settings.healthTimeoutMs, r.authorization);
        if (status === 404) status = await getStatus(url, '/v1/models', this.settings.healthTimeoutMs, r.authorization);
        ok = status >= 200 && status < 300;
        if (status === 401 && !r.refusedToken) {
          r.refusedToken = true;
          this.o.log.warn(
            { deployment: r.rec.deployment, job: r.rec.jobId },
            "deployment replica refuses the gateway's token (was the secrets key replaced since it started?); it gets no requests",
          );
        }
      } catch {
        ok = false;
      }
      // The replica may have moved (stopped, requeued) while the check ran.
      if (r.url !== url || r.stopping) return;
      const l = this.live.get(r.rec.deployment);
      if (ok && l && ![...l.replicas.values()].some((x) => x.healthy)) l.lastBusyAt = this.o.now();
      r.healthy = ok;
      if (ok && !r.everHealthy) {
        r.everHealthy = true;
        if (l) l.failures = 0;
      }
    } finally {
      r.checking = false;
    }
  }
}

function zones(site: Site): Map<string, string> {
  return new Map(site.nodes.map((n) => [n.name, site.domains[n.domain].zone]));
}

/** A port nothing listens on now, as the OS picks it. */
function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** For executors whose nodes are not this host: the next port of a range that no replica holds. */
export function rangePorts(from = 20_000, to = 29_999): (inUse: ReadonlySet<number>) => Promise<number> {
  let next = from;
  return async (inUse) => {
    for (let i = 0; i <= to - from; i++) {
      const p = next;
      next = next >= to ? from : next + 1;
      if (!inUse.has(p)) return p;
    }
    throw new Error(`every port of ${from}–${to} is held by a replica`);
  };
}

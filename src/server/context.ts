// What every route handler works with.
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/log.js';
import type { Consortium } from '../core/consortium.js';
import type { Governance } from '../governance/governance.js';
import type { DeploymentController } from '../inference/deployments/controller.js';
import type { GatewayConfig } from '../inference/gateway/gateway.js';
import type { LoadSink, ReplicaSource } from '../inference/replicas.js';
import type { ReservationStore } from '../store/reservations.js';
import type { Store } from '../store/store.js';
import type { Authenticator, Principal } from './auth.js';
import type { Controller } from './controller.js';
import type { ServerMetrics } from './metrics.js';

export interface ServerContext {
  readonly store: Store;
  readonly controller: Controller;
  readonly consortium: Consortium;
  readonly auth: Authenticator;
  readonly metrics: ServerMetrics;
  /** The tamper-evident log every control-plane event goes to. */
  readonly audit: AuditLog;
  /** Datasets, agreements and the admission policies. */
  readonly governance: Governance;
  /** Advance reservations (capability runs). */
  readonly reservations: ReservationStore;
  /** Model deployments: their replicas (a ReplicaSource) and the autoscaler (a LoadSink) the gateway reports to. */
  readonly deployments: DeploymentController;
  /** Where the gateway finds replicas (tests and benchmarks pass a static one), and reports their load. */
  readonly replicas?: ReplicaSource;
  readonly replicaLoad?: LoadSink;
  /** The gateway's limits and routing settings (defaults: DEFAULT_GATEWAY). */
  readonly gateway?: Partial<GatewayConfig>;
  readonly log: Logger;
  /** Seconds since the epoch. */
  readonly now: () => number;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every route but the probes and the API description. */
    principal: Principal;
  }
}

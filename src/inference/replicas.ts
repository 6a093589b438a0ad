// What the gateway and the deployments share: the replicas that serve a member's models, and
// the load the gateway measures on them (what the autoscaler scales on). The deployments
// controller (src/inference/deployments) is the source; the gateway (src/inference/gateway)
// reads it on every request, so lookups are in memory.
import { request as httpRequest } from 'node:http';
import type { Classification } from '../governance/model.js';

/** One running replica of a deployment: an OpenAI-compatible server reachable at `url`. */
export interface Replica {
  /** Unique within the factory (the Fabrik job id of the replica). */
  readonly id: string;
  readonly deployment: string;
  /** The deployment's member: its replicas serve that member's keys only. */
  readonly member: string;
  /** The model name clients call (`model` in the request). */
  readonly model: string;
  /**
   * Root of its OpenAI-compatible API, without `/v1` (e.g. `http://10.0.3.7:8101`), or
   * `http+unix://<encoded socket path>` for a replica the executor keeps off every network.
   */
  readonly url: string;
  readonly zone: string;
  /** The data classifications it is accredited to process. */
  readonly accreditations: readonly Classification[];
  /** Reasoning models get a configured worst-case completion budget reserved per request. */
  readonly reasoning: boolean;
  /** Answered its last health check; the gateway routes to healthy replicas only. */
  readonly healthy: boolean;
  /**
   * `Bearer <replica token>`: what the gateway presents on every upstream request, so that the
   * replica serves the gateway and no other caller (see REPLICA_TOKEN_ENV). Computed once per
   * replica, never per request.
   */
  readonly authorization?: string;
}

/**
 * The secret variable a replica's job gets its token in: the bundled engine (`fabrik engine`)
 * requires `Authorization: Bearer $FABRIK_ENGINE_API_KEY` on every route when it is set. A Fabrik
 * credential name, so the API refuses it in any member's `env` and `secretEnv` (fabrikCredentialIn):
 * only the deployments controller sets it, after the request's checks.
 */
export const REPLICA_TOKEN_ENV = 'FABRIK_ENGINE_API_KEY';
/**
 * The same token under the name vLLM reads by itself (`vllm serve` requires it on `/v1/*` when set,
 * as `--api-key` would), so a vLLM replica is protected without a flag: a flag's value is in the
 * process's argv, which every user of the node can read (`ps`).
 */
export const VLLM_TOKEN_ENV = 'VLLM_API_KEY';

export interface ReplicaSource {
  /** The member's replicas serving `model` (any health; the caller filters). */
  replicas(member: string, model: string): readonly Replica[];
  /**
   * A deployment of the member's serving `model` that is scaled to zero is brought up (true); false
   * when there is none. The request that found no replica answers 503 with retry-after.
   */
  wake?(member: string, model: string): boolean;
  /** The models the member can call (for `/v1/models`). */
  models(member: string): readonly { readonly model: string; readonly deployment: string; readonly createdAt: number }[];
}

/** What the gateway reports about a replica's load; the autoscaler scales on it. */
export interface LoadSink {
  /** Called when a request starts or ends on a replica: requests in flight and tokens still to generate. */
  load(replica: string, inFlight: number, queuedTokens: number): void;
  /** A replica failed before the first byte (connection refused, 5xx): worth a health check now. */
  failed(replica: string): void;
}

/** Where a replica's URL leads: a TCP host and port, or a Unix socket (`http+unix://<encoded path>`). */
export interface Upstream {
  readonly host: string;
  readonly port: number;
  /** Set for `http+unix://` URLs: the local executor's isolated replicas are reached only so. */
  readonly socketPath?: string;
  /** Path prefix of the API root, without a trailing slash. */
  readonly base: string;
}

const UNIX_SCHEME = 'http+unix://';

export function upstreamOf(url: string): Upstream {
  if (url.startsWith(UNIX_SCHEME)) {
    const rest = url.slice(UNIX_SCHEME.length);
    const slash = rest.indexOf('/');
    const socketPath = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
    return { host: 'localhost', port: 80, socketPath, base: slash < 0 ? '' : rest.slice(slash).replace(/\/$/, '') };
  }
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)),
    base: u.pathname.replace(/\/$/, ''),
  };
}

/**
 * GET `path` of the replica, presenting `authorization` when given: its status code, or an error
 * (refused, timed out). For health checks.
 */
export function getStatus(url: string, path: string, timeoutMs: number, authorization?: string): Promise<number> {
  const t = upstreamOf(url);
  const headers = authorization === undefined ? {} : { authorization };
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      t.socketPath
        ? { socketPath: t.socketPath, path: t.base + path, timeout: timeoutMs, headers }
        : { host: t.host, port: t.port, path: t.base + path, timeout: timeoutMs, headers },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

// A small client for slurmrestd's v0.0.38 API (Slurm 22.05). It mints its own HS256 tokens with
// the cluster's JWT key (no `scontrol token` shell per request) and caches one until shortly
// before it expires. Errors carry the HTTP status and Slurm's own error text, because slurmrestd
// answers most failures (unknown job, user mismatch) with a bare 500.
import fs from 'node:fs';
import { SignJWT } from 'jose';

export const API = '/slurm/v0.0.38';

/** slurmrestd refused a request or could not be reached (status 0). */
export class SlurmRestError extends Error {
  override readonly name = 'SlurmRestError';
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    /** Slurm's error texts, e.g. `Invalid job id specified: Unable to find JobId=7`. */
    readonly slurmErrors: readonly string[],
    /** Slurm's error numbers (2017: invalid job id), parallel to `slurmErrors`. */
    readonly slurmErrorNumbers: readonly number[] = [],
    /** The answer's body when it parsed: a refused submit may still carry the job id Slurm made. */
    readonly body: Record<string, unknown> | null = null,
  ) {
    super(
      `slurmrestd ${method} ${path}: ${status === 0 ? 'unreachable' : `HTTP ${status}`}` +
        (slurmErrors.length > 0 ? `: ${slurmErrors.join('; ')}` : '') +
        (status === 401 ? ' (token rejected: is slurmrestd running with SLURM_JWT=daemon, and the key the right one?)' : ''),
    );
  }

  /**
   * slurmrestd or slurmctld could not be reached, or the chosen nodes are not available for now:
   * worth trying again later (placed anew), nothing about the job itself was refused.
   */
  get transient(): boolean {
    return (
      this.status === 0 ||
      this.status === 502 ||
      this.status === 503 ||
      this.status === 504 ||
      this.slurmErrorNumbers.some((n) => n === SLURM_COMMUNICATIONS_CONNECTION_ERROR || n === ESLURM_NODE_NOT_AVAIL) ||
      // 22.05 answers reads with a bare "Unspecified error" (-1) when slurmctld does not answer.
      (this.method === 'GET' &&
        this.status === 500 &&
        this.slurmErrorNumbers.length > 0 &&
        this.slurmErrorNumbers.every((n) => n === -1))
    );
  }
}

/** "Unable to contact slurm controller": slurmctld is down or restarting. */
export const SLURM_COMMUNICATIONS_CONNECTION_ERROR = 1800;

/**
 * "Required node not available (down, drained or reserved)": the nodes Fabrik chose went down, or
 * have not registered again after a slurmctld restart. Node health catches up within seconds.
 */
export const ESLURM_NODE_NOT_AVAIL = 2068;

/** Slurm's "Invalid job id specified": the job was never there or has been purged. */
export const ESLURM_INVALID_JOB_ID = 2017;
/** "Job can not be altered now, try again later": e.g. a signal while the job is still launching. */
export const ESLURM_TRANSITION_STATE_NO_UPDATE = 2020;

interface SlurmError {
  error?: string;
  description?: string;
  error_number?: number;
  error_code?: number;
}

export interface SlurmRestOptions {
  readonly url: string;
  readonly jwtKeyFile: string;
  /** Lifetime of a minted token. */
  readonly tokenSeconds?: number;
}

export class SlurmRestClient {
  private key: Uint8Array | null = null;
  private readonly tokens = new Map<string, { token: string; exp: number }>();
  private readonly tokenSeconds: number;

  constructor(private readonly options: SlurmRestOptions) {
    this.tokenSeconds = options.tokenSeconds ?? 3600;
  }

  private async token(user: string): Promise<string> {
    const nowS = Math.floor(Date.now() / 1000);
    const cached = this.tokens.get(user);
    // Renew a minute early so that no request leaves with a token that expires on the way.
    if (cached && cached.exp - 60 > nowS) return cached.token;
    this.key ??= new Uint8Array(fs.readFileSync(this.options.jwtKeyFile));
    const exp = nowS + this.tokenSeconds;
    const token = await new SignJWT({ sun: user })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuedAt(nowS)
      .setExpirationTime(exp)
      .sign(this.key);
    this.tokens.set(user, { token, exp });
    return token;
  }

  /** One call as `user`; resolves with the parsed body, rejects with SlurmRestError. */
  async request<T>(method: 'GET' | 'POST' | 'DELETE', path: string, user: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {
      'X-SLURM-USER-NAME': user,
      'X-SLURM-USER-TOKEN': await this.token(user),
    };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(new URL(path, this.options.url), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new SlurmRestError(0, method, path, [`${cause} (${this.options.url})`]);
    }
    const text = await res.text();
    let parsed: { errors?: SlurmError[] } & Record<string, unknown>;
    try {
      parsed = text === '' ? {} : (JSON.parse(text) as typeof parsed);
    } catch {
      throw new SlurmRestError(res.status, method, path, [text.trim().slice(0, 300) || res.statusText]);
    }
    const errors = (parsed.errors ?? []).filter((e) => e.error !== undefined || e.description !== undefined);
    // v0.0.38 reports some failures (a submit that Slurm refused) with HTTP 200 and `errors`.
    if (!res.ok || errors.length > 0) {
      throw new SlurmRestError(
        res.status,
        method,
        path,
        errors.map((e) => [e.error, e.description].filter(Boolean).join(': ')),
        errors.map((e) => e.error_number ?? e.error_code ?? -1),
        parsed,
      );
    }
    return parsed as T;
  }
}

// The server's own configuration file (`fabrik up --config fabrik.yaml`), checked like the site
// and consortium files: errors name the file, the key and the line. Environment variables
// (FABRIK_*) override the file, and command-line flags override both.
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { InvalidDescriptionError } from '../core/errors.js';
import { Description, readDescriptionFile, strictObject } from './document.js';

const port = z.number().int().min(0).max(65535);
const whole = z.number().int().min(1);

const serverSchema = strictObject({
  /** Data folder: the SQLite store, job logs, the operator token. */
  data: z.string().min(1).optional(),
  /** `sqlite:<file>` or `postgres://…`. */
  store: z.string().min(1).optional(),
  executor: z.enum(['local', 'slurm', 'simulated']).optional(),
  site: z.string().min(1).optional(),
  consortium: z.string().min(1).optional(),
  host: z.string().min(1).optional(),
  port: port.optional(),
  /** Local executor: GPUs when nvidia-smi finds none, and node slots on this host. */
  gpus: whole.optional(),
  nodes: whole.optional(),
  cycleSeconds: whole.optional(),
  /**
   * Local executor: run jobs without isolation even for several members, where the host cannot
   * isolate them (not root, no bubblewrap, no user namespaces). Only for a consortium whose
   * members trust each other; without it `fabrik up` refuses.
   */
  singleTenant: z.boolean().optional(),
  /** Local executor: the isolated jobs' settings. */
  local: strictObject({
    /** Where the GPUs' device files are (`nvidia<N>`, `nvidiactl`…; default /dev). */
    deviceDir: z.string().min(1).optional(),
    /** A Fabrik user's Unix user, `{member}` and `{user}` replaced (default `{member}-{user}`, as on Slurm). */
    userName: z.string().min(1).optional(),
  }).optional(),
  slurm: strictObject({
    /** slurmrestd, e.g. http://127.0.0.1:6820. */
    url: z.url().optional(),
    /** The cluster's JWT key file (AuthAltParameters=jwt_key=…). */
    jwtKey: z.string().min(1).optional(),
    partition: z.string().min(1).optional(),
    /** The Unix user of a Fabrik user: `{member}` and `{user}` replaced (default `{member}-{user}`). */
    userName: z.string().min(1).optional(),
    /** Create missing Unix users on this host (default false: users come from the directory). */
    createUnixUsers: z.boolean().optional(),
    /** Create missing Slurm accounts, users and wckeys with sacctmgr (default true). */
    manageAccounts: z.boolean().optional(),
  }).optional(),
  /** The inference gateway's limits (docs/inference.md); members' own limits replace those derived from entitlements. */
  gateway: strictObject({
    tokensPerGpuDay: whole.optional(),
    /** null: no month budget (the default). */
    tokensPerGpuMonth: whole.nullable().optional(),
    requestsPerMinutePerGpu: whole.optional(),
    tokensPerMinutePerGpu: whole.optional(),
    defaultMaxTokens: whole.optional(),
    reasoningMaxTokens: whole.optional(),
    /** Per member id; null: no such limit for that member. */
    members: z
      .record(
        z.string().min(1),
        strictObject({
          requestsPerMinute: whole.nullable().optional(),
          tokensPerMinute: whole.nullable().optional(),
          tokensPerDay: whole.nullable().optional(),
          tokensPerMonth: whole.nullable().optional(),
        }),
      )
      .optional(),
  }).optional(),
  oidc: strictObject({
    issuer: z.url(),
    /** URL of the issuer's JWKS, or a local file. */
    jwks: z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
    memberClaim: z.string().min(1).optional(),
    roleClaim: z.string().min(1).optional(),
  }).optional(),
});

export type ServerFileConfig = z.output<typeof serverSchema>;

/** Reads a server configuration file; paths in it are relative to the file's folder. */
export function loadServerConfig(path: string): ServerFileConfig {
  const description = Description.parse(readDescriptionFile(path), path);
  const c = description.validate(serverSchema);
  const base = dirname(resolve(path));
  const rel = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(base, p));
  const jwks = c.oidc?.jwks;
  return {
    ...c,
    data: rel(c.data),
    site: rel(c.site),
    consortium: rel(c.consortium),
    store:
      c.store?.startsWith('sqlite:') && !c.store.startsWith('sqlite:/') && c.store !== 'sqlite::memory:'
        ? `sqlite:${rel(c.store.slice(7))}`
        : c.store,
    oidc: c.oidc && { ...c.oidc, jwks: jwks && !/^https?:/.test(jwks) ? rel(jwks) : jwks },
    slurm: c.slurm && { ...c.slurm, jwtKey: rel(c.slurm.jwtKey) },
    local: c.local && { ...c.local, deviceDir: rel(c.local.deviceDir) },
  };
}

/** What only the consortium can tell: a gateway limit for a member it does not have names the file and the key. */
export function checkGatewayMembers(c: ServerFileConfig, members: readonly string[], file: string | undefined): void {
  for (const m of Object.keys(c.gateway?.members ?? {}))
    if (!members.includes(m))
      throw new InvalidDescriptionError(
        file ?? '(settings)',
        `gateway.members.${m}`,
        `no member ${m} in the consortium (its members: ${members.join(', ')})`,
      );
}

/** The same settings from FABRIK_* environment variables; a malformed number is an error naming the variable. */
export function serverConfigFromEnv(env: NodeJS.ProcessEnv): ServerFileConfig {
  const num = (name: string, min: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidEnvironmentError(name, v, `a whole number ≥ ${min}`);
    return n;
  };
  const bool = (name: string): boolean | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (v === 'true' || v === '1') return true;
    if (v === 'false' || v === '0') return false;
    throw new InvalidEnvironmentError(name, v, 'true or false');
  };
  const executor = env.FABRIK_EXECUTOR;
  if (executor !== undefined && executor !== 'local' && executor !== 'slurm' && executor !== 'simulated')
    throw new InvalidEnvironmentError('FABRIK_EXECUTOR', executor, 'local, slurm or simulated');
  const issuer = env.FABRIK_OIDC_ISSUER;
  return {
    data: env.FABRIK_DATA || undefined,
    store: env.FABRIK_STORE || undefined,
    executor,
    site: env.FABRIK_SITE || undefined,
    consortium: env.FABRIK_CONSORTIUM || undefined,
    host: env.FABRIK_HOST || undefined,
    port: num('FABRIK_PORT', 0),
    gpus: num('FABRIK_GPUS', 1),
    nodes: num('FABRIK_NODES', 1),
    cycleSeconds: num('FABRIK_CYCLE_SECONDS', 1),
    singleTenant: bool('FABRIK_SINGLE_TENANT'),
    oidc: issuer
      ? { issuer, jwks: env.FABRIK_OIDC_JWKS || undefined, audience: env.FABRIK_OIDC_AUDIENCE || undefined }
      : undefined,
  };
}

/** A FABRIK_* variable holds a value the server cannot use. */
export class InvalidEnvironmentError extends Error {
  override readonly name = 'InvalidEnvironmentError';
  constructor(
    readonly variable: string,
    readonly value: string,
    expected: string,
  ) {
    super(`${variable}='${value}': expected ${expected}`);
  }
}

const isSection = (v: unknown): v is object => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Later sources win, key by key, inside sections too (`--slurm-create-users` keeps the file's
 * `slurm.url`); undefined leaves the earlier value.
 */
export function mergeServerConfig(...sources: ServerFileConfig[]): ServerFileConfig {
  const merge = (into: Record<string, unknown>, from: object) => {
    for (const [k, v] of Object.entries(from)) {
      if (v === undefined) continue;
      const was = into[k];
      if (isSection(v) && isSection(was)) merge((into[k] = { ...was }), v);
      else into[k] = v;
    }
    return into;
  };
  return sources.reduce((out: Record<string, unknown>, s) => merge(out, s), {}) as ServerFileConfig;
}

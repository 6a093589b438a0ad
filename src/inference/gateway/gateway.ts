// The gateway's request path: the key, the limits, the replica, the upstream call (streamed chunk
// by chunk), the settlement and the meter. Everything on this path is in memory; the store sees
// keys on a cache miss and usage in batches.
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Consortium, Member } from '../../core/consortium.js';
import type { Classification } from '../../governance/model.js';
import { type LoadSink, type Replica, type ReplicaSource, type Upstream, upstreamOf } from '../replicas.js';
import { countTokens } from '../tokens.js';
import { hashSecret, newSecret } from '../../server/auth.js';
import { errorBody, GatewayError, invalid } from './errors.js';
import { Limits, periodOf, resetText, type LimitSettings, type Window } from './limits.js';
import type { GatewayMetrics } from './metrics.js';
import { fnv1a, Router } from './router.js';
import type { GatewayKey, GatewayStore, KeyLimits, LogRow, MeteredUsage } from './store.js';

export interface GatewayConfig {
  /**
   * A member's daily token budget, unless its `members` entry sets one:
   * entitlementGpus × tokensPerGpuDay (its entitlement share × the factory's GPUs × tokensPerGpuDay).
   */
  readonly tokensPerGpuDay: number;
  /** A member's budget per UTC calendar month, the same way; null: none (the day budget binds alone). */
  readonly tokensPerGpuMonth: number | null;
  /** Per member and entitled GPU (at least one GPU's worth). */
  readonly requestsPerMinutePerGpu: number;
  readonly tokensPerMinutePerGpu: number;
  /** A member's own limits, each in place of the one derived from its entitlement (null: no limit). */
  readonly members: Readonly<Record<string, Partial<LimitSettings>>>;
  /** Worst case reserved when a request names no max_tokens / max_completion_tokens. */
  readonly defaultMaxTokens: number;
  /** The worst case reserved for a reasoning model's request that names none. */
  readonly reasoningMaxTokens: number;
  /** Prompt tokens that make the affinity key. */
  readonly affinityPrefixTokens: number;
  /** Requests in flight at which the affine replica counts as saturated. */
  readonly maxInFlightPerReplica: number;
  /** Other replicas tried when one fails before the first byte. */
  readonly retries: number;
  /** How long a replica that failed is skipped. */
  readonly downSeconds: number;
  readonly flushSeconds: number;
  /** Keep-alive connections per replica. */
  readonly upstreamConnections: number;
}

export const DEFAULT_GATEWAY: GatewayConfig = {
  tokensPerGpuDay: 10_000_000,
  tokensPerGpuMonth: null,
  requestsPerMinutePerGpu: 600,
  tokensPerMinutePerGpu: 200_000,
  members: {},
  defaultMaxTokens: 4096,
  reasoningMaxTokens: 32_768,
  affinityPrefixTokens: 64,
  maxInFlightPerReplica: 256,
  retries: 2,
  downSeconds: 5,
  flushSeconds: 1,
  upstreamConnections: 512,
};

export const KEY_PREFIX = 'fgk_';
const KEY_CACHE_SECONDS = 10;

export type Endpoint = 'chat' | 'completions' | 'embeddings';
const PATHS: Record<Endpoint, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
};

/** What one request reserved, and what it used so far. */
interface Reservation {
  readonly key: GatewayKey;
  readonly keyLimits: Limits;
  readonly memberLimits: Limits;
  reserved: number;
  /** When the gateway took the request (performance.now(), ms): its latency metrics count from here. */
  readonly startedAt: number;
  /** Less than the worst case was left (day budget or minute's tokens): the budget, not the cap, ends the answer. */
  readonly short: boolean;
  windowStart: number;
  dayStart: number;
  monthStart: number;
}

interface Meter {
  requests: number;
  prompt: number;
  completion: number;
  reasoning: number;
}

interface Parsed {
  readonly body: Record<string, unknown>;
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly promptTokens: number;
  readonly affinityText: string;
  readonly maxTokens: number | null;
  readonly n: number;
}

/** The settings that are set: an absent or undefined one keeps the default it would replace. */
export function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** One limit now: null limit and remaining when there is none. */
export interface WindowStanding {
  readonly limit: number | null;
  readonly used: number;
  readonly remaining: number | null;
  /** When the window starts afresh (seconds). */
  readonly resetsAt: number;
}
type LimitsStanding = Record<keyof LimitSettings, WindowStanding>;
export interface Standing {
  readonly member: string;
  readonly limits: LimitsStanding;
  readonly keys: readonly { readonly id: string; readonly name: string; readonly limits: LimitsStanding }[];
}

function standingOf(l: Limits, now: number): LimitsStanding {
  const view = (w: Window): WindowStanding => {
    const remaining = w.remaining(now);
    const limited = w.limit !== Infinity;
    return { limit: limited ? w.limit : null, used: w.used, remaining: limited ? remaining : null, resetsAt: w.end };
  };
  return {
    requestsPerMinute: view(l.requests),
    tokensPerMinute: view(l.tokens),
    tokensPerDay: view(l.day),
    tokensPerMonth: view(l.month),
  };
}

/** The refusal of a request whose prompt alone is more than a budget has left: which budget, and when it renews. */
function spentBudget(keyLimits: Limits, memberLimits: Limits, member: string, prompt: number, now: number): string {
  for (const [who, l] of [['this key', keyLimits] as const, [`member ${member}`, memberLimits] as const])
    for (const [w, period] of [[l.day, 'today'] as const, [l.month, 'this month'] as const])
      if (w.remaining(now) <= prompt)
        return `The token budget of ${who} for ${period} (${w.limit} tokens) is used up; it renews at ${new Date(w.end * 1000).toISOString()}.`;
  return `The token budget of this key or member ${member} is used up.`;
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
const DONE = 'data: [DONE]\n\n';

export class Gateway {
  readonly router: Router;
  private readonly agent: Agent;
  private readonly keyCache = new Map<string, { key: GatewayKey; until: number }>();
  private readonly keyLimits = new Map<string, Limits>();
  private readonly memberLimits = new Map<string, Limits>();
  private readonly members: ReadonlyMap<string, Member>;
  private readonly salts = new Map<string, string>();
  private readonly targets = new Map<string, Upstream>();
  /** What was metered since the last flush, per key, model and second. */
  private meter = new Map<string, { member: string; keyId: string; model: string; at: number; m: Meter }>();
  private logs: LogRow[] = [];
  private readonly logging = new Set<string>();
  /** Counts setLogging calls: a re-read that overlapped one is older than it and is dropped. */
  private loggingChanges = 0;
  private timer: NodeJS.Timeout | null = null;
  private loggingTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: GatewayStore,
    private readonly source: ReplicaSource,
    consortium: Consortium,
    readonly config: GatewayConfig,
    private readonly now: () => number,
    private readonly log: Logger,
    private readonly load: LoadSink | null,
    private readonly metrics: GatewayMetrics | null,
    /** Keys the per-member cache salt: members cannot compute another's salt. */
    private readonly saltKey: string = randomBytes(32).toString('hex'),
  ) {
    this.members = new Map(consortium.members.map((m) => [m.id, m]));
    this.router = new Router(config.maxInFlightPerReplica, config.downSeconds);
    // Keep-alive, LIFO: the warmest connection first, the rest time out when load drops.
    this.agent = new Agent({ keepAlive: true, maxSockets: config.upstreamConnections, scheduling: 'lifo', keepAliveMsecs: 1000 });
  }

  /** Budgets continue where the usage table says they were; logging settings are read once. */
  async start(): Promise<void> {
    const now = this.now();
    const keys = new Map((await this.store.keys(null)).map((k) => [k.id, k]));
    for (const [budget, period] of [
      ['day', 86_400],
      ['month', 'month'],
    ] as const) {
      const [since] = periodOf(period, now);
      for (const u of await this.store.usage(null, since)) {
        const used = u.promptTokens + u.completionTokens;
        this.memberLimitsOf(u.member)[budget].roll(now).used += used;
        const k = keys.get(u.keyId);
        if (k) this.limitsOfKey(k)[budget].roll(now).used += used;
      }
    }
    await this.readLogging();
    this.timer = setInterval(() => void this.flush(), this.config.flushSeconds * 1000);
    this.timer.unref();
    // Another server replica may turn a member's logging on or off: it holds here within as long
    // as a revoked key may still be cached.
    this.loggingTimer = setInterval(
      () => void this.readLogging().catch((err: unknown) => this.log.warn({ err }, 'gateway logging settings not read')),
      KEY_CACHE_SECONDS * 1000,
    );
    this.loggingTimer.unref();
  }

  /** The members that keep their prompts, as the store says. */
  private async readLogging(): Promise<void> {
    const changes = this.loggingChanges;
    const members = await this.store.loggingMembers();
    if (changes !== this.loggingChanges) return;
    this.logging.clear();
    for (const m of members) this.logging.add(m);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.loggingTimer) clearInterval(this.loggingTimer);
    this.timer = this.loggingTimer = null;
    await this.flush();
    this.agent.destroy();
  }

  /** Writes what was metered since the last flush, in one batch. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.meter.size === 0 && this.logs.length === 0) return;
      const batch = this.meter;
      const logs = this.logs;
      this.meter = new Map();
      this.logs = [];
      const rows: MeteredUsage[] = [...batch.values()].map((b) => ({
        member: b.member,
        keyId: b.keyId,
        model: b.model,
        at: b.at,
        requests: b.m.requests,
        promptTokens: b.m.prompt,
        completionTokens: b.m.completion,
        reasoningTokens: b.m.reasoning,
      }));
      try {
        await this.store.addUsage(rows);
        await this.store.addLogs(logs);
      } catch (err) {
        // Kept for the next flush: usage is what members are billed on.
        this.log.error({ err }, 'gateway usage flush failed; retrying');
        for (const [k, v] of batch) {
          const cur = this.meter.get(k);
          if (!cur) this.meter.set(k, v);
          else {
            cur.m.requests += v.m.requests;
            cur.m.prompt += v.m.prompt;
            cur.m.completion += v.m.completion;
            cur.m.reasoning += v.m.reasoning;
          }
        }
        this.logs.unshift(...logs);
      }
    });
    return this.flushing;
  }

  setLogging(member: string, on: boolean): void {
    this.loggingChanges++;
    if (on) this.logging.add(member);
    else this.logging.delete(member);
  }

  /** Revocation takes effect in this process at once (other processes: within KEY_CACHE_SECONDS). */
  forgetKey(id: string): void {
    for (const [secret, e] of this.keyCache) if (e.key.id === id) this.keyCache.delete(secret);
  }

  /** The key behind `Authorization: Bearer fgk_…`, or an OpenAI-shaped 401. */
  async authenticate(header: string | undefined): Promise<GatewayKey> {
    if (header === undefined) throw unauthorized('You didn\'t provide an API key: send "Authorization: Bearer fgk_…".');
    const secret = header.length > 7 && header.slice(0, 7).toLowerCase() === 'bearer ' ? header.slice(7).trim() : '';
    if (!secret.startsWith(KEY_PREFIX) || secret.length > 256) throw unauthorized('Incorrect API key provided.');
    const now = this.now();
    const cached = this.keyCache.get(secret);
    let key: GatewayKey | undefined;
    if (cached && cached.until > now) key = cached.key;
    else {
      key = await this.store.keyByHash(hashSecret(secret));
      if (!key || key.revokedAt !== null) throw unauthorized('Incorrect API key provided: unknown or revoked.');
      if (this.keyCache.size > 100_000) this.keyCache.clear();
      this.keyCache.set(secret, { key, until: now + KEY_CACHE_SECONDS });
    }
    if (key.expiresAt !== null && key.expiresAt <= now) throw unauthorized('The API key has expired.');
    return key;
  }

  /** The member's limits: its own where `members` sets them, else derived from its entitlement. */
  memberSettings(member: string): LimitSettings {
    const c = this.config;
    const entitled = this.members.get(member)?.entitlementGpus ?? 0;
    // The minute limits give every member at least one GPU's worth; the budgets are exactly its share.
    const gpus = Math.max(1, entitled);
    return {
      requestsPerMinute: Math.ceil(gpus * c.requestsPerMinutePerGpu),
      tokensPerMinute: Math.ceil(gpus * c.tokensPerMinutePerGpu),
      tokensPerDay: Math.floor(entitled * c.tokensPerGpuDay),
      tokensPerMonth: c.tokensPerGpuMonth === null ? null : Math.floor(entitled * c.tokensPerGpuMonth),
      ...defined(c.members[member] ?? {}),
    };
  }

  memberLimitsOf(member: string): Limits {
    let l = this.memberLimits.get(member);
    if (!l) this.memberLimits.set(member, (l = new Limits(this.memberSettings(member))));
    return l;
  }

  private limitsOfKey(k: GatewayKey): Limits {
    let l = this.keyLimits.get(k.id);
    if (!l) this.keyLimits.set(k.id, (l = new Limits(k.limits)));
    return l;
  }

  /**
   * Where the member and each of `keys` stand now against every limit: what the counters hold (requests
   * in flight count with the worst case they reserved), as this process counts them.
   */
  standing(member: string, keys: readonly GatewayKey[]): Standing {
    const now = this.now();
    return {
      member,
      limits: standingOf(this.memberLimitsOf(member), now),
      keys: keys.map((k) => ({ id: k.id, name: k.name, limits: standingOf(this.limitsOfKey(k), now) })),
    };
  }

  /** The member's salt for the engines' prefix caches: HMAC(member), so caches never mix members. */
  cacheSalt(member: string): string {
    let s = this.salts.get(member);
    if (s === undefined) {
      s = createHmac('sha256', this.saltKey).update(member).digest('base64url').slice(0, 32);
      this.salts.set(member, s);
    }
    return s;
  }

  /** The models the key may call (`/v1/models`). */
  models(key: GatewayKey) {
    const all = key.models.includes('*');
    return this.source
      .models(key.member)
      .filter((m) => all || key.models.includes(m.model))
      .map((m) => ({ id: m.model, object: 'model', created: Math.floor(m.createdAt), owned_by: key.member }));
  }

  /** One request of `endpoint`: answers on `res` itself (the route hijacked the reply). */
  async handle(endpoint: Endpoint, key: GatewayKey, raw: unknown, res: ServerResponse): Promise<void> {
    const startedAt = performance.now();
    const p = parse(endpoint, raw, this.config.affinityPrefixTokens);
    if (!key.models.includes('*') && !key.models.includes(p.model)) throw modelNotFound(p.model);
    const all = this.source.replicas(key.member, p.model);
    // A deployment scaled to zero: this request wakes it, and the client retries when it is up.
    if (all.length === 0 && this.source.wake?.(key.member, p.model))
      throw new GatewayError(
        503,
        'service_unavailable',
        'model_waking',
        `The model '${p.model}' has no replica ready yet (starting, or woken from zero); retry in a few seconds.`,
        null,
        { 'retry-after': '5' },
      );
    if (all.length === 0) throw modelNotFound(p.model);
    const now = this.now();
    const member = this.members.get(key.member);
    const candidates = this.router.eligible(
      all,
      { member: key.member, classification: key.classification, keyZones: key.zones, memberZone: member?.zone ?? null },
      now,
    );
    if (candidates.length === 0)
      throw new GatewayError(
        503,
        'service_unavailable',
        'no_replica_available',
        `No healthy replica of '${p.model}' is accredited for ${key.classification} data in a zone this key allows; the request was not sent anywhere.`,
      );

    // The worst case: what the request may cost at most, reserved before it runs.
    const reasoning = candidates[0].reasoning;
    const cap = p.maxTokens ?? (reasoning ? this.config.reasoningMaxTokens : this.config.defaultMaxTokens);
    const worst = endpoint === 'embeddings' ? 0 : cap * p.n;
    const r = this.reserve(key, p.promptTokens, worst, now, startedAt, res);
    // What the engine may generate: the worst case, or less when the budget left is less.
    const allowance = r.reserved - p.promptTokens;
    const upstreamBody = this.upstreamBody(
      endpoint,
      p,
      key.member,
      allowance < worst ? Math.floor(allowance / p.n) : null,
      reasoning,
    );
    const affinity = fnv1a(p.affinityText, fnv1a(key.member));
    const logging = this.logging.has(key.member);
    try {
      await this.forward(endpoint, key, p, r, candidates, affinity, upstreamBody, allowance, res, logging);
    } catch (e) {
      // Nothing was generated: give the reservation back.
      this.settle(r, 0);
      throw e;
    }
  }

  /** Checks and takes the request and its worst case from the key's and the member's counters. */
  private reserve(
    key: GatewayKey,
    prompt: number,
    worst: number,
    now: number,
    startedAt: number,
    res: ServerResponse,
  ): Reservation {
    const kl = this.limitsOfKey(key);
    const ml = this.memberLimitsOf(key.member);
    const reqLeft = Math.min(kl.requests.remaining(now), ml.requests.remaining(now));
    const tokLeft = Math.min(kl.tokens.remaining(now), ml.tokens.remaining(now));
    // What the tightest budget (the key's or the member's, of the day or the month) has left.
    const budgetLeft = Math.min(kl.day.remaining(now), ml.day.remaining(now), kl.month.remaining(now), ml.month.remaining(now));
    const reqLimit = Math.min(kl.requests.limit, ml.requests.limit);
    const tokLimit = Math.min(kl.tokens.limit, ml.tokens.limit);
    const reqReset = resetText(kl.requests.reset(now));
    res.setHeader('x-ratelimit-limit-requests', String(reqLimit === Infinity ? 'unlimited' : reqLimit));
    res.setHeader('x-ratelimit-limit-tokens', String(tokLimit === Infinity ? 'unlimited' : tokLimit));
    res.setHeader('x-ratelimit-reset-requests', reqReset);
    res.setHeader('x-ratelimit-reset-tokens', reqReset);
    if (budgetLeft <= prompt) {
      res.setHeader('x-ratelimit-remaining-requests', String(reqLeft === Infinity ? 'unlimited' : reqLeft));
      res.setHeader('x-ratelimit-remaining-tokens', String(tokLeft === Infinity ? 'unlimited' : tokLeft));
      throw new GatewayError(
        429,
        'insufficient_quota',
        'insufficient_quota',
        spentBudget(kl, ml, key.member, prompt, now),
        null,
        {
          'x-should-retry': 'false',
        },
      );
    }
    if (tokLimit <= prompt) {
      // Never fits in a minute: waiting does not help, so the client is told not to retry.
      res.setHeader('x-ratelimit-remaining-requests', String(reqLeft === Infinity ? 'unlimited' : reqLeft));
      res.setHeader('x-ratelimit-remaining-tokens', String(tokLeft));
      throw new GatewayError(
        429,
        'tokens',
        'rate_limit_exceeded',
        `Request too large: its prompt is ${prompt} tokens, more than the ${tokLimit} tokens per minute of this key or member ${key.member}; send a shorter one.`,
        null,
        { 'x-should-retry': 'false' },
      );
    }
    if (reqLeft < 1 || tokLeft <= prompt) {
      const wait = Math.ceil(kl.requests.reset(now));
      res.setHeader('x-ratelimit-remaining-requests', String(reqLeft === Infinity ? 'unlimited' : reqLeft));
      res.setHeader('x-ratelimit-remaining-tokens', String(tokLeft === Infinity ? 'unlimited' : tokLeft));
      throw new GatewayError(
        429,
        reqLeft < 1 ? 'requests' : 'tokens',
        'rate_limit_exceeded',
        `Rate limit reached: ${reqLeft < 1 ? 'requests' : 'tokens'} per minute of this key or member ${key.member}; try again in ${wait}s.`,
        null,
        { 'retry-after': String(wait) },
      );
    }
    const reserved = Math.min(prompt + worst, budgetLeft, tokLeft);
    for (const l of [kl, ml]) {
      l.requests.used++;
      l.tokens.used += reserved;
      l.day.used += reserved;
      l.month.used += reserved;
    }
    res.setHeader('x-ratelimit-remaining-requests', String(reqLeft === Infinity ? 'unlimited' : reqLeft - 1));
    res.setHeader('x-ratelimit-remaining-tokens', String(tokLeft === Infinity ? 'unlimited' : tokLeft - reserved));
    return {
      key,
      keyLimits: kl,
      memberLimits: ml,
      reserved,
      startedAt,
      short: reserved < prompt + worst,
      windowStart: kl.tokens.start,
      dayStart: kl.day.start,
      monthStart: kl.month.start,
    };
  }

  /** Gives back what was reserved and not used (in the windows it was taken from). */
  private settle(r: Reservation, used: number): void {
    const back = r.reserved - used;
    r.reserved = used;
    if (back === 0) return;
    for (const l of [r.keyLimits, r.memberLimits]) {
      if (l.tokens.start === r.windowStart) l.tokens.used = Math.max(0, l.tokens.used - back);
      if (l.day.start === r.dayStart) l.day.used = Math.max(0, l.day.used - back);
      if (l.month.start === r.monthStart) l.month.used = Math.max(0, l.month.used - back);
    }
  }

  private upstreamBody(endpoint: Endpoint, p: Parsed, member: string, capTokens: number | null, reasoning: boolean): string {
    const b: Record<string, unknown> = { ...p.body, cache_salt: this.cacheSalt(member) };
    if (endpoint !== 'embeddings') {
      // Exact usage from the engine when it gives it; the gateway counts as well, for cut streams.
      if (p.stream) b.stream_options = { ...(p.body.stream_options as object | undefined), include_usage: true };
      // A chat request that names no cap gets the worst case it reserved, so the engine stops
      // there (finish_reason "length") instead of the gateway cutting the stream as if the budget
      // had run out, and a whole answer cannot outgrow its reservation. Completions keep the
      // engine's own default (16 in OpenAI's API and vLLM), unless the model reasons.
      const unnamed = p.maxTokens === null && (reasoning || endpoint === 'chat');
      if (capTokens !== null || unnamed) {
        const cap = capTokens ?? (reasoning ? this.config.reasoningMaxTokens : this.config.defaultMaxTokens);
        if (endpoint === 'chat') {
          b.max_completion_tokens = cap;
          delete b.max_tokens;
        } else b.max_tokens = cap;
      }
    }
    return JSON.stringify(b);
  }

  private target(url: string) {
    let t = this.targets.get(url);
    if (!t) {
      t = upstreamOf(url);
      this.targets.set(url, t);
    }
    return t;
  }

  /** Sends to the affine replica, and on failure before the first byte to the next, up to `retries` more. */
  private async forward(
    endpoint: Endpoint,
    key: GatewayKey,
    p: Parsed,
    r: Reservation,
    candidates: readonly Replica[],
    affinity: number,
    body: string,
    allowance: number,
    res: ServerResponse,
    logging: boolean,
  ): Promise<void> {
    let tried: Set<string> | null = null;
    let lastError = 'no replica answered';
    for (let attempt = 0; attempt <= this.config.retries; attempt++) {
      const replica = this.router.pick(candidates, affinity, tried);
      if (replica === null) break;
      const queued = p.stream || endpoint !== 'embeddings' ? allowance : 0;
      this.report(replica.id, 1, queued);
      let upstream: IncomingMessage;
      const t = this.target(replica.url);
      try {
        upstream = await send(this.agent, t, PATHS[endpoint], body, res, replica.authorization);
      } catch (e) {
        this.report(replica.id, -1, -queued);
        lastError = (e as Error).message;
        this.failed(replica.id);
        (tried ??= new Set()).add(replica.id);
        continue;
      }
      // A 401 from a replica is about the gateway's replica token, not the client's key (which
      // passed here): the replica cannot serve this gateway, like one that failed.
      if (upstream.statusCode! >= 500 || upstream.statusCode === 401) {
        upstream.resume();
        this.report(replica.id, -1, -queued);
        lastError = `replica answered ${upstream.statusCode}`;
        this.failed(replica.id);
        (tried ??= new Set()).add(replica.id);
        continue;
      }
      try {
        if (p.stream && upstream.statusCode === 200)
          await this.relayStream(endpoint, key, p, r, allowance, upstream, res, logging);
        else await this.relayBody(endpoint, key, p, r, upstream, res, logging);
      } finally {
        this.report(replica.id, -1, -queued);
      }
      return;
    }
    throw new GatewayError(
      502,
      'upstream_error',
      'upstream_unavailable',
      `No replica of '${p.model}' could take the request (${lastError}).`,
    );
  }

  private report(id: string, requests: number, tokens: number): void {
    const [f, q] = this.router.add(id, requests, tokens);
    this.load?.load(id, f, q);
  }

  private failed(id: string): void {
    this.router.markDown(id, this.now());
    this.load?.failed(id);
  }

  private record(key: GatewayKey, model: string, prompt: number, completion: number, reasoning: number): void {
    this.metrics?.metered(key.member, model, prompt, completion, reasoning);
    // Stamped with the second the request ended, not the flush's: an hour's or a day's usage
    // (budgets after a restart, GET /v1/usage?period=) holds exactly the requests that ended in it.
    const at = Math.floor(this.now());
    const id = key.id + '\0' + model + '\0' + at;
    let e = this.meter.get(id);
    if (!e)
      this.meter.set(
        id,
        (e = { member: key.member, keyId: key.id, model, at, m: { requests: 0, prompt: 0, completion: 0, reasoning: 0 } }),
      );
    e.m.requests++;
    e.m.prompt += prompt;
    e.m.completion += completion;
    e.m.reasoning += reasoning;
  }

  private keepLog(key: GatewayKey, endpoint: Endpoint, p: Parsed, completion: string): void {
    const request = endpoint === 'chat' ? p.body.messages : endpoint === 'completions' ? p.body.prompt : p.body.input;
    this.logs.push({
      member: key.member,
      keyId: key.id,
      model: p.model,
      at: this.now(),
      request: JSON.stringify(request),
      completion,
    });
  }

  /** A whole answer: passed on as the engine wrote it; usage from it, else counted. */
  private relayBody(
    endpoint: Endpoint,
    key: GatewayKey,
    p: Parsed,
    r: Reservation,
    upstream: IncomingMessage,
    res: ServerResponse,
    logging: boolean,
  ): Promise<void> {
    return new Promise((resolve) => {
      const parts: Buffer[] = [];
      upstream.on('data', (d: Buffer) => parts.push(d));
      const fail = () => {
        this.settle(r, p.promptTokens);
        this.record(key, p.model, p.promptTokens, 0, 0);
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(errorBody('The replica failed while answering.', 'upstream_error', null, 'upstream_failed'));
        } else res.destroy();
        resolve();
      };
      upstream.on('error', fail);
      upstream.on('aborted', fail);
      upstream.on('end', () => {
        const buf = Buffer.concat(parts);
        let prompt = p.promptTokens;
        let completion = 0;
        let reasoning = 0;
        let text = '';
        if (upstream.statusCode === 200) {
          try {
            const j = JSON.parse(buf.toString()) as Answer;
            const u = j.usage;
            const exact = !!u && typeof u.prompt_tokens === 'number';
            if (exact) {
              prompt = u.prompt_tokens;
              completion = u.completion_tokens ?? 0;
              reasoning = u.completion_tokens_details?.reasoning_tokens ?? 0;
            }
            for (const c of j.choices ?? []) {
              const t = c.message?.content ?? c.text ?? '';
              if (logging) text += t;
              // Counted choice by choice: joined, the last word of one and the first of the next would be one.
              if (!exact) {
                const r = countTokens(c.message?.reasoning_content ?? '');
                completion += countTokens(t) + r;
                reasoning += r;
              }
            }
          } catch {
            /* not JSON: passed on as is, only the prompt is counted */
          }
        } else prompt = 0;
        this.settle(r, prompt + completion);
        if (upstream.statusCode === 200) {
          this.metrics?.answered(key.member, p.model, r.startedAt);
          this.record(key, p.model, prompt, completion, reasoning);
          if (logging) this.keepLog(key, endpoint, p, text);
        }
        res.writeHead(upstream.statusCode!, {
          'content-type': upstream.headers['content-type'] ?? 'application/json',
          'content-length': buf.length,
        });
        res.end(buf);
        resolve();
      });
    });
  }

  /**
   * Server-sent events, relayed as they come: each complete event is passed on, its tokens counted.
   * Past the allowance, or when the replica breaks off, the client gets an error event and
   * `[DONE]`, and the upstream request is dropped: never a hung socket.
   */
  private relayStream(
    endpoint: Endpoint,
    key: GatewayKey,
    p: Parsed,
    r: Reservation,
    allowance: number,
    upstream: IncomingMessage,
    res: ServerResponse,
    logging: boolean,
  ): Promise<void> {
    return new Promise((resolve) => {
      res.writeHead(200, SSE_HEADERS);
      let pending = '';
      let completion = 0;
      let reasoning = 0;
      let usage: Usage | null = null;
      let finished = false;
      let text = '';
      // When the first and the last token were passed on (performance.now(), ms; 0: none yet).
      let firstAt = 0;
      let lastAt = 0;
      const finish = (error: { message: string; type: string; code: string } | null) => {
        if (finished) return;
        finished = true;
        this.metrics?.streamed(key.member, p.model, r.startedAt, firstAt, lastAt, completion);
        upstream.removeAllListeners('data');
        if (error !== null) {
          // Errors inside a 200 stream: a cut at the budget, a replica that broke off (not a client that left).
          if (error.code !== 'client_closed') this.metrics?.error('stream', error.code);
          upstream.destroy();
          if (!res.destroyed) res.end(`data: ${errorBody(error.message, error.type, null, error.code)}\n\n${DONE}`);
        } else if (!res.destroyed) res.end();
        // The engine's own figures when the stream ended whole; the gateway's count when it was cut.
        const exact = error === null && usage !== null;
        const prompt = exact ? usage!.prompt_tokens : p.promptTokens;
        const comp = exact ? (usage!.completion_tokens ?? completion) : completion;
        const reas = exact ? (usage!.completion_tokens_details?.reasoning_tokens ?? reasoning) : reasoning;
        this.settle(r, prompt + comp);
        this.record(key, p.model, prompt, comp, reas);
        if (logging) this.keepLog(key, endpoint, p, text);
        resolve();
      };
      upstream.setEncoding('utf8');
      upstream.on('data', (chunk: string) => {
        pending += chunk;
        let end = pending.lastIndexOf('\n\n');
        if (end < 0) return;
        end += 2;
        const complete = pending.slice(0, end);
        pending = pending.slice(end);
        let out = '';
        let start = 0;
        while (start < complete.length) {
          let stop = complete.indexOf('\n\n', start);
          if (stop < 0) stop = complete.length;
          const event = complete.slice(start, stop + 2);
          start = stop + 2;
          const data = event.startsWith('data: ') ? event.slice(6, event.length - 2) : null;
          if (data === null || data === '[DONE]') {
            out += event;
            if (data === '[DONE]') {
              res.write(out);
              return finish(null);
            }
            continue;
          }
          let j: Answer;
          try {
            j = JSON.parse(data) as Answer;
          } catch {
            out += event;
            continue;
          }
          if (j.usage) usage = j.usage;
          const choices = j.choices ?? [];
          let n = 0;
          let thought = 0;
          let said = '';
          for (const c of choices) {
            const d = c.delta;
            const t = d ? (d.content ?? '') : (c.text ?? '');
            const rt = d ? (d.reasoning_content ?? d.reasoning ?? '') : '';
            if (t) n += countTokens(t);
            if (rt) thought += countTokens(rt);
            said += t;
          }
          n += thought;
          if (completion + n > allowance) {
            // The tokens of this event are past the budget: it is not passed on, counted or kept.
            if (out) res.write(out);
            return finish(
              r.short
                ? {
                    message: `The token budget ran out after ${completion} completion tokens; the stream was cut.`,
                    type: 'insufficient_quota',
                    code: 'insufficient_quota',
                  }
                : {
                    // An engine whose own default outruns what the gateway reserved for a request naming no cap.
                    message: `The answer reached the ${allowance} tokens the gateway reserved for it (the request named no max_tokens); the stream was cut. Name max_tokens to reserve more.`,
                    type: 'invalid_request_error',
                    code: 'max_tokens_reached',
                  },
            );
          }
          completion += n;
          if (n > 0) {
            lastAt = performance.now();
            if (firstAt === 0) firstAt = lastAt;
          }
          reasoning += thought;
          if (logging) text += said;
          // The client did not ask for usage: the usage-only chunk the gateway asked for is not its business.
          if (!p.includeUsage && j.usage && choices.length === 0) continue;
          out += event;
        }
        if (out) res.write(out);
      });
      const broken = () =>
        finish({
          message: 'The replica stopped before the answer was complete.',
          type: 'upstream_error',
          code: 'upstream_disconnected',
        });
      upstream.on('end', broken);
      upstream.on('error', broken);
      upstream.on('aborted', broken);
      res.on('close', () => {
        if (!finished) finish({ message: 'client went away', type: 'client_closed', code: 'client_closed' });
      });
    });
  }
}

interface Usage {
  prompt_tokens: number;
  completion_tokens?: number;
  completion_tokens_details?: { reasoning_tokens?: number };
}
interface Answer {
  choices?: {
    text?: string;
    message?: { content?: string | null; reasoning_content?: string | null };
    delta?: { content?: string | null; reasoning_content?: string | null; reasoning?: string | null };
  }[];
  usage?: Usage | null;
}

/** The upstream response once its status line arrived (the first byte); rejects before that. */
function send(
  agent: Agent,
  t: Upstream,
  path: string,
  body: string,
  client: ServerResponse,
  authorization: string | undefined,
): Promise<IncomingMessage> {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  // The replica's token (computed once per replica): a replica serves the gateway only.
  if (authorization !== undefined) headers.authorization = authorization;
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        agent,
        // An isolated replica (local executor) is reached through its Unix socket only.
        ...(t.socketPath ? { socketPath: t.socketPath } : { host: t.host, port: t.port }),
        path: t.base + path,
        method: 'POST',
        headers,
      },
      resolve,
    );
    req.on('error', reject);
    // A client that leaves takes its upstream request with it.
    client.on('close', () => req.destroy());
    req.end(body);
  });
}

const unauthorized = (message: string) => new GatewayError(401, 'invalid_request_error', 'invalid_api_key', message);

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** Text of a message's content: a string, or the text parts of an array. */
function contentText(content: unknown, param: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(`${param} must be a string or an array of content parts.`, param);
  let s = '';
  for (const part of content) {
    if (!part || typeof part !== 'object') throw invalid(`${param} must hold content part objects.`, param);
    const t = (part as { text?: unknown }).text;
    if (typeof t === 'string') s += t + '\n';
  }
  return s;
}

function promptText(v: unknown, param: string, allowEmpty: boolean): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && (allowEmpty || v.length > 0)) {
    if (v.every((x) => typeof x === 'string')) return v.join('\n');
    // Token ids: the count is the length.
    if (v.every((x) => isInt(x))) return ' x'.repeat(v.length);
    if (v.every((x) => Array.isArray(x) && x.every(isInt))) return ' x'.repeat(v.reduce((n, x: unknown[]) => n + x.length, 0));
  }
  throw invalid(`${param} must be a string, an array of strings, or token ids.`, param);
}

/** Checks the request as far as the gateway needs it (the engine checks the rest): never a 5xx for bad input. */
export function parse(endpoint: Endpoint, raw: unknown, prefixTokens: number): Parsed {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw invalid('The request body must be a JSON object.');
  const body = raw as Record<string, unknown>;
  const model = body.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 256)
    throw invalid('you must provide a model parameter (a string of 1 to 256 characters).', 'model');
  const stream = body.stream ?? false;
  if (typeof stream !== 'boolean') throw invalid('stream must be a boolean.', 'stream');
  if (stream && endpoint === 'embeddings') throw invalid('embeddings do not stream.', 'stream');
  const so = body.stream_options;
  if (so !== undefined && so !== null && (typeof so !== 'object' || Array.isArray(so)))
    throw invalid('stream_options must be an object.', 'stream_options');
  const includeUsage = !!so && (so as { include_usage?: unknown }).include_usage === true;
  let maxTokens: number | null = null;
  for (const f of ['max_completion_tokens', 'max_tokens'] as const) {
    const v = body[f];
    if (v === undefined || v === null) continue;
    if (!isInt(v) || v < 1 || v > 10_000_000) throw invalid(`${f} must be an integer from 1 to 10000000.`, f);
    maxTokens ??= v;
  }
  const n = body.n ?? 1;
  if (!isInt(n) || n < 1 || n > 16) throw invalid('n must be an integer from 1 to 16.', 'n');
  let text: string;
  if (endpoint === 'chat') {
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.length === 0) throw invalid('messages must be a non-empty array.', 'messages');
    text = '';
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as { role?: unknown; content?: unknown } | null;
      if (!m || typeof m !== 'object' || typeof m.role !== 'string')
        throw invalid(`messages[${i}] must be an object with a role.`, `messages[${i}]`);
      text += m.role + ': ' + contentText(m.content, `messages[${i}].content`) + '\n';
    }
  } else if (endpoint === 'completions') text = promptText(body.prompt, 'prompt', false);
  else text = promptText(body.input, 'input', false);
  // One pass: the prompt's tokens, and where its first `prefixTokens` end (the affinity key).
  const TOKEN = /[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;
  let count = 0;
  let prefixEnd = 0;
  for (let m = TOKEN.exec(text); m !== null; m = TOKEN.exec(text)) {
    if (++count === prefixTokens) prefixEnd = TOKEN.lastIndex;
  }
  if (count < prefixTokens) prefixEnd = text.length;
  return { body, model, stream, includeUsage, promptTokens: count, affinityText: text.slice(0, prefixEnd), maxTokens, n };
}

/** A new key's secret (shown once) and its record (the hash only). */
export function newKey(k: {
  name: string;
  member: string;
  user: string;
  models: readonly string[];
  classification: Classification;
  zones: readonly string[] | null;
  limits: KeyLimits;
  ttlSeconds: number | null;
  now: number;
}): { key: GatewayKey; secret: string } {
  const { secret, hash, shown } = newSecret(KEY_PREFIX);
  return {
    secret,
    key: {
      id: randomUUID(),
      hash,
      prefix: shown,
      name: k.name,
      member: k.member,
      user: k.user,
      models: k.models,
      classification: k.classification,
      zones: k.zones,
      limits: k.limits,
      createdAt: k.now,
      expiresAt: k.ttlSeconds === null ? null : k.now + k.ttlSeconds,
      revokedAt: null,
    },
  };
}

/** The same answer whether the model does not exist or the key may not use it: nothing leaks. */
function modelNotFound(model: string): GatewayError {
  return new GatewayError(
    404,
    'invalid_request_error',
    'model_not_found',
    `The model '${model}' does not exist or this key may not use it.`,
    'model',
  );
}

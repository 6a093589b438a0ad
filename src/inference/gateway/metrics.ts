// The gateway's Prometheus metrics, on the server's registry (/metrics: operators and
// consortium-wide auditors only, so per-member labels are fine). Counted where the meter counts:
// one cached label set per member and model, a few additions per request.
import { Counter, Histogram, type Registry } from 'prom-client';

interface Served {
  readonly requests: Counter.Internal;
  readonly prompt: Counter.Internal;
  readonly completion: Counter.Internal;
  readonly reasoning: Counter.Internal;
  readonly duration: Histogram.Internal<string>;
  readonly ttft: Histogram.Internal<string>;
  readonly itl: Histogram.Internal<string>;
}

export class GatewayMetrics {
  private readonly requests: Counter<'member' | 'model'>;
  private readonly tokens: Counter<'member' | 'model' | 'kind'>;
  private readonly refusals: Counter<'status' | 'code'>;
  private readonly duration: Histogram<'member' | 'model'>;
  private readonly ttft: Histogram<'member' | 'model'>;
  private readonly itl: Histogram<'member' | 'model'>;
  private readonly served = new Map<string, Served>();

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'fabrik_gateway_requests_total',
      help: 'Requests a replica answered (whole, or a stream however it ended), per member and model.',
      labelNames: ['member', 'model'],
      registers: [registry],
    });
    this.tokens = new Counter({
      name: 'fabrik_gateway_tokens_total',
      help: 'Tokens metered by the gateway per member and model; kind: prompt, completion, or reasoning (part of completion).',
      labelNames: ['member', 'model', 'kind'],
      registers: [registry],
    });
    this.refusals = new Counter({
      name: 'fabrik_gateway_errors_total',
      help: 'Requests the gateway refused or could not finish, by HTTP status (stream: an error event in a started stream) and OpenAI error code.',
      labelNames: ['status', 'code'],
      registers: [registry],
    });
    const latency = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, labelNames: ['member', 'model'], buckets, registers: [registry] });
    this.duration = latency(
      'fabrik_gateway_request_duration_seconds',
      'From the request reaching the gateway to the last byte of its answer (a stream: to [DONE] or its cut).',
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    );
    this.ttft = latency(
      'fabrik_gateway_time_to_first_token_seconds',
      "Streams: from the request reaching the gateway to its first token passed on (queueing, prefill, the gateway's own time).",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    );
    this.itl = latency(
      'fabrik_gateway_inter_token_latency_seconds',
      'Streams of two tokens or more: the mean time between tokens passed on, one observation per stream.',
      [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64],
    );
  }

  /** A whole (not streamed) answer: how long it took. */
  answered(member: string, model: string, startedAt: number): void {
    this.of(member, model).duration.observe((performance.now() - startedAt) / 1000);
  }

  /** A stream that ended (whole or cut; times from performance.now(), in ms; firstAt 0: no token passed on). */
  streamed(member: string, model: string, startedAt: number, firstAt: number, lastAt: number, tokens: number): void {
    const s = this.of(member, model);
    s.duration.observe((performance.now() - startedAt) / 1000);
    if (firstAt === 0) return;
    s.ttft.observe((firstAt - startedAt) / 1000);
    if (tokens > 1) s.itl.observe((lastAt - firstAt) / 1000 / (tokens - 1));
  }

  /** One request metered: what `Gateway.record` adds to the usage table. */
  metered(member: string, model: string, prompt: number, completion: number, reasoning: number): void {
    const s = this.of(member, model);
    s.requests.inc();
    if (prompt > 0) s.prompt.inc(prompt);
    if (completion > 0) s.completion.inc(completion);
    if (reasoning > 0) s.reasoning.inc(reasoning);
  }

  /** An error answer (its HTTP status), or one sent inside a stream that had begun (`stream`). */
  error(status: number | 'stream', code: string | null): void {
    this.refusals.inc({ status: String(status), code: code ?? 'none' });
  }

  private of(member: string, model: string): Served {
    const id = member + '\0' + model;
    let s = this.served.get(id);
    if (!s) {
      s = {
        requests: this.requests.labels(member, model),
        prompt: this.tokens.labels(member, model, 'prompt'),
        completion: this.tokens.labels(member, model, 'completion'),
        reasoning: this.tokens.labels(member, model, 'reasoning'),
        duration: this.duration.labels(member, model),
        ttft: this.ttft.labels(member, model),
        itl: this.itl.labels(member, model),
      };
      this.served.set(id, s);
    }
    return s;
  }
}

// The gateway's Prometheus metrics, on the server's registry (/metrics: operators and
// consortium-wide auditors only, so per-member labels are fine). Counted where the meter counts:
// one cached label set per member and model, a few additions per request.
import { Counter, type Registry } from 'prom-client';

interface Served {
  readonly requests: Counter.Internal;
  readonly prompt: Counter.Internal;
  readonly completion: Counter.Internal;
  readonly reasoning: Counter.Internal;
}

export class GatewayMetrics {
  private readonly requests: Counter<'member' | 'model'>;
  private readonly tokens: Counter<'member' | 'model' | 'kind'>;
  private readonly refusals: Counter<'status' | 'code'>;
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
  }

  /** One request metered: what `Gateway.record` adds to the usage table. */
  metered(member: string, model: string, prompt: number, completion: number, reasoning: number): void {
    const id = member + '\0' + model;
    let s = this.served.get(id);
    if (!s) {
      s = {
        requests: this.requests.labels(member, model),
        prompt: this.tokens.labels(member, model, 'prompt'),
        completion: this.tokens.labels(member, model, 'completion'),
        reasoning: this.tokens.labels(member, model, 'reasoning'),
      };
      this.served.set(id, s);
    }
    s.requests.inc();
    if (prompt > 0) s.prompt.inc(prompt);
    if (completion > 0) s.completion.inc(completion);
    if (reasoning > 0) s.reasoning.inc(reasoning);
  }

  /** An error answer (its HTTP status), or one sent inside a stream that had begun (`stream`). */
  error(status: number | 'stream', code: string | null): void {
    this.refusals.inc({ status: String(status), code: code ?? 'none' });
  }
}

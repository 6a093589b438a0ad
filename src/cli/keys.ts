// `fabrik keys`: the gateway's API keys for the OpenAI API (create: the secret is shown once; list;
// revoke), made with a control-plane token like every other CLI command. `fabrik usage`: what the
// gateway metered. `fabrik gateway limits`: where the member and its keys stand against their limits.
// `fabrik gateway logging` and `fabrik gateway logs`: whether the member's prompts and completions
// are kept, and reading them (member admins).
import { Command, InvalidArgumentError, Option } from 'commander';
import { formatSlurmTime } from './slurm-time.js';
import { table } from './table.js';
import { client, commaList, json, print } from './output.js';
import { line } from './printable.js';

interface KeyView {
  id: string;
  prefix: string;
  name: string;
  member: string;
  user: string;
  models: string[];
  classification: string;
  zones: string[] | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

/** An option's whole number above 0, checked as commander parses it (a bad one is a message, not a stack trace). */
function count(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1) throw new InvalidArgumentError(`${flag} must be a whole number above 0, got '${v}'.`);
    return n;
  };
}

export function keysCommand(): Command {
  const keys = new Command('keys').description(
    'gateway API keys for the OpenAI API: list, create (the secret is shown once), revoke',
  );
  keys
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ keys: KeyView[] }>('GET', '/v1/keys');
      if (o.json) return json(r.keys);
      for (const row of table(
        ['ID', 'NAME', 'PREFIX', 'MEMBER', 'USER', 'MODELS', 'CLASS', 'EXPIRES', 'REVOKED'],
        r.keys.map((k) => [
          k.id,
          k.name,
          k.prefix + '…',
          k.member,
          k.user,
          k.models.join(','),
          k.classification,
          k.expiresAt ?? 'never',
          k.revokedAt ?? '',
        ]),
      ))
        console.log(row);
    });
  keys
    .command('create')
    .requiredOption('--name <name>', 'what the key is for')
    // Once operators' way to make a key for a member: refused with why, never dropped quietly.
    .addOption(
      new Option('--member <id>').hideHelp().argParser(() => {
        throw new InvalidArgumentError(
          "Fabrik no longer takes --member: a key is your token's member's, created by its people; an operator runs the machine, not a member's work (it may revoke a key)",
        );
      }),
    )
    .option('--models <list>', 'comma-separated models it may call (default: all of your member)')
    .addOption(
      new Option('--classification <c>', 'the data it may carry')
        .choices(['public', 'internal', 'confidential', 'restricted'])
        .default('internal'),
    )
    .option('--zones <list>', 'comma-separated zones its requests may be served in (default: any the member may use)')
    .option('--ttl-days <n>', 'days until it expires', count('--ttl-days'), 90)
    .option('--rpm <n>', 'requests per minute', count('--rpm'))
    .option('--tpm <n>', 'tokens per minute', count('--tpm'))
    .option('--tokens-per-day <n>', 'token budget per UTC day', count('--tokens-per-day'))
    .option('--tokens-per-month <n>', 'token budget per UTC calendar month', count('--tokens-per-month'))
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ key: KeyView; secret: string }>('POST', '/v1/keys', {
        name: o.name,
        models: o.models ? commaList(String(o.models)) : ['*'],
        classification: o.classification,
        zones: o.zones ? commaList(String(o.zones)) : null,
        ttlDays: o.ttlDays,
        requestsPerMinute: o.rpm ?? null,
        tokensPerMinute: o.tpm ?? null,
        tokensPerDay: o.tokensPerDay ?? null,
        tokensPerMonth: o.tokensPerMonth ?? null,
      });
      if (o.json) return json(r);
      console.log(line`key ${r.key.id} created for ${r.key.member}; its secret is shown only now:\n${r.secret}`);
    });
  keys
    .command('revoke')
    .argument('<id>')
    .action(async (id: string) => {
      await client().request('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
      console.log(line`key ${id} revoked`);
    });
  return keys;
}

/** An ISO 8601 time as the API's seconds since the epoch. */
function seconds(v: string): number {
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError(`'${v}' is not a date (ISO 8601)`);
  return t / 1000;
}

/** `fabrik usage`: the tokens the gateway metered, per member, key and model (and hour or day). */
export function usageCommand(): Command {
  return new Command('usage')
    .description('tokens the gateway metered per member, key and model (yours; everyone for operators)')
    .option('--member <id>', 'one member (operators)')
    .option('--since <date>', 'from this time (ISO 8601; default: the start of the UTC day)', seconds)
    .option('--until <date>', 'before this time (ISO 8601; default: now)', seconds)
    .addOption(new Option('--period <p>', 'sums per UTC hour or day as well').choices(['hour', 'day']))
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const q = new URLSearchParams();
      if (o.member) q.set('member', o.member);
      if (o.since !== undefined) q.set('since', String(o.since));
      if (o.until !== undefined) q.set('until', String(o.until));
      if (o.period) q.set('period', o.period);
      const r = await client().request<{
        usage: {
          start?: number;
          member: string;
          keyId: string;
          keyName: string | null;
          model: string;
          requests: number;
          promptTokens: number;
          completionTokens: number;
          reasoningTokens: number;
        }[];
      }>('GET', `/v1/usage${q.size ? `?${q}` : ''}`);
      if (o.json) return json(r.usage);
      const head = ['MEMBER', 'KEY', 'NAME', 'MODEL', 'REQUESTS', 'PROMPT', 'COMPLETION', 'REASONING'];
      print(
        table(
          o.period ? ['START', ...head] : head,
          r.usage.map((u) => {
            const row = [
              u.member,
              u.keyId,
              u.keyName ?? '-',
              u.model,
              u.requests,
              u.promptTokens,
              u.completionTokens,
              u.reasoningTokens,
            ].map(String);
            return o.period ? [new Date(u.start! * 1000).toISOString().slice(0, 16) + 'Z', ...row] : row;
          }),
        ),
      );
    });
}

interface WindowStanding {
  limit: number | null;
  used: number;
  remaining: number | null;
  resetsAt: string;
}
type LimitsStanding = Record<'requestsPerMinute' | 'tokensPerMinute' | 'tokensPerDay' | 'tokensPerMonth', WindowStanding>;
interface MemberStanding {
  member: string;
  limits: LimitsStanding;
  keys: { id: string; name: string; limits: LimitsStanding }[];
}

const LIMIT_NAMES: Record<keyof LimitsStanding, string> = {
  requestsPerMinute: 'requests/minute',
  tokensPerMinute: 'tokens/minute',
  tokensPerDay: 'tokens/day',
  tokensPerMonth: 'tokens/month',
};

/** A member's limits, every one (`unlimited` where it has none); then each key's own, those it has. */
function standingRows(members: readonly MemberStanding[], at: number): string[][] {
  const rows: string[][] = [];
  const row = (member: string, who: string, name: keyof LimitsStanding, w: WindowStanding) =>
    rows.push([
      member,
      who,
      LIMIT_NAMES[name],
      String(w.used),
      w.limit === null ? 'unlimited' : String(w.limit),
      w.remaining === null ? '' : String(w.remaining),
      w.limit === null ? '' : formatSlurmTime(Math.max(0, Math.ceil(Date.parse(w.resetsAt) / 1000 - at))),
    ]);
  for (const m of members) {
    for (const [name, w] of Object.entries(m.limits)) row(m.member, 'member', name as keyof LimitsStanding, w);
    for (const k of m.keys)
      for (const [name, w] of Object.entries(k.limits))
        if (w.limit !== null) row(m.member, `key ${k.name} (${k.id.slice(0, 8)})`, name as keyof LimitsStanding, w);
  }
  return rows;
}

interface LogView {
  keyId: string;
  model: string;
  at: string;
  request: unknown;
  completion: string;
}

/** One line of a table: whitespace folded, at most `n` characters. */
function clip(text: string, n: number): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > n ? t.slice(0, n - 1) + '…' : t;
}

/** What a kept request asked: a chat's last message, a prompt, or the JSON of anything else. */
function asked(request: unknown): string {
  if (typeof request === 'string') return request;
  if (Array.isArray(request)) {
    const last = request.at(-1) as { content?: unknown } | undefined;
    if (typeof last?.content === 'string') return last.content;
    if (request.every((x) => typeof x === 'string')) return request.join(' ');
  }
  return JSON.stringify(request);
}

/** `fabrik gateway logging [on|off]` and `fabrik gateway logs`: the member's kept prompts and completions. */
export function gatewayCommand(): Command {
  const gateway = new Command('gateway').description(
    "the OpenAI gateway: your member's limits and budgets now; the keeping of its prompts and completions (on or off, read what was kept)",
  );
  gateway
    .command('logging')
    .description('show whether prompts and completions are kept, or turn it on or off (member admins)')
    .argument('[state]', 'on or off', (v: string) => {
      if (v !== 'on' && v !== 'off') throw new InvalidArgumentError(`'${v}' is not on or off`);
      return v;
    })
    .option('--member <id>', 'the member (operators may look, not change)')
    .option('--json', 'JSON for scripts')
    .action(async (state: 'on' | 'off' | undefined, o) => {
      const r =
        state === undefined
          ? await client().request<{ member: string; logging: boolean }>(
              'GET',
              `/v1/gateway/settings${o.member ? `?${new URLSearchParams({ member: o.member })}` : ''}`,
            )
          : await client().request<{ member: string; logging: boolean }>('PUT', '/v1/gateway/settings', {
              ...(o.member ? { member: o.member } : {}),
              logging: state === 'on',
            });
      if (o.json) return json(r);
      console.log(
        line`logging ${r.logging ? 'on' : 'off'} for ${r.member}: ${r.logging ? 'prompts and completions are kept' : 'prompts and completions are not kept'}`,
      );
    });
  gateway
    .command('limits')
    .description('where your member and each of its keys stand against their rate limits and token budgets now')
    .option('--member <id>', 'one member (operators and consortium auditors; default: every member)')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ at: string; members: MemberStanding[] }>(
        'GET',
        `/v1/gateway/limits${o.member ? `?${new URLSearchParams({ member: o.member })}` : ''}`,
      );
      if (o.json) return json(r);
      print(
        table(['MEMBER', 'WHO', 'LIMIT', 'USED', 'OF', 'LEFT', 'RESETS IN'], standingRows(r.members, Date.parse(r.at) / 1000)),
      );
    });
  gateway
    .command('logs')
    .description('the prompts and completions kept for your member, newest first (member admins; each read is audited)')
    .option('--since <date>', 'from this time (ISO 8601)', seconds)
    .option('--until <date>', 'before this time (ISO 8601)', seconds)
    .option('--limit <n>', 'at most this many (1 to 1000)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError(`--limit must be 1 to 1000, got '${v}'`);
      return n;
    })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const q = new URLSearchParams();
      if (o.since !== undefined) q.set('since', String(o.since));
      if (o.until !== undefined) q.set('until', String(o.until));
      if (o.limit !== undefined) q.set('limit', String(o.limit));
      const r = await client().request<{ member: string; logs: LogView[] }>('GET', `/v1/gateway/logs${q.size ? `?${q}` : ''}`);
      if (o.json) return json(r.logs);
      print(
        table(
          ['TIME', 'KEY', 'MODEL', 'REQUEST', 'COMPLETION'],
          r.logs.map((l) => [l.at, l.keyId, l.model, clip(asked(l.request), 60), clip(l.completion, 60)]),
        ),
      );
    });
  return gateway;
}

// `fabrik keys`: the gateway's API keys for the OpenAI API (create: the secret is shown once; list;
// revoke), made with a control-plane token like every other CLI command.
import { Command, InvalidArgumentError, Option } from 'commander';
import { table } from './table.js';
import { client, commaList } from './output.js';

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
      if (o.json) return console.log(JSON.stringify(r.keys, null, 2));
      for (const line of table(
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
        console.log(line);
    });
  keys
    .command('create')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--member <id>', 'its member (operators)')
    .option('--models <list>', 'comma-separated models it may call (default: all of the member)')
    .addOption(
      new Option('--classification <c>', 'the data it may carry')
        .choices(['public', 'internal', 'confidential', 'restricted'])
        .default('internal'),
    )
    .option('--zones <list>', 'comma-separated zones its requests may be served in (default: any the member may use)')
    .option('--ttl-days <n>', 'days until it expires', count('--ttl-days'), 90)
    .option('--rpm <n>', 'requests per minute', count('--rpm'))
    .option('--tpm <n>', 'tokens per minute', count('--tpm'))
    .option('--tokens-per-day <n>', 'token budget per day', count('--tokens-per-day'))
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ key: KeyView; secret: string }>('POST', '/v1/keys', {
        name: o.name,
        member: o.member ?? null,
        models: o.models ? commaList(String(o.models)) : ['*'],
        classification: o.classification,
        zones: o.zones ? commaList(String(o.zones)) : null,
        ttlDays: o.ttlDays,
        requestsPerMinute: o.rpm ?? null,
        tokensPerMinute: o.tpm ?? null,
        tokensPerDay: o.tokensPerDay ?? null,
      });
      if (o.json) return console.log(JSON.stringify(r, null, 2));
      console.log(`key ${r.key.id} created for ${r.key.member}; its secret is shown only now:\n${r.secret}`);
    });
  keys
    .command('revoke')
    .argument('<id>')
    .action(async (id: string) => {
      await client().request('DELETE', `/v1/keys/${encodeURIComponent(id)}`);
      console.log(`key ${id} revoked`);
    });
  return keys;
}

/** `fabrik usage`: the tokens the gateway metered, per member, key and model. */
export function usageCommand(): Command {
  return new Command('usage')
    .description('tokens the gateway metered per member, key and model (yours; everyone for operators)')
    .option('--member <id>', 'one member (operators)')
    .option('--since <date>', 'from this time (ISO 8601; default: the start of the UTC day)', (v: string) => {
      const t = Date.parse(v);
      if (Number.isNaN(t)) throw new InvalidArgumentError(`'${v}' is not a date (ISO 8601)`);
      return t / 1000;
    })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const q = new URLSearchParams();
      if (o.member) q.set('member', o.member);
      if (o.since !== undefined) q.set('since', String(o.since));
      const r = await client().request<{
        usage: {
          member: string;
          keyId: string;
          model: string;
          requests: number;
          promptTokens: number;
          completionTokens: number;
          reasoningTokens: number;
        }[];
      }>('GET', `/v1/usage${q.size ? `?${q}` : ''}`);
      if (o.json) return console.log(JSON.stringify(r.usage, null, 2));
      console.log(
        table(
          ['MEMBER', 'KEY', 'MODEL', 'REQUESTS', 'PROMPT', 'COMPLETION', 'REASONING'],
          r.usage.map((u) =>
            [u.member, u.keyId, u.model, u.requests, u.promptTokens, u.completionTokens, u.reasoningTokens].map(String),
          ),
        ).join('\n'),
      );
    });
}

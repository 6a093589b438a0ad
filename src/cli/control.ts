// The commands that talk to a running Fabrik: queue, jobs, cancel, logs, explain, nodes,
// members, tokens. Human tables by default (the columns squeue, sacct and sinfo users know),
// --json for scripts.
import { Command, Option } from 'commander';
import type { ExplainView, JobView } from '../api/contract.js';
import { formatSlurmTime } from './slurm-time.js';
import { line } from './printable.js';
import { table } from './table.js';
import { client, json, print } from './output.js';

const STATE_CODE: Record<string, string> = {
  pending: 'PD',
  starting: 'CF',
  running: 'R',
  preempting: 'PR',
  succeeded: 'CD',
  failed: 'F',
  cancelled: 'CA',
  lost: 'LO',
};

function elapsed(j: JobView, now = Date.now()): string {
  if (!j.startedAt) return '0:00';
  const end = j.endedAt ? Date.parse(j.endedAt) : now;
  return formatSlurmTime(Math.max(0, Math.round((end - Date.parse(j.startedAt)) / 1000)));
}

function where(j: JobView): string {
  if (j.state === 'pending') return `(${j.reason ?? 'None'})`;
  return j.placement?.map((p) => p.node).join(',') ?? '';
}

async function listJobs(query: Record<string, string | undefined>): Promise<JobView[]> {
  const out: JobView[] = [];
  let after: string | undefined;
  for (;;) {
    const q = new URLSearchParams(Object.entries({ ...query, after }).filter((e): e is [string, string] => e[1] !== undefined));
    const page = await client().request<{ jobs: JobView[]; next: string | null }>('GET', `/v1/jobs?${q}`);
    out.push(...page.jobs);
    if (!page.next || (query.limit && out.length >= Number(query.limit))) return out;
    after = page.next;
  }
}

export function controlCommands(): Command[] {
  const queue = new Command('queue')
    .description('waiting and running jobs, like squeue')
    .option('--user <id>', "only this user's jobs")
    .option('--member <id>', "only this member's jobs (operators)")
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const jobs = await listJobs({ state: 'pending,starting,running,preempting', user: o.user, member: o.member });
      if (o.json) return json(jobs);
      // Pending jobs with their reason; explanations come from the scheduler's last cycle.
      print(
        table(
          ['JOBID', 'NAME', 'MEMBER', 'USER', 'ST', 'TIME', 'GPUS', 'NODELIST(REASON)'],
          jobs.map((j) => [j.id, j.name, j.member, j.user, STATE_CODE[j.state], elapsed(j), String(j.gpus), where(j)]),
        ),
      );
    });

  const jobs = new Command('jobs')
    .description('jobs in any state, like sacct')
    .option('--state <list>', 'comma-separated states (pending, running, succeeded, failed, cancelled, …)')
    .option('--user <id>')
    .option('--name <name>')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const list = await listJobs({ state: o.state, user: o.user, name: o.name, limit: o.limit });
      if (o.json) return json(list);
      print(
        table(
          ['JOBID', 'NAME', 'MEMBER', 'USER', 'STATE', 'EXITCODE', 'ELAPSED', 'GPUS', 'REASON'],
          list.map((j) => [
            j.id,
            j.name,
            j.member,
            j.user,
            j.state.toUpperCase(),
            j.exitCode === null ? '' : String(j.exitCode),
            elapsed(j),
            String(j.gpus),
            j.reason ?? '',
          ]),
        ),
      );
    });

  const cancel = new Command('cancel')
    .description('cancel jobs, like scancel')
    .argument('<ids...>', 'job ids')
    .option('--json', 'JSON for scripts')
    .action(async (ids: string[], o) => {
      const done: JobView[] = [];
      for (const id of ids) done.push(await client().request<JobView>('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`));
      if (o.json) return json(done);
      for (const j of done)
        console.log(line`job ${j.id}: ${j.state === 'cancelled' ? 'cancelled' : `stopping (was ${j.state})`}`);
    });

  const logs = new Command('logs')
    .description("a job's output; -f follows it until the job ends")
    .argument('<id>', 'job id')
    .option('-f, --follow', 'keep printing as the job writes')
    .option('--error', 'the error log instead of the output log')
    .action(async (id: string, o) => {
      const q = new URLSearchParams({ stream: o.error ? 'error' : 'output', follow: o.follow ? 'true' : 'false' });
      const res = await client().stream(`/v1/jobs/${encodeURIComponent(id)}/logs?${q}`);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) process.stdout.write(chunk);
    });

  const explain = new Command('explain')
    .description('why a job waits, its place in the queue and when it should start')
    .argument('<id>', 'job id')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const e = await client().request<ExplainView>('GET', `/v1/jobs/${encodeURIComponent(id)}/explain`);
      if (o.json) return json(e);
      console.log(
        line`job ${e.job}: ${e.state}${e.reason ? `, reason ${e.reason}` : ''}${e.position ? `, position ${e.position}` : ''}`,
      );
      console.log(line`  ${e.message}`);
    });

  const nodes = new Command('nodes').description('nodes and their GPUs, like sinfo; drain and resume them (operators)');
  nodes
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{
        nodes: { name: string; domain: string; zone: string; state: string; gpus: number; gpusInUse: number }[];
      }>('GET', '/v1/nodes');
      if (o.json) return json(r.nodes);
      print(
        table(
          ['NODE', 'DOMAIN', 'ZONE', 'STATE', 'GPUS', 'IN USE'],
          r.nodes.map((n) => [n.name, n.domain, n.zone, n.state, String(n.gpus), String(n.gpusInUse)]),
        ),
      );
    });
  for (const [verb, state] of [
    ['drain', 'draining'],
    ['resume', 'up'],
    ['down', 'down'],
  ] as const)
    nodes
      .command(verb)
      .argument('<node>')
      .option('--reason <text>')
      .action(async (node: string, o) => {
        const n = await client().request<{ name: string; state: string }>('PUT', `/v1/nodes/${encodeURIComponent(node)}/state`, {
          state,
          reason: o.reason ?? null,
        });
        console.log(line`node ${n.name}: ${n.state}`);
      });

  const members = new Command('members')
    .description('members, their entitlements and the GPUs they hold now')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{
        members: { id: string; name: string; entitlementGpus: number; runningGpus: number; zone: string | null }[];
      }>('GET', '/v1/members');
      if (o.json) return json(r.members);
      const n = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
      print(
        table(
          ['MEMBER', 'NAME', 'ENTITLED', 'RUNNING', 'ZONE'],
          r.members.map((m) => [m.id, m.name, n(m.entitlementGpus), n(m.runningGpus), m.zone ?? '']),
        ),
      );
    });

  const tokens = new Command('tokens').description('API tokens: list, create (the secret is shown once), revoke');
  tokens
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{
        tokens: {
          id: string;
          name: string;
          prefix: string;
          member: string | null;
          role: string;
          user: string;
          expiresAt: string | null;
          revokedAt: string | null;
        }[];
      }>('GET', '/v1/tokens');
      if (o.json) return json(r.tokens);
      print(
        table(
          ['ID', 'NAME', 'PREFIX', 'MEMBER', 'ROLE', 'USER', 'EXPIRES', 'REVOKED'],
          r.tokens.map((t) => [
            t.id,
            t.name,
            t.prefix + '…',
            t.member ?? '*',
            t.role,
            t.user,
            t.expiresAt ?? 'never',
            t.revokedAt ?? '',
          ]),
        ),
      );
    });
  tokens
    .command('create')
    .description('a token for yourself or a user you created (fabrik users create); the secret is shown once')
    .requiredOption('--user <name>', 'whose it is: an existing user (its name, or its id)')
    .option('--name <name>', 'what the token is for (default: the user name)')
    .addOption(
      new Option('--role <role>', "its role, one of the user's (default: its only one)").choices([
        'operator',
        'member-admin',
        'researcher',
        'auditor',
      ]),
    )
    .option('--member <id>', "the user's member (default: yours)")
    .option('--ttl-days <n>', 'days until it expires', '90')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const ttl = Number(o.ttlDays);
      if (!Number.isInteger(ttl) || ttl < 1) throw new Error(`--ttl-days must be a whole number of days, got '${o.ttlDays}'`);
      const r = await client().request<{ token: { id: string }; secret: string }>('POST', '/v1/tokens', {
        name: o.name ?? o.user,
        user: o.user,
        ...(o.role !== undefined ? { role: o.role } : {}),
        ...(o.member !== undefined ? { member: o.member } : {}),
        ttlDays: ttl,
      });
      if (o.json) return json(r);
      console.log(`token ${r.token.id} created; its secret is shown only now:\n${r.secret}`);
    });
  tokens
    .command('revoke')
    .argument('<id>')
    .action(async (id: string) => {
      await client().request('DELETE', `/v1/tokens/${encodeURIComponent(id)}`);
      console.log(`token ${id} revoked`);
    });

  return [queue, jobs, cancel, logs, explain, nodes, members, tokens];
}

// `fabrik models` (register, list, show, card, export) and `fabrik approvals` (request, approve,
// list, break-glass): the model registry and the two-person rule, over the API. Tables for people,
// --json for scripts; a card prints as Markdown by default, the way it is meant to be read. Names
// are each member's own: `ran-chem` is yours, else the one you may see; `telecom/ran-chem` names one.
import { Command, InvalidArgumentError, Option } from 'commander';
import { table } from './table.js';
import { client, json } from './output.js';
import { line, printableText, terminalJson } from './printable.js';

interface ModelView {
  name: string;
  version: string;
  member: string;
  jobId: string;
  artifact: string;
  access: string;
  restrictions: {
    classification: string;
    purposes: string[] | null;
    zones: string[] | null;
    noExport: boolean;
    exportNeedsApproval: boolean;
  };
  createdAt: string;
  createdBy: string;
}
interface ApprovalView {
  id: string;
  kind: string;
  subject: string;
  member: string;
  reason: string;
  requestedBy: string;
  state: string;
  approvers: { user: string; role: string }[];
  expiresAt: string;
}

const path = (name: string, version: string) => `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
const exportRule = (m: ModelView) =>
  m.restrictions.noExport ? 'never' : m.restrictions.exportNeedsApproval ? 'two approvers' : 'allowed';

/** `--set intendedUse="…"` (repeatable): the card fields people fill in; `parameters` is a number, an empty value clears. */
function cardField(value: string, previous: Record<string, unknown> = {}): Record<string, unknown> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`expected field=value, got '${value}'`);
  const key = value.slice(0, at);
  const raw = value.slice(at + 1);
  return { ...previous, [key]: raw === '' ? null : key === 'parameters' ? Number(raw) : raw };
}

export function modelsCommand(): Command {
  const models = new Command('models').description('models trained here: their lineage, restrictions and cards; export');

  models
    .command('register')
    .description('register a version from a succeeded job of your member (restrictions come from its data)')
    .argument('<name>')
    .argument('<version>')
    .requiredOption('--job <id>', 'the job that trained it')
    .requiredOption('--artifact <location>', 'where the weights are')
    .option('--set <field=value>', 'a card field (intendedUse, limitations, evaluation, licence, …); repeatable', cardField)
    .option('--json', 'JSON for scripts')
    .action(async (name: string, version: string, o) => {
      const m = await client().request<ModelView>('POST', '/v1/models', {
        name,
        version,
        jobId: o.job,
        artifact: o.artifact,
        ...(o.set ? { card: o.set } : {}),
      });
      if (o.json) return json(m);
      console.log(
        line`model ${m.name} ${m.version} (member ${m.member}): ${m.restrictions.classification}, export ${exportRule(m)}`,
      );
    });

  models
    .command('list', { isDefault: true })
    .description("your member's models, and those trained on your data (lineage only)")
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ models: ModelView[] }>('GET', '/v1/models');
      if (o.json) return json(r.models);
      console.log(
        table(
          ['NAME', 'VERSION', 'MEMBER', 'JOB', 'CLASSIFICATION', 'PURPOSES', 'ZONES', 'EXPORT', 'ACCESS'],
          r.models.map((m) => [
            m.name,
            m.version,
            m.member,
            m.jobId,
            m.restrictions.classification,
            m.restrictions.purposes?.join(',') ?? '*',
            m.restrictions.zones?.join(',') ?? '*',
            exportRule(m),
            m.access,
          ]),
        ).join('\n'),
      );
    });

  models
    .command('show')
    .description('a model version and its lineage: datasets → agreements → job → placement → model')
    .argument('<name>', "the model: name, or member/name for another member's")
    .argument('<version>')
    .option('--json', 'JSON for scripts')
    .action(async (name: string, version: string, o) => {
      const c = client();
      const m = await c.request<ModelView>('GET', path(name, version));
      const l = await c.request<{ lineage: Record<string, unknown> }>('GET', `${path(name, version)}/lineage`);
      if (o.json) return json({ ...m, lineage: l.lineage });
      const lineage = l.lineage as {
        datasets: { id: string; owner: string; classification: string }[];
        agreements: { id: string; grantor: string; purposes: string[]; produces: string; noExport: boolean }[];
        job: { id: string; project: string; purpose: string | null; startedAt: number | null; endedAt: number | null };
        placement: { zone: string | null; nodes: { node: string }[] };
      };
      const r = m.restrictions;
      console.log(line`model ${m.name} ${m.version}  member ${m.member}  artifact ${m.artifact}`);
      console.log(
        line`  restrictions: ${r.classification}; purposes ${r.purposes?.join(', ') ?? 'any'}; zones ${r.zones?.join(', ') ?? 'any'}; export ${exportRule(m)}`,
      );
      for (const d of lineage.datasets) console.log(line`  dataset   ${d.id} (${d.owner}, ${d.classification})`);
      for (const a of lineage.agreements)
        console.log(
          line`  agreement ${a.id} from ${a.grantor}: ${a.purposes.join(', ')}; produces ${a.produces}${a.noExport ? '; no export' : ''}`,
        );
      console.log(line`  job       ${lineage.job.id} (project ${lineage.job.project}, purpose ${lineage.job.purpose ?? '-'})`);
      console.log(
        line`  placement zone ${lineage.placement.zone ?? '-'} on ${lineage.placement.nodes.map((n) => n.node).join(', ') || '-'}`,
      );
    });

  models
    .command('card')
    .description('the model card (Markdown or JSON), with the EU AI Act Annex XI fields; --set fills in fields first')
    .argument('<name>', "the model: name, or member/name for another member's")
    .argument('<version>')
    .addOption(new Option('--format <format>', 'markdown or json').choices(['markdown', 'json']).default('markdown'))
    .option('--set <field=value>', 'fill in (or, with an empty value, clear) a card field; repeatable', cardField)
    .action(async (name: string, version: string, o) => {
      const c = client();
      if (o.set) await c.request('PATCH', `${path(name, version)}/card`, o.set);
      const res = await c.stream(`${path(name, version)}/card?format=${o.format}`);
      const text = await res.text();
      // The card is the member's text (markdown): its lines stay, its escapes do not.
      console.log(o.format === 'json' ? terminalJson(JSON.parse(text)) : printableText(text));
    });

  models
    .command('export')
    .description('export a model: never with noExport; a restricted one after two member admins approved your request')
    .argument('<name>', "the model: name, or member/name for another member's")
    .argument('<version>')
    .option('--json', 'JSON for scripts')
    .action(async (name: string, version: string, o) => {
      const r = await client().request<{ artifact: string; approval: string | null; approvers: string[] }>(
        'POST',
        `${path(name, version)}/export`,
      );
      if (o.json) return json(r);
      console.log(
        line`exported ${name} ${version}: ${r.artifact}${r.approval ? ` (approval ${r.approval} by ${r.approvers.join(' and ')})` : ''}`,
      );
    });
  return models;
}

export function approvalsCommand(): Command {
  const approvals = new Command('approvals').description('the two-person rule: model exports and break-glass');

  approvals
    .command('request')
    .description('ask for an approval: model-export model:<name>@<version>, or break-glass job:<id> (operators)')
    .addArgument(new Command().createArgument('<kind>', 'model-export or break-glass').choices(['model-export', 'break-glass']))
    .argument('<subject>', 'model:<name>@<version> or job:<id>')
    .requiredOption('--reason <text>', 'why: the approvers read it, and the audit log keeps it')
    .option('--json', 'JSON for scripts')
    .action(async (kind: string, subject: string, o) => {
      const a = await client().request<ApprovalView>('POST', '/v1/approvals', { kind, subject, reason: o.reason });
      if (o.json) return json(a);
      console.log(line`approval ${a.id}: ${a.kind} of ${a.subject}, waiting for two approvers until ${a.expiresAt}`);
    });

  approvals
    .command('approve')
    .description('approve a request (not your own; each person counts once)')
    .argument('<id>')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const a = await client().request<ApprovalView>('POST', `/v1/approvals/${encodeURIComponent(id)}/approve`);
      if (o.json) return json(a);
      console.log(line`approval ${a.id}: ${a.state} (${a.approvers.map((x) => x.user).join(', ')})`);
    });

  approvals
    .command('list', { isDefault: true })
    .description("your member's requests (all for operators and consortium auditors)")
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ approvals: ApprovalView[] }>('GET', '/v1/approvals');
      if (o.json) return json(r.approvals);
      console.log(
        table(
          ['ID', 'KIND', 'SUBJECT', 'MEMBER', 'BY', 'STATE', 'APPROVERS', 'REASON'],
          r.approvals.map((a) => [
            a.id,
            a.kind,
            a.subject,
            a.member,
            a.requestedBy,
            a.state,
            a.approvers.map((x) => x.user).join(',') || '-',
            a.reason,
          ]),
        ).join('\n'),
      );
    });

  approvals
    .command('break-glass')
    .description("show, or set (member admins), whether operators need break-glass to read the member's job details")
    .argument('<member>')
    .addArgument(new Command().createArgument('[setting]', 'on or off').choices(['on', 'off']))
    .action(async (member: string, setting: string | undefined) => {
      const url = `/v1/members/${encodeURIComponent(member)}/break-glass`;
      const r =
        setting === undefined
          ? await client().request<{ required: boolean }>('GET', url)
          : await client().request<{ required: boolean }>('PUT', url, { required: setting === 'on' });
      console.log(
        line`member ${member}: break-glass ${r.required ? 'required' : 'not required'} for operators' reads of job details`,
      );
    });
  return approvals;
}

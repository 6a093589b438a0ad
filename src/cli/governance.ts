// The commands of data sovereignty: datasets (register, list, who may use one), data-use
// agreements (propose, approve, revoke, list) and the operators' site-wide Cedar policies.
// Tables for people, --json for scripts. Ids are each member's own: `trials` is your member's, else
// the one another member granted you by that id; `pharma/trials` names pharma's (the server says
// which qualified names to use when a bare one could mean several).
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { table } from './table.js';
import { client, commaList, json, print } from './output.js';
import { line, printableText } from './printable.js';

const day = (iso: string | null) => (iso === null ? '' : iso.slice(0, 16).replace('T', ' '));

interface DatasetView {
  id: string;
  owner: string;
  classification: string;
  zones: string[];
  location: string;
}
interface AgreementView {
  id: string;
  grantor: string;
  grantee: string;
  datasets: string[];
  purposes: string[];
  zones: string[];
  expires: string;
  produces: string;
  state: string;
  approvedBy: string | null;
}

const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted'];

/** Something the user typed that this command cannot use: one line, exit code 2. */
export class GovernanceUsageError extends Error {
  override readonly name = 'GovernanceUsageError';
}

export function governanceCommands(): Command[] {
  const datasets = new Command('datasets').description(
    "datasets: register your member's, list what you may see, who may use one",
  );
  datasets
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ datasets: DatasetView[] }>('GET', '/v1/datasets');
      if (o.json) return json(r.datasets);
      print(
        table(
          ['ID', 'OWNER', 'CLASSIFICATION', 'ZONES', 'LOCATION'],
          r.datasets.map((d) => [d.id, d.owner, d.classification, d.zones.join(','), d.location]),
        ),
      );
    });
  datasets
    .command('register')
    .argument('<id>', 'the dataset id (lower-case letters, digits, . _ -)')
    .addOption(new Option('--classification <c>', 'how sensitive it is').choices(CLASSIFICATIONS).makeOptionMandatory())
    .requiredOption('--zones <zones>', 'zones its data may be processed in, comma-separated')
    .requiredOption('--location <path>', 'where it lives on the factory storage')
    .option('--name <name>', 'a name for people')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const d = await client().request<DatasetView>('POST', '/v1/datasets', {
        id,
        classification: o.classification,
        zones: commaList(o.zones),
        location: o.location,
        ...(o.name ? { name: o.name } : {}),
      });
      if (o.json) return json(d);
      console.log(line`dataset ${d.id} registered for ${d.owner}: ${d.classification}, zones ${d.zones.join(', ')}`);
    });
  datasets
    .command('uses')
    .description('who can use the dataset, and for what (from the admission policies)')
    .argument('<id>', "the dataset: id, or owner/id for another member's")
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const r = await client().request<{
        grants: { grantee: string; purposes: string[]; zones: string[]; agreement: string | null; until: string | null }[];
      }>('GET', `/v1/datasets/${encodeURIComponent(id)}/uses`);
      if (o.json) return json(r);
      print(
        table(
          ['GRANTEE', 'PURPOSES', 'ZONES', 'AGREEMENT', 'UNTIL'],
          r.grants.map((g) => [g.grantee, g.purposes.join(','), g.zones.join(','), g.agreement ?? '(owner)', day(g.until)]),
        ),
      );
    });

  const agreements = new Command('agreements').description('data-use agreements: propose, approve, revoke, list');
  agreements
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ agreements: AgreementView[] }>('GET', '/v1/agreements');
      if (o.json) return json(r.agreements);
      print(
        table(
          ['ID', 'GRANTOR', 'GRANTEE', 'DATASETS', 'PURPOSES', 'ZONES', 'EXPIRES', 'PRODUCES', 'STATE'],
          r.agreements.map((a) => [
            a.id,
            a.grantor,
            a.grantee,
            a.datasets.join(','),
            a.purposes.join(','),
            a.zones.join(','),
            day(a.expires),
            a.produces,
            a.state,
          ]),
        ),
      );
    });
  agreements
    .command('propose')
    .argument('<id>', 'the agreement id')
    .requiredOption('--grantee <member[/project]>', 'who may use the data: a member, or one of its projects')
    .requiredOption('--datasets <ids>', "your member's datasets it covers, comma-separated (ids of your own)")
    .requiredOption('--purposes <purposes>', 'what the data may be used for, comma-separated')
    .requiredOption('--zones <zones>', 'zones the work may run in, comma-separated')
    .requiredOption('--expires <date>', 'when it ends (ISO 8601, e.g. 2027-06-30T00:00:00Z)')
    .addOption(
      new Option('--produces <c>', 'the classification of what is produced under it')
        .choices(CLASSIFICATIONS)
        .makeOptionMandatory(),
    )
    .option('--no-export', 'models made under it may not leave the factory')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const expires = new Date(o.expires);
      if (Number.isNaN(expires.getTime()))
        throw new GovernanceUsageError(`--expires: '${o.expires}' is not a date (ISO 8601, e.g. 2027-06-30)`);
      const a = await client().request<AgreementView>('POST', '/v1/agreements', {
        id,
        grantee: o.grantee,
        datasets: commaList(o.datasets),
        purposes: commaList(o.purposes),
        zones: commaList(o.zones),
        expires: expires.toISOString(),
        produces: o.produces,
        noExport: o.export === false,
      });
      if (o.json) return json(a);
      console.log(line`agreement ${a.id} proposed: ${a.grantor} → ${a.grantee}; a member admin of ${a.grantor} approves it`);
    });
  for (const verb of ['approve', 'revoke'] as const)
    agreements
      .command(verb)
      .argument('<id>', "the agreement: id, or grantor/id for another member's")
      .option('--json', 'JSON for scripts')
      .action(async (id: string, o) => {
        const a = await client().request<AgreementView>('POST', `/v1/agreements/${encodeURIComponent(id)}/${verb}`);
        if (o.json) return json(a);
        console.log(line`agreement ${a.id} ${a.state}`);
      });

  const policies = new Command('policies').description('admission policies in Cedar: the built-in rules and the site-wide ones');
  policies
    .command('list', { isDefault: true })
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ builtIn: Record<string, string>; site: Record<string, string> }>('GET', '/v1/policies');
      if (o.json) return json(r);
      for (const [kind, set] of [
        ['built-in', r.builtIn],
        ['site', r.site],
      ] as const)
        for (const [id, text] of Object.entries(set)) console.log(line`// ${kind}: ${id}` + `\n${printableText(text)}\n`);
    });
  policies
    .command('put')
    .description('add or replace a site-wide policy (operators)')
    .argument('<id>')
    .argument('<file>', 'Cedar text (- for standard input)')
    .action(async (id: string, file: string) => {
      let cedar: string;
      try {
        cedar = readFileSync(file === '-' ? 0 : file, 'utf8');
      } catch (err) {
        throw new GovernanceUsageError(
          `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
        );
      }
      await client().request('PUT', `/v1/policies/${encodeURIComponent(id)}`, { cedar });
      console.log(line`policy ${id} in force`);
    });
  policies
    .command('delete')
    .argument('<id>')
    .action(async (id: string) => {
      await client().request('DELETE', `/v1/policies/${encodeURIComponent(id)}`);
      console.log(line`policy ${id} removed`);
    });

  return [datasets, agreements, policies];
}

// `fabrik site …`: site descriptions from the machine itself. `import --slurm` reads a running
// cluster through slurmrestd (read-only: nodes, partitions, the cluster's name) and writes YAML
// that `fabrik validate --site` accepts and `fabrik up --executor slurm --site` schedules on.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { API, SlurmRestClient, SlurmRestError } from '../executors/slurm-rest.js';
import {
  DEFAULT_DOMAIN_FEATURE,
  DEFAULT_ZONE_PREFIX,
  importSlurmSite,
  SiteImportError,
  type ImportedNode,
  type ImportedPartition,
} from './site-import.js';

export { SiteImportError } from './site-import.js';

const DEFAULT_KEY = '/var/spool/slurm/ctld/jwt_hs256.key';
const FALLBACK_NAME = 'slurm';

export function siteCommand(): Command {
  const site = new Command('site').description('site descriptions from the machine you have');
  site
    .command('import')
    .description("write a site description (YAML) from a Slurm cluster's nodes and partitions, read through slurmrestd")
    .requiredOption('--slurm <url>', 'slurmrestd, e.g. http://127.0.0.1:6820')
    .option('--jwt-key <file>', "the cluster's JWT key (tokens are minted for root)", DEFAULT_KEY)
    .option('--name <name>', `the site's name (default: the Slurm cluster's name, else ${FALLBACK_NAME})`)
    .option('--out <file>', 'write the YAML here (default: standard output)')
    .option('--force', 'overwrite --out if it exists')
    .option('--domain-feature <regex>', 'a node feature matching this names its NVLink domain', DEFAULT_DOMAIN_FEATURE)
    .option('--zone-feature <prefix>', 'a node feature <prefix><zone> puts it in that zone', DEFAULT_ZONE_PREFIX)
    .option('--partition <names>', 'only the nodes of these partitions (comma-separated; default: all nodes)')
    .action(async (o) => {
      let domainFeature: RegExp;
      try {
        domainFeature = new RegExp(o.domainFeature);
      } catch (e) {
        throw new SiteImportError(`--domain-feature: ${(e as Error).message}`);
      }
      if (o.zoneFeature === '') throw new SiteImportError('--zone-feature must not be empty: every feature would name a zone');
      if (o.out && !o.force && existsSync(o.out)) {
        // A re-import must not silently drop what the operator filled in after the last one.
        throw new SiteImportError(`${o.out} exists; choose another --out, or give --force to overwrite it`);
      }
      checkKey(o.jwtKey);
      const client = new SlurmRestClient({ url: o.slurm, jwtKeyFile: o.jwtKey });
      const { nodes } = await client.request<{ nodes: ImportedNode[] }>('GET', `${API}/nodes`, 'root').catch((e: unknown) => {
        // slurmrestd 22.05 answers a token signed with another key with a bare 500.
        if (e instanceof SlurmRestError && (e.status === 401 || e.status === 500)) {
          throw new SiteImportError(`${e.message} (is ${o.jwtKey} the key slurmctld was started with?)`);
        }
        throw e;
      });
      const { partitions } = await client.request<{ partitions: ImportedPartition[] }>('GET', `${API}/partitions`, 'root');
      const partitionFilter = o.partition
        ? String(o.partition)
            .split(',')
            .map((p) => p.trim())
            .filter(Boolean)
        : [];
      const { yaml, site: s } = importSlurmSite(nodes, partitions, {
        name: o.name ?? (await clusterName(client)) ?? FALLBACK_NAME,
        source: o.slurm,
        domainFeature,
        zonePrefix: o.zoneFeature,
        partitions: partitionFilter,
      });
      const summary = `site ${s.name}, ${s.totalGpus} GPUs, ${s.domains.length} NVLink domains, ${s.nodes.length} nodes, zones ${s.zones.join(', ')}`;
      if (o.out) {
        writeFileSync(o.out, yaml);
        console.error(`fabrik: wrote ${o.out}: ${summary}; check the lines marked CHECK`);
      } else {
        process.stdout.write(yaml);
        console.error(`fabrik: ${summary}; check the lines marked CHECK`);
      }
    });
  return site;
}

/** A key that cannot be read is the operator's to fix, said before any request is made. */
function checkKey(file: string): void {
  let key: Buffer;
  try {
    key = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EACCES'
          ? 'permission denied (run as root or as SlurmUser?)'
          : (e as Error).message;
    throw new SiteImportError(`--jwt-key ${file}: ${why}`);
  }
  if (key.length === 0) throw new SiteImportError(`--jwt-key ${file}: the file is empty`);
}

/**
 * The cluster's name from slurmdbd, when slurmrestd serves its API and knows exactly one cluster;
 * otherwise null: a name is a convenience, and slurmrestd without the dbv0.0.38 plugin is common.
 */
async function clusterName(client: SlurmRestClient): Promise<string | null> {
  try {
    const { clusters } = await client.request<{ clusters?: { name?: string }[] }>('GET', '/slurmdb/v0.0.38/clusters', 'root');
    return clusters?.length === 1 && clusters[0].name ? clusters[0].name : null;
  } catch (e) {
    if (e instanceof SlurmRestError) return null;
    throw e;
  }
}

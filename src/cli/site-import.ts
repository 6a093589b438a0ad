// `fabrik site import`: a site description written from what a Slurm cluster says about itself,
// so that an operator starts from the machine they have rather than from se-factory's naming rule.
// This file only turns node and partition lists into YAML (no I/O, testable from recorded
// answers); src/cli/site.ts fetches them. What Slurm does not know (GPU model, memory, power,
// the facility's PUE) is written as a placeholder marked CHECK, so that no guess passes unseen.
import { stringify } from 'yaml';
import { parseSite } from '../config/index.js';
import { InvalidDescriptionError } from '../core/errors.js';
import type { Site } from '../core/site.js';
import { featureList, parseGpuCount, slurmNodeHealth, type SlurmNodeInfo } from '../executors/slurm.js';

/** What a person asked for cannot be imported as asked: one line, exit 2. */
export class SiteImportError extends Error {
  override readonly name = 'SiteImportError';
}

/** A node as v0.0.38 lists it: the executor's fields, and the partitions it is in. */
export interface ImportedNode extends SlurmNodeInfo {
  readonly partitions?: readonly string[];
}

/** A partition as v0.0.38 lists it, the fields read here. */
export interface ImportedPartition {
  readonly name: string;
  /** A Slurm hostlist: `node[1-4],gpu[01-02]`. */
  readonly nodes?: string;
  readonly flags?: readonly string[];
}

export const DEFAULT_DOMAIN_FEATURE = '^(nvl|rack|domain)';
export const DEFAULT_ZONE_PREFIX = 'zone-';
const DEFAULT_ZONE = 'general';
// Names become YAML keys, hostnames and URL segments; the site loader enforces the same rule.
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

export interface SiteImportOptions {
  /** The site's name (and its one SuperPOD's). */
  readonly name: string;
  /** Where the lists came from (slurmrestd's URL), for the file's header. */
  readonly source: string;
  /** A node feature matching this names the node's NVLink domain. */
  readonly domainFeature: RegExp;
  /** A node feature starting with this names the node's zone (the rest of the feature). */
  readonly zonePrefix: string;
  /** Only nodes of these partitions; empty or absent: every node. */
  readonly partitions?: readonly string[];
}

/** One rack of the generated file: an NVLink domain and the nodes in it, in Slurm's order. */
interface Rack {
  readonly name: string;
  /** The feature that made it, or null: a node alone. */
  readonly feature: string | null;
  zone: string | null;
  readonly nodes: { name: string; gpus: number; partitions: string[]; note: string | null }[];
}

export interface ImportedSite {
  readonly yaml: string;
  /** The YAML loaded back, for the summary line (and as proof that it loads). */
  readonly site: Site;
}

/** The site description for these nodes. Throws SiteImportError for what cannot be described. */
export function importSlurmSite(
  nodes: readonly ImportedNode[],
  partitions: readonly ImportedPartition[],
  o: SiteImportOptions,
): ImportedSite {
  if (!NAME.test(o.name)) {
    throw new SiteImportError(`site name '${o.name}' is not a name (letters, digits, - and _); give one with --name`);
  }
  const partitionsOf = nodePartitions(nodes, partitions);
  const wanted = o.partitions ?? [];
  const known = new Set([...partitions.map((p) => p.name), ...[...partitionsOf.values()].flat()]);
  const unknown = wanted.filter((p) => !known.has(p));
  if (unknown.length > 0) {
    throw new SiteImportError(
      `no partition is named ${unknown.map((p) => `'${p}'`).join(', ')} (the cluster has ${[...known].join(', ') || 'none'})`,
    );
  }
  const chosen =
    wanted.length === 0 ? nodes : nodes.filter((n) => (partitionsOf.get(n.name) ?? []).some((p) => wanted.includes(p)));
  if (chosen.length === 0) {
    throw new SiteImportError(wanted.length === 0 ? 'Slurm lists no nodes' : `partition ${wanted.join(', ')} has no nodes`);
  }

  const racks: Rack[] = [];
  const rackOf = new Map<string, Rack>();
  for (const n of chosen) {
    if (!NAME.test(n.name)) {
      throw new SiteImportError(
        `node ${n.name}: Fabrik's node names are letters, digits, - and _; rename it in Slurm or leave it out`,
      );
    }
    const gpus = parseGpuCount(n.gres);
    if (gpus === 0) {
      throw new SiteImportError(
        `node ${n.name} has no GPUs (gres: ${n.gres || 'none'}); Fabrik places GPU work only: choose the GPU partitions with --partition`,
      );
    }
    // A node's own name as a feature is how the executor pins jobs to it, not a grouping.
    const features = featureList(n.features).filter((f) => f !== n.name);
    const feature = only(
      n.name,
      'NVLink domain',
      features.filter((f) => o.domainFeature.test(f)),
      '--domain-feature',
    );
    const zoneFeature = only(
      n.name,
      'zone',
      features.filter((f) => f.startsWith(o.zonePrefix)),
      '--zone-feature',
    );
    const zone = zoneFeature === null ? DEFAULT_ZONE : zoneFeature.slice(o.zonePrefix.length);
    if (!NAME.test(zone)) {
      throw new SiteImportError(`node ${n.name}: feature ${zoneFeature} makes the zone name '${zone}', which is not a name`);
    }
    const rackName = feature ?? n.name;
    if (!NAME.test(rackName)) {
      throw new SiteImportError(
        `node ${n.name}: feature ${rackName} names its NVLink domain, but is not a name (letters, digits, - and _)`,
      );
    }
    let rack = rackOf.get(rackName);
    if (rack === undefined || (rack.feature === null) !== (feature === null)) {
      if (rack !== undefined) {
        throw new SiteImportError(
          `node ${n.name}: its domain feature ${rackName} is also the name of a node that has no domain feature`,
        );
      }
      rack = { name: rackName, feature, zone: null, nodes: [] };
      rackOf.set(rackName, rack);
      racks.push(rack);
    }
    if (rack.zone !== null && rack.zone !== zone) {
      const first = rack.nodes[0].name;
      throw new SiteImportError(
        `NVLink domain ${rack.name}: node ${first} is in zone ${rack.zone} but node ${n.name} in zone ${zone}; a domain is in one zone`,
      );
    }
    rack.zone = zone;
    const health = slurmNodeHealth(n);
    const note = health === 'up' ? null : `Slurm: ${n.state ?? ''}${n.reason ? ` (${n.reason})` : ''}`.trim();
    rack.nodes.push({ name: n.name, gpus, partitions: partitionsOf.get(n.name) ?? [], note });
  }

  const yaml = render(racks, chosen, partitions, o);
  let site: Site;
  try {
    site = parseSite(yaml, `${o.name}.yaml`);
  } catch (e) {
    // Every rule the loader checks is meant to be checked above with a better message.
    if (e instanceof InvalidDescriptionError) throw new SiteImportError(`the imported site does not load: ${e.message}`);
    throw e;
  }
  return { yaml, site };
}

function render(
  racks: readonly Rack[],
  nodes: readonly ImportedNode[],
  partitions: readonly ImportedPartition[],
  o: SiteImportOptions,
): string {
  const totalGpus = racks.reduce((s, r) => s + r.nodes.reduce((t, n) => t + n.gpus, 0), 0);
  const nodeCount = racks.reduce((s, r) => s + r.nodes.length, 0);
  const zones = [...new Set(racks.map((r) => r.zone!))].sort((a, b) => Number(b === DEFAULT_ZONE) - Number(a === DEFAULT_ZONE));
  const types = [...new Set(nodes.flatMap((n) => gpuTypes(n.gres)))];
  const defaults = new Set(
    partitions.filter((p) => (p.flags ?? []).some((f) => f.toLowerCase() === 'default')).map((p) => p.name),
  );
  const alone = racks.filter((r) => r.feature === null);
  const lines: string[] = [];
  const push = (...l: string[]) => lines.push(...l);

  push(
    `# ${o.name}: a Fabrik site imported from Slurm (${o.source}) by \`fabrik site import\`.`,
    `# ${nodeCount} node(s), ${totalGpus} GPUs, ${racks.length} NVLink domain(s), zone(s) ${zones.join(', ')}.`,
    '#',
    '# Before you use it, check every line marked CHECK: Slurm does not know those values. Then:',
    '#   fabrik validate --site <this file>',
    '#   fabrik up --executor slurm --site <this file>',
    "# Node names are Slurm's, so the slurm executor runs each job on exactly the nodes Fabrik chose.",
    '# Field reference: docs/site-and-consortium.md; the import: docs/slurm.md.',
    '',
    `name: ${scalar(o.name)}`,
    '',
    "# Facility power / IT power, and the grid's carbon intensity (gCO2e/kWh), for energy and carbon",
    "# accounting. CHECK both: these are Fabrik's defaults (a Swedish site), not measured here.",
    'pue: 1.1',
    'carbonGramsPerKwh: 31',
    '',
  );
  if (types.length === 1) {
    push(`# CHECK: Slurm's gres calls the GPUs '${types[0]}'; write the model's full name, its memory and power.`);
  } else if (types.length > 1) {
    push(`# CHECK: Slurm's gres names several GPU types (${types.join(', ')}); Fabrik's site has one GPU model.`);
  } else {
    push("# CHECK: Slurm's gres gives no GPU model (gres gpu:N): write the model, its memory and power.");
  }
  push(
    '# memoryGb and watts below are placeholders; watts feed energy accounting.',
    'gpu:',
    `  name: ${scalar(types.length === 1 ? types[0] : 'GPU')}`,
    '  memoryGb: 80',
    '  watts: 700',
    '',
    `# A zone is a set of racks that some members' data must never leave. Zones come from Slurm node`,
    `# features ${o.zonePrefix}<zone> (--zone-feature); a node without one is in ${DEFAULT_ZONE}. CHECK that each`,
    '# zone holds the nodes you mean.',
    'zones:',
    ...zones.map((z) => `  - ${scalar(z)}`),
    '',
    `# One rack per NVLink domain: the nodes that share a Slurm feature matching /${o.domainFeature.source}/`,
    '# (--domain-feature). Fabrik keeps a gang that fits in one domain inside it.',
  );
  if (alone.length === racks.length) {
    push(
      '# No node has such a feature, so each node is its own domain (a rack named after it). If',
      '# nodes share NVLink (an NVL72 rack), give them a feature in slurm.conf (Features=nvl1,…) and',
      '# import again, or group them here by hand. CHECK.',
    );
  } else if (alone.length > 0) {
    push(`# ${alone.map((r) => r.name).join(', ')}: no such feature, so each is its own domain. CHECK.`);
  }
  push('# Partitions are noted beside each node; Fabrik submits to --slurm-partition (or the default).', 'superpods:');
  push(`  - name: ${scalar(o.name)}`, '    racks:');
  for (const rack of racks) {
    const same = rack.nodes.every((n) => n.gpus === rack.nodes[0].gpus);
    push(
      ...(rack.feature === null ? [] : [`      # Slurm feature ${rack.feature}`]),
      `      - name: ${scalar(rack.name)}`,
      `        zone: ${scalar(rack.zone!)}`,
      ...(same ? [`        gpusPerNode: ${rack.nodes[0].gpus}`] : []),
      '        nodes:',
    );
    const items = rack.nodes.map((n) => (same ? scalar(n.name) : `{ name: ${scalar(n.name)}, gpus: ${n.gpus} }`));
    const width = Math.max(...items.map((i) => i.length));
    rack.nodes.forEach((n, i) => {
      const where =
        n.partitions.length === 0
          ? 'no partition'
          : `partitions: ${n.partitions.map((p) => (defaults.has(p) ? `${p} (default)` : p)).join(', ')}`;
      push(`          - ${items[i].padEnd(width)}   # ${where}${n.note ? `; ${n.note}` : ''}`);
    });
  }
  push(
    '',
    '# Nodes that are not up: draining, down, maintenance. The slurm executor also reads drained and',
    '# down nodes from Slurm as it runs, so list here only what Slurm does not say.',
    'nodeStates:',
    '',
    '# Health verdicts (PASS, INFO, WARNING, CRITICAL, UNKNOWN); unlisted nodes are PASS when up.',
    'health:',
    '',
  );
  return lines.join('\n');
}

/** The one feature of a node's features that means `what`, or null; two is ambiguous. */
function only(node: string, what: string, matches: readonly string[], flag: string): string | null {
  if (matches.length > 1) {
    throw new SiteImportError(
      `node ${node} has several ${what} features (${matches.join(', ')}); make ${flag} match one of them`,
    );
  }
  return matches[0] ?? null;
}

/** Each node's partitions: its own list (v0.0.38 gives one), else the partitions whose hostlist names it. */
function nodePartitions(nodes: readonly ImportedNode[], partitions: readonly ImportedPartition[]): Map<string, string[]> {
  const fromPartitions = new Map<string, string[]>();
  for (const p of partitions) {
    for (const host of expandHostlist(p.nodes ?? '')) fromPartitions.set(host, [...(fromPartitions.get(host) ?? []), p.name]);
  }
  return new Map(nodes.map((n) => [n.name, n.partitions ? [...n.partitions] : (fromPartitions.get(n.name) ?? [])]));
}

/** `node[1-3,07],gpu1` → node1 node2 node3 node07 gpu1; brackets may repeat (`r[1-2]n[1-2]`). */
export function expandHostlist(list: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i <= list.length; i++) {
    const c = list[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if ((c === ',' && depth === 0) || i === list.length) {
      const item = list.slice(start, i).trim();
      if (item !== '' && item !== '(null)') items.push(...expandOne(item));
      start = i + 1;
    }
  }
  return items;
}

function expandOne(item: string): string[] {
  const m = /^([^[]*)\[([^\]]*)\](.*)$/.exec(item);
  if (!m) return [item];
  const [, head, ranges, tail] = m;
  const rests = expandOne(tail);
  const out: string[] = [];
  for (const range of ranges.split(',')) {
    const [lo, hi = lo] = range.split('-');
    for (let k = Number(lo); k <= Number(hi); k++) {
      for (const rest of rests) out.push(`${head}${String(k).padStart(lo.length, '0')}${rest}`);
    }
  }
  return out;
}

/** The GPU types a gres names: `gpu:a100:8` → a100; `gpu:8` → none. */
function gpuTypes(gres: string | undefined): string[] {
  return (gres ?? '').split(',').flatMap((item) => {
    const m = /^gpu:([^:(]+):\d+/.exec(item.trim());
    return m ? [m[1]] : [];
  });
}

/** A YAML scalar that reads back as the same text ("true", "1e3" and "null" are quoted). */
function scalar(text: string): string {
  return stringify(text).trimEnd();
}

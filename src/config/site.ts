// A site description (YAML) → the core `Site` the scheduler walks by index.
//
// Naming rule (documented in docs/site-and-consortium.md, relied on by operators' nodeStates):
//   rack  = `name`, or `namePattern` with {superpod} → the SuperPOD's name and {i} → the rack's
//           1-based position within its SuperPOD (counted across all its `racks` entries),
//           zero-padded to two digits (more if the SuperPOD has 100 racks or more);
//   node  = `<rack>-t<tray>`, the tray 1-based and zero-padded the same way: sp1-r01-t01;
//           or, for a rack that lists its `nodes`, the names listed there: a cluster that already
//           exists (Slurm) has its own names, and the executor runs jobs on nodes by name.
// Domains are numbered in document order (SuperPODs, then their racks), nodes likewise, so a
// site file always yields the same indices.
import { z } from 'zod';
import type { HealthVerdict, Node, NodeState, NvlinkDomain, Site } from '../core/site.js';
import { Description, NAME, claim, nameSchema, readDescriptionFile, strictObject, type DocPath } from './document.js';

const DEFAULT_RACK_NAME_PATTERN = '{superpod}-r{i}';
const DEFAULT_GPUS_PER_TRAY = 4;

// A typo such as `trays: 18000` should fail here, not build millions of nodes.
const count = z.int().min(1).max(10_000);

const NOT_UP_STATES = ['draining', 'down', 'maintenance'] as const satisfies readonly NodeState[];
const HEALTH_VERDICTS = ['PASS', 'INFO', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const satisfies readonly HealthVerdict[];

/** A mapping an operator may leave empty (every entry commented out) without it being an error. */
const optionalMapping = <Value extends z.ZodType>(value: Value) =>
  z
    .record(z.string(), value)
    .nullish()
    .transform((v): Partial<Record<string, z.output<Value>>> => v ?? {});

const rackOverrideSchema = strictObject({
  zone: nameSchema.optional(),
  trays: count.optional(),
  gpusPerTray: count.optional(),
});

/** A node of a rack that lists its nodes: its name, alone (GPUs from `gpusPerNode`) or with its GPUs. */
const listedNodeSchema = z.union([nameSchema, strictObject({ name: nameSchema, gpus: count.optional() })], {
  error: 'must be a node name or a mapping { name: …, gpus: … }',
});

/**
 * One rack (`name`) or a group of identical racks (`count`, `namePattern`), of `trays` named by
 * the rule; or one rack whose `nodes` are listed by name. `trays` and `gpusPerTray` are optional
 * here only so that a rack with `nodes` can go without them: expandRacks requires one or the other.
 */
const rackEntrySchema = strictObject({
  name: nameSchema.optional(),
  count: count.optional(),
  namePattern: z.string().optional(),
  zone: nameSchema,
  trays: count.optional(),
  gpusPerTray: count.optional(),
  overrides: optionalMapping(rackOverrideSchema),
  nodes: z.array(listedNodeSchema).min(1).optional(),
  gpusPerNode: count.optional(),
});

const siteSchema = strictObject({
  name: nameSchema,
  // PUE is facility power over IT power, so below 1 is a typo.
  pue: z.number().min(1).default(1.1),
  carbonGramsPerKwh: z.number().min(0).default(31),
  gpu: strictObject({
    name: z.string().min(1),
    memoryGb: z.number().positive(),
    watts: z.number().positive(),
    /** TFLOP/s, dense BF16; absent: Fabrik's figure for the GPUs it knows (GB300: 2,500). */
    peakDenseBf16Tflops: z.number().positive().optional(),
  }),
  zones: z.array(nameSchema).min(1),
  superpods: z.array(strictObject({ name: nameSchema, racks: z.array(rackEntrySchema).min(1) })).min(1),
  nodeStates: optionalMapping(z.enum(NOT_UP_STATES)),
  health: optionalMapping(z.enum(HEALTH_VERDICTS)),
});

type SiteDocument = z.output<typeof siteSchema>;
type RackEntry = z.output<typeof rackEntrySchema>;

/** One rack after groups are expanded, with where each of its fields came from. */
interface RackSpec {
  readonly name: string;
  readonly namePath: DocPath;
  readonly zone: string;
  readonly zonePath: DocPath;
  readonly nodes: readonly NodeSpec[];
}

/** A node of a rack: named by the tray rule (path: the rack's name) or listed (path: its entry). */
interface NodeSpec {
  readonly name: string;
  readonly path: DocPath;
  readonly gpus: number;
}

/** Parses a site description; `file` names it in errors. Throws InvalidDescriptionError. */
export function parseSite(text: string, file: string): Site {
  const description = Description.parse(text, file);
  return buildSite(description, description.validate(siteSchema));
}

/** Reads and parses a site description file. Throws InvalidDescriptionError. */
export function loadSite(path: string): Site {
  return parseSite(readDescriptionFile(path), path);
}

function buildSite(d: Description, doc: SiteDocument): Site {
  const zones = uniqueNames(d, doc.zones, ['zones'], 'zone');
  const zonesUsed = new Set<string>();
  const superpods: { name: string; domains: number[] }[] = [];
  const domains: NvlinkDomain[] = [];
  const nodes: Node[] = [];
  const superpodAt = new Map<string, DocPath>();
  const rackAt = new Map<string, DocPath>();
  const nodeAt = new Map<string, DocPath>();

  doc.superpods.forEach((superpod, s) => {
    const path = ['superpods', s];
    claim(d, superpodAt, superpod.name, [...path, 'name'], 'SuperPOD name');
    const domainIndices: number[] = [];
    for (const rack of expandRacks(d, superpod.name, superpod.racks, path)) {
      claim(d, rackAt, rack.name, rack.namePath, 'rack name');
      if (!zones.includes(rack.zone)) {
        d.fail(rack.zonePath, `zone '${rack.zone}' is not listed in zones (${zones.join(', ')})`);
      }
      zonesUsed.add(rack.zone);
      const domain = domains.length;
      const nodeIndices: number[] = [];
      for (const node of rack.nodes) {
        claim(d, nodeAt, node.name, node.path, 'node name');
        const state: NodeState = doc.nodeStates[node.name] ?? 'up';
        // A node that is not up and has no reported verdict is not known to be healthy.
        const health: HealthVerdict = doc.health[node.name] ?? (state === 'up' ? 'PASS' : 'UNKNOWN');
        nodeIndices.push(nodes.length);
        nodes.push({ name: node.name, gpus: node.gpus, state, health, domain });
      }
      domains.push({
        name: rack.name,
        superpod: superpod.name,
        zone: rack.zone,
        nodes: nodeIndices,
        gpus: rack.nodes.reduce((sum, n) => sum + n.gpus, 0),
      });
      domainIndices.push(domain);
    }
    superpods.push({ name: superpod.name, domains: domainIndices });
  });

  zones.forEach((zone, z) => {
    if (!zonesUsed.has(zone)) d.fail(['zones', z], `zone '${zone}' has no racks`);
  });
  // Listed names follow no rule, so the hint can only show one.
  const rule = doc.superpods.some((s) => s.racks.some((r) => r.nodes !== undefined)) ? '' : 'node names are <rack>-t<tray>, ';
  for (const key of ['nodeStates', 'health'] as const) {
    for (const name of Object.keys(doc[key])) {
      if (!nodeAt.has(name)) {
        d.fail([key, name], `no node is named '${name}' (${rule}e.g. '${nodes[0].name}')`);
      }
    }
  }

  return {
    name: doc.name,
    pue: doc.pue,
    carbonGramsPerKwh: doc.carbonGramsPerKwh,
    gpu: doc.gpu,
    superpods,
    domains,
    nodes,
    zones,
    totalGpus: nodes.reduce((sum, n) => sum + n.gpus, 0),
    maxGpusPerNode: nodes.reduce((max, n) => Math.max(max, n.gpus), 0),
  };
}

function expandRacks(d: Description, superpod: string, entries: readonly RackEntry[], superpodPath: DocPath): RackSpec[] {
  const width = padWidth(entries.reduce((sum, e) => sum + (e.count ?? 1), 0));
  const racks: RackSpec[] = [];
  entries.forEach((entry, e) => {
    const path = [...superpodPath, 'racks', e];
    if (entry.name !== undefined && (entry.count !== undefined || entry.namePattern !== undefined)) {
      d.fail([...path, 'name'], 'give either name (one rack) or count and namePattern (a group of racks), not both');
    }
    const pattern = entry.namePattern ?? DEFAULT_RACK_NAME_PATTERN;
    const namePath =
      entry.name !== undefined ? [...path, 'name'] : entry.namePattern !== undefined ? [...path, 'namePattern'] : path;
    if (entry.name === undefined && !pattern.includes('{i}')) {
      d.fail(
        namePath,
        `must contain {i} (the rack's number within its SuperPOD) so that each rack gets its own name, got "${pattern}"`,
      );
    }
    const names: string[] = [];
    for (let k = 0; k < (entry.count ?? 1); k++) {
      const position = racks.length + names.length + 1;
      const name = entry.name ?? pattern.replaceAll('{superpod}', superpod).replaceAll('{i}', pad(position, width));
      if (!NAME.test(name)) {
        d.fail(namePath, `makes the rack name "${name}", but names are made of letters, digits, - and _`);
      }
      names.push(name);
    }
    for (const key of Object.keys(entry.overrides)) {
      if (!names.includes(key)) {
        const made = names.length === 1 ? names[0] : `${names[0]} … ${names[names.length - 1]}`;
        d.fail([...path, 'overrides', key], `'${key}' is not a rack of this entry (it makes ${made})`);
      }
    }
    if (entry.nodes !== undefined) {
      racks.push({ name: names[0], namePath, zone: entry.zone, zonePath: [...path, 'zone'], nodes: listedNodes(d, entry, path) });
      return;
    }
    if (entry.gpusPerNode !== undefined) {
      d.fail([...path, 'gpusPerNode'], 'is for a rack that lists its nodes; a rack of trays takes gpusPerTray');
    }
    if (entry.trays === undefined) {
      d.fail([...path, 'trays'], "is required but missing (or list the rack's nodes by name under nodes)");
    }
    for (const name of names) {
      const override = entry.overrides[name] ?? {};
      const trays = override.trays ?? entry.trays;
      const gpus = override.gpusPerTray ?? entry.gpusPerTray ?? DEFAULT_GPUS_PER_TRAY;
      const width = padWidth(trays);
      racks.push({
        name,
        namePath,
        zone: override.zone ?? entry.zone,
        zonePath: override.zone !== undefined ? [...path, 'overrides', name, 'zone'] : [...path, 'zone'],
        nodes: Array.from({ length: trays }, (_, t) => ({ name: `${name}-t${pad(t + 1, width)}`, path: namePath, gpus })),
      });
    }
  });
  return racks;
}

/** The nodes of a rack entry that lists them; the keys that shape racks of trays do not apply to it. */
function listedNodes(d: Description, entry: RackEntry, path: DocPath): NodeSpec[] {
  const trayKeys = {
    count: 'a rack that lists its nodes is one rack: give it a name instead',
    trays: 'a rack that lists its nodes has as many as it lists: leave out trays',
    gpusPerTray: 'a rack that lists its nodes takes gpusPerNode, or gpus on each node',
    overrides: 'a rack that lists its nodes says what differs on the nodes themselves',
  } as const;
  for (const [key, problem] of Object.entries(trayKeys)) {
    const value = entry[key as keyof typeof trayKeys];
    const given = key === 'overrides' ? Object.keys(entry.overrides).length > 0 : value !== undefined;
    if (given) d.fail([...path, key], problem);
  }
  return (entry.nodes ?? []).map((node, i) => {
    const listed = typeof node === 'string' ? { name: node, gpus: undefined } : node;
    const nodePath = typeof node === 'string' ? [...path, 'nodes', i] : [...path, 'nodes', i, 'name'];
    const gpus = listed.gpus ?? entry.gpusPerNode;
    if (gpus === undefined) {
      d.fail(
        [...path, 'nodes', i],
        `node '${listed.name}' has no GPU count: give gpusPerNode on the rack, or { name: ${listed.name}, gpus: N }`,
      );
    }
    return { name: listed.name, path: nodePath, gpus };
  });
}

function uniqueNames(d: Description, names: readonly string[], path: DocPath, what: string): string[] {
  const seen = new Map<string, DocPath>();
  names.forEach((name, i) => claim(d, seen, name, [...path, i], what));
  return [...names];
}

function padWidth(largest: number): number {
  return Math.max(2, String(largest).length);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

// `fabrik site import`: the YAML written from slurmrestd's node and partition lists (recorded
// answers, no Slurm needed), loaded back; then the command itself against the real cluster of
// scripts/slurm/up.sh (read-only calls: other tests use the cluster at the same time).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSite, parseSite } from '../../src/config/index.js';
import {
  DEFAULT_DOMAIN_FEATURE,
  DEFAULT_ZONE_PREFIX,
  expandHostlist,
  importSlurmSite,
  SiteImportError,
  type ImportedNode,
  type ImportedPartition,
  type SiteImportOptions,
} from '../../src/cli/site-import.js';
import { slurmReachable } from '../slurm-cluster.js';

const reachable = await slurmReachable('site import tests against Slurm');

const root = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fabrik-site-import-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OPTIONS: SiteImportOptions = {
  name: 'lab',
  source: 'http://127.0.0.1:6820',
  domainFeature: new RegExp(DEFAULT_DOMAIN_FEATURE),
  zonePrefix: DEFAULT_ZONE_PREFIX,
};

/** GET /slurm/v0.0.38/nodes and /partitions of scripts/slurm/up.sh's cluster, the fields read. */
const UP_SH_NODES: ImportedNode[] = [1, 2, 3, 4].map((i) => ({
  name: `node${i}`,
  gres: 'gpu:8',
  features: `node${i}`,
  state: 'idle',
  state_flags: [],
  partitions: ['gpu'],
}));
const UP_SH_PARTITIONS: ImportedPartition[] = [{ name: 'gpu', nodes: 'node[1-4]', flags: ['default'] }];

/** A cluster with NVLink domains and a restricted zone given as features, and a CPU partition. */
const FEATURED_NODES: ImportedNode[] = [
  { name: 'gpu01', gres: 'gpu:h100:8', features: 'gpu01,nvl1', state: 'idle' },
  { name: 'gpu02', gres: 'gpu:h100:8(S:0-1)', features: 'gpu02,nvl1', state: 'mixed' },
  {
    name: 'gpu03',
    gres: 'gpu:h100:4',
    features: 'nvl2,zone-restricted',
    state: 'idle',
    state_flags: ['DRAIN'],
    reason: 'ib flap',
  },
  { name: 'gpu04', gres: 'gpu:h100:8', features: '', state: 'allocated' },
  { name: 'cpu01', gres: '', features: 'highmem', state: 'idle' },
];
const FEATURED_PARTITIONS: ImportedPartition[] = [
  { name: 'batch', nodes: 'gpu[01-04]', flags: ['default'] },
  { name: 'secure', nodes: 'gpu03' },
  { name: 'cpu', nodes: 'cpu01' },
];

describe('the YAML imported from Slurm', () => {
  it("describes scripts/slurm/up.sh's cluster: four 8-GPU nodes, each its own domain (no domain features)", () => {
    const { yaml, site } = importSlurmSite(UP_SH_NODES, UP_SH_PARTITIONS, OPTIONS);
    expect(site.totalGpus).toBe(32);
    expect(site.nodes.map((n) => [n.name, n.gpus])).toEqual([1, 2, 3, 4].map((i) => [`node${i}`, 8]));
    // The node's own-name feature pins jobs; it groups nothing.
    expect(site.domains.map((d) => [d.name, d.zone, d.nodes])).toEqual([1, 2, 3, 4].map((i) => [`node${i}`, 'general', [i - 1]]));
    expect(site.zones).toEqual(['general']);
    expect(yaml).toContain('so each node is its own domain');
    expect(yaml).toContain('- node1   # partitions: gpu (default)');
    expect(yaml).toMatch(/# CHECK: Slurm's gres gives no GPU model/);
  });

  it('groups nodes by their domain feature, zones them by zone-<name>, and keeps each GPU count', () => {
    const { yaml, site } = importSlurmSite(FEATURED_NODES, FEATURED_PARTITIONS, { ...OPTIONS, partitions: ['batch'] });
    expect(site.domains.map((d) => [d.name, d.zone, d.gpus, d.nodes.map((n) => site.nodes[n].name)])).toEqual([
      ['nvl1', 'general', 16, ['gpu01', 'gpu02']],
      ['nvl2', 'restricted', 4, ['gpu03']],
      ['gpu04', 'general', 8, ['gpu04']],
    ]);
    expect(site.zones).toEqual(['general', 'restricted']);
    expect(site.gpu.name).toBe('h100');
    // Slurm's live state is the executor's to follow: noted, not written into nodeStates.
    expect(site.nodes.every((n) => n.state === 'up')).toBe(true);
    expect(yaml).toContain('# Slurm feature nvl1');
    expect(yaml).toContain('gpu04: no such feature, so each is its own domain');
    expect(yaml).toMatch(/- gpu03 +# partitions: batch \(default\), secure; Slurm: idle \(ib flap\)/);
  });

  it('round-trips: the YAML loads with parseSite to the same site', () => {
    const { yaml, site } = importSlurmSite(FEATURED_NODES, FEATURED_PARTITIONS, { ...OPTIONS, partitions: ['batch'] });
    expect(parseSite(yaml, 'again.yaml')).toEqual(site);
  });

  it('writes each node its GPUs when a domain mixes counts, and takes partitions from the hostlists when nodes lack them', () => {
    const nodes: ImportedNode[] = [
      { name: 'a1', gres: 'gpu:8', features: 'rack7' },
      { name: 'a2', gres: 'gpu:4', features: 'rack7' },
    ];
    const { yaml, site } = importSlurmSite(nodes, [{ name: 'p', nodes: 'a[1-2]' }], OPTIONS);
    expect(yaml).toContain('- { name: a2, gpus: 4 }   # partitions: p');
    expect(site.domains[0].gpus).toBe(12);
  });

  it('takes another domain feature and zone prefix', () => {
    const nodes: ImportedNode[] = [
      { name: 'n1', gres: 'gpu:4', features: 'pod-a,sec:hi' },
      { name: 'n2', gres: 'gpu:4', features: 'pod-a,sec:hi' },
    ];
    const { site } = importSlurmSite(nodes, [], { ...OPTIONS, domainFeature: /^pod-/, zonePrefix: 'sec:' });
    expect(site.domains.map((d) => [d.name, d.zone, d.gpus])).toEqual([['pod-a', 'hi', 8]]);
  });

  it('quotes names that YAML would read as something else', () => {
    const { site } = importSlurmSite([{ name: 'true', gres: 'gpu:2' }], [], { ...OPTIONS, name: '123' });
    expect([site.name, site.nodes[0].name]).toEqual(['123', 'true']);
  });

  const refusals: { what: string; nodes: ImportedNode[]; options?: Partial<SiteImportOptions>; message: string }[] = [
    {
      what: 'a node without GPUs',
      nodes: FEATURED_NODES,
      message: 'node cpu01 has no GPUs (gres: none); Fabrik places GPU work only: choose the GPU partitions with --partition',
    },
    {
      what: 'an unknown partition',
      nodes: FEATURED_NODES,
      options: { partitions: ['gpu'] },
      message: "no partition is named 'gpu' (the cluster has batch, secure, cpu)",
    },
    {
      what: 'two domain features on a node',
      nodes: [{ name: 'n1', gres: 'gpu:8', features: 'nvl72,rack3' }],
      message: 'node n1 has several NVLink domain features (nvl72, rack3); make --domain-feature match one of them',
    },
    {
      what: 'a domain across two zones',
      nodes: [
        { name: 'n1', gres: 'gpu:8', features: 'nvl1' },
        { name: 'n2', gres: 'gpu:8', features: 'nvl1,zone-secret' },
      ],
      message: 'NVLink domain nvl1: node n1 is in zone general but node n2 in zone secret; a domain is in one zone',
    },
    {
      what: 'a node name Fabrik cannot use',
      nodes: [{ name: 'gpu1.example.org', gres: 'gpu:8' }],
      message: "node gpu1.example.org: Fabrik's node names are letters, digits, - and _",
    },
    {
      what: 'no nodes',
      nodes: [],
      message: 'Slurm lists no nodes',
    },
  ];

  it.each(refusals)('refuses $what with one line naming it', ({ nodes, options, message }) => {
    expect(() => importSlurmSite(nodes, FEATURED_PARTITIONS, { ...OPTIONS, ...options })).toThrow(SiteImportError);
    expect(() => importSlurmSite(nodes, FEATURED_PARTITIONS, { ...OPTIONS, ...options })).toThrow(message);
  });

  it('expands Slurm hostlists', () => {
    expect(expandHostlist('node[1-3,07],gpu1')).toEqual(['node1', 'node2', 'node3', 'node07', 'gpu1']);
    expect(expandHostlist('r[1-2]n[01-02]')).toEqual(['r1n01', 'r1n02', 'r2n01', 'r2n02']);
    expect(expandHostlist('')).toEqual([]);
  });
});

function fabrik(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', `${root}src/cli/main.ts`, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('fabrik site import', () => {
  it('says in one line, exit 1, that slurmrestd cannot be reached', () => {
    // Port 9 (discard) has no slurmrestd on any test machine; a key of its own, so that this runs without Slurm too.
    const key = join(dir, 'jwt.key');
    writeFileSync(key, 'k'.repeat(32));
    const r = fabrik('site', 'import', '--slurm', 'http://127.0.0.1:9', '--name', 'x', '--jwt-key', key);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^fabrik: slurmrestd GET \/slurm\/v0\.0\.38\/nodes: unreachable/),
    ]);
  });

  it('says in one line, exit 2, that the key file is missing', () => {
    const r = fabrik('site', 'import', '--slurm', 'http://127.0.0.1:6820', '--jwt-key', join(dir, 'no-such.key'));
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`fabrik: --jwt-key ${join(dir, 'no-such.key')}: file not found\n`);
  });

  it.runIf(reachable)(
    'imports the real cluster: 4 nodes, 32 GPUs, a file that validate and loadSite accept',
    () => {
      const out = join(dir, 'cluster.yaml');
      const r = fabrik('site', 'import', '--slurm', 'http://127.0.0.1:6820', '--out', out);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/wrote .*cluster\.yaml: site \S+, 32 GPUs, 4 NVLink domains, 4 nodes, zones general/);
      const site = loadSite(out);
      expect(site.nodes.map((n) => [n.name, n.gpus])).toEqual([1, 2, 3, 4].map((i) => [`node${i}`, 8]));
      expect(site.totalGpus).toBe(32);
      expect(site.zones).toEqual(['general']);

      const again = fabrik('site', 'import', '--slurm', 'http://127.0.0.1:6820', '--out', out);
      expect(again.status).toBe(2);
      expect(again.stderr).toContain('exists; choose another --out, or give --force');

      const validated = fabrik('validate', '--site', out);
      expect(validated.status, validated.stderr).toBe(0);
      expect(validated.stdout).toContain('32 GPUs, 4 NVLink domains, 4 nodes, zones general');
    },
    120_000,
  );
});

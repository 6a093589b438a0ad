// Racks that list their nodes by name (what `fabrik site import` writes for a Slurm cluster), and
// how the server takes such a site on an executor that offers those nodes.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadSite, parseSite } from '../../src/config/index.js';
import type { ExecNode } from '../../src/executors/executor.js';
import { SiteMismatchError, siteForExecutor } from '../../src/server/site.js';
import { descriptionError as failure } from '../../src/testing/errors.js';

const SE_FACTORY = fileURLToPath(new URL('../../sites/se-factory.yaml', import.meta.url));

const LISTED = `
name: lab
gpu: { name: test-gpu, memoryGb: 80, watts: 700 }
zones: [general, restricted]
superpods:
  - name: lab
    racks:
      - name: nvl1
        zone: general
        gpusPerNode: 8
        nodes: [node1, node2]
      - name: nvl2
        zone: restricted
        nodes:
          - { name: node3, gpus: 8 }
          - { name: node4, gpus: 4 }
`;

describe('a rack that lists its nodes', () => {
  it('takes the names as written, with gpusPerNode or each node its own GPUs', () => {
    const site = parseSite(LISTED, 'lab.yaml');
    expect(site.nodes.map((n) => [n.name, n.gpus, n.domain])).toEqual([
      ['node1', 8, 0],
      ['node2', 8, 0],
      ['node3', 8, 1],
      ['node4', 4, 1],
    ]);
    expect(site.domains.map((d) => [d.name, d.zone, d.gpus, d.nodes])).toEqual([
      ['nvl1', 'general', 16, [0, 1]],
      ['nvl2', 'restricted', 12, [2, 3]],
    ]);
    expect([site.totalGpus, site.maxGpusPerNode]).toEqual([28, 8]);
  });

  it('sits beside racks of trays, and takes node states by the listed names', () => {
    const site = parseSite(
      `${LISTED}      - { name: r9, zone: general, trays: 2 }
nodeStates:
  node2: draining
health:
  r9-t02: WARNING
`,
      'mixed.yaml',
    );
    expect(site.nodes.map((n) => [n.name, n.state, n.health])).toEqual([
      ['node1', 'up', 'PASS'],
      ['node2', 'draining', 'UNKNOWN'],
      ['node3', 'up', 'PASS'],
      ['node4', 'up', 'PASS'],
      ['r9-t01', 'up', 'PASS'],
      ['r9-t02', 'up', 'WARNING'],
    ]);
  });

  it('gets the default rack name when it has none', () => {
    const site = parseSite(LISTED.replace('- name: nvl1\n        zone:', '- zone:'), 'unnamed.yaml');
    expect(site.domains[0].name).toBe('lab-r01');
  });

  const cases: { what: string; text: string; path: string; problem: string }[] = [
    {
      what: 'a node without a GPU count',
      text: LISTED.replace('        gpusPerNode: 8\n', ''),
      path: 'superpods[0].racks[0].nodes[0]',
      problem: "node 'node1' has no GPU count: give gpusPerNode on the rack, or { name: node1, gpus: N }",
    },
    {
      what: 'a node name that is not a name',
      text: LISTED.replace('[node1, node2]', '[node1, "node 2"]'),
      path: 'superpods[0].racks[0].nodes[1]',
      problem: 'must be a name made of letters, digits',
    },
    {
      what: 'a misspelt key on a node',
      text: LISTED.replace('{ name: node4, gpus: 4 }', '{ name: node4, gpu: 4 }'),
      path: 'superpods[0].racks[1].nodes[1].gpu',
      problem: "unknown key 'gpu' (allowed here: name, gpus)",
    },
    {
      what: 'a number for a node',
      text: LISTED.replace('[node1, node2]', '[node1, 2]'),
      path: 'superpods[0].racks[0].nodes[1]',
      problem: 'must be a node name or a mapping { name: …, gpus: … }, got 2',
    },
    {
      what: 'an empty node list',
      text: LISTED.replace('[node1, node2]', '[]'),
      path: 'superpods[0].racks[0].nodes',
      problem: 'must list at least one entry',
    },
    {
      what: 'a node listed twice',
      text: LISTED.replace('{ name: node3, gpus: 8 }', '{ name: node1, gpus: 8 }'),
      path: 'superpods[0].racks[1].nodes[0].name',
      problem: "node name 'node1' is used twice (first at superpods[0].racks[0].nodes[0])",
    },
    {
      what: 'trays beside nodes',
      text: LISTED.replace('gpusPerNode: 8', 'gpusPerNode: 8\n        trays: 2'),
      path: 'superpods[0].racks[0].trays',
      problem: 'has as many as it lists: leave out trays',
    },
    {
      what: 'a count beside nodes',
      text: LISTED.replace('      - name: nvl1\n', '      - count: 2\n'),
      path: 'superpods[0].racks[0].count',
      problem: 'is one rack: give it a name instead',
    },
    {
      what: 'gpusPerTray beside nodes',
      text: LISTED.replace('gpusPerNode: 8', 'gpusPerTray: 8'),
      path: 'superpods[0].racks[0].gpusPerTray',
      problem: 'takes gpusPerNode, or gpus on each node',
    },
    {
      what: 'overrides beside nodes',
      text: LISTED.replace('gpusPerNode: 8', 'gpusPerNode: 8\n        overrides: { nvl1: { trays: 1 } }'),
      path: 'superpods[0].racks[0].overrides',
      problem: 'says what differs on the nodes themselves',
    },
    {
      what: 'gpusPerNode on a rack of trays',
      text: `${LISTED}      - { name: r9, zone: general, trays: 2, gpusPerNode: 4 }\n`,
      path: 'superpods[0].racks[2].gpusPerNode',
      problem: 'is for a rack that lists its nodes; a rack of trays takes gpusPerTray',
    },
    {
      what: 'neither trays nor nodes',
      text: `${LISTED}      - { name: r9, zone: general }\n`,
      path: 'superpods[0].racks[2].trays',
      problem: "is required but missing (or list the rack's nodes by name under nodes)",
    },
    {
      what: 'nodeStates for a node not listed',
      text: `${LISTED}nodeStates:\n  node9: down\n`,
      path: 'nodeStates.node9',
      problem: "no node is named 'node9' (e.g. 'node1')",
    },
  ];

  it.each(cases)('$what → $path', ({ text, path, problem }) => {
    const error = failure(() => parseSite(text, 'bad.yaml'));
    expect(error.path).toBe(path);
    expect(error.problem).toContain(problem);
  });

  it('points at the line of the node', () => {
    const error = failure(() => parseSite(LISTED.replace('{ name: node4, gpus: 4 }', '{ name: node4, gpus: 0 }'), 'bad.yaml'));
    expect(error.message).toBe('bad.yaml: superpods[0].racks[1].nodes[1].gpus: must be at least 1, got 0 (line 16)');
  });
});

const gpus = (n: number) => Array.from({ length: n }, (_, i) => i);
/** What the slurm executor offers for the cluster of scripts/slurm/up.sh: four nodes of 8 GPUs. */
const SLURM_NODES: ExecNode[] = [1, 2, 3, 4].map((i) => ({ name: `node${i}`, gpus: gpus(8), domain: 'slurm', zone: 'general' }));

describe('siteForExecutor', () => {
  it("keeps a site file that names the executor's nodes: its domains, zones and GPU counts", () => {
    const file = parseSite(LISTED, 'lab.yaml');
    const site = siteForExecutor('slurm', file, SLURM_NODES);
    expect(site).toBe(file);
    expect(site.domains.map((d) => [d.name, d.zone])).toEqual([
      ['nvl1', 'general'],
      ['nvl2', 'restricted'],
    ]);
  });

  it("falls back to the executor's nodes for a site file of another machine (se-factory)", () => {
    const seFactory = loadSite(SE_FACTORY);
    const site = siteForExecutor('slurm', seFactory, SLURM_NODES);
    expect(site.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3', 'node4']);
    expect(site.domains.map((d) => [d.name, d.gpus])).toEqual([['slurm', 32]]);
    expect(site.gpu).toEqual(seFactory.gpu);
  });

  it('names a node the executor does not have', () => {
    const file = parseSite(LISTED.replace('name: node4', 'name: node5'), 'lab.yaml');
    expect(() => siteForExecutor('slurm', file, SLURM_NODES)).toThrow(
      new SiteMismatchError('site lab: node node5 is not a node of the slurm executor (it has node1, node2, node3, node4)'),
    );
  });

  it('names a node with more GPUs in the file than the executor has', () => {
    const file = parseSite(LISTED.replace('gpusPerNode: 8', 'gpusPerNode: 16'), 'lab.yaml');
    expect(() => siteForExecutor('slurm', file, SLURM_NODES)).toThrow(
      new SiteMismatchError('site lab: node node1 has 16 GPUs in the site file but 8 in the slurm executor'),
    );
  });
});

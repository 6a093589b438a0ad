import { descriptionError as failure } from '../../src/testing/errors.js';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadSite, parseSite } from '../../src/config/index.js';
import type { Site } from '../../src/core/site.js';

const SE_FACTORY = fileURLToPath(new URL('../../sites/se-factory.yaml', import.meta.url));

/** The smallest useful site: two racks of two trays, the shape other tests build on. */
const TINY = `
name: tiny
gpu: { name: test-gpu, memoryGb: 80, watts: 700 }
zones: [general]
superpods:
  - name: sp1
    racks:
      - { count: 2, zone: general, trays: 2 }
`;

function gpusInZone(site: Site, zone: string): number {
  return site.domains.filter((d) => d.zone === zone).reduce((sum, d) => sum + d.gpus, 0);
}

describe('the se-factory site', () => {
  const site = loadSite(SE_FACTORY);

  it('is two SuperPODs of eight GB300 NVL72 racks: 1,152 GPUs on 288 trays', () => {
    expect(site.name).toBe('se-factory');
    expect(site.totalGpus).toBe(1152);
    expect(site.domains).toHaveLength(16);
    expect(site.nodes).toHaveLength(288);
    expect(site.maxGpusPerNode).toBe(4);
    expect(site.superpods.map((s) => [s.name, s.domains.length])).toEqual([
      ['sp1', 8],
      ['sp2', 8],
    ]);
    expect(site.domains.every((d) => d.gpus === 72 && d.nodes.length === 18)).toBe(true);
    expect(site.gpu).toEqual({ name: 'NVIDIA Blackwell Ultra (GB300)', memoryGb: 288, watts: 1400 });
    expect([site.pue, site.carbonGramsPerKwh]).toEqual([1.1, 31]);
  });

  it('keeps the last two racks of SuperPOD 2 as the 144-GPU sovereign zone', () => {
    expect(site.zones).toEqual(['general', 'sovereign']);
    expect(site.domains.filter((d) => d.zone === 'sovereign').map((d) => d.name)).toEqual(['sp2-r07', 'sp2-r08']);
    expect(gpusInZone(site, 'sovereign')).toBe(144);
    expect(gpusInZone(site, 'general')).toBe(1008);
  });

  it('names nodes <rack>-t<tray> and indexes them both ways', () => {
    expect(site.nodes[0].name).toBe('sp1-r01-t01');
    expect(site.nodes[17].name).toBe('sp1-r01-t18');
    expect(site.nodes[287].name).toBe('sp2-r08-t18');
    site.domains.forEach((domain, d) => {
      for (const n of domain.nodes) expect(site.nodes[n].domain).toBe(d);
    });
    site.superpods.forEach((superpod) => {
      for (const d of superpod.domains) expect(site.domains[d].superpod).toBe(superpod.name);
    });
    expect(site.nodes.every((n) => n.state === 'up' && n.health === 'PASS')).toBe(true);
  });
});

describe('a small site written inline', () => {
  it('builds two racks of two 4-GPU trays with the documented defaults', () => {
    const site = parseSite(TINY, 'tiny.yaml');
    expect(site.totalGpus).toBe(16);
    expect(site.nodes.map((n) => n.name)).toEqual(['sp1-r01-t01', 'sp1-r01-t02', 'sp1-r02-t01', 'sp1-r02-t02']);
    expect(site.domains.map((d) => [d.name, d.nodes])).toEqual([
      ['sp1-r01', [0, 1]],
      ['sp1-r02', [2, 3]],
    ]);
    expect([site.pue, site.carbonGramsPerKwh]).toEqual([1.1, 31]);
  });

  it('numbers racks across the entries of a SuperPOD and applies per-rack overrides', () => {
    const site = parseSite(
      `
name: mixed
gpu: { name: test-gpu, memoryGb: 80, watts: 700 }
zones: [general, sovereign]
superpods:
  - name: a
    racks:
      - count: 2
        namePattern: "pod-{superpod}-{i}"
        zone: general
        trays: 3
        overrides:
          pod-a-02: { trays: 1, gpusPerTray: 8, zone: sovereign }
      - { name: spare, zone: general, trays: 1, gpusPerTray: 2 }
      - { zone: general, trays: 1 }
`,
      'mixed.yaml',
    );
    expect(site.domains.map((d) => [d.name, d.zone, d.gpus])).toEqual([
      ['pod-a-01', 'general', 12],
      ['pod-a-02', 'sovereign', 8],
      ['spare', 'general', 2],
      ['a-r04', 'general', 4],
    ]);
    expect(site.maxGpusPerNode).toBe(8);
    expect(site.totalGpus).toBe(26);
  });

  it('pads tray numbers to the widest one', () => {
    const site = parseSite(TINY.replace('trays: 2', 'trays: 100'), 'wide.yaml');
    expect(site.nodes[0].name).toBe('sp1-r01-t001');
    expect(site.nodes[99].name).toBe('sp1-r01-t100');
  });

  it('takes node states and health verdicts; a node not up defaults to UNKNOWN health', () => {
    const site = parseSite(
      `${TINY}
nodeStates:
  sp1-r01-t02: down
  sp1-r02-t01: draining
health:
  sp1-r02-t01: WARNING
  sp1-r02-t02: INFO
`,
      'states.yaml',
    );
    expect(site.nodes.map((n) => [n.state, n.health])).toEqual([
      ['up', 'PASS'],
      ['down', 'UNKNOWN'],
      ['draining', 'WARNING'],
      ['up', 'INFO'],
    ]);
  });

  it('accepts nodeStates and health with every entry commented out', () => {
    const site = parseSite(`${TINY}nodeStates:\n  # sp1-r01-t01: down\nhealth:\n`, 'empty-maps.yaml');
    expect(site.nodes.every((n) => n.state === 'up')).toBe(true);
  });
});

describe('an invalid site description', () => {
  const rack = '      - { count: 2, zone: general, trays: 2 }';
  const cases: { what: string; text: string; path: string; problem: string }[] = [
    {
      what: 'bad YAML syntax',
      text: TINY.replace('zones: [general]', 'zones: [general\nsuperpods: ['),
      path: '',
      problem: 'YAML syntax error at line 5',
    },
    {
      what: 'a key given twice',
      text: TINY.replace('zones:', 'name: again\nzones:'),
      path: '',
      problem: 'Map keys must be unique',
    },
    { what: 'an empty document', text: '# nothing yet\n', path: '', problem: 'the document is empty' },
    {
      what: 'an unknown key',
      text: TINY.replace('trays: 2', 'trayz: 2'),
      path: 'superpods[0].racks[0].trayz',
      problem: "unknown key 'trayz' (allowed here: name, count, namePattern, zone, trays",
    },
    { what: 'an unknown top-level key', text: `${TINY}colour: blue\n`, path: 'colour', problem: "unknown key 'colour'" },
    {
      what: 'a wrong type',
      text: TINY.replace('trays: 2', 'trays: two'),
      path: 'superpods[0].racks[0].trays',
      problem: 'expected a number, got text "two"',
    },
    {
      what: 'a fractional tray count',
      text: TINY.replace('trays: 2', 'trays: 2.5'),
      path: 'superpods[0].racks[0].trays',
      problem: 'expected a whole number, got 2.5',
    },
    {
      what: 'negative trays',
      text: TINY.replace('trays: 2', 'trays: -2'),
      path: 'superpods[0].racks[0].trays',
      problem: 'must be at least 1, got -2',
    },
    {
      what: 'zero racks in a group',
      text: TINY.replace('count: 2', 'count: 0'),
      path: 'superpods[0].racks[0].count',
      problem: 'must be at least 1',
    },
    { what: 'a missing key', text: TINY.replace(/gpu: .*\n/, ''), path: 'gpu', problem: 'is required but missing' },
    {
      what: 'no zones',
      text: TINY.replace('zones: [general]', 'zones: []'),
      path: 'zones',
      problem: 'must list at least one entry',
    },
    { what: 'a PUE below 1', text: `${TINY}pue: 0.9\n`, path: 'pue', problem: 'must be at least 1, got 0.9' },
    {
      what: 'a duplicate rack',
      text: `${TINY}      - { name: sp1-r02, zone: general, trays: 1 }\n`,
      path: 'superpods[0].racks[1].name',
      problem: "rack name 'sp1-r02' is used twice (first at superpods[0].racks[0])",
    },
    {
      what: 'a duplicate SuperPOD',
      text: `${TINY}  - name: sp1\n    racks:\n${rack}\n`,
      path: 'superpods[1].name',
      problem: "SuperPOD name 'sp1' is used twice",
    },
    {
      what: 'a duplicate zone',
      text: TINY.replace('zones: [general]', 'zones: [general, general]'),
      path: 'zones[1]',
      problem: "zone 'general' is used twice",
    },
    {
      what: 'a rack in an unknown zone',
      text: TINY.replace('zone: general', 'zone: nowhere'),
      path: 'superpods[0].racks[0].zone',
      problem: "zone 'nowhere' is not listed in zones (general)",
    },
    {
      what: 'a zone without racks',
      text: TINY.replace('zones: [general]', 'zones: [general, sovereign]'),
      path: 'zones[1]',
      problem: "zone 'sovereign' has no racks",
    },
    {
      what: 'a rack with both a name and a count',
      text: TINY.replace('count: 2,', 'name: r, count: 2,'),
      path: 'superpods[0].racks[0].name',
      problem: 'either name (one rack) or count and namePattern',
    },
    {
      what: 'a name pattern without {i}',
      text: TINY.replace('count: 2,', 'count: 2, namePattern: rack,'),
      path: 'superpods[0].racks[0].namePattern',
      problem: 'must contain {i}',
    },
    {
      what: 'a name pattern that makes an invalid name',
      text: TINY.replace('count: 2,', 'count: 2, namePattern: "rack {i}",'),
      path: 'superpods[0].racks[0].namePattern',
      problem: 'makes the rack name "rack 01"',
    },
    {
      what: 'an override for a rack the entry does not make',
      text: TINY.replace('count: 2,', 'count: 2, overrides: { sp1-r03: { trays: 1 } },'),
      path: 'superpods[0].racks[0].overrides.sp1-r03',
      problem: "'sp1-r03' is not a rack of this entry (it makes sp1-r01 … sp1-r02)",
    },
    {
      what: 'an override into an unknown zone',
      text: TINY.replace('count: 2,', 'count: 2, overrides: { sp1-r02: { zone: secret } },'),
      path: 'superpods[0].racks[0].overrides.sp1-r02.zone',
      problem: "zone 'secret' is not listed in zones",
    },
    {
      what: 'nodeStates for an unknown node',
      text: `${TINY}nodeStates:\n  sp1-r09-t01: down\n`,
      path: 'nodeStates.sp1-r09-t01',
      problem: "no node is named 'sp1-r09-t01'",
    },
    {
      what: 'an unknown node state',
      text: `${TINY}nodeStates:\n  sp1-r01-t01: drained\n`,
      path: 'nodeStates.sp1-r01-t01',
      problem: 'expected one of draining, down, maintenance, got text "drained"',
    },
    {
      what: 'health for an unknown node',
      text: `${TINY}health:\n  sp1-r01-t03: CRITICAL\n`,
      path: 'health.sp1-r01-t03',
      problem: "no node is named 'sp1-r01-t03'",
    },
  ];

  it.each(cases)('$what → $path', ({ text, path, problem }) => {
    const error = failure(() => parseSite(text, 'bad.yaml'));
    expect(error.file).toBe('bad.yaml');
    expect(error.path).toBe(path);
    expect(error.problem).toContain(problem);
  });

  it('points at the line of the problem', () => {
    const error = failure(() => parseSite(TINY.replace('trays: 2', 'trays: -2'), 'bad.yaml'));
    expect(error.message).toBe('bad.yaml: superpods[0].racks[0].trays: must be at least 1, got -2 (line 8)');
  });

  it('names a missing file', () => {
    const error = failure(() => loadSite('sites/no-such-site.yaml'));
    expect(error.file).toBe('sites/no-such-site.yaml');
    expect(error.problem).toBe('file not found');
  });
});

describe('the single-tenant study sites', () => {
  const shipped = (name: string) => loadSite(fileURLToPath(new URL(`../../sites/${name}.yaml`, import.meta.url)));

  it('differ only in placement: the same GPUs in the same NVLink domains, one GPU per tray where gangs take any GPUs', () => {
    const trays = shipped('se-superpod');
    const counting = shipped('se-superpod-gpu-count');
    expect(counting.totalGpus).toBe(trays.totalGpus);
    expect(counting.domains.map((d) => d.nodes.reduce((g, n) => g + counting.nodes[n].gpus, 0))).toEqual(
      trays.domains.map((d) => d.nodes.reduce((g, n) => g + trays.nodes[n].gpus, 0)),
    );
    expect(new Set(counting.nodes.map((n) => n.gpus))).toEqual(new Set([1]));
    expect(new Set(trays.nodes.map((n) => n.gpus))).toEqual(new Set([4]));
  });
});

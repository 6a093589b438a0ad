// What-if timelines: racks or nodes that go down, drain or come back at given hours.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite } from '../../src/config/index.js';
import { parseNodeEvents } from '../../src/sim/node-events.js';
import { runStudy } from '../../src/sim/run.js';
import { parseTrace } from '../../src/sim/trace.js';
import { descriptionError as failure } from '../../src/testing/errors.js';

const site = loadSite(new URL('../../sites/se-factory.yaml', import.meta.url).pathname);
const consortium = loadConsortium(new URL('../../consortia/demo.yaml', import.meta.url).pathname, site);
const csv = (...lines: string[]) => lines.join('\n') + '\n';

describe('node-event files', () => {
  it('expands a rack to its nodes and takes single nodes, at hours of the replay', () => {
    const events = parseNodeEvents(
      csv('at_hours,target,state', '48,sp2-r03,down   # a rack', '', '216,sp2-r03,up', '1.5,sp1-r01-t07,draining'),
      'whatif.csv',
      site,
    );
    expect(events.filter((e) => e.state === 'down')).toHaveLength(18);
    expect(events.filter((e) => e.state === 'down').every((e) => e.at === 48 * 3600 && e.node.startsWith('sp2-r03-'))).toBe(true);
    expect(events.filter((e) => e.state === 'up')).toHaveLength(18);
    expect(events.find((e) => e.node === 'sp1-r01-t07')).toEqual({ at: 5400, node: 'sp1-r01-t07', state: 'draining' });
  });

  it.each([
    [csv('time,node,state', '1,sp2-r03,down'), 'line 1', "the header must be 'at_hours,target,state'"],
    [csv('at_hours,target,state', '1,sp2-r03'), 'line 2', 'expected 3 fields, got 2'],
    [csv('at_hours,target,state', '-1,sp2-r03,down'), 'line 2', "at_hours must be a number of hours ≥ 0, got '-1'"],
    [
      csv('at_hours,target,state', '1,sp2-r03,broken'),
      'line 2',
      "state must be one of up, draining, down, maintenance, got 'broken'",
    ],
    [csv('at_hours,target,state', '1,sp9-r01,down'), 'line 2', "'sp9-r01' is neither a rack nor a node of site se-factory"],
  ])('says what is wrong, and where: %#', (text, path, problem) => {
    expect(failure(() => parseNodeEvents(text, 'whatif.csv', site))).toMatchObject({ file: 'whatif.csv', path, problem });
  });

  it('two racks down for a day make jobs wait longer, and every job still finishes', () => {
    const philly = readFileSync(new URL('../../../shared/data/traces/philly-2017-10-02-to-10-15.csv', import.meta.url), 'utf8');
    const trace = parseTrace(philly.split('\n').slice(0, 801).join('\n'), 'philly-slice');
    const events = parseNodeEvents(
      csv('at_hours,target,state', '2,sp1-r01,down', '2,sp1-r02,down', '26,sp1-r01,up', '26,sp1-r02,up'),
      'whatif.csv',
      site,
    );
    const o = { site, consortium, trace, policies: ['fabrik'], seed: 1, load: 0.9 };
    const normal = runStudy(o).policies.fabrik.summary;
    const degraded = runStudy({ ...o, nodeEvents: events }).policies.fabrik.summary;
    expect(degraded.avg_wait_s).toBeGreaterThan(normal.avg_wait_s);
    expect(degraded.jobs).toBe(800);
  });
});

// What-if timelines for the digital twin: nodes or whole racks that go down, drain or come back
// at given hours of the replay ("two racks down for a week"). A small CSV, so a board member can
// write one in a spreadsheet:
//
//   at_hours,target,state
//   48,sp2-r03,down          # a rack (an NVLink domain): every node of it
//   216,sp2-r03,up
//   100,sp1-r01-t07,draining # one node
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { InvalidDescriptionError } from '../core/errors.js';
import { NODE_STATES, type NodeState, type Site } from '../core/site.js';
import type { NodeEvent } from './engine.js';

/** Reads a node-event CSV for a site; every problem names the file and the line. */
export function parseNodeEvents(text: string, file: string, site: Site): NodeEvent[] {
  const nodes = new Set(site.nodes.map((n) => n.name));
  const racks = new Map(site.domains.map((d) => [d.name, d.nodes.map((i) => site.nodes[i].name)]));
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = lines[0]?.split('#')[0].trim().toLowerCase().replace(/\s/g, '');
  if (header !== 'at_hours,target,state')
    throw new InvalidDescriptionError(file, 'line 1', "the header must be 'at_hours,target,state'");
  const events: NodeEvent[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].split('#')[0].trim();
    if (line === '') continue;
    const where = `line ${i + 1}`;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length !== 3) throw new InvalidDescriptionError(file, where, `expected 3 fields, got ${fields.length}`);
    const [at, target, state] = fields;
    const hours = Number(at);
    if (at === '' || !Number.isFinite(hours) || hours < 0)
      throw new InvalidDescriptionError(file, where, `at_hours must be a number of hours ≥ 0, got '${at}'`);
    if (!(NODE_STATES as readonly string[]).includes(state))
      throw new InvalidDescriptionError(file, where, `state must be one of ${NODE_STATES.join(', ')}, got '${state}'`);
    const names = racks.get(target) ?? (nodes.has(target) ? [target] : null);
    if (!names) throw new InvalidDescriptionError(file, where, `'${target}' is neither a rack nor a node of site ${site.name}`);
    for (const node of names) events.push({ at: hours * 3600, node, state: state as NodeState });
  }
  return events;
}

export function readNodeEvents(path: string, site: Site): NodeEvent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InvalidDescriptionError(basename(path), '', `cannot read: ${(e as Error).message}`);
  }
  return parseNodeEvents(text, path, site);
}

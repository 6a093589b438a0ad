// The command table main.ts loads from: each module defines exactly the commands it is listed
// with (so `fabrik <name>` loads the module that has it), no name twice, and help sees them all.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { COMMAND_MODULES, modulesFor } from '../../src/cli/commands.js';

describe('the command table', () => {
  it('lists, for every module, the commands it defines, in order, each name once', async () => {
    const all: string[] = [];
    for (const m of COMMAND_MODULES) {
      const defined = (await m.load()).map((c) => c.name());
      expect(defined).toEqual(m.names);
      all.push(...defined);
    }
    expect(new Set(all).size).toBe(all.length);
  });

  it("loads the named command's module only; help, an option first or a command nobody has: all of them", () => {
    expect(modulesFor(['engine', '--model', 'm']).map((m) => m.names)).toEqual([['engine']]);
    expect(modulesFor(['--verbose', 'queue']).map((m) => m.names)).toEqual([
      ['queue', 'jobs', 'cancel', 'logs', 'explain', 'nodes', 'members', 'tokens'],
    ]);
    for (const args of [[], ['--help'], ['help', 'up'], ['nosuch']]) expect(modulesFor(args)).toBe(COMMAND_MODULES);
  });

  it('fabrik --help lists every command; an unknown one is a message, not a trace', () => {
    const bin = new URL('../../bin/fabrik', import.meta.url).pathname;
    const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const m of COMMAND_MODULES) for (const name of m.names) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    const unknown = spawnSync(bin, ['nosuch'], { encoding: 'utf8' });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr.trim()).toBe("error: unknown command 'nosuch'");
  });
});

// Every command of the CLI, and the module that defines it. `fabrik` loads only the module of the
// command it runs: the control plane's modules (the server, the store drivers, Cedar, fastify)
// take about a second to import, which `fabrik queue` on a laptop and a replica's `fabrik engine`
// on a GPU node should not pay (bench/cli.ts). Help without a command loads them all.
import type { Command } from 'commander';
import { DEFAULT_DATA_DIR } from './client.js';

const DEFAULT_SITE = new URL('../../sites/se-factory.yaml', import.meta.url).pathname;
const DEFAULT_CONSORTIUM = new URL('../../consortia/demo.yaml', import.meta.url).pathname;

export interface CommandModule {
  /** The top-level commands it defines, in the order help lists them (test/cli/commands.test.ts checks them). */
  readonly names: readonly string[];
  load(): Promise<Command[]>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  {
    names: ['demo', 'validate'],
    load: async () => (await import('./demo.js')).demoCommands({ site: DEFAULT_SITE, consortium: DEFAULT_CONSORTIUM }),
  },
  { names: ['sim'], load: async () => [(await import('./sim.js')).simCommand()] },
  { names: ['site'], load: async () => [(await import('./site.js')).siteCommand()] },
  {
    names: ['up'],
    load: async () => [
      (await import('./up.js')).upCommand({ site: DEFAULT_SITE, consortium: DEFAULT_CONSORTIUM, dataDir: DEFAULT_DATA_DIR }),
    ],
  },
  { names: ['submit'], load: async () => [(await import('./submit.js')).submitCommand()] },
  {
    names: ['queue', 'jobs', 'cancel', 'logs', 'explain', 'nodes', 'members', 'tokens'],
    load: async () => (await import('./control.js')).controlCommands(),
  },
  { names: ['show', 'checkpoint'], load: async () => (await import('./checkpoint.js')).checkpointCommands() },
  { names: ['users'], load: async () => [(await import('./users.js')).usersCommand()] },
  { names: ['audit'], load: async () => [(await import('./audit.js')).auditCommand()] },
  {
    names: ['datasets', 'agreements', 'policies'],
    load: async () => (await import('./governance.js')).governanceCommands(),
  },
  {
    names: ['models', 'approvals'],
    load: async () => {
      const m = await import('./models.js');
      return [m.modelsCommand(), m.approvalsCommand()];
    },
  },
  { names: ['engine'], load: async () => [(await import('./engine.js')).engineCommand()] },
  { names: ['deploy', 'deployments'], load: async () => (await import('./deployments.js')).deploymentCommands() },
  { names: ['reservations'], load: async () => [(await import('./reservations.js')).reservationsCommand()] },
  {
    names: ['keys', 'usage', 'gateway'],
    load: async () => {
      const m = await import('./keys.js');
      return [m.keysCommand(), m.usageCommand(), m.gatewayCommand()];
    },
  },
];

/** The modules to load for these arguments: the named command's, or all (help, or a command nobody defines). */
export function modulesFor(args: readonly string[]): readonly CommandModule[] {
  const name = args.find((a) => !a.startsWith('-'));
  const one = COMMAND_MODULES.find((m) => name !== undefined && m.names.includes(name));
  return one ? [one] : COMMAND_MODULES;
}

#!/usr/bin/env node
// fabrik: the command line. Only the module of the command being run is loaded (commands.ts).
// Errors in what a person typed or wrote are messages, not stack traces (errors.ts).
import { Command } from 'commander';
import { modulesFor } from './commands.js';
import { cliFailure } from './errors.js';

// Positional: the arguments after a command are all its own, so that `fabrik sim generate --shape`
// is generate's --shape, not sim's (the root has no options of its own).
const program = new Command('fabrik')
  .description('Fabrik: the control plane of a sovereign AI factory.')
  .enablePositionalOptions();
for (const m of modulesFor(process.argv.slice(2))) for (const c of await m.load()) program.addCommand(c);

try {
  await program.parseAsync();
} catch (e) {
  const failure = cliFailure(e);
  if (!failure) throw e;
  console.error(failure.line);
  process.exit(failure.code);
}

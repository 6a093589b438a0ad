#!/usr/bin/env node
// fabrik: the command line. Errors in what a person typed or wrote are messages, not stack traces.
import { Command, InvalidArgumentError } from 'commander';
import { InvalidEnvironmentError, loadConsortium, loadSite } from '../config/index.js';
import { InvalidDescriptionError } from '../core/errors.js';
import { SlurmRestError } from '../executors/slurm-rest.js';
import { SiteMismatchError } from '../server/site.js';
import { UnknownPolicyError } from '../sim/run.js';
import { AuditFileError, AuditVerificationError, auditCommand } from './audit.js';
import { ApiRequestError, DEFAULT_DATA_DIR, UnreachableError } from './client.js';
import { controlCommands } from './control.js';
import { engineCommand, EngineUsageError } from './engine.js';
import { governanceCommands, GovernanceUsageError } from './governance.js';
import { approvalsCommand, modelsCommand } from './models.js';
import { deploymentCommands } from './deployments.js';
import { runDemo } from './demo.js';
import { simCommand } from './sim.js';
import { siteCommand, SiteImportError } from './site.js';
import { StoreMigrationError, StoreUnavailableError, StoreUrlError } from '../store/index.js';
import { submitCommand, SubmitUsageError } from './submit.js';
import { upCommand } from './up.js';
import { gatewayCommand, keysCommand, usageCommand } from './keys.js';

const DEFAULT_SITE = new URL('../../sites/se-factory.yaml', import.meta.url).pathname;
const DEFAULT_CONSORTIUM = new URL('../../consortia/demo.yaml', import.meta.url).pathname;

function positive(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${v}'.`);
    return n;
  };
}

const program = new Command('fabrik').description('Fabrik: the control plane of a sovereign AI factory.');

program
  .command('demo')
  .description('run the demo consortium on the site through the scheduler, with a synthetic stream of jobs')
  .option('--site <file>', 'site description (YAML)', DEFAULT_SITE)
  .option('--consortium <file>', 'consortium description (YAML)', DEFAULT_CONSORTIUM)
  .option('--hours <n>', 'simulated hours', positive('--hours'), 24)
  .option('--step-minutes <n>', 'minutes between scheduling cycles', positive('--step-minutes'), 5)
  .option(
    '--arrivals-per-hour <n>',
    'jobs submitted per hour (16 is about the machine, fully used)',
    positive('--arrivals-per-hour'),
    16,
  )
  .option('--seed <n>', 'seed of the synthetic workload', positive('--seed'), 7)
  .option('--show <n>', 'waiting jobs to list at the end', positive('--show'), 15)
  .action((o) => {
    const site = loadSite(o.site);
    runDemo(site, loadConsortium(o.consortium, site), o, (line) => console.log(line));
  });

program
  .command('validate')
  .description('check a site description, and a consortium against it')
  .requiredOption('--site <file>', 'site description (YAML)')
  .option('--consortium <file>', 'consortium description (YAML)')
  .action((o) => {
    const site = loadSite(o.site);
    console.log(
      `${o.site}: site ${site.name}, ${site.totalGpus} GPUs, ${site.domains.length} NVLink domains, ${site.nodes.length} nodes, zones ${site.zones.join(', ')}`,
    );
    if (o.consortium) {
      const c = loadConsortium(o.consortium, site);
      const entitled = c.members.reduce((s, m) => s + m.entitlementGpus, 0);
      console.log(`${o.consortium}: consortium ${c.name}, ${c.members.length} members entitled to ${entitled} GPUs`);
    }
  });

program.addCommand(simCommand());
program.addCommand(siteCommand());
program.addCommand(upCommand({ site: DEFAULT_SITE, consortium: DEFAULT_CONSORTIUM, dataDir: DEFAULT_DATA_DIR }));
program.addCommand(submitCommand());
for (const c of controlCommands()) program.addCommand(c);
program.addCommand(auditCommand());
for (const c of governanceCommands()) program.addCommand(c);
program.addCommand(modelsCommand());
program.addCommand(approvalsCommand());
program.addCommand(engineCommand());
for (const c of deploymentCommands()) program.addCommand(c);
program.addCommand(keysCommand());
program.addCommand(usageCommand());
program.addCommand(gatewayCommand());

/** Errors in what a person typed or wrote (exit 2), or in reaching Fabrik, its store or Slurm (exit 1): a line, not a trace. */
const USAGE_ERRORS = [
  GovernanceUsageError,
  InvalidDescriptionError,
  UnknownPolicyError,
  SubmitUsageError,
  InvalidEnvironmentError,
  SiteImportError,
  SiteMismatchError,
  AuditFileError,
  EngineUsageError,
];
const REACH_ERRORS = [UnreachableError, StoreUrlError, StoreUnavailableError, StoreMigrationError, SlurmRestError];
/** A check that ran and failed (exit 1): the message names what failed. */
const FAILED_CHECKS = [AuditVerificationError];

try {
  await program.parseAsync();
} catch (e) {
  if (USAGE_ERRORS.some((kind) => e instanceof kind)) {
    console.error(`fabrik: ${(e as Error).message}`);
    process.exit(2);
  }
  if (e instanceof ApiRequestError) {
    // Validation messages already start with the field they are about: named once.
    const field = e.field && !e.message.startsWith(e.field) ? ` (${e.field})` : '';
    console.error(`fabrik: ${e.message}${field} [${e.code}]`);
    process.exit(1);
  }
  if ([...REACH_ERRORS, ...FAILED_CHECKS].some((kind) => e instanceof kind)) {
    console.error(`fabrik: ${(e as Error).message}`);
    process.exit(1);
  }
  // `fabrik up` on a port another program holds.
  if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    console.error(`fabrik: ${(e as Error).message}: another program listens there; choose another with --port`);
    process.exit(1);
  }
  throw e;
}

// `fabrik deploy` and `fabrik deployments` (list, show, scale, delete): model endpoints over the
// API. Tables for people, --json for scripts.
import { isAbsolute, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { DeploymentView } from '../inference/deployments/api.js';
import { table } from './table.js';
import { client, commaList, json } from './output.js';
import { line } from './printable.js';

function int(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min)
      throw new InvalidArgumentError(`${name} must be a whole number of at least ${min}, got '${v}'.`);
    return n;
  };
}
/** `--scale-to-zero 300`, or `off` to turn it off (scale only). */
function idleSeconds(v: string): number | null {
  if (v === 'off' || v === 'never') return null;
  return int('--scale-to-zero', 1)(v);
}

const replicasLine = (d: DeploymentView) =>
  `${d.ready}/${d.target}${d.target === 0 && d.scaleToZeroSeconds !== null ? ' (asleep)' : ''}`;

function show(d: DeploymentView): void {
  console.log(line`deployment ${d.id}: model ${d.model} (member ${d.member}, project ${d.project}) ${d.state}`);
  console.log(line`  command        ${d.command.join(' ')}`);
  console.log(line`  replicas       ${replicasLine(d)} ready; min ${d.min}, max ${d.max}; ${d.gpus} GPU(s) each`);
  console.log(
    line`  accredited for ${d.accreditations.join(', ')}; zone ${d.zone ?? 'any'}${d.reasoning ? '; reasoning model' : ''}`,
  );
  console.log(line`  scale to zero  ${d.scaleToZeroSeconds === null ? 'off' : `after ${d.scaleToZeroSeconds} s idle`}`);
  if (d.replicas.length === 0) return;
  console.log(
    table(
      ['  JOB', 'REPLICA', 'STATE', 'NODE', 'URL', 'HEALTHY', 'IN FLIGHT', 'QUEUED TOKENS'],
      d.replicas.map((r) => [
        `  ${r.id}`,
        `r${r.replica}`,
        r.state,
        r.node ?? '-',
        r.url ?? '-',
        r.healthy ? 'yes' : 'no',
        String(r.inFlight),
        String(r.queuedTokens),
      ]),
    ).join('\n'),
  );
}

export function deploymentCommands(): Command[] {
  const deploy = new Command('deploy')
    .description(
      'deploy a model endpoint: replicas run COMMAND (an OpenAI-compatible server on $FABRIK_ENGINE_PORT) as inference jobs',
    )
    .requiredOption('--model <name>', 'the model name clients call')
    .option('--gpus <n>', 'GPUs per replica', int('--gpus', 1), 1)
    .option('--min <n>', 'replicas kept while awake', int('--min', 1), 1)
    .option('--max <n>', 'most replicas the load may ask for (default: min)', int('--max', 1))
    .option('--accredited <list>', 'data classifications it may process (public,internal,confidential,restricted)', commaList)
    .option('--zone <zone>', 'zone its replicas run in')
    .option('--reasoning', 'a reasoning model (the gateway reserves its worst-case budget)')
    .option(
      '--scale-to-zero <seconds>',
      'stop every replica after this long idle; the next request brings one up',
      int('--scale-to-zero', 1),
    )
    // Once operators' way to deploy for a member: refused with why, never dropped quietly.
    .addOption(
      new Option('--member <id>').hideHelp().argParser(() => {
        throw new InvalidArgumentError(
          "Fabrik no longer takes --member: a deployment is your token's member's, made by its people; an operator runs the machine, not a member's work (it may delete a deployment)",
        );
      }),
    )
    .option('--project <id>', 'the project its GPU-hours are charged to')
    .option('--json', 'JSON for scripts')
    .argument('<command...>', 'the engine command, after --')
    .action(async (argv: string[], o) => {
      if (o.max !== undefined && o.max < o.min) deploy.error(`error: --max (${o.max}) is below --min (${o.min}).`);
      // Replicas run in their job's folder: a program named by a relative path (bin/fabrik) is
      // made absolute here, where the user typed it, as sbatch resolves its script at submission.
      const command = argv[0].includes('/') && !isAbsolute(argv[0]) ? [resolve(argv[0]), ...argv.slice(1)] : argv;
      const d = await client().request<DeploymentView>('POST', '/v1/deployments', {
        model: o.model,
        command,
        gpus: o.gpus,
        min: o.min,
        ...(o.max !== undefined ? { max: o.max } : {}),
        ...(o.accredited ? { accreditations: o.accredited } : {}),
        ...(o.zone ? { zone: o.zone } : {}),
        ...(o.reasoning ? { reasoning: true } : {}),
        ...(o.scaleToZero !== undefined ? { scaleToZeroSeconds: o.scaleToZero } : {}),
        ...(o.project ? { project: o.project } : {}),
      });
      if (o.json) return json(d);
      console.log(
        line`deployment ${d.id}: model ${d.model}, ${d.min}–${d.max} replicas of ${d.gpus} GPU(s); see \`fabrik deployments show ${d.id}\``,
      );
    });

  const deployments = new Command('deployments').description('model deployments: list, show, scale, delete');
  deployments
    .command('list', { isDefault: true })
    .description("your member's deployments and their replicas")
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ deployments: DeploymentView[] }>('GET', '/v1/deployments');
      if (o.json) return json(r.deployments);
      console.log(
        table(
          ['ID', 'MODEL', 'MEMBER', 'READY', 'MIN', 'MAX', 'GPUS', 'ACCREDITED', 'ZONE', 'SCALE-TO-ZERO'],
          r.deployments.map((d) => [
            d.id,
            d.model,
            d.member,
            replicasLine(d),
            String(d.min),
            String(d.max),
            String(d.gpus),
            d.accreditations.join(','),
            d.zone ?? '*',
            d.scaleToZeroSeconds === null ? 'off' : `${d.scaleToZeroSeconds}s`,
          ]),
        ).join('\n'),
      );
    });
  deployments
    .command('show')
    .argument('<id>')
    .description('a deployment and each replica: job, state, URL, health, load')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const d = await client().request<DeploymentView>('GET', `/v1/deployments/${encodeURIComponent(id)}`);
      if (o.json) return json(d);
      show(d);
    });
  deployments
    .command('scale')
    .argument('<id>')
    .description('new bounds for the autoscaler (the replica count moves inside them at once), or scale to zero on or off')
    .option('--min <n>', 'replicas kept while awake', int('--min', 1))
    .option('--max <n>', 'most replicas', int('--max', 1))
    .option('--scale-to-zero <seconds|off>', 'idle seconds before scaling to zero, or off', idleSeconds)
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o, cmd: Command) => {
      if (o.min !== undefined && o.max !== undefined && o.max < o.min)
        cmd.error(`error: --max (${o.max}) is below --min (${o.min}).`);
      const d = await client().request<DeploymentView>('PATCH', `/v1/deployments/${encodeURIComponent(id)}`, {
        ...(o.min !== undefined ? { min: o.min } : {}),
        ...(o.max !== undefined ? { max: o.max } : {}),
        ...(o.scaleToZero !== undefined ? { scaleToZeroSeconds: o.scaleToZero } : {}),
      });
      if (o.json) return json(d);
      console.log(line`deployment ${d.id}: min ${d.min}, max ${d.max}, now ${d.target} replica(s)`);
    });
  deployments
    .command('delete')
    .argument('<id>')
    .description('delete a deployment and stop its replicas')
    .action(async (id: string) => {
      const d = await client().request<DeploymentView>('DELETE', `/v1/deployments/${encodeURIComponent(id)}`);
      console.log(line`deployment ${d.id} (${d.model}): deleted; its replicas are stopping`);
    });
  return [deploy, deployments];
}

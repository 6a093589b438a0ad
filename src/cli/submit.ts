// `fabrik submit`: sbatch's flags and #SBATCH directives (see sbatch.ts), sent to the API with an
// Idempotency-Key, so that a retry after a network error never makes two jobs.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Command } from 'commander';
import type { JobView } from '../api/contract.js';
import { ApiClient, ApiRequestError } from './client.js';
import { parseSubmission, scriptPathOf, SubmitOptionsError } from './sbatch.js';

/** What was typed cannot be submitted: the message says what to change. */
export class SubmitUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubmitUsageError';
  }
}

/** Fabrik's own flags, taken out before the sbatch options are read. */
function ownFlags(args: string[]): { args: string[]; json: boolean; parsable: boolean } {
  const rest: string[] = [];
  let json = false;
  let parsable = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--') {
      rest.push(...args.slice(i));
      break;
    }
    if (args[i] === '--json') json = true;
    else if (args[i] === '--parsable') parsable = true;
    else rest.push(args[i]);
  }
  return { args: rest, json, parsable };
}

export function submitCommand(): Command {
  return new Command('submit')
    .description('submit a job: sbatch flags and #SBATCH directives; a script, --wrap "cmd", or -- cmd args')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (raw: string[]) => {
      const { args, json, parsable } = ownFlags(raw);
      if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
        console.log(
          'usage: fabrik submit [sbatch options] (script.sh | --wrap "command" | -- command args…) [--json | --parsable]',
        );
        console.log(
          'Options follow sbatch: -N, --gpus, --gpus-per-node, --gres, -t, -J, -A, -p, --qos, -o, -e, --array, -d afterok:…, --signal, …',
        );
        console.log(
          '--export (default ALL) never sends FABRIK_* variables or API tokens; --secret-env NAME sends $NAME encrypted, shown to no one.',
        );
        return;
      }
      const path = scriptPathOf(args);
      if (path !== null && !existsSync(path)) throw new SubmitUsageError(`no such batch script: ${path}`);
      let parsed;
      try {
        parsed = parseSubmission({
          args,
          script: path === null ? null : { path, text: readFileSync(path, 'utf8') },
          env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined)),
        });
      } catch (e) {
        if (e instanceof SubmitOptionsError) throw new SubmitUsageError(e.message);
        throw e;
      }
      for (const w of parsed.warnings) console.error(`fabrik: warning: ${w}`);
      const client = ApiClient.fromEnv();
      const key = randomUUID();
      let r: { jobs: JobView[] };
      try {
        r = await client.request('POST', '/v1/jobs', parsed.request, { 'idempotency-key': key });
      } catch (e) {
        // One retry with the same key: if the first call was stored, this returns that job.
        if (e instanceof ApiRequestError) throw e;
        r = await client.request('POST', '/v1/jobs', parsed.request, { 'idempotency-key': key });
      }
      if (json) return console.log(JSON.stringify(r.jobs, null, 2));
      const first = r.jobs[0];
      if (parsable) return console.log(first.arrayJobId ?? first.id);
      if (r.jobs.length > 1)
        console.log(
          `Submitted batch job ${first.arrayJobId} (${r.jobs.length} array tasks: ${first.id}–${r.jobs[r.jobs.length - 1].id})`,
        );
      else console.log(`Submitted batch job ${first.id}`);
    });
}

// `fabrik checkpoint JOB`: a running job (or its owner) says it has just saved its state, so a
// preemption from now on costs only the work after it. `fabrik show JOB`: one job's record, like
// `scontrol show job`, its last checkpoint included.
import { Command } from 'commander';
import type { JobView } from '../api/contract.js';
import { line } from './printable.js';
import { client, json } from './output.js';

export function checkpointCommands(): Command[] {
  const checkpoint = new Command('checkpoint')
    .description(
      "report that a running job has just saved a checkpoint (its owner, or the job with its owner's token): a preemption then loses only the work after it",
    )
    .argument('<id>', 'job id')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const j = await client().request<JobView>('POST', `/v1/jobs/${encodeURIComponent(id)}/checkpoints`);
      if (o.json) return json(j);
      console.log(line`job ${j.id}: checkpoint recorded at ${j.lastCheckpointAt ?? ''}`);
    });

  const show = new Command('show')
    .description("one job's record, like scontrol show job")
    .argument('<id>', 'job id')
    .option('--json', 'JSON for scripts')
    .action(async (id: string, o) => {
      const j = await client().request<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
      if (o.json) return json(j);
      const fields: [string, string | number | null][] = [
        ['JobId', j.id],
        ['JobName', j.name],
        ['Member', j.member],
        ['Project', j.project],
        ['User', j.user],
        ['JobState', j.state.toUpperCase()],
        ['Reason', j.reason],
        ['Priority', j.priorityClass],
        ['GPUs', j.gpus],
        ['TimeLimit', j.walltimeSeconds],
        ['SubmitTime', j.submittedAt],
        ['StartTime', j.startedAt],
        ['EndTime', j.endedAt],
        ['LastCheckpoint', j.lastCheckpointAt],
        ['ExitCode', j.exitCode],
        ['Requeues', j.requeues],
        ['NodeList', j.placement?.map((p) => `${p.node}[${p.gpus.join(',')}]`).join(',') ?? null],
      ];
      for (const [k, v] of fields) console.log(line`${k}=${v === null ? '(null)' : String(v)}`);
    });

  return [show, checkpoint];
}

// `fabrik submit`'s sbatch compatibility: every option's mapping to SubmitRequest, the `#SBATCH`
// directives read as sbatch reads them, the command line over the script, every bad option named
// at once, and fuzzing that nothing but SubmitOptionsError ever escapes.
//
// Reproduce a property failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run <this file>.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SubmitRequest } from '../../src/api/contract.js';
import {
  parseArraySpec,
  parseSubmission,
  scriptPathOf,
  SubmitOptionsError,
  type ParsedSubmission,
  type SubmissionInput,
  type SubmitProblem,
} from '../../src/cli/sbatch.js';

const MAX_WALLTIME = 366 * 86_400;

/** `fabrik submit <options> -- true`: the options alone, without a script. */
function run(options: string[], env: Record<string, string> = {}): ParsedSubmission {
  return parseSubmission({ args: [...options, '--', 'true'], env });
}

/** `fabrik submit <args> job.sh` with this script. */
function batch(text: string, args: string[] = [], env: Record<string, string> = {}): ParsedSubmission {
  return parseSubmission({ args: [...args, 'job.sh'], script: { path: 'job.sh', text }, env });
}

function problemsOf(input: SubmissionInput): SubmitProblem[] {
  try {
    parseSubmission(input);
  } catch (e) {
    if (e instanceof SubmitOptionsError) return e.problems;
    throw e;
  }
  throw new Error('expected a SubmitOptionsError');
}

const problemsWith = (options: string[]) => problemsOf({ args: [...options, '--', 'true'], env: {} });

describe('each option, and what it sets', () => {
  it.each<[string[], Partial<SubmitRequest>]>([
    // nodes and GPUs
    [['-N', '2', '--gpus-per-node=4'], { nodes: 2, gpusPerNode: 4 }],
    [['-N2', '--gpus-per-node', '4'], { nodes: 2, gpusPerNode: 4 }],
    [['--nodes=36', '--gpus-per-node=gb300:4'], { nodes: 36, gpusPerNode: 4 }],
    [['--gpus-per-node=4'], { nodes: 1, gpusPerNode: 4 }],
    [['--gpus=8'], { gpus: 8 }],
    [['-G', '8'], { gpus: 8 }],
    [['-G8'], { gpus: 8 }],
    [['--gpus=gb300:8'], { gpus: 8 }],
    [['--gpus=8', '-N', '2'], { nodes: 2, gpusPerNode: 4 }],
    [['--gpus=8', '--gpus-per-node=4'], { nodes: 2, gpusPerNode: 4 }],
    [['--gpus=8', '--gpus-per-node=4', '-N2'], { nodes: 2, gpusPerNode: 4 }],
    [['--gres=gpu:4'], { nodes: 1, gpusPerNode: 4 }],
    [['--gres=gpu:4', '-N', '3'], { nodes: 3, gpusPerNode: 4 }],
    [['--gres=gpu:gb300:4', '-N', '3'], { nodes: 3, gpusPerNode: 4 }],
    [['--gres=gpu'], { nodes: 1, gpusPerNode: 1 }],
    [['--gres=gpu:gb300'], { nodes: 1, gpusPerNode: 1 }],
    [['--gres=gpu:2,nvme:1'], { nodes: 1, gpusPerNode: 2 }],
    [['-N', '1'], {}],
    // CPUs and memory
    [['-c', '8'], { cpusPerTask: 8 }],
    [['--cpus-per-task=16'], { cpusPerTask: 16 }],
    [['--mem=512'], { memoryMb: 512 }],
    [['--mem=512M'], { memoryMb: 512 }],
    [['--mem=64G'], { memoryMb: 65_536 }],
    [['--mem=64g'], { memoryMb: 65_536 }],
    [['--mem=1T'], { memoryMb: 1_048_576 }],
    [['--mem=2048K'], { memoryMb: 2 }],
    [['--mem=1K'], { memoryMb: 1 }],
    // time
    [['-t', '30'], { walltimeSeconds: 1800 }],
    [['-t30'], { walltimeSeconds: 1800 }],
    [['--time=5:30'], { walltimeSeconds: 330 }],
    [['--time=12:00:00'], { walltimeSeconds: 43_200 }],
    [['--time=2-12'], { walltimeSeconds: 216_000 }],
    [['--time=1-2:30'], { walltimeSeconds: 95_400 }],
    [['--time=2-00:00:00'], { walltimeSeconds: 172_800 }],
    [['--time=366-00:00:00'], { walltimeSeconds: MAX_WALLTIME }],
    // who and where
    [['-J', 'train'], { name: 'train' }],
    [['--job-name=llm pretrain'], { name: 'llm pretrain' }],
    [['-A', 'nlp-lab'], { project: 'nlp-lab' }],
    [['--account=NLP-Lab'], { project: 'nlp-lab' }],
    [['-p', 'sovereign'], { zone: 'sovereign' }],
    [['--partition=general'], { zone: 'general' }],
    [['-D', '/scratch/run1'], { workdir: '/scratch/run1' }],
    [['--chdir=/scratch/run1'], { workdir: '/scratch/run1' }],
    // priority classes, Fabrik's and Slurm-style names
    [['--qos=inference'], { priorityClass: 'inference' }],
    [['--qos=training'], { priorityClass: 'training' }],
    [['-q', 'batch'], { priorityClass: 'batch' }],
    [['--qos=lab'], { priorityClass: 'lab' }],
    [['--qos=Normal'], { priorityClass: 'training' }],
    [['--qos=standby'], { priorityClass: 'batch' }],
    [['--qos=preemptible'], { priorityClass: 'batch' }],
    [['--qos=low'], { priorityClass: 'lab' }],
    [['--qos=scavenger'], { priorityClass: 'lab' }],
    [['--priority-class=batch'], { priorityClass: 'batch' }],
    // logs
    [['-o', 'train-%j.out'], { output: 'train-%j.out' }],
    [['--output=%x-%A_%a.log'], { output: '%x-%A_%a.log' }],
    [['-e', 'err-%j.txt'], { error: 'err-%j.txt' }],
    [['--error=100%%.txt'], { error: '100%%.txt' }],
    [['--output=none'], { output: '/dev/null' }],
    // scheduling
    [['--exclusive'], { exclusive: true }],
    // data-use admission
    [
      ['--dataset', 'trials,genomes', '--purpose', 'drug-discovery'],
      { datasets: ['trials', 'genomes'], purpose: 'drug-discovery' },
    ],
    [['--datasets=trials', '--purpose=qa'], { datasets: ['trials'], purpose: 'qa' }],
    [['--requeue'], { requeue: true }],
    [['--no-requeue'], { requeue: false }],
    [['--requeue', '--no-requeue'], { requeue: false }],
    [['--array=0-3'], { array: { indices: [0, 1, 2, 3], throttle: null } }],
    [['-a', '1,3,5'], { array: { indices: [1, 3, 5], throttle: null } }],
    [['--array=0-15:4'], { array: { indices: [0, 4, 8, 12], throttle: null } }],
    [['--array=0-3%2'], { array: { indices: [0, 1, 2, 3], throttle: 2 } }],
    [['--array=1-3,7,10-20:5%2'], { array: { indices: [1, 2, 3, 7, 10, 15, 20], throttle: 2 } }],
    [['--array=5,1-3,2'], { array: { indices: [1, 2, 3, 5], throttle: null } }],
    [['--dependency=afterok:123'], { afterOk: ['123'] }],
    [['-d', 'afterok:123:456'], { afterOk: ['123', '456'] }],
    [['--dependency=afterok:123,afterok:456:123'], { afterOk: ['123', '456'] }],
    [['--signal=B:USR1@300'], { signal: 'USR1', gracePeriodSeconds: 300 }],
    [['--signal=SIGUSR2@120'], { signal: 'USR2', gracePeriodSeconds: 120 }],
    [['--signal=10@90'], { signal: 'USR1', gracePeriodSeconds: 90 }],
    [['--signal=15'], { signal: 'TERM', gracePeriodSeconds: 60 }],
    [['--signal=int@0'], { signal: 'INT', gracePeriodSeconds: 0 }],
    [['--signal=HUP', '--grace=5'], { signal: 'HUP', gracePeriodSeconds: 5 }],
    [['--grace=5', '--signal=HUP'], { signal: 'HUP', gracePeriodSeconds: 5 }],
    [['--grace=5', '--signal=HUP@7'], { signal: 'HUP', gracePeriodSeconds: 7 }],
    // Fabrik extensions
    [['--topology', 'required'], { topology: 'required' }],
    [['--topology=none'], { topology: 'none' }],
    [['--checkpoint-interval=30'], { checkpointIntervalSeconds: 1800 }],
    [['--checkpoint-interval=1:00:00'], { checkpointIntervalSeconds: 3600 }],
    [['--checkpoint-interval=none'], { checkpointIntervalSeconds: null }],
    [['--checkpoint-interval=UNLIMITED'], { checkpointIntervalSeconds: null }],
    [['--min-runtime=10'], { minRuntimeSeconds: 600 }],
    [['--min-runtime=0'], { minRuntimeSeconds: 0 }],
    [['--grace=120'], { gracePeriodSeconds: 120 }],
    // getopt's rules: unambiguous prefixes, clustered short options
    [['--job=x'], { name: 'x' }],
    [['--cpus-per-t=4'], { cpusPerTask: 4 }],
    [['--part', 'sovereign'], { zone: 'sovereign' }],
    [['--gpus-per-nod=4'], { nodes: 1, gpusPerNode: 4 }],
    [['-WN2', '--gpus-per-node=4'], { nodes: 2, gpusPerNode: 4 }],
  ])('%j', (options, expected) => {
    const { request } = run(options);
    expect(request).toMatchObject(expected);
    expect(SubmitRequest.safeParse(request).success).toBe(true);
  });

  it('leaves unset what no option sets: the server applies the contract defaults', () => {
    const { request } = run([]);
    expect(request).toEqual({ command: ['true'], name: 'true', env: {} });
  });

  it('sends no memory for --mem=0, and says so', () => {
    const { request, warnings } = run(['--mem=0']);
    expect(request.memoryMb).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/^--mem=0: .*no memory request/)]);
  });

  it.each(['UNLIMITED', 'INFINITE', '0', '-1'])('--time=%s is the longest time limit, with a warning', (time) => {
    const { request, warnings } = run([`--time=${time}`]);
    expect(request.walltimeSeconds).toBe(MAX_WALLTIME);
    expect(warnings).toEqual([
      `--time=${time}: Fabrik has no unlimited time limit: the job gets the longest it allows, 366 days`,
    ]);
  });
});

describe('options accepted with a warning', () => {
  it.each<[string[], RegExp]>([
    [['--constraint=gb300'], /^--constraint=gb300: ignored: Fabrik has no node features/],
    [['-C', 'ib'], /^-C ib: ignored/],
    [['--mail-type=END'], /^--mail-type=END: not honoured: Fabrik sends no mail/],
    [['--mail-user=a@b.c'], /^--mail-user=a@b.c: not honoured/],
    [['--ntasks=8'], /^--ntasks=8: not honoured: Fabrik starts one process per node/],
    [['-n', '4'], /^-n 4: not honoured/],
    [['--begin=now+1hour'], /^--begin=now\+1hour: not honoured/],
    [['-b', 'tomorrow'], /^-b tomorrow: not honoured/],
    [['--nice'], /^--nice: not honoured/],
    [['--nice=10'], /^--nice=10: not honoured/],
    [['--comment=hello'], /^--comment=hello: not honoured/],
    [['--hint=nomultithread'], /^--hint=nomultithread: not honoured/],
    [['--mem-per-cpu=4G'], /^--mem-per-cpu=4G: not honoured: give --mem/],
    [['--mem-per-gpu=80G'], /^--mem-per-gpu=80G: not honoured: give --mem/],
    [['--ntasks-per-node=4'], /^--ntasks-per-node=4: not honoured: .*start the 4 ranks per node yourself/],
    [['--tasks-per-node=4'], /^--tasks-per-node=4: not honoured/],
    [['--gpu-bind=closest'], /^--gpu-bind=closest: not honoured/],
    [['--cpu-bind=cores'], /^--cpu-bind=cores: not honoured/],
    [['--open-mode=append'], /^--open-mode=append: not honoured/],
    [['--wait'], /^--wait: not honoured/],
    [['-W'], /^-W: not honoured/],
    [['--parsable'], /^--parsable: not honoured/],
    [['--test-only'], /^--test-only: not honoured/],
    [['--nodes=2-4', '--gpus-per-node=4'], /^--nodes=2-4: Fabrik runs a gang of one size: 2 nodes, the minimum/],
    [['--gpus=gb300:8'], /^--gpus=gb300:8: the GPU type 'gb300' is not checked/],
    [['--gres=gpu:2,nvme:1'], /^--gres=gpu:2,nvme:1: ignored: nvme:1/],
    [['--output=%u-%N-%j.out'], /^--output=%u-%N-%j.out: %u %N stay as written/],
    [['--error=%n.%t.%s.err'], /^--error=%n.%t.%s.err: %n %t %s stay as written/],
    [['-D', 'runs/1'], /^-D runs\/1: a relative directory is inside the job's own folder on the execution host/],
    [['--exclusive=user'], /^--exclusive=user: read as --exclusive/],
    [['--signal=R:USR1@60'], /^--signal=R:USR1@60: 'R:' has no meaning in Fabrik/],
  ])('%j', (options, warning) => {
    const { warnings } = run(options);
    expect(warnings).toEqual([expect.stringMatching(warning)]);
  });

  it('stays quiet about task counts that are one per node', () => {
    expect(run(['--ntasks-per-node=1', '-N', '4', '-n', '4', '--gpus-per-node=4']).warnings).toEqual([]);
    expect(run(['-n', '1']).warnings).toEqual([]);
  });

  it('says that SBATCH_* input variables are not read', () => {
    const { warnings } = run([], { SBATCH_ACCOUNT: 'x', SBATCH_TIMELIMIT: '10', HOME: '/h' });
    expect(warnings).toEqual([expect.stringMatching(/^environment: SBATCH_ACCOUNT, SBATCH_TIMELIMIT not read/)]);
  });
});

describe('--export', () => {
  const env = { HOME: '/home/ada', PATH: '/usr/bin', CUDA_VISIBLE_DEVICES: '0', 'BASH_FUNC_module%%': '() { :; }' };

  it('sends the environment by default, as sbatch (ALL), leaving out names the contract refuses', () => {
    expect(run([], env).request.env).toEqual({ HOME: '/home/ada', PATH: '/usr/bin', CUDA_VISIBLE_DEVICES: '0' });
  });

  it.each<[string, Record<string, string>]>([
    ['ALL', { HOME: '/home/ada', PATH: '/usr/bin', CUDA_VISIBLE_DEVICES: '0' }],
    ['all', { HOME: '/home/ada', PATH: '/usr/bin', CUDA_VISIBLE_DEVICES: '0' }],
    ['NONE', {}],
    ['NIL', {}],
    ['HOME', { HOME: '/home/ada' }],
    ['HOME,LR=0.1', { HOME: '/home/ada', LR: '0.1' }],
    ['NONE,LR=0.1', { LR: '0.1' }],
    ['ALL,HOME=/tmp,LR=', { HOME: '/tmp', PATH: '/usr/bin', CUDA_VISIBLE_DEVICES: '0', LR: '' }],
    ['OPTS=a=b', { OPTS: 'a=b' }],
  ])('--export=%s', (spec, expected) => {
    expect(run([`--export=${spec}`], env).request.env).toEqual(expected);
  });

  it('warns about a named variable that is not set', () => {
    const { request, warnings } = run(['--export=HOME,NOPE'], env);
    expect(request.env).toEqual({ HOME: '/home/ada' });
    expect(warnings).toEqual(['--export=HOME,NOPE: not set in the environment, not exported: NOPE']);
  });

  it('leaves out values longer than the contract takes, with a warning', () => {
    const { request, warnings } = run([], { BIG: 'x'.repeat(70_000), SMALL: 'y' });
    expect(request.env).toEqual({ SMALL: 'y' });
    expect(warnings).toEqual([
      expect.stringMatching(/^--export \(default ALL\): not exported, longer than 65536 characters: BIG$/),
    ]);
  });

  it('refuses a variable named __proto__, which the API cannot carry, and leaves it out of ALL', () => {
    expect(problemsWith(['--export=__proto__=x'])).toEqual([
      { directive: '--export=__proto__=x', message: expect.stringMatching(/'__proto__' cannot be sent/) },
    ]);
    const withProto = JSON.parse('{"__proto__":"x","HOME":"/h"}') as Record<string, string>;
    expect(run([], withProto).request.env).toEqual({ HOME: '/h' });
  });
});

describe("Fabrik's credentials stay out of jobs; --secret-env", () => {
  const token = `fbk_${'A'.repeat(43)}`;
  const env = { HOME: '/home/ada', FABRIK_TOKEN: token, FABRIK_URL: 'http://f:8080', MY_COPY: `x${token}`, LR: '0.1' };

  it('--export=ALL (the default) leaves out every FABRIK_* and any value holding an API token, and names all but the CLI own', () => {
    for (const args of [[], ['--export=ALL']]) {
      const { request, warnings } = run(args, { ...env, FABRIK_STORE_COPY: 'x' });
      expect(request.env).toEqual({ HOME: '/home/ada', LR: '0.1' });
      expect(JSON.stringify(request)).not.toContain(token);
      expect(warnings).toEqual([expect.stringMatching(/not exported: FABRIK_STORE_COPY, MY_COPY \(Fabrik's own/)]);
    }
    // The CLI's own connection settings (in every shell that uses it) go unsaid; nothing left out: nothing said.
    expect(run([], { HOME: '/h', FABRIK_TOKEN: token, FABRIK_URL: 'http://f:8080' })).toMatchObject({
      request: { env: { HOME: '/h' } },
      warnings: [],
    });
    expect(run([], { HOME: '/h' }).warnings).toEqual([]);
  });

  it('refuses a credential named in --export, by name or by value, and takes a FABRIK_* setting named there', () => {
    expect(problemsOf({ args: ['--export=FABRIK_TOKEN', '--', 'true'], env })).toEqual([
      { directive: '--export=FABRIK_TOKEN', message: expect.stringMatching(/FABRIK_TOKEN is a Fabrik credential/) },
    ]);
    for (const spec of ['FABRIK_STORE=postgres://u:pw@db/f', 'FABRIK_OIDC_SECRET=x', 'fabrik_api_key=x', `X=${token}`, 'MY_COPY'])
      expect(problemsOf({ args: [`--export=${spec}`, '--', 'true'], env })[0].message, spec).toMatch(/credential|API token/);
    expect(run(['--export=FABRIK_SIMULATED_SECONDS=5,LR'], env).request.env).toEqual({
      FABRIK_SIMULATED_SECONDS: '5',
      LR: '0.1',
    });
  });

  it('--secret-env takes values from the environment, repeatable and from #SBATCH lines, and keeps them out of env', () => {
    const secrets = { ...env, HF_TOKEN: 'hf_abc', DB_PW: 's3cret', WANDB: 'w' };
    const { request } = run(['--secret-env', 'HF_TOKEN', '--secret-env=DB_PW,WANDB'], secrets);
    expect(request.secretEnv).toEqual({ HF_TOKEN: 'hf_abc', DB_PW: 's3cret', WANDB: 'w' });
    expect(Object.keys(request.env!)).not.toEqual(expect.arrayContaining(['HF_TOKEN']));
    expect(request.env).toEqual({ HOME: '/home/ada', LR: '0.1' });
    const script = batch('#!/bin/bash\n#SBATCH --secret-env=HF_TOKEN\ntrue\n', [], secrets);
    expect(script.request.secretEnv).toEqual({ HF_TOKEN: 'hf_abc' });
  });

  it.each<[string[], RegExp]>([
    [['--secret-env=HF_TOKEN=abc'], /not on the command line/],
    [['--secret-env=NOPE'], /NOPE is not set in the environment/],
    [['--secret-env=FABRIK_TOKEN'], /FABRIK_TOKEN is a Fabrik credential/],
    [['--secret-env=MY_COPY'], /holds a Fabrik API token/],
    [['--secret-env=1BAD'], /not an environment variable name/],
    [['--secret-env=LR', '--export=LR'], /LR is given with --secret-env too/],
  ])('refuses %j', (args, message) => {
    const problems = problemsOf({ args: [...args, '--', 'true'], env });
    expect(problems.map((p) => p.message).join('\n')).toMatch(message);
    expect(JSON.stringify(problems)).not.toContain(token);
  });
});

describe("logs go in the job's own folder", () => {
  it.each([
    ['/scratch/ada/%j.out', /an absolute path is not allowed: logs go in the job's own folder/],
    ['/proc/self/environ', /an absolute path is not allowed/],
    ['../other/%j.out', /'\.\.' is not allowed/],
    ['logs/../../x', /'\.\.' is not allowed/],
    ['rank-0.json', /a file Fabrik keeps in the job's folder/],
  ])('-o %s is refused, and says where logs may go', (output, message) => {
    const problems = problemsWith([`--output=${output}`]);
    expect(problems).toEqual([{ directive: `--output=${output}`, message: expect.stringMatching(message) }]);
    if (!output.startsWith('rank-')) expect(problems[0].message).toMatch(/relative path such as %x-%j.out/);
  });

  it("takes relative names and sbatch's none", () => {
    expect(run(['-o', '%x-%j.out', '-e', 'logs/%x-%j.err']).request).toMatchObject({
      output: '%x-%j.out',
      error: 'logs/%x-%j.err',
    });
    expect(run(['--output=none']).request.output).toBe('/dev/null');
  });
});

describe('bad values: each is named', () => {
  it.each<[string[], string, RegExp]>([
    [['--nodes=0', '--gpus-per-node=4'], '--nodes=0', /at least 1/],
    [['-N', 'two', '--gpus-per-node=4'], '-N two', /not a whole number/],
    [['--nodes=4-2', '--gpus-per-node=4'], '--nodes=4-2', /reversed/],
    [['--nodes=3'], '--nodes=3', /give --gpus-per-node/],
    [['--gpus=0'], '--gpus=0', /at least 1/],
    [['--gpus=lots'], '--gpus=lots', /not a GPU count/],
    [['--gpus=8', '-N', '3'], '--gpus=8', /do not split evenly over 3 nodes/],
    [['--gpus=6', '--gpus-per-node=4'], '--gpus=6', /not a whole number of nodes × 4 GPUs per node/],
    [['--gpus=4', '--gpus-per-node=4', '-N', '2'], '--gpus=4', /not 2 nodes × 4 GPUs per node/],
    [['--gpus-per-node=65'], '--gpus-per-node=65', /<=64 \(gpusPerNode\)/],
    [['--gres=gpu:1:2:3'], '--gres=gpu:1:2:3', /not gpu\[:type\]\[:N\]/],
    [['--gres=gpu:1,gpu:2'], '--gres=gpu:1,gpu:2', /name gpu once/],
    [['--cpus-per-task=2000'], '--cpus-per-task=2000', /<=1024 \(cpusPerTask\)/],
    [['-c', '-1'], '-c -1', /not a whole number/],
    [['--mem=16GB'], '--mem=16GB', /not a size/],
    [['--mem=lots'], '--mem=lots', /not a size/],
    [['--time=abc'], '--time=abc', /'abc' is not a Slurm time/],
    [['-t', '1:2:3:4'], '-t 1:2:3:4', /not a Slurm time/],
    [['--time=367-00:00:00'], '--time=367-00:00:00', /at most 366 days/],
    [['--min-runtime=UNLIMITED'], '--min-runtime=UNLIMITED', /give a time/],
    [['--checkpoint-interval=0'], '--checkpoint-interval=0', /at least one second/],
    [['--qos=high'], '--qos=high', /give inference, training, batch or lab/],
    [['--priority-class=urgent'], '--priority-class=urgent', /not a Fabrik priority class/],
    [['--topology=strict'], '--topology=strict', /required, preferred or none/],
    [['--output=%q.out'], '--output=%q.out', /'%q' is not a file name pattern/],
    [['--output=log%'], '--output=log%', /'%' ends the name/],
    [['--error=%4a.err'], '--error=%4a.err', /does not pad; write %a/],
    [['--chdir='], '--chdir=', /give a directory/],
    [['--export=1BAD'], '--export=1BAD', /not an environment variable name/],
    [['--export=ALL,NONE'], '--export=ALL,NONE', /one of ALL and NONE/],
    [['--export='], '--export=', /give ALL, NONE, or variables/],
    [['--array=5-1'], '--array=5-1', /reversed/],
    [['--array=0-10000'], '--array=0-10000', /at most 10000 tasks/],
    [['--array=0-1000001:1000'], '--array=0-1000001:1000', /up to 1000000/],
    [['--array=0-9999,10000-10005'], '--array=0-9999,10000-10005', /at most 10000 tasks/],
    [['--array=0-4:0'], '--array=0-4:0', /at least 1/],
    [['--array=0-4%0'], '--array=0-4%0', /at least 1/],
    [['--array=0-4%2%3'], '--array=0-4%2%3', /one %throttle/],
    [['--array=a-b'], '--array=a-b', /not N, A-B or A-B:step/],
    [['--array='], '--array=', /not N, A-B or A-B:step/],
    [['--dependency=afterany:1'], '--dependency=afterany:1', /'afterany' not supported: Fabrik supports afterok/],
    [['-d', 'after:1,afternotok:2'], '-d after:1,afternotok:2', /'after', 'afternotok' not supported/],
    [['--dependency=singleton'], '--dependency=singleton', /'singleton' not supported/],
    [['--dependency=aftercorr:5'], '--dependency=aftercorr:5', /'aftercorr' not supported/],
    [['--dependency=afterok:1?afterok:2'], '--dependency=afterok:1?afterok:2', /'\?' \(any of\) is not supported/],
    [['--dependency=afterok:12_3'], '--dependency=afterok:12_3', /'12_3' is not a job id \(array tasks/],
    [['--dependency=afterok'], '--dependency=afterok', /names no job/],
    [['--signal=KILL'], '--signal=KILL', /Fabrik sends TERM, USR1, USR2, INT, HUP/],
    [['--signal=9@30'], '--signal=9@30', /not 9/],
    [['--signal=USR1@soon'], '--signal=USR1@soon', /not \[B:\]SIG\[@seconds\]/],
    [['--signal=USR1@4000'], '--signal=USR1@4000', /<=3600 \(gracePeriodSeconds\)/],
    [['--grace=-5'], '--grace=-5', /not a number of seconds/],
    [['--grace=3601'], '--grace=3601', /<=3600/],
    [['--exclusive=nodes'], '--exclusive=nodes', /not one of sbatch's user, mcs, topo/],
    [['-J', 'x'.repeat(200)], `-J ${'x'.repeat(200)}`, /<=128 characters \(name\)/],
    [['-p', 'General'], '-p General', /lower-case letters.* \(zone\)/],
    // Once an operator's way to submit for a member: refused with why, never dropped quietly.
    [['--member=acme'], '--member=acme', /no longer takes --member: a job is submitted for your token's member/],
    [['--member', 'pharma'], '--member pharma', /an operator runs the machine, not a member's work/],
    [['--account=lab one'], '--account=lab one', /\(project\)/],
    // options
    [['--tiem=1:00'], '--tiem=1:00', /unknown option: did you mean --time\?/],
    [['--Time=1:00'], '--Time=1:00', /did you mean --time\?/],
    [['--frobnicate'], '--frobnicate', /^unknown option$/],
    [['--mem-per=4G'], '--mem-per=4G', /ambiguous: --mem-per could be --mem-per-cpu, --mem-per-gpu/],
    [['--requeue=yes'], '--requeue=yes', /takes no value/],
    [['--exclusive='], '--exclusive=', /not one of sbatch's user, mcs, topo/],
    [['-Z'], '-Z', /unknown option/],
    [['--nodelist=node[1-4]'], '--nodelist=node[1-4]', /sbatch's --nodelist is not supported by Fabrik: the scheduler chooses/],
    [['-w', 'n1'], '-w n1', /--nodelist is not supported/],
    [['--hold'], '--hold', /--hold is not supported/],
    [['--gpus-per-task=1'], '--gpus-per-task=1', /give --gpus-per-node/],
    [['--mem-per=4G', '--cpus=2'], '--cpus=2', /ambiguous: --cpus could be --cpus-per-task, --cpus-per-gpu/],
  ])('%j', (options, directive, message) => {
    const problems = problemsWith(options);
    expect(problems).toContainEqual({ directive, message: expect.stringMatching(message) });
  });

  it('says which option lacks its value', () => {
    expect(problemsOf({ args: ['--wrap'] })).toEqual([{ directive: '--wrap', message: '--wrap needs a value' }]);
    expect(problemsOf({ args: ['-t'] })).toEqual([{ directive: '-t', message: '-t (--time) needs a value' }]);
  });

  it('reads an unknown option’s likely value as its value, not as the script', () => {
    expect(problemsOf({ args: ['--tiem', '1:00', 'job.sh'], script: { path: 'job.sh', text: 'echo\n' } })).toEqual([
      { directive: '--tiem 1:00', message: 'unknown option: did you mean --time?' },
    ]);
  });

  it('throws one SubmitOptionsError whose message lists every problem', () => {
    let error: unknown;
    try {
      run(['--time=abc', '--qos=high']);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SubmitOptionsError);
    expect((error as Error).message).toBe(
      "2 problems:\n  --time=abc: 'abc' is not a Slurm time: give minutes, minutes:seconds, hours:minutes:seconds, days-hours, " +
        'days-hours:minutes, days-hours:minutes:seconds or UNLIMITED\n' +
        "  --qos=high: 'high' is not a Fabrik priority class: give inference, training, batch or lab " +
        '(also read: normal → training, standby and preemptible → batch, low and scavenger → lab)',
    );
  });
});

describe('what to run', () => {
  it('takes the script, and names the job after it as sbatch does', () => {
    const { request, form } = parseSubmission({ args: ['jobs/train.sh'], script: { path: 'jobs/train.sh', text: 'echo hi\n' } });
    expect(form).toBe('script');
    expect(request).toMatchObject({ script: 'echo hi\n', name: 'train.sh' });
    expect(request.command).toBeUndefined();
  });

  it('takes a script from standard input (no path among the arguments)', () => {
    const { request } = parseSubmission({ args: ['-t', '5'], script: { path: '-', text: '#SBATCH -J piped\necho\n' } });
    expect(request).toMatchObject({ name: 'piped', walltimeSeconds: 300 });
  });

  it('wraps --wrap in a bash script named wrap, as sbatch does', () => {
    const { request, form } = parseSubmission({ args: ['-t', '10', '--wrap', 'python train.py --lr 3e-4'] });
    expect(form).toBe('wrap');
    expect(request.name).toBe('wrap');
    expect(request.script).toBe('#!/bin/bash\n# This script was created by fabrik submit --wrap.\n\npython train.py --lr 3e-4\n');
  });

  it('runs the argv after -- without a shell (Fabrik extension)', () => {
    const { request, form } = parseSubmission({ args: ['-G', '8', '--', '/opt/bin/serve', '--port', '80', '-x'] });
    expect(form).toBe('command');
    expect(request).toMatchObject({ command: ['/opt/bin/serve', '--port', '80', '-x'], name: 'serve', gpus: 8 });
  });

  it('refuses arguments after the script: SubmitRequest has nowhere to put them', () => {
    expect(problemsOf({ args: ['job.sh', '--lr', '0.1'], script: { path: 'job.sh', text: 'echo\n' } })).toEqual([
      { directive: 'fabrik submit', message: expect.stringMatching(/^arguments after the script \(--lr 0.1\) are not passed/) },
    ]);
  });

  it.each<[SubmissionInput, RegExp]>([
    [{ args: [] }, /nothing to run/],
    [{ args: ['-t', '5'] }, /nothing to run/],
    [{ args: ['job.sh'] }, /the text of job.sh was not given/],
    [{ args: ['--wrap=true', 'job.sh'], script: { path: 'job.sh', text: 'echo\n' } }, /not allowed with --wrap/],
    [{ args: ['--wrap=true', '--', 'true'] }, /give one of a script, --wrap and '-- command'/],
    [{ args: ['--'] }, /give the command to run after '--'/],
    [{ args: ['--', 'true'], script: { path: 'job.sh', text: 'echo\n' } }, /give one of/],
  ])('%j', (input, message) => {
    expect(problemsOf(input)).toEqual([{ directive: 'fabrik submit', message: expect.stringMatching(message) }]);
  });

  it('finds the script path for the caller to read, past options and their values', () => {
    expect(scriptPathOf(['-N', '2', '--time', '1:00', '-J', 'x', '--exclusive', 'train.sh', '--lr', '1'])).toBe('train.sh');
    expect(scriptPathOf(['-N2', '-', 'x'])).toBe('-');
    expect(scriptPathOf(['--wrap', 'echo hi'])).toBeNull();
    expect(scriptPathOf(['-N', '2', '--', 'python', 'x.py'])).toBeNull();
  });
});

const TRAIN_144 = `#!/bin/bash
#SBATCH --job-name=llm-70b-pretrain
#SBATCH -A nlp-lab
#SBATCH -N 36
#SBATCH --gpus-per-node=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=72
#SBATCH --mem=0
#SBATCH --time=2-00:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --output=train-%j.out
#SBATCH --error=train-%j.err
#SBATCH --requeue
#SBATCH --exclusive

# Checkpoint on USR1, then let Fabrik requeue the job.
trap 'touch "$CKPT_DIR/request"; wait' USR1

export MASTER_ADDR=$(hostname)
srun torchrun --nnodes=36 --nproc-per-node=4 train.py --config configs/70b.yaml &
wait
`;

describe('#SBATCH directives', () => {
  it('reads a realistic 144-GPU training script', () => {
    const { request, warnings, form } = batch(TRAIN_144, [], { HOME: '/home/ada' });
    expect(form).toBe('script');
    expect(request).toEqual({
      script: TRAIN_144,
      name: 'llm-70b-pretrain',
      project: 'nlp-lab',
      nodes: 36,
      gpusPerNode: 4,
      cpusPerTask: 72,
      walltimeSeconds: 2 * 86_400,
      signal: 'USR1',
      gracePeriodSeconds: 300,
      output: 'train-%j.out',
      error: 'train-%j.err',
      requeue: true,
      exclusive: true,
      env: { HOME: '/home/ada' },
    });
    expect(warnings).toEqual([expect.stringMatching(/^#SBATCH --mem=0 \(line 8\): --mem=0 .*no memory request/)]);
    const spec = SubmitRequest.parse(request);
    expect((spec.nodes ?? 0) * (spec.gpusPerNode ?? 0)).toBe(144);
  });

  it('lets the command line override directives', () => {
    const { request } = batch(TRAIN_144, ['-N', '18', '--time=12:00:00', '-J', 'smoke', '--no-requeue', '--signal=USR2']);
    expect(request).toMatchObject({
      nodes: 18,
      gpusPerNode: 4,
      walltimeSeconds: 43_200,
      name: 'smoke',
      requeue: false,
      signal: 'USR2',
      // --signal without @ on the command line replaces the script's @300 with Slurm's 60 s.
      gracePeriodSeconds: 60,
    });
  });

  it('replaces the whole GPU request when the command line gives any GPU option', () => {
    expect(batch(TRAIN_144, ['--gres=gpu:2']).request).toMatchObject({ nodes: 36, gpusPerNode: 2 });
    expect(batch('#SBATCH --gpus-per-node=4\n#SBATCH -N 2\necho\n', ['--gpus=16']).request).toMatchObject({
      nodes: 2,
      gpusPerNode: 8,
    });
    const { request } = batch('#SBATCH --gpus=8\necho\n', ['--gpus-per-node=2']);
    expect(request).toMatchObject({ nodes: 1, gpusPerNode: 2 });
    expect(request.gpus).toBeUndefined();
  });

  it('does not read a bad directive the command line overrides', () => {
    const { request } = batch('#!/bin/bash\n#SBATCH --qos=high\n#SBATCH --time=soon\necho\n', ['--qos=batch', '-t', '1:00:00']);
    expect(request).toMatchObject({ priorityClass: 'batch', walltimeSeconds: 3600 });
  });

  it('keeps a directive --grace when the command line gives only --signal with a time', () => {
    expect(batch('#SBATCH --grace=100\necho\n', ['--signal=USR1']).request.gracePeriodSeconds).toBe(100);
    expect(batch('#SBATCH --grace=100\necho\n', ['--signal=USR1@30']).request.gracePeriodSeconds).toBe(30);
  });

  it('stops at the first command, as sbatch does', () => {
    const text =
      '#!/bin/bash\n#SBATCH -J first\n\n# a comment\n   \n#SBATCH -t 10\necho start\n#SBATCH -J late\n#SBATCH --bogus\n';
    expect(batch(text).request).toMatchObject({ name: 'first', walltimeSeconds: 600 });
  });

  it('skips comments and blank lines between directives, and a script without a shebang', () => {
    const text = '#SBATCH -J a\n\n## section\n#    notes\n#SBATCH --time=5\n\t\n#SBATCH -c 2\nsrun x\n';
    expect(batch(text).request).toMatchObject({ name: 'a', walltimeSeconds: 300, cpusPerTask: 2 });
  });

  it('ignores disabled and indented directives, warning about the indented ones', () => {
    const text = '#!/bin/bash\n##SBATCH -J off\n# SBATCH -J off\n  #SBATCH -J indented\n#SBATCH-J glued\necho\n';
    const { request, warnings } = batch(text);
    expect(request.name).toBe('job.sh');
    expect(warnings).toEqual([
      expect.stringMatching(/^line 4: '#SBATCH -J indented' is not read/),
      expect.stringMatching(/^line 5: '#SBATCH-J glued' is not read/),
    ]);
  });

  it('splits directive lines as sbatch does: several options, quotes, escapes, # comments', () => {
    const text = [
      '#!/bin/bash',
      '#SBATCH -N 2 --gpus-per-node=4   -t 1:00:00',
      `#SBATCH --job-name="llm train"   # the name`,
      `#SBATCH --comment='it''s' -D /data/my\\ run`,
      '#SBATCH --output=logs/%x-%j.out#cut here, as sbatch cuts it',
      'python train.py',
    ].join('\n');
    const { request } = batch(text);
    expect(request).toMatchObject({
      nodes: 2,
      gpusPerNode: 4,
      walltimeSeconds: 3600,
      name: 'llm train',
      workdir: '/data/my run',
      output: 'logs/%x-%j.out',
    });
  });

  it('reads #SLURM as #SBATCH, with a warning, as sbatch does', () => {
    const { request, warnings } = batch('#!/bin/bash\n#SLURM -J old\necho\n');
    expect(request.name).toBe('old');
    expect(warnings).toEqual(['line 2: #SLURM is read as #SBATCH (as sbatch does); write #SBATCH']);
  });

  it('names each bad directive with its line, and the command line’s after them', () => {
    const text =
      '#!/bin/bash\n#SBATCH -J ok\n#SBATCH --time=abc\n#SBATCH --qos=urgent -N x\n#SBATCH --frob\n#SBATCH stray\necho\n';
    const problems = problemsOf({ args: ['--mem=lots', 'job.sh'], script: { path: 'job.sh', text } });
    expect(problems.map((p) => p.directive)).toEqual([
      '#SBATCH --time=abc (line 3)',
      '#SBATCH --qos=urgent (line 4)',
      '#SBATCH -N x (line 4)',
      '#SBATCH --frob (line 5)',
      '#SBATCH stray (line 6)',
      '--mem=lots',
    ]);
  });

  it('refuses what sbatch refuses in a script', () => {
    expect(problemsOf({ args: ['job.sh'], script: { path: 'job.sh', text: '#!/bin/bash\r\n#SBATCH -J x\r\necho\r\n' } })).toEqual(
      [{ directive: 'script job.sh', message: expect.stringMatching(/DOS line breaks/) }],
    );
    expect(problemsOf({ args: ['job.sh'], script: { path: 'job.sh', text: '#SBATCH -J "open\necho\n' } })).toEqual([
      { directive: '#SBATCH -J "open (line 1)', message: 'unmatched "' },
    ]);
    expect(problemsOf({ args: ['job.sh'], script: { path: 'job.sh', text: '#SBATCH --wrap=x\necho\n' } })).toEqual([
      { directive: '#SBATCH --wrap=x (line 1)', message: expect.stringMatching(/command line/) },
    ]);
    expect(problemsOf({ args: ['job.sh'], script: { path: 'job.sh', text: '' } })).toEqual([
      { directive: 'script job.sh', message: expect.stringMatching(/>=1 characters \(script\)/) },
    ]);
  });

  it('warns that a non-shell interpreter is not used', () => {
    const { warnings } = batch('#!/usr/bin/env python3\n#SBATCH -J py\nprint(1)\n');
    expect(warnings).toEqual([expect.stringMatching(/^script job.sh: Fabrik runs batch scripts with bash, not with python3/)]);
    expect(batch('#!/bin/sh\necho\n').warnings).toEqual([]);
    expect(batch('#!/usr/bin/env bash\necho\n').warnings).toEqual([]);
  });
});

describe('properties', () => {
  const OPTION_WORDS = [
    ...['--nodes', '-N', '--gpus', '-G', '--gpus-per-node', '--gres', '--time', '-t', '--mem', '--array', '-a'],
    ...['--dependency', '--signal', '--export', '--qos', '--output', '-o', '--wrap', '--exclusive', '--', '-', '--grace'],
    ...['--checkpoint-interval', '--min-runtime', '--nodelist', '--mail-type', '-J', '-D', '--requeue', '--no-requeue'],
  ];
  const VALUE_WORDS = [
    '1',
    '0',
    '4',
    'gpu:4',
    'gb300:8',
    '1-3,7,10-20:5%2',
    'afterok:1',
    'B:USR1@300',
    '2-00:00:00',
    '%j',
    'ALL',
  ];
  const word = fc.oneof(
    fc.constantFrom(...OPTION_WORDS),
    fc.constantFrom(...VALUE_WORDS),
    fc
      .tuple(fc.constantFrom(...OPTION_WORDS), fc.oneof(fc.constantFrom(...VALUE_WORDS), fc.string()))
      .map(([o, v]) => `${o}=${v}`),
    fc.string(),
    fc.string({ unit: 'binary' }),
  );
  const scriptLine = fc.oneof(
    word.map((w) => `#SBATCH ${w}`),
    fc.array(word, { maxLength: 4 }).map((ws) => `#SBATCH ${ws.join(' ')}`),
    fc.constantFrom('#!/bin/bash', '', '# comment', 'echo hi', '#SLURM -J x', '  #SBATCH -N 2'),
    fc.string(),
  );
  const script = fc.option(
    fc.record({
      path: fc.oneof(fc.constant('job.sh'), fc.string()),
      text: fc.array(scriptLine, { maxLength: 8 }).map((l) => l.join('\n')),
    }),
  );
  const env = fc.dictionary(
    fc.oneof(fc.string(), fc.constantFrom('HOME', 'SBATCH_ACCOUNT', '__proto__', 'constructor')),
    fc.string(),
  );

  it('throws nothing but SubmitOptionsError, and what it returns the contract accepts', () => {
    fc.assert(
      fc.property(fc.array(word, { maxLength: 10 }), script, env, (args, s, e) => {
        let parsed: ParsedSubmission;
        try {
          parsed = parseSubmission({ args, script: s, env: e });
        } catch (error) {
          expect(error).toBeInstanceOf(SubmitOptionsError);
          expect((error as SubmitOptionsError).problems.length).toBeGreaterThan(0);
          return;
        }
        expect(SubmitRequest.safeParse(parsed.request).success).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('names, for well-formed but arbitrary values, only options that were given', () => {
    const n = (max: number) => fc.integer({ min: 0, max }).map(String);
    const valued: Record<string, fc.Arbitrary<string>> = {
      nodes: n(40),
      gpus: n(300),
      'gpus-per-node': fc.oneof(
        n(80),
        n(8).map((c) => `gb300:${c}`),
      ),
      gres: n(8).map((c) => `gpu:${c}`),
      'cpus-per-task': n(2000),
      mem: fc.tuple(n(5000), fc.constantFrom('', 'K', 'M', 'G', 'T')).map(([v, u]) => v + u),
      time: fc.oneof(
        n(600_000),
        fc.tuple(n(400), n(30), n(70), n(70)).map(([d, h, m, s]) => `${d}-${h}:${m}:${s}`),
      ),
      qos: fc.constantFrom('inference', 'training', 'normal', 'high', 'scavenger'),
      array: fc.tuple(n(20_000), n(20_000), n(5)).map(([a, b, s]) => `${a}-${b}:${s}`),
      dependency: fc.tuple(fc.constantFrom('afterok', 'afterany'), n(1e6)).map(([t, j]) => `${t}:${j}`),
      signal: fc.tuple(fc.constantFrom('USR1', 'SIGTERM', '10', 'KILL'), n(5000)).map(([s, t]) => `B:${s}@${t}`),
      grace: n(5000),
      'job-name': fc.string({ maxLength: 200 }),
      partition: fc.constantFrom('general', 'sovereign', 'Bad Zone'),
      output: fc.constantFrom('o-%j.out', '%x.%A.%a', '%q', 'x%'),
      topology: fc.constantFrom('required', 'preferred', 'none', 'strict'),
    };
    const option = fc.constantFrom(...Object.keys(valued)).chain((name) => valued[name].map((v) => `--${name}=${v}`));
    fc.assert(
      fc.property(fc.uniqueArray(option, { maxLength: 8, selector: (w) => w.slice(0, w.indexOf('=')) }), (options) => {
        try {
          const { request } = run(options);
          expect(SubmitRequest.safeParse(request).success).toBe(true);
        } catch (error) {
          if (!(error instanceof SubmitOptionsError)) throw error;
          for (const p of error.problems) expect(options).toContain(p.directive);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('expands an array range to as many indices as it counts', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 1, max: 100 }),
        fc.option(fc.integer({ min: 1, max: 10_000 })),
        (lo, span, step, throttle) => {
          const hi = Math.min(lo + span, 1_000_000);
          const count = Math.floor((hi - lo) / step) + 1;
          const spec = `${lo}-${hi}:${step}${throttle === null ? '' : `%${throttle}`}`;
          if (count > 10_000) {
            expect(() => parseArraySpec(spec)).toThrow(/at most 10000 tasks/);
            return;
          }
          const { indices, throttle: t } = parseArraySpec(spec);
          expect(indices).toHaveLength(count);
          expect(indices[0]).toBe(lo);
          expect(indices.at(-1)).toBe(lo + (count - 1) * step);
          expect(t).toBe(throttle);
        },
      ),
    );
  });

  it('counts each index once when ranges overlap', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 50 })), { minLength: 1, maxLength: 6 }),
        (ranges) => {
          const expected = new Set<number>();
          for (const [lo, span] of ranges) for (let i = lo; i <= lo + span; i++) expected.add(i);
          const { indices } = parseArraySpec(ranges.map(([lo, span]) => `${lo}-${lo + span}`).join(','));
          expect(indices).toEqual([...expected].sort((a, b) => a - b));
        },
      ),
    );
  });
});

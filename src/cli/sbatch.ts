// `fabrik submit` takes sbatch's flags and `#SBATCH` directives, so that a researcher's Slurm
// scripts run here unchanged. This module turns them into the API's SubmitRequest: it reads the
// directives the way sbatch does, lets the command line override them, maps each option to a
// field, says which options it accepts but does not honour (warnings), and reports every bad
// option at once (SubmitOptionsError), each named the way the user wrote it.
//
// Where Fabrik means something else than Slurm, the option's entry in OPTIONS says so. The ones a
// user should know about:
//   --exclusive   Slurm: whole nodes. Fabrik: the job's NVLink domains host no other member's work.
//   --qos         Fabrik's priority classes (inference, training, batch, lab); Slurm-style
//                 normal → training, standby/preemptible → batch, low/scavenger → lab. No `high`:
//                 the top class is production inference, and nobody should land there by habit.
//   --export      Default ALL, like sbatch: the submitting environment goes with the job, less
//                 Fabrik's own FABRIK_* variables and any value holding an API token (said on
//                 stderr). A credential named in --export is refused (see fabrikCredentialIn).
//   --signal      The signal Fabrik sends when it stops the job (cancel, preemption) and the
//                 grace before SIGKILL; Slurm sends it that long before the time limit.
//   script args   Refused: SubmitRequest has no field for them (sbatch passes them to the script).
//
// Fabrik extensions (not in sbatch): --topology, --checkpoint-interval, --min-runtime, --grace,
// --priority-class (alias of --qos), --dataset and --purpose (admission against the
// data-use agreements), --secret-env NAME (a variable sent encrypted and never shown), and
// `-- cmd args…` (run argv without a shell). --member, once an operator's way to submit for a
// member, is refused with why: a job is its submitter's member's, and operators submit none.
import { fabrikCredentialIn, SubmitRequest } from '../api/contract.js';
import { InvalidSlurmTimeError, parseSlurmTime, UNLIMITED } from './slurm-time.js';

type PriorityClass = NonNullable<SubmitRequest['priorityClass']>;
type Topology = NonNullable<SubmitRequest['topology']>;
type Signal = NonNullable<SubmitRequest['signal']>;
type ArraySpec = { indices: number[]; throttle: number | null };

/** One bad option: where it came from, as the user wrote it, and what is wrong. */
export interface SubmitProblem {
  directive: string;
  message: string;
}

/** The options cannot make a valid submission. Names each bad option, all of them at once. */
export class SubmitOptionsError extends Error {
  override readonly name = 'SubmitOptionsError';
  constructor(readonly problems: SubmitProblem[]) {
    super(
      problems.length === 1
        ? `${problems[0].directive}: ${problems[0].message}`
        : `${problems.length} problems:\n${problems.map((p) => `  ${p.directive}: ${p.message}`).join('\n')}`,
    );
  }
}

/** How the job says what to run: a batch script, `--wrap "cmd"`, or `-- cmd args…` (an argv, no shell). */
export type SubmissionForm = 'script' | 'wrap' | 'command';

export interface ParsedSubmission {
  request: SubmitRequest;
  /** Options accepted but not honoured, or honoured differently from Slurm: show them to the user. */
  warnings: string[];
  form: SubmissionForm;
}

export interface SubmissionInput {
  /** The arguments after `fabrik submit`. */
  args: string[];
  /** The batch script the first non-option argument names, read by the caller (see scriptPathOf). */
  script?: { path: string; text: string } | null;
  /** The submitting environment (process.env), for --export. */
  env?: Record<string, string | undefined>;
}

// ---------------------------------------------------------------------------------------------
// Limits of the contract that change a meaning here (the rest are left to SubmitRequest's own
// validation, whose issues are mapped back to options at the end).

function bound(n: number | null, what: string): number {
  if (n === null) throw new Error(`SubmitRequest lost its bound on ${what}`);
  return n;
}
/** `--time=UNLIMITED` becomes the longest time limit the contract allows. */
const MAX_WALLTIME = bound(SubmitRequest.shape.walltimeSeconds.unwrap().maxValue, 'walltimeSeconds');
/** SubmitRequest.array: at most this many indices, each at most MAX_ARRAY_INDEX. */
const MAX_ARRAY_TASKS = 10_000;
const MAX_ARRAY_INDEX = 1_000_000;
/** SubmitRequest.env values. */
const MAX_ENV_VALUE = 65_536;
const MAX_NAME = bound(SubmitRequest.shape.name.unwrap().maxLength, 'name');
/** What sbatch gives a job that sets no --signal time (its default sig_time). */
const SLURM_SIGNAL_SECONDS = 60;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// ---------------------------------------------------------------------------------------------
// Where an option came from.

interface Origin {
  /** The option as written: `--time=1:00`, `-t 1:00`, `-N2`. */
  readonly text: string;
  /** null: the command line; otherwise the magic word and line of a directive. */
  readonly directive: { readonly magic: string; readonly line: number } | null;
  /** The word's index on the command line, or the directive's line: problems are told in this order. */
  readonly at: number;
}

/**
 * A problem, with where to tell it: the form first, then the script's from the top, then the
 * command line's from the left, then those of the request as a whole.
 */
interface Ranked extends SubmitProblem {
  readonly group: 'form' | 'script' | 'cli' | 'request';
  readonly at: number;
}

const GROUP_ORDER: readonly Ranked['group'][] = ['form', 'script', 'cli', 'request'];

const ranked = (o: Origin, message: string): Ranked => ({
  directive: describe(o),
  message,
  group: o.directive ? 'script' : 'cli',
  at: o.at,
});

function describe(o: Origin): string {
  return o.directive ? `${o.directive.magic} ${o.text} (line ${o.directive.line})` : o.text;
}

/** An invalid value; the option being applied turns it into a problem naming itself. */
class Invalid extends Error {}

// ---------------------------------------------------------------------------------------------
// What the options set. Each value remembers the option that set it, for messages.

interface ExportSpec {
  readonly mode: 'all' | 'none' | 'listed';
  readonly vars: ReadonlyMap<string, string | null>;
}

interface Fields {
  name: string;
  project: string;
  workdir: string;
  zone: string;
  priorityClass: PriorityClass;
  topology: Topology;
  output: string;
  error: string;
  nodes: number;
  gpus: number;
  gpusPerNode: number;
  cpusPerTask: number;
  /** null: --mem=0, "all the node's memory", which Fabrik leaves to its default. */
  memoryMb: number | null;
  walltimeSeconds: number;
  minRuntimeSeconds: number;
  checkpointIntervalSeconds: number | null;
  gracePeriodSeconds: number;
  /** --signal without `@secs`: Slurm's 60 s, unless a grace is given some other way. */
  impliedGraceSeconds: number;
  signal: Signal;
  exclusive: boolean;
  datasets: string[];
  purpose: string;
  /** The member's advance reservation the job runs in. */
  reservation: string;
  afterOk: string[];
  array: ArraySpec;
  requeue: boolean;
  export: ExportSpec;
  /** --secret-env: names whose values are read from the environment and sent as secretEnv. */
  secretNames: string[];
  wrap: string;
  ntasks: number;
  ntasksPerNode: number;
}

type State = { [K in keyof Fields]?: { value: Fields[K]; origin: Origin } };

interface Apply {
  readonly origin: Origin;
  set<K extends keyof Fields>(field: K, value: Fields[K]): void;
  /** What an earlier option set (repeatable options add to it). */
  get<K extends keyof Fields>(field: K): Fields[K] | undefined;
  warn(message: string): void;
}

// ---------------------------------------------------------------------------------------------
// The options.

type Arity = 'none' | 'required' | 'optional';

interface OptionSpec {
  /** Long names without `--`; the first is the one messages use. */
  readonly names: readonly string[];
  readonly short?: string;
  readonly arity: Arity;
  /**
   * Options with the same slot set the same thing: one on the command line drops every directive
   * of its slot unread (so a bad directive can be overridden without editing the script).
   */
  readonly slot?: string;
  /** `value` is undefined only for a flag, or an optional value not given. */
  readonly apply: (value: string | undefined, at: Apply) => void;
}

const need = (value: string | undefined): string => value ?? '';

/** An option read and dropped: sbatch scripts carry it everywhere, and refusing it would help nobody. */
function warnOnly(names: string[], arity: Arity, why: string, short?: string): OptionSpec {
  return { names, short, arity, apply: (_v, at) => at.warn(why) };
}

/** A real sbatch option Fabrik refuses: a better message than "unknown", and its value is skipped. */
function unsupported(names: string[], arity: Arity, hint: string, short?: string): OptionSpec {
  return {
    names,
    short,
    arity,
    apply: () => {
      throw new Invalid(`sbatch's --${names[0]} is not supported by Fabrik${hint ? `: ${hint}` : ''}`);
    },
  };
}

const QOS: ReadonlyMap<string, PriorityClass> = new Map<string, PriorityClass>([
  ['inference', 'inference'],
  ['training', 'training'],
  ['batch', 'batch'],
  ['lab', 'lab'],
  // The QoS names Slurm sites use most, by what they are for. `high` is left out on purpose: the
  // one class above training is production inference, and a habit should not land a job there.
  ['normal', 'training'],
  ['standby', 'batch'],
  ['preemptible', 'batch'],
  ['low', 'lab'],
  ['scavenger', 'lab'],
]);

function priorityClass(value: string | undefined, at: Apply): void {
  const v = need(value);
  const c = QOS.get(v.toLowerCase());
  if (!c)
    throw new Invalid(
      `'${v}' is not a Fabrik priority class: give inference, training, batch or lab ` +
        `(also read: normal → training, standby and preemptible → batch, low and scavenger → lab)`,
    );
  at.set('priorityClass', c);
}

/** A file name for --output/--error, with the patterns the server expands (see filenamePattern). */
function logFile(field: 'output' | 'error') {
  return (value: string | undefined, at: Apply): void => {
    const v = need(value);
    // sbatch reads `none` as /dev/null.
    at.set(field, v.toLowerCase() === 'none' ? '/dev/null' : filenamePattern(v, at));
  };
}

function timeOption(field: 'walltimeSeconds' | 'minRuntimeSeconds') {
  return (value: string | undefined, at: Apply): void => {
    const seconds = parseSlurmTime(need(value));
    if (field === 'walltimeSeconds' && (seconds === UNLIMITED || seconds === 0)) {
      // Slurm: 0 and UNLIMITED both mean no limit. Fabrik has one; the longest it allows is the nearest.
      at.warn(`Fabrik has no unlimited time limit: the job gets the longest it allows, ${MAX_WALLTIME / 86_400} days`);
      at.set(field, MAX_WALLTIME);
      return;
    }
    if (seconds === UNLIMITED) throw new Invalid('give a time; UNLIMITED has no meaning here');
    if (seconds > MAX_WALLTIME) throw new Invalid(`at most ${MAX_WALLTIME / 86_400} days (${MAX_WALLTIME / 86_400}-00:00:00)`);
    at.set(field, seconds);
  };
}

const OPTIONS: readonly OptionSpec[] = [
  // --- what to run
  {
    names: ['wrap'],
    arity: 'required',
    apply: (v, at) => {
      if (at.origin.directive) throw new Invalid('--wrap belongs on the command line, not in a script');
      if (!need(v).trim()) throw new Invalid('give the command to wrap');
      at.set('wrap', need(v));
    },
  },
  // --- who and where
  { names: ['job-name'], short: 'J', arity: 'required', apply: (v, at) => at.set('name', need(v)) },
  // Slurm folds account names to lower case; Fabrik's project ids are lower case.
  { names: ['account'], short: 'A', arity: 'required', apply: (v, at) => at.set('project', need(v).toLowerCase()) },
  { names: ['partition'], short: 'p', arity: 'required', apply: (v, at) => at.set('zone', need(v)) },
  { names: ['qos'], short: 'q', arity: 'required', slot: 'qos', apply: priorityClass },
  { names: ['chdir', 'workdir'], short: 'D', arity: 'required', apply: chdir },
  { names: ['output'], short: 'o', arity: 'required', apply: logFile('output') },
  { names: ['error'], short: 'e', arity: 'required', apply: logFile('error') },
  { names: ['export'], arity: 'required', apply: (v, at) => at.set('export', parseExport(need(v))) },
  {
    // Fabrik's: variables whose values are secrets, read from the environment like --export NAME
    // (never from the command line, where ps and shell history keep them). Repeatable.
    names: ['secret-env'],
    arity: 'required',
    apply: (v, at) => at.set('secretNames', [...(at.get('secretNames') ?? []), ...parseSecretEnv(need(v))]),
  },
  // --- resources
  { names: ['nodes'], short: 'N', arity: 'required', slot: 'nodes', apply: nodes },
  { names: ['gpus'], short: 'G', arity: 'required', slot: 'gpus', apply: (v, at) => at.set('gpus', gpuCount(need(v), at)) },
  {
    names: ['gpus-per-node'],
    arity: 'required',
    slot: 'gpus',
    apply: (v, at) => at.set('gpusPerNode', gpuCount(need(v), at)),
  },
  { names: ['gres'], arity: 'required', slot: 'gpus', apply: gres },
  {
    names: ['cpus-per-task'],
    short: 'c',
    arity: 'required',
    apply: (v, at) => at.set('cpusPerTask', positiveInteger(need(v))),
  },
  { names: ['mem'], arity: 'required', apply: memory },
  // One process per node (the script, or the command) is Fabrik's model: the job starts its own
  // ranks (torchrun, mpirun). Task counts are read so that a consistent one stays quiet.
  {
    names: ['ntasks-per-node', 'tasks-per-node'],
    arity: 'required',
    slot: 'ntasks-per-node',
    apply: (v, at) => at.set('ntasksPerNode', positiveInteger(need(v))),
  },
  { names: ['ntasks'], short: 'n', arity: 'required', apply: (v, at) => at.set('ntasks', positiveInteger(need(v))) },
  // --- time
  { names: ['time'], short: 't', arity: 'required', apply: timeOption('walltimeSeconds') },
  // --- scheduling
  {
    // Fabrik's exclusive: the job's NVLink domains host no other member's work (Slurm's means whole
    // nodes; Fabrik never shares a GPU, and the unit that matters for isolation is the NVLink domain).
    names: ['exclusive'],
    arity: 'optional',
    apply: (v, at) => {
      if (v !== undefined) {
        if (!['user', 'mcs', 'topo'].includes(v.toLowerCase()))
          throw new Invalid(`'${v}' is not one of sbatch's user, mcs, topo (or give --exclusive alone)`);
        at.warn(`read as --exclusive: in Fabrik, the job's NVLink domains host no other member's work`);
      }
      at.set('exclusive', true);
    },
  },
  {
    // Fabrik's: the job's input datasets (comma-separated), checked at admission with its purpose.
    names: ['dataset', 'datasets'],
    arity: 'required',
    apply: (v, at) =>
      at.set(
        'datasets',
        need(v)
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      ),
  },
  { names: ['purpose'], arity: 'required', apply: (v, at) => at.set('purpose', need(v)) },
  // Slurm's: the job runs in this advance reservation of its member's (only there, inside its window).
  { names: ['reservation'], arity: 'required', apply: (v, at) => at.set('reservation', need(v)) },
  { names: ['array'], short: 'a', arity: 'required', apply: (v, at) => at.set('array', parseArraySpec(need(v))) },
  { names: ['dependency'], short: 'd', arity: 'required', apply: (v, at) => at.set('afterOk', parseDependency(need(v))) },
  { names: ['signal'], arity: 'required', slot: 'signal', apply: signal },
  { names: ['requeue'], arity: 'none', slot: 'requeue', apply: (_v, at) => at.set('requeue', true) },
  { names: ['no-requeue'], arity: 'none', slot: 'requeue', apply: (_v, at) => at.set('requeue', false) },
  // --- Fabrik extensions
  { names: ['priority-class'], arity: 'required', slot: 'qos', apply: priorityClass },
  {
    names: ['topology'],
    arity: 'required',
    apply: (v, at) => {
      const t = need(v).toLowerCase();
      if (t !== 'required' && t !== 'preferred' && t !== 'none') throw new Invalid('give required, preferred or none');
      at.set('topology', t);
    },
  },
  {
    names: ['checkpoint-interval'],
    arity: 'required',
    apply: (v, at) => {
      // `none` (or UNLIMITED): the job does not checkpoint, which is also the default.
      const text = need(v);
      const seconds = text.toLowerCase() === 'none' ? UNLIMITED : parseSlurmTime(text);
      if (seconds === 0) throw new Invalid('give a time of at least one second, or none');
      if (seconds !== UNLIMITED && seconds > MAX_WALLTIME) throw new Invalid(`at most ${MAX_WALLTIME / 86_400} days`);
      at.set('checkpointIntervalSeconds', seconds === UNLIMITED ? null : seconds);
    },
  },
  { names: ['min-runtime'], arity: 'required', apply: timeOption('minRuntimeSeconds') },
  {
    names: ['grace'],
    arity: 'required',
    slot: 'grace',
    apply: (v, at) => at.set('gracePeriodSeconds', integer(need(v), 0, 'seconds')),
  },
  {
    // Refused, not ignored: someone who passes it means another member than their own, and the
    // job would otherwise run as theirs without a word.
    names: ['member'],
    arity: 'required',
    apply: () => {
      throw new Invalid(
        "Fabrik no longer takes --member: a job is submitted for your token's member by that member's people; an operator runs the machine, not a member's work",
      );
    },
  },
  // --- accepted, not honoured
  warnOnly(['constraint'], 'required', 'ignored: Fabrik has no node features to constrain on', 'C'),
  warnOnly(['mail-type'], 'required', 'not honoured: Fabrik sends no mail'),
  warnOnly(['mail-user'], 'required', 'not honoured: Fabrik sends no mail'),
  warnOnly(['begin'], 'required', 'not honoured: the job may start as soon as it is scheduled', 'b'),
  warnOnly(['nice'], 'optional', 'not honoured: order within a priority class is Fabrik’s; choose the class with --qos'),
  warnOnly(['comment'], 'required', 'not honoured: the comment is not kept'),
  warnOnly(['hint'], 'required', 'not honoured: the job binds its own processes'),
  warnOnly(['mem-per-cpu'], 'required', 'not honoured: give --mem, memory per node'),
  warnOnly(['mem-per-gpu'], 'required', 'not honoured: give --mem, memory per node'),
  warnOnly(['gpu-bind'], 'required', 'not honoured: the job binds its own processes to its GPUs'),
  warnOnly(['cpu-bind'], 'required', 'not honoured: the job binds its own processes'),
  warnOnly(['open-mode'], 'required', 'not honoured: the server decides how log files are opened'),
  warnOnly(['wait'], 'none', 'not honoured: fabrik submit returns once the job is queued', 'W'),
  warnOnly(['parsable'], 'none', 'not honoured: fabrik submit prints its own output'),
  warnOnly(['test-only'], 'none', 'not honoured: the job is submitted'),
  // --- real sbatch options Fabrik refuses
  unsupported(['nodelist'], 'required', 'the scheduler chooses the nodes', 'w'),
  unsupported(['exclude'], 'required', 'the scheduler chooses the nodes', 'x'),
  unsupported(['licenses'], 'required', '', 'L'),
  unsupported(['clusters'], 'required', '', 'M'),
  unsupported(['hold'], 'none', 'submit when the job may run, or use --dependency=afterok', 'H'),
  unsupported(['immediate'], 'none', '', 'I'),
  unsupported(['time-min'], 'required', 'give the time limit with --time'),
  unsupported(['gpus-per-task'], 'required', 'give --gpus-per-node'),
  unsupported(['cpus-per-gpu'], 'required', 'give --cpus-per-task'),
  unsupported(['gres-flags'], 'required', ''),
  unsupported(['distribution'], 'required', 'the job places its own processes', 'm'),
  unsupported(['oversubscribe'], 'none', 'Fabrik never shares a GPU', 's'),
  unsupported(['overcommit'], 'none', '', 'O'),
  unsupported(['contiguous'], 'none', 'see --topology'),
  unsupported(['switches'], 'required', 'see --topology'),
  unsupported(['deadline'], 'required', ''),
  unsupported(['export-file'], 'required', 'give --export'),
  unsupported(['get-user-env'], 'optional', 'give --export'),
  unsupported(['input'], 'required', 'a batch job has no standard input', 'i'),
  unsupported(['no-kill'], 'optional', '', 'k'),
  unsupported(['kill-on-invalid-dep'], 'required', ''),
  unsupported(['priority'], 'required', 'give --qos'),
  unsupported(['uid'], 'required', ''),
  unsupported(['gid'], 'required', ''),
  unsupported(['mincpus'], 'required', 'give --cpus-per-task'),
  unsupported(['tmp'], 'required', ''),
  unsupported(['sockets-per-node'], 'required', ''),
  unsupported(['cores-per-socket'], 'required', ''),
  unsupported(['threads-per-core'], 'required', ''),
  unsupported(['extra-node-info'], 'required', '', 'B'),
  unsupported(['core-spec'], 'required', '', 'S'),
  unsupported(['thread-spec'], 'required', ''),
  unsupported(['mem-bind'], 'required', ''),
  unsupported(['propagate'], 'optional', ''),
  unsupported(['acctg-freq'], 'required', ''),
  unsupported(['profile'], 'required', ''),
  unsupported(['network'], 'required', ''),
  unsupported(['burst-buffer', 'bb'], 'required', ''),
  unsupported(['wckey'], 'required', ''),
  unsupported(['mcs-label'], 'required', ''),
  unsupported(['reboot'], 'none', ''),
  unsupported(['delay-boot'], 'required', ''),
  unsupported(['use-min-nodes'], 'none', ''),
  unsupported(['help'], 'none', 'see fabrik submit --help', 'h'),
  unsupported(['usage'], 'none', 'see fabrik submit --help'),
  unsupported(['version'], 'none', 'see fabrik --version', 'V'),
];

const LONG = new Map<string, OptionSpec>(OPTIONS.flatMap((o) => o.names.map((n) => [n, o] as const)));
const SHORT = new Map<string, OptionSpec>(OPTIONS.flatMap((o) => (o.short ? [[o.short, o] as const] : [])));
const slotOf = (o: OptionSpec): string => o.slot ?? o.names[0];

// ---------------------------------------------------------------------------------------------
// Values.

function integer(text: string, min: number, what = 'a whole number'): number {
  if (!/^\d+$/.test(text)) throw new Invalid(`'${text}' is not ${what === 'seconds' ? 'a number of seconds' : what}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Invalid(`${text} is too large`);
  if (n < min) throw new Invalid(`give at least ${min}`);
  return n;
}

const positiveInteger = (text: string): number => integer(text, 1);

/** `N`, or Slurm's `min-max`: Fabrik starts a gang of a fixed size, so the minimum. */
function nodes(value: string | undefined, at: Apply): void {
  const m = /^(\d+)-(\d+)$/.exec(need(value));
  if (!m) return at.set('nodes', positiveInteger(need(value)));
  const [lo, hi] = [positiveInteger(m[1]), positiveInteger(m[2])];
  if (hi < lo) throw new Invalid(`the range ${lo}-${hi} is reversed`);
  if (hi !== lo) at.warn(`Fabrik runs a gang of one size: ${lo} nodes, the minimum`);
  at.set('nodes', lo);
}

/** `N` or `type:N`: a site has one kind of GPU, so the type is only read. */
function gpuCount(text: string, at: Apply): number {
  const m = /^(?:([A-Za-z0-9_.-]+):)?(\d+)$/.exec(text);
  if (!m) throw new Invalid(`'${text}' is not a GPU count (N or type:N)`);
  if (m[1]) at.warn(`the GPU type '${m[1]}' is not checked: a Fabrik site has one kind of GPU`);
  return positiveInteger(m[2]);
}

/** `gpu[:type][:N]` among other resources: GPUs per node, as in Slurm. Other resources are ignored. */
function gres(value: string | undefined, at: Apply): void {
  const v = need(value);
  if (v === '') throw new Invalid('give gpu:N');
  let gpus: number | undefined;
  const ignored: string[] = [];
  for (const item of v.split(',')) {
    const [name, ...rest] = item.split(':');
    if (name !== 'gpu' && name !== 'gres/gpu') {
      if (!/^[A-Za-z0-9_/.-]+(:[A-Za-z0-9_.-]+)*$/.test(item)) throw new Invalid(`'${item}' is not a generic resource`);
      ignored.push(item);
      continue;
    }
    if (gpus !== undefined) throw new Invalid('name gpu once');
    // gpu, gpu:N, gpu:type, gpu:type:N. Slurm's default count is one.
    if (rest.length === 0) gpus = 1;
    else if (rest.length === 1 && /^\d+$/.test(rest[0])) gpus = positiveInteger(rest[0]);
    else if (rest.length === 1) gpus = gpuCount(`${rest[0]}:1`, at);
    else if (rest.length === 2) gpus = gpuCount(`${rest[0]}:${rest[1]}`, at);
    else throw new Invalid(`'${item}' is not gpu[:type][:N]`);
  }
  if (ignored.length) at.warn(`ignored: ${ignored.join(', ')} (Fabrik allocates GPUs, CPUs and memory only)`);
  if (gpus !== undefined) at.set('gpusPerNode', gpus);
}

/** Slurm's size: a number with K, M (the default), G or T, per node. */
function memory(value: string | undefined, at: Apply): void {
  const m = /^(\d+)([KMGT])?$/i.exec(need(value));
  if (!m) throw new Invalid(`'${need(value)}' is not a size: give a number with K, M, G or T (M if none)`);
  const n = Number(m[1]);
  const mb = { K: n / 1024, M: n, G: n * 1024, T: n * 1024 * 1024 }[(m[2] ?? 'M').toUpperCase() as 'K' | 'M' | 'G' | 'T'];
  if (n === 0) {
    // Slurm: --mem=0 is all the memory of each node.
    at.warn("--mem=0 (all of each node's memory) sends no memory request: Fabrik's default applies");
    at.set('memoryMb', null);
    return;
  }
  if (!Number.isSafeInteger(Math.ceil(mb))) throw new Invalid(`${need(value)} is too large`);
  at.set('memoryMb', Math.ceil(mb));
}

/**
 * Slurm's array index expression: comma-separated `N`, `A-B` or `A-B:step`, then an optional
 * `%throttle` for the whole set. Indices come back sorted, each once (Slurm keeps a bitmap too).
 * Throws an Error naming what is wrong.
 */
export function parseArraySpec(text: string): ArraySpec {
  const [list, throttleText, ...more] = text.split('%');
  if (more.length) throw new Invalid('give one %throttle, at the end');
  const throttle = throttleText === undefined ? null : integer(throttleText, 1, 'a throttle (%N)');
  const indices = new Set<number>();
  for (const part of list.split(',')) {
    const m = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part);
    if (!m) throw new Invalid(`'${part}' is not N, A-B or A-B:step`);
    const lo = integer(m[1], 0);
    const hi = m[2] === undefined ? lo : integer(m[2], 0);
    const step = m[3] === undefined ? 1 : integer(m[3], 1, 'a step');
    if (hi < lo) throw new Invalid(`the range ${part} is reversed`);
    if (hi > MAX_ARRAY_INDEX) throw new Invalid(`indices go up to ${MAX_ARRAY_INDEX}`);
    // Count before expanding: 0-999999 must not build a million-entry set to find out.
    if (Math.floor((hi - lo) / step) + 1 > MAX_ARRAY_TASKS) throw new Invalid(`at most ${MAX_ARRAY_TASKS} tasks`);
    for (let i = lo; i <= hi; i += step) indices.add(i);
    if (indices.size > MAX_ARRAY_TASKS) throw new Invalid(`at most ${MAX_ARRAY_TASKS} tasks`);
  }
  return { indices: [...indices].sort((a, b) => a - b), throttle };
}

/** `afterok:1[:2…]`, several joined with `,`. Fabrik's dependencies are all afterok. */
function parseDependency(text: string): string[] {
  if (text.includes('?'))
    throw new Invalid("'?' (any of) is not supported: Fabrik supports afterok:<job id>[:<job id>…], several joined by ','");
  const ids: string[] = [];
  const refused: string[] = [];
  for (const part of text.split(',')) {
    const [type, ...jobs] = part.split(':');
    if (type.toLowerCase() !== 'afterok') {
      refused.push(type || part);
      continue;
    }
    if (jobs.length === 0) throw new Invalid(`'${part}' names no job`);
    for (const job of jobs) {
      if (!/^\d+$/.test(job))
        throw new Invalid(
          `'${job}' is not a job id${/^\d+_\d+$/.test(job) ? ' (array tasks cannot be waited for one by one)' : ''}`,
        );
      if (!ids.includes(job)) ids.push(job);
    }
  }
  if (refused.length)
    throw new Invalid(
      `${refused.map((t) => `'${t}'`).join(', ')} not supported: Fabrik supports afterok:<job id>[:<job id>…], several joined by ','`,
    );
  return ids;
}

const SIGNAL_NUMBERS: ReadonlyMap<string, Signal> = new Map<string, Signal>([
  // Linux numbers, which is what sbatch's users write.
  ['1', 'HUP'],
  ['2', 'INT'],
  ['10', 'USR1'],
  ['12', 'USR2'],
  ['15', 'TERM'],
]);
const SIGNALS: readonly Signal[] = ['TERM', 'USR1', 'USR2', 'INT', 'HUP'];

/**
 * `[B:|R:]SIG[@secs]`. Slurm sends SIG `secs` before the time limit; Fabrik sends it when it stops
 * the job (cancel, preemption) and kills it `secs` later, which is what checkpointing scripts
 * trap it for. `B:` (the batch shell only) is what Fabrik does anyway: it signals the script.
 */
function signal(value: string | undefined, at: Apply): void {
  const m = /^(?:([BR]+):)?([A-Za-z0-9]+)(?:@(\d+))?$/i.exec(need(value));
  if (!m) throw new Invalid(`'${need(value)}' is not [B:]SIG[@seconds]`);
  if (m[1]?.toUpperCase().includes('R'))
    at.warn("'R:' has no meaning in Fabrik: a job in a reservation ends before the reservation does");
  const name = m[2].toUpperCase().replace(/^SIG/, '');
  const sig = SIGNAL_NUMBERS.get(name) ?? SIGNALS.find((s) => s === name);
  if (!sig) throw new Invalid(`Fabrik sends ${SIGNALS.join(', ')} (or their numbers 15, 10, 12, 2, 1), not ${m[2]}`);
  at.set('signal', sig);
  if (m[3] !== undefined) at.set('gracePeriodSeconds', integer(m[3], 0, 'seconds'));
  else at.set('impliedGraceSeconds', SLURM_SIGNAL_SECONDS);
}

/** ALL, NONE, NIL, or variables (`NAME` from the environment, `NAME=value`), comma-separated. */
function parseExport(text: string): ExportSpec {
  if (text === '') throw new Invalid('give ALL, NONE, or variables');
  let mode: ExportSpec['mode'] = 'listed';
  const vars = new Map<string, string | null>();
  for (const item of text.split(',')) {
    const word = item.toUpperCase();
    if (word === 'ALL' || word === 'NONE' || word === 'NIL') {
      const m = word === 'ALL' ? 'all' : 'none';
      if (mode !== 'listed' && mode !== m) throw new Invalid('give one of ALL and NONE');
      mode = m;
      continue;
    }
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    if (!ENV_NAME.test(name) || name.length > 256) throw new Invalid(`'${name}' is not an environment variable name`);
    if (name === '__proto__') throw new Invalid("'__proto__' cannot be sent: the API's JSON objects drop it");
    vars.set(name, eq < 0 ? null : item.slice(eq + 1));
  }
  // NONE with names is just the names: nothing else goes, which is what listing them means.
  return { mode: mode === 'none' && vars.size ? 'listed' : mode, vars };
}

/** `NAME[,NAME…]`: names only, their values come from the environment. */
function parseSecretEnv(text: string): string[] {
  if (text === '') throw new Invalid('give the names of variables set in your environment');
  return text.split(',').map((name) => {
    if (name.includes('='))
      throw new Invalid(
        `give ${name.slice(0, name.indexOf('='))} its value in your environment, not on the command line (where ps and shell history keep it)`,
      );
    if (!ENV_NAME.test(name) || name.length > 256) throw new Invalid(`'${name}' is not an environment variable name`);
    if (name === '__proto__') throw new Invalid("'__proto__' cannot be sent: the API's JSON objects drop it");
    return name;
  });
}

/**
 * The server expands %j (job id), %x (name), %A (array job id), %a (array index) and %%. Slurm's
 * other patterns are left as written, with a warning; anything else is a mistake.
 */
function filenamePattern(text: string, at: Apply): string {
  const notExpanded = new Set<string>();
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '%') continue;
    // Slurm's %3a pads the number to three digits. The server does not pad, and a width left in
    // the name would give every array task the same file: refused, not passed on.
    const m = /^%(\d{0,8})([\s\S]?)/.exec(text.slice(i, i + 10))!;
    const [, width, letter] = m;
    if (letter === '') throw new Invalid(`a '%' ends the name: write %% for a '%'`);
    if (width) throw new Invalid(`'%${width}${letter}': Fabrik does not pad; write %${letter}`);
    if ('jxAa%'.includes(letter)) {
      i += m[0].length - 1;
      continue;
    }
    if ('uNntsJb'.includes(letter)) notExpanded.add(`%${letter}`);
    else throw new Invalid(`'%${letter}' is not a file name pattern (Fabrik expands %j %x %A %a %%)`);
    i += m[0].length - 1;
  }
  if (notExpanded.size)
    at.warn(
      `${[...notExpanded].join(' ')} ${notExpanded.size === 1 ? 'stays' : 'stay'} as written: Fabrik expands %j %x %A %a %%`,
    );
  return text;
}

function chdir(value: string | undefined, at: Apply): void {
  const v = need(value);
  if (v === '') throw new Invalid('give a directory');
  // sbatch resolves a relative directory against the submission directory; the server does not
  // know that directory: a relative one is inside the job's own folder.
  if (!v.startsWith('/'))
    at.warn(
      "a relative directory is inside the job's own folder on the execution host, not here: give an absolute one for yours",
    );
  at.set('workdir', v);
}

// ---------------------------------------------------------------------------------------------
// Reading options: getopt_long's rules (sbatch's), so that what sbatch accepts is read the same.
// Long options may be abbreviated to any unambiguous prefix; short ones may be clustered (-WN2);
// a required value is the rest of the word or the next word; an optional one only after `=`.

interface Occurrence {
  readonly spec: OptionSpec;
  readonly value: string | undefined;
  readonly origin: Origin;
}

interface Scanned {
  readonly occurrences: Occurrence[];
  /** The first non-option word and the words after it (command line only). */
  readonly positional: string[] | null;
  /** The words after `--` (command line only). */
  readonly command: string[] | null;
  readonly problems: Ranked[];
}

/**
 * The option a long name (or an unambiguous prefix of one) names. When none does, the message,
 * and whether the next word is likely its value: so that `--tiem 1:00 job.sh` reports the typo
 * and does not also take 1:00 for the script.
 */
function resolveLong(name: string): OptionSpec | { message: string; takesValue: boolean } {
  const exact = LONG.get(name);
  if (exact) return exact;
  const matches = [...LONG.entries()].filter(([n]) => name !== '' && n.startsWith(name));
  const specs = [...new Set(matches.map(([, s]) => s))];
  if (specs.length === 1) return specs[0];
  if (specs.length > 1)
    return {
      message: `ambiguous: --${name} could be ${specs.map((s) => `--${s.names[0]}`).join(', ')}`,
      takesValue: specs.every((s) => s.arity === 'required'),
    };
  const suggestion = closest(name, [...LONG.keys()]);
  return {
    message: `unknown option${suggestion ? `: did you mean --${suggestion}?` : ''}`,
    takesValue: suggestion !== null && LONG.get(suggestion)!.arity === 'required',
  };
}

/** The known name nearest to `name`, if it is near enough to be a typo. */
function closest(name: string, known: string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(1, Math.min(3, Math.floor(name.length / 3))) ? best : null;
}

/** Levenshtein distance with adjacent transpositions counted as one edit (--tiem → --time). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

function scan(words: readonly string[], directive: Origin['directive']): Scanned {
  const occurrences: Occurrence[] = [];
  const problems: Ranked[] = [];
  let start = 0;
  const at = (text: string): Origin => ({ text, directive, at: directive ? directive.line : start });
  const problem = (text: string, message: string) => problems.push(ranked(at(text), message));
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    start = i;
    if (word === '--') {
      if (!directive) return { occurrences, problems, positional: null, command: words.slice(i + 1) };
      problem(word, "'--' belongs on the command line, before the command to run");
      continue;
    }
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = eq < 0 ? word.slice(2) : word.slice(2, eq);
      const spec = resolveLong(name);
      if (!('names' in spec)) {
        const skip = spec.takesValue && eq < 0 && i + 1 < words.length && !words[i + 1].startsWith('-');
        problem(skip ? `${word} ${words[++i]}` : word, spec.message);
        continue;
      }
      let value = eq < 0 ? undefined : word.slice(eq + 1);
      let text = word;
      if (spec.arity === 'none' && value !== undefined) {
        problem(word, `--${spec.names[0]} takes no value`);
        continue;
      }
      if (spec.arity === 'required' && value === undefined) {
        if (i + 1 >= words.length) {
          problem(word, `--${spec.names[0]} needs a value`);
          continue;
        }
        value = words[++i];
        text = `${word} ${value}`;
      }
      occurrences.push({ spec, value, origin: at(text) });
      continue;
    }
    if (word.startsWith('-') && word.length > 1) {
      for (let j = 1; j < word.length; j++) {
        const letter = word[j];
        const spec = SHORT.get(letter);
        if (!spec) {
          problem(`-${letter}`, 'unknown option');
          break;
        }
        if (spec.arity !== 'required') {
          occurrences.push({ spec, value: undefined, origin: at(`-${letter}`) });
          continue;
        }
        let value = word.slice(j + 1);
        let text = `-${letter}${value}`;
        if (value === '') {
          if (i + 1 >= words.length) {
            problem(`-${letter}`, `-${letter} (--${spec.names[0]}) needs a value`);
            break;
          }
          value = words[++i];
          text = `-${letter} ${value}`;
        }
        occurrences.push({ spec, value, origin: at(text) });
        break;
      }
      continue;
    }
    if (!directive) return { occurrences, problems, positional: words.slice(i), command: null };
    problem(word, 'not an option (sbatch stops reading there; Fabrik refuses it)');
  }
  return { occurrences, problems, positional: null, command: null };
}

/**
 * The script path among `fabrik submit`'s arguments (the first non-option word), or null when
 * there is none (`--wrap`, `-- cmd`, or a script on standard input): what the caller reads and
 * passes to parseSubmission.
 */
export function scriptPathOf(args: readonly string[]): string | null {
  return scan(args, null).positional?.[0] ?? null;
}

// ---------------------------------------------------------------------------------------------
// Reading the script's directives, as sbatch does: from the top, `#SBATCH` lines are options;
// other comment lines and blank lines are skipped; the first other line ends the directives.

interface DirectiveLine {
  readonly line: number;
  readonly magic: string;
  readonly words: string[];
}

/** The words of a directive line, as sbatch splits them: quotes group, `\` escapes, `#` ends the line. */
function directiveWords(text: string): string[] | string {
  const words: string[] = [];
  let word: string | null = null;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\\') {
      if (i + 1 < text.length) word = (word ?? '') + text[++i];
      continue;
    }
    if (quote) {
      if (c === quote) quote = null;
      else word = (word ?? '') + c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
      continue;
    }
    if (c === '#') break;
    if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
      continue;
    }
    word = (word ?? '') + c;
  }
  if (quote) return `unmatched ${quote}`;
  if (word !== null) words.push(word);
  return words;
}

function readDirectives(text: string, warnings: string[], problems: Ranked[]): DirectiveLine[] {
  const out: DirectiveLine[] = [];
  const lines = text.split('\n');
  let warnedSlurm = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    const magic = /^#(SBATCH|SLURM)(?=\s|$)/.exec(line);
    if (!magic) {
      const rest = line.trimStart();
      if (rest === '') continue;
      if (!rest.startsWith('#')) break;
      // Indented or glued to its option, #SBATCH is no directive to sbatch either; its options
      // would silently do nothing, so say so.
      if (/^#SBATCH/.test(rest))
        warnings.push(`line ${i + 1}: '${rest.slice(0, 40)}' is not read: a directive is '#SBATCH ' at the start of a line`);
      continue;
    }
    if (magic[1] === 'SLURM' && !warnedSlurm) {
      warnedSlurm = true;
      warnings.push(`line ${i + 1}: #SLURM is read as #SBATCH (as sbatch does); write #SBATCH`);
    }
    const words = directiveWords(line.slice(magic[0].length));
    if (typeof words === 'string')
      problems.push({ directive: `${line.trim()} (line ${i + 1})`, message: words, group: 'script', at: i + 1 });
    else out.push({ line: i + 1, magic: magic[0], words });
  }
  return out;
}

/** Checks of the script's text that sbatch makes too, and the interpreter Fabrik does not use. */
function checkScript(script: { path: string; text: string }, warnings: string[], problems: Ranked[]): void {
  const where = `script ${script.path}`;
  const problem = (message: string) => problems.push({ directive: where, message, group: 'script', at: 0 });
  if (script.text.includes('\r\n')) problem('has DOS line breaks (\\r\\n), which bash does not read: convert it (dos2unix)');
  if (script.text.includes('\0')) problem('contains a NUL character: not a text file');
  const shebang = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(script.text);
  if (shebang) {
    const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
    const interpreter = base(shebang[1]) === 'env' && shebang[2] ? base(shebang[2]) : base(shebang[1]);
    if (interpreter !== 'bash' && interpreter !== 'sh')
      warnings.push(`${where}: Fabrik runs batch scripts with bash, not with ${interpreter} (#!${shebang[0].slice(2).trim()})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Putting it together.

/**
 * The SubmitRequest that `fabrik submit <args>` (with `script`'s directives) asks for, and the
 * warnings to show. Throws SubmitOptionsError naming every bad option, and nothing else.
 */
export function parseSubmission(input: SubmissionInput): ParsedSubmission {
  const env = input.env ?? {};
  const warnings: string[] = [];
  const problems: Ranked[] = [];
  /** Problems of the request as a whole (the GPU shape, the environment, the contract's checks). */
  const late: SubmitProblem[] = [];

  const cli = scan(input.args, null);
  problems.push(...cli.problems);

  // Which form: a script (named by the first non-option word, or passed without one: standard
  // input), --wrap, or `-- cmd`. Directives are read only from a script.
  const script = input.script ?? null;
  const wantsWrap = cli.occurrences.some((o) => o.spec.names[0] === 'wrap');
  let form: SubmissionForm = 'script';
  // When the command line already has problems, an unknown option's value may have been read as
  // the script's path: what the form would say then is an echo of that problem, and is not told.
  let formFailed = false;
  const formProblem = (message: string) => {
    formFailed = true;
    if (cli.problems.length === 0) problems.push({ directive: 'fabrik submit', message, group: 'form', at: 0 });
  };
  if (cli.command) {
    form = 'command';
    if (cli.command.length === 0) formProblem("give the command to run after '--'");
    if (wantsWrap || script) formProblem("give one of a script, --wrap and '-- command'");
  } else if (wantsWrap) {
    form = 'wrap';
    if (cli.positional || script) formProblem('a script or its arguments are not allowed with --wrap (as in sbatch)');
  } else if (cli.positional && cli.positional.length > 1) {
    formProblem(
      `arguments after the script (${cli.positional.slice(1).join(' ')}) are not passed: Fabrik's batch scripts take none. ` +
        "Pass values with --export=NAME=value, or run '-- bash script args…'",
    );
  } else if (cli.positional && !script) {
    formProblem(`the text of ${cli.positional[0]} was not given (read the file the first non-option argument names)`);
  } else if (!script) {
    formProblem("nothing to run: give a script, --wrap='command' or '-- command args…'");
  }

  const directives: Occurrence[] = [];
  if (form === 'script' && script) {
    checkScript(script, warnings, problems);
    for (const d of readDirectives(script.text, warnings, problems)) {
      const s = scan(d.words, { magic: d.magic, line: d.line });
      problems.push(...s.problems);
      directives.push(...s.occurrences);
    }
  }

  // The command line wins: a directive whose slot the command line sets is not read at all.
  const cliSlots = new Set(cli.occurrences.map((o) => slotOf(o.spec)));
  const state: State = {};
  const failedSlots = new Set<string>();
  for (const occ of [...directives.filter((o) => !cliSlots.has(slotOf(o.spec))), ...cli.occurrences]) {
    const label = describe(occ.origin);
    const at: Apply = {
      origin: occ.origin,
      set: (field, value) => {
        (state as Record<string, unknown>)[field] = { value, origin: occ.origin };
      },
      get: (field) => state[field]?.value,
      warn: (message) => warnings.push(`${label}: ${message}`),
    };
    try {
      occ.spec.apply(occ.value, at);
    } catch (e) {
      if (!(e instanceof Invalid || e instanceof InvalidSlurmTimeError)) throw e;
      problems.push(ranked(occ.origin, e.message));
      failedSlots.add(slotOf(occ.spec));
    }
  }

  const request: SubmitRequest = {};
  /** Request field → the option that set it, for the contract's own validation messages. */
  const origins = new Map<string, string>();
  const put = <K extends keyof SubmitRequest>(field: K, value: SubmitRequest[K], origin: string) => {
    request[field] = value;
    origins.set(field, origin);
  };
  const copy = <K extends keyof Fields & keyof SubmitRequest>(field: K) => {
    const s = state[field];
    if (s) put(field, s.value as SubmitRequest[K], describe(s.origin));
  };

  // What to run, and the default name sbatch would give it.
  const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1).slice(0, MAX_NAME);
  if (!formFailed) {
    if (form === 'command' && cli.command) {
      put('command', cli.command, `-- ${cli.command[0]}`);
      if (baseName(cli.command[0])) put('name', baseName(cli.command[0]), `-- ${cli.command[0]}`);
    } else if (form === 'wrap' && state.wrap) {
      // sbatch writes the same kind of script (with #!/bin/sh; Fabrik runs bash).
      put('script', `#!/bin/bash\n# This script was created by fabrik submit --wrap.\n\n${state.wrap.value}\n`, '--wrap');
      put('name', 'wrap', '--wrap');
    } else if (script) {
      put('script', script.text, `script ${script.path}`);
      if (baseName(script.path) && script.path !== '-') put('name', baseName(script.path), `script ${script.path}`);
    }
  }

  for (const field of ['name', 'project', 'workdir', 'zone', 'output', 'error'] as const) copy(field);
  for (const field of ['priorityClass', 'topology', 'cpusPerTask', 'walltimeSeconds', 'minRuntimeSeconds'] as const) copy(field);
  for (const field of ['checkpointIntervalSeconds', 'signal', 'exclusive', 'afterOk', 'array', 'requeue'] as const) copy(field);
  for (const field of ['datasets', 'purpose', 'reservation'] as const) copy(field);
  if (state.memoryMb && state.memoryMb.value !== null) copy('memoryMb');
  if (state.gracePeriodSeconds) copy('gracePeriodSeconds');
  else if (state.impliedGraceSeconds)
    put('gracePeriodSeconds', state.impliedGraceSeconds.value, describe(state.impliedGraceSeconds.origin));

  if (!failedSlots.has('gpus') && !failedSlots.has('nodes')) shape(state, put, late);
  tasks(state, request, warnings);
  const secretNames = secretEnv(state.secretNames, env, put, late);
  exportEnv(state.export, env, secretNames, put, warnings, late);
  const sbatchVars = Object.keys(env).filter((k) => k.startsWith('SBATCH_'));
  if (sbatchVars.length)
    warnings.push(`environment: ${sbatchVars.join(', ')} not read: fabrik submit takes options, not SBATCH_* variables`);

  // The contract has the last word; its issues are told as the options that set the field. When
  // options already failed, issues of fields nothing set are their echoes, not news.
  const checked = SubmitRequest.safeParse(request);
  if (!checked.success) {
    const hadProblems = problems.length + late.length > 0;
    for (const issue of checked.error.issues) {
      const field = String(issue.path[0] ?? '');
      const origin = origins.get(field);
      if (hadProblems && !origin) continue;
      const where = issue.path.length ? ` (${issue.path.map(String).join('.')})` : '';
      late.push({ directive: origin ?? field, message: `${issue.message}${where}` });
    }
  }
  if (problems.length + late.length) {
    const rank = (p: Ranked) => GROUP_ORDER.indexOf(p.group);
    const told = problems.sort((a, b) => rank(a) - rank(b) || a.at - b.at); // sort is stable
    throw new SubmitOptionsError([...told.map(({ directive, message }) => ({ directive, message })), ...late]);
  }
  return { request, warnings, form };
}

/**
 * The GPU request: a count the scheduler shapes (`--gpus` alone), or nodes × GPUs per node
 * (`--gpus-per-node` or `--gres=gpu:N`, per node as in Slurm, with `--nodes`, default one node).
 * `--gpus` with `--nodes` is split evenly over the nodes.
 */
function shape(
  state: State,
  put: <K extends keyof SubmitRequest>(field: K, value: SubmitRequest[K], origin: string) => void,
  problems: SubmitProblem[],
): void {
  const { nodes, gpus, gpusPerNode } = state;
  const n = nodes?.value;
  if (gpusPerNode) {
    const perNode = gpusPerNode.value;
    let count = n ?? 1;
    let countOrigin = nodes ? describe(nodes.origin) : describe(gpusPerNode.origin);
    if (gpus) {
      // Both a total and a per-node count: Slurm derives the nodes from them, or checks them against --nodes.
      const fits = gpus.value % perNode === 0 && (n === undefined || gpus.value === n * perNode);
      if (fits && n === undefined) [count, countOrigin] = [gpus.value / perNode, describe(gpus.origin)];
      if (!fits) {
        problems.push({
          directive: describe(gpus.origin),
          message: `${gpus.value} GPUs is not ${n === undefined ? 'a whole number of nodes' : `${n} nodes`} × ${perNode} GPUs per node (${describe(gpusPerNode.origin)})`,
        });
        return;
      }
    }
    put('nodes', count, countOrigin);
    put('gpusPerNode', perNode, describe(gpusPerNode.origin));
  } else if (gpus) {
    if (n === undefined) return put('gpus', gpus.value, describe(gpus.origin));
    if (gpus.value % n !== 0) {
      problems.push({
        directive: describe(gpus.origin),
        message: `${gpus.value} GPUs do not split evenly over ${n} nodes (${describe(nodes!.origin)}): give --gpus-per-node`,
      });
      return;
    }
    put('nodes', n, describe(nodes!.origin));
    put('gpusPerNode', gpus.value / n, describe(gpus.origin));
  } else if (nodes && n !== undefined && n > 1) {
    problems.push({
      directive: describe(nodes.origin),
      message: 'Fabrik allocates GPUs: give --gpus-per-node (or --gres=gpu:N) with --nodes',
    });
  }
  // One node and no GPU count: the server's default request, which is one node anyway.
}

/** Fabrik starts one process per node; task counts that say otherwise get a warning. */
function tasks(state: State, request: SubmitRequest, warnings: string[]): void {
  const perNode = state.ntasksPerNode;
  if (perNode && perNode.value !== 1)
    warnings.push(
      `${describe(perNode.origin)}: not honoured: Fabrik starts one process per node (the script); ` +
        `start the ${perNode.value} ranks per node yourself (torchrun, mpirun)`,
    );
  const total = state.ntasks;
  const nodes = request.nodes ?? (request.gpus === undefined ? 1 : undefined);
  if (total && total.value !== nodes)
    warnings.push(
      `${describe(total.origin)}: not honoured: Fabrik starts one process per node (the script); start the ranks yourself`,
    );
}

/** --secret-env: each name's value from the environment; the names, to keep them out of env. */
function secretEnv(
  spec: State['secretNames'],
  env: Record<string, string | undefined>,
  put: <K extends keyof SubmitRequest>(field: K, value: SubmitRequest[K], origin: string) => void,
  problems: SubmitProblem[],
): Set<string> {
  if (!spec) return new Set();
  const origin = describe(spec.origin);
  const out = new Map<string, string>();
  for (const name of spec.value) {
    const value = Object.hasOwn(env, name) ? env[name] : undefined;
    const why = value === undefined ? null : fabrikCredentialIn(name, value);
    if (value === undefined)
      problems.push({
        directive: origin,
        message: `${name} is not set in the environment: --secret-env takes its value from there`,
      });
    else if (why) problems.push({ directive: origin, message: why });
    else if (value.length > MAX_ENV_VALUE)
      problems.push({ directive: origin, message: `${name}'s value is longer than ${MAX_ENV_VALUE} characters` });
    else out.set(name, value);
  }
  put('secretEnv', Object.fromEntries(out), origin);
  return new Set(spec.value);
}

/**
 * The CLI's own connection settings: never a job's business, and set in every shell that uses the
 * CLI, so they are left out without a word (a warning on every submit would teach people to skip
 * warnings). Any other FABRIK_* variable left out is named.
 */
const CLI_OWN = new Set(['FABRIK_TOKEN', 'FABRIK_URL', 'FABRIK_DATA']);

/**
 * The job's environment. Default ALL, as sbatch: every variable of the submitting environment
 * whose name the contract accepts (exported bash functions and the like are left out silently;
 * values too long for the contract with a warning). `NAME=value` wins over the environment.
 * ALL never takes Fabrik's own variables (FABRIK_*: the CLI's token, the server's settings) nor a
 * value holding an API token, and says which it left out; naming a credential is refused.
 * Variables given with --secret-env go there, not here.
 */
function exportEnv(
  spec: State['export'],
  env: Record<string, string | undefined>,
  secret: ReadonlySet<string>,
  put: <K extends keyof SubmitRequest>(field: K, value: SubmitRequest[K], origin: string) => void,
  warnings: string[],
  problems: SubmitProblem[],
): void {
  const origin = spec ? describe(spec.origin) : '--export (default ALL)';
  const mode = spec?.value.mode ?? 'all';
  const out = new Map<string, string>();
  const tooLong: string[] = [];
  const leftOut: string[] = [];
  if (mode === 'all')
    for (const [name, value] of Object.entries(env)) {
      if (!ENV_NAME.test(name) || name.length > 256 || name === '__proto__' || typeof value !== 'string') continue;
      if (secret.has(name)) continue;
      if (CLI_OWN.has(name)) continue;
      if (name.toUpperCase().startsWith('FABRIK_') || fabrikCredentialIn(name, value) !== null) leftOut.push(name);
      else if (value.length > MAX_ENV_VALUE) tooLong.push(name);
      else out.set(name, value);
    }
  const unset: string[] = [];
  for (const [name, value] of spec?.value.vars ?? []) {
    const v = value ?? (Object.hasOwn(env, name) ? env[name] : undefined);
    const why = v === undefined ? null : fabrikCredentialIn(name, v);
    if (secret.has(name))
      problems.push({ directive: origin, message: `${name} is given with --secret-env too: give it in one of them` });
    else if (v === undefined) unset.push(name);
    else if (why) problems.push({ directive: origin, message: why });
    else if (v.length > MAX_ENV_VALUE)
      problems.push({ directive: origin, message: `${name}'s value is longer than ${MAX_ENV_VALUE} characters` });
    else out.set(name, v);
  }
  if (tooLong.length) warnings.push(`${origin}: not exported, longer than ${MAX_ENV_VALUE} characters: ${tooLong.join(', ')}`);
  if (unset.length) warnings.push(`${origin}: not set in the environment, not exported: ${unset.join(', ')}`);
  if (leftOut.length)
    warnings.push(
      `${origin}: not exported: ${leftOut.sort().join(', ')} (Fabrik's own variables and API tokens never go into a job; ` +
        'name a FABRIK_* setting in --export to send it, or give a secret with --secret-env)',
    );
  put('env', Object.fromEntries(out), origin);
}

// Job isolation for the local executor: what this host can do (probeIsolation) and what a rank's
// sandbox is made of (sandboxPlan). The tool is bubblewrap (docs/decisions/0001-job-isolation.md
// says why): run by the job's own Unix user, it gives the job its own mount, PID, IPC and UTS
// namespaces in which only /usr, a few files of /etc, the job's folder, its datasets (read-only)
// and its allocated GPU device nodes exist. The network namespace (one per job) and the cgroup are
// made by the executor as root; the rank wrapper enters them before the job's code runs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type CgroupSupport, describeCgroups, detectCgroups } from './cgroup.js';

/** What this host offers for isolating jobs, and what is missing. */
export interface IsolationProbe {
  /** Jobs can be isolated: root, bubblewrap, user namespaces, setpriv, unshare, nsenter and ip. */
  readonly available: boolean;
  /** Why not, one sentence each, with what to install or change. */
  readonly problems: readonly string[];
  readonly bwrap: string | null;
  readonly cgroups: CgroupSupport;
}

function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const p = path.join(dir, bin);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // Not here.
    }
  }
  return null;
}

export function probeIsolation(): IsolationProbe {
  const problems: string[] = [];
  const cgroups = detectCgroups();
  if (process.platform !== 'linux') {
    return { available: false, problems: ['jobs can be isolated on Linux only'], bwrap: null, cgroups };
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    problems.push(
      'the server does not run as root, so it cannot run jobs as their members’ Unix users or give them network namespaces and cgroups',
    );
  const bwrap = which('bwrap');
  if (!bwrap) problems.push('bubblewrap is not installed (scripts/isolation/install.sh, or: apt-get install bubblewrap)');
  for (const tool of ['setpriv', 'unshare', 'nsenter'])
    if (!which(tool)) problems.push(`${tool} is not installed (apt-get install util-linux)`);
  if (!which('ip')) problems.push('ip is not installed (apt-get install iproute2)');
  try {
    const max = Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim());
    if (!(max > 0)) problems.push('user namespaces are disabled (sysctl user.max_user_namespaces=0): bubblewrap needs them');
  } catch {
    problems.push('user namespaces are not available in this kernel: bubblewrap needs them');
  }
  if (problems.length === 0 && bwrap) {
    // The kernel or a security module may still refuse (Debian's kernel.unprivileged_userns_clone,
    // AppArmor's userns restriction): one real sandbox as nobody says for sure.
    try {
      execFileSync(
        'setpriv',
        ['--reuid', '65534', '--regid', '65534', '--clear-groups', bwrap, '--unshare-pid', ...systemBinds(), '/usr/bin/true'],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 15_000 },
      );
    } catch (err) {
      const e = err as Error & { stderr?: Buffer };
      problems.push(
        `bubblewrap cannot make a sandbox as an unprivileged user (${(e.stderr?.toString() ?? e.message).trim().split('\n')[0]}); enable unprivileged user namespaces`,
      );
    }
  }
  return { available: problems.length === 0, problems, bwrap, cgroups };
}

/** A sentence for operators: what isolation is in force. */
export function describeIsolation(p: IsolationProbe): string {
  if (!p.available) return `jobs are NOT isolated: ${p.problems.join('; ')}`;
  return `jobs isolated (bubblewrap: own user, mount, PID, IPC and network namespaces; ${describeCgroups(p.cgroups)})`;
}

/** Files of /etc a program commonly needs (users' names, name resolution, TLS roots, the loader's cache); never shadow. */
const ETC_FILES = [
  'passwd',
  'group',
  'hosts',
  'host.conf',
  'resolv.conf',
  'nsswitch.conf',
  'gai.conf',
  'protocols',
  'services',
  'localtime',
  'timezone',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'ssl',
  'ca-certificates',
  'ca-certificates.conf',
  'alternatives',
  'mime.types',
  'os-release',
  'debian_version',
  'profile',
  'bash.bashrc',
];

/** Device files of the NVIDIA driver a CUDA program opens besides its GPUs' own /dev/nvidiaN. */
const NVIDIA_CONTROL = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'];

export interface SandboxInput {
  /** The job's folder: the only place it may write (besides its own /tmp). */
  readonly jobDir: string;
  readonly cwd: string;
  /** Datasets its admission allowed: bound read-only at their own path. */
  readonly datasets: readonly string[];
  /** More folders the job may read (the Fabrik installation, for its bundled engine). */
  readonly readOnly: readonly string[];
  /** Folders hidden under an empty tmpfs even when inside a read-only one (the data folder). */
  readonly hidden: readonly string[];
  /** Where the GPUs' device files are (/dev; tests: fake ones). */
  readonly deviceDir: string;
  readonly gpus: readonly number[];
  readonly env: Readonly<Record<string, string>>;
}

/** What the wrapper does to start a rank in its sandbox (see rank-wrapper.ts). */
export interface SandboxPlan {
  /** Mounted by root in a private mount namespace, where the job's user can reach them: [source, name under the stage]. */
  readonly stage: readonly (readonly [string, string])[];
  /**
   * bubblewrap's options, read from a file descriptor so that the environment is in no command
   * line (the command itself must follow on the command line: bubblewrap reads only options so).
   */
  readonly bwrapArgs: readonly string[];
  /** Device numbers (`major:minor`) of the device files bound in, for the devices cgroup. */
  readonly devices: readonly string[];
}

/** /usr read-only, and /bin, /lib… as on the host: links into /usr (merged /usr, Debian 12) or folders. */
function systemBinds(): string[] {
  const a = ['--ro-bind', '/usr', '/usr'];
  for (const top of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const p = `/${top}`;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) a.push('--symlink', fs.readlinkSync(p), p);
    else if (st.isDirectory()) a.push('--ro-bind', p, p);
  }
  return a;
}

export const STAGE_DIR = '/run/fabrik-sandbox';

/** Whether `p` is `dir` or inside it. */
export const isInside = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);

export function sandboxPlan(s: SandboxInput): SandboxPlan {
  const a: string[] = [
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    '--die-with-parent',
    // Its own session: without a controlling terminal shared with anyone, TIOCSTI cannot type into one.
    '--new-session',
    '--hostname',
    'fabrik-job',
    ...systemBinds(),
  ];
  for (const f of ETC_FILES) a.push('--ro-bind-try', `/etc/${f}`, `/etc/${f}`);
  a.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--dir', '/var/tmp', '--tmpfs', '/run');
  for (const p of s.readOnly) a.push('--ro-bind-try', p, p);
  for (const p of s.hidden) if (s.readOnly.some((r) => isInside(p, r))) a.push('--tmpfs', p);
  const stage: (readonly [string, string])[] = [[s.jobDir, 'job']];
  a.push('--bind', `${STAGE_DIR}/job`, s.jobDir);
  s.datasets.forEach((d, i) => {
    stage.push([d, `data${i}`]);
    a.push('--ro-bind', `${STAGE_DIR}/data${i}`, d);
  });
  const devices: string[] = [];
  const bindDevice = (name: string) => {
    const src = path.join(s.deviceDir, name);
    let st: fs.Stats;
    try {
      st = fs.statSync(src);
    } catch {
      return false;
    }
    if (!st.isCharacterDevice()) return false;
    a.push('--dev-bind', src, `/dev/${name}`);
    devices.push(`${major(st.rdev)}:${minor(st.rdev)}`);
    return true;
  };
  for (const g of s.gpus) bindDevice(`nvidia${g}`);
  if (s.gpus.length > 0) for (const c of NVIDIA_CONTROL) bindDevice(c);
  a.push('--chdir', s.cwd, '--clearenv');
  for (const [k, v] of Object.entries(s.env)) a.push('--setenv', k, v);
  return { stage, bwrapArgs: a, devices };
}

// Linux's dev_t encoding (glibc's gnu_dev_major/minor).
const major = (dev: number) => Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
const minor = (dev: number) => Number(BigInt(dev) & 0xffn) | Number((BigInt(dev) >> 12n) & ~0xffn);

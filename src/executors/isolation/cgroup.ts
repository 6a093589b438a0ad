// One cgroup per job, on cgroup v1 (a folder per controller: memory, cpu, pids, devices) or v2
// (one folder with memory.max, cpu.max, pids.max). The job's processes enter it before its code
// runs (the sandbox's first step writes its own pid into cgroup.procs), so every process the job
// starts is counted and limited, and the whole job can be signalled or killed through it.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

export type CgroupVersion = 'v1' | 'v2';

/** What this host lets Fabrik limit, found by looking at /sys/fs/cgroup. */
export interface CgroupSupport {
  readonly version: CgroupVersion | null;
  readonly root: string;
  readonly memory: boolean;
  readonly cpu: boolean;
  readonly pids: boolean;
  /** v1 only: v2 needs an eBPF program, so there only the bound device nodes keep GPUs apart. */
  readonly devices: boolean;
}

export interface JobLimits {
  readonly memoryBytes: number;
  /** CPUs' worth of time per period (1.5: one and a half CPUs). */
  readonly cpus: number;
  readonly pids: number;
  /** Character devices the job may open besides the usual /dev ones: `major:minor`. */
  readonly devices: readonly string[];
}

/** The job's cgroup: where its processes are listed, and the folders to remove when it ends. */
export interface JobCgroup {
  readonly version: CgroupVersion;
  /** cgroup.procs files the sandbox writes its pid into (one per v1 controller, one on v2). */
  readonly procs: readonly string[];
  /** Folders to remove when the job ends, deepest first. */
  readonly dirs: readonly string[];
  /** Where the kernel counts the job's OOM kills (v1 memory.oom_control, v2 memory.events). */
  readonly oomEvents: string | null;
}

const V1_CONTROLLERS = ['memory', 'cpu', 'pids', 'devices'] as const;

/** What the kernel allows every job: /dev/null, zero, full, random, urandom, tty, ptmx and ptys. */
const BASE_DEVICES = ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:2 rwm', 'c 136:* rwm'];

const writable = (p: string) => {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
};

export function detectCgroups(root = '/sys/fs/cgroup'): CgroupSupport {
  const controllersFile = path.join(root, 'cgroup.controllers');
  if (fs.existsSync(controllersFile)) {
    // A pure v2 hierarchy: the controllers the root offers to its children.
    const offered = new Set(fs.readFileSync(controllersFile, 'utf8').trim().split(/\s+/));
    const ok = writable(root);
    return {
      version: 'v2',
      root,
      memory: ok && offered.has('memory'),
      cpu: ok && offered.has('cpu'),
      pids: ok && offered.has('pids'),
      devices: false,
    };
  }
  const has = (c: string) => writable(path.join(root, c)) && fs.existsSync(path.join(root, c, 'cgroup.procs'));
  const v1 = { memory: has('memory'), cpu: has('cpu'), pids: has('pids'), devices: has('devices') };
  const any = v1.memory || v1.cpu || v1.pids || v1.devices;
  return { version: any ? 'v1' : null, root, ...v1 };
}

/** A sentence for operators: which limits hold on this host. */
export function describeCgroups(c: CgroupSupport): string {
  if (c.version === null) return 'no writable cgroups: no memory, CPU or process limits';
  const on = (['memory', 'cpu', 'pids', 'devices'] as const).filter((k) => c[k]);
  const off = (['memory', 'cpu', 'pids', 'devices'] as const).filter((k) => !c[k]);
  const devicesNote = c.version === 'v2' ? ' (devices: only the allocated GPU nodes are bound into the sandbox)' : '';
  return `cgroup ${c.version}: ${on.join(', ')} enforced${off.length ? `; not enforced: ${off.join(', ')}` : ''}${devicesNote}`;
}

/** Creates the job's cgroup with its limits; `name` is unique per job and installation. */
export async function createJobCgroup(c: CgroupSupport, name: string, limits: JobLimits): Promise<JobCgroup | null> {
  if (c.version === null) return null;
  const memory = String(Math.max(1 << 20, Math.floor(limits.memoryBytes)));
  const period = 100_000;
  const quota = String(Math.max(1000, Math.round(limits.cpus * period)));
  if (c.version === 'v2') {
    const parent = path.join(c.root, 'fabrik');
    await fsp.mkdir(parent, { recursive: true });
    const wanted = (['memory', 'cpu', 'pids'] as const).filter((k) => c[k]);
    // Children get only the controllers their parent hands down.
    for (const dir of [c.root, parent])
      await fsp.writeFile(path.join(dir, 'cgroup.subtree_control'), wanted.map((k) => `+${k}`).join(' '));
    const dir = path.join(parent, name);
    await fsp.mkdir(dir, { recursive: true });
    if (c.memory) {
      await fsp.writeFile(path.join(dir, 'memory.max'), memory);
      // Swap would let a job past its memory limit; where swap accounting is off the file is absent.
      await fsp.writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => {});
    }
    if (c.cpu) await fsp.writeFile(path.join(dir, 'cpu.max'), `${quota} ${period}`);
    if (c.pids) await fsp.writeFile(path.join(dir, 'pids.max'), String(limits.pids));
    return {
      version: 'v2',
      procs: [path.join(dir, 'cgroup.procs')],
      dirs: [dir],
      oomEvents: c.memory ? path.join(dir, 'memory.events') : null,
    };
  }
  const dirs: string[] = [];
  for (const ctl of V1_CONTROLLERS) {
    if (!c[ctl]) continue;
    const dir = path.join(c.root, ctl, 'fabrik', name);
    await fsp.mkdir(dir, { recursive: true });
    dirs.push(dir);
    if (ctl === 'memory') {
      await fsp.writeFile(path.join(dir, 'memory.limit_in_bytes'), memory);
      // memsw (memory + swap) exists only with swap accounting; it must be set after the plain limit.
      await fsp.writeFile(path.join(dir, 'memory.memsw.limit_in_bytes'), memory).catch(() => {});
    } else if (ctl === 'cpu') {
      await fsp.writeFile(path.join(dir, 'cpu.cfs_period_us'), String(period));
      await fsp.writeFile(path.join(dir, 'cpu.cfs_quota_us'), quota);
    } else if (ctl === 'pids') {
      await fsp.writeFile(path.join(dir, 'pids.max'), String(limits.pids));
    } else {
      await fsp.writeFile(path.join(dir, 'devices.deny'), 'a');
      for (const rule of [...BASE_DEVICES, ...limits.devices.map((d) => `c ${d} rwm`)])
        await fsp.writeFile(path.join(dir, 'devices.allow'), rule);
    }
  }
  return {
    version: 'v1',
    procs: dirs.map((d) => path.join(d, 'cgroup.procs')),
    dirs,
    oomEvents: c.memory ? path.join(c.root, 'memory', 'fabrik', name, 'memory.oom_control') : null,
  };
}

/** Where the cgroup of that name is (whether or not it exists): to remove one no handle names. */
export function jobCgroupAt(c: CgroupSupport, name: string): Pick<JobCgroup, 'procs' | 'dirs'> | null {
  if (c.version === null) return null;
  const dirs =
    c.version === 'v2'
      ? [path.join(c.root, 'fabrik', name)]
      : V1_CONTROLLERS.filter((ctl) => c[ctl]).map((ctl) => path.join(c.root, ctl, 'fabrik', name));
  return { procs: dirs.map((d) => path.join(d, 'cgroup.procs')), dirs };
}

/** The pids in the job's cgroup now (every process of the job, in the host's pid namespace). */
export function cgroupPids(procsFile: string): number[] {
  try {
    return fs
      .readFileSync(procsFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * Kills what is left in the job's cgroup and removes it. A folder that still holds a process
 * (one that is exiting) cannot be removed yet: tried again for a few seconds.
 */
export async function removeJobCgroup(cg: Pick<JobCgroup, 'procs' | 'dirs'>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    for (const procs of cg.procs)
      for (const pid of cgroupPids(procs)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
    let left = 0;
    for (const dir of cg.dirs) {
      try {
        await fsp.rmdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left++;
      }
    }
    if (left === 0) return;
    if (attempt >= 50) throw new Error(`cannot remove cgroup ${cg.dirs.join(', ')}: processes remain`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

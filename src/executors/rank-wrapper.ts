// The program that stands between the local executor and one rank. The server may restart while a
// job runs, and then nobody is left to wait() for the rank: so a parent that lives as long as the
// rank waits for it and writes how it ended (exit code, or the signal that killed it) to a file.
//
// It is a Node script rather than `bash -c '"$@"; echo $? > file'` for three reasons: bash's $?
// cannot tell `exit 143` from death by SIGTERM, bash in the background makes its children ignore
// SIGINT, and a job's BASH_ENV or NODE_OPTIONS must not reach the wrapper (it runs with an empty
// environment and hands the job's environment only to the rank).
//
// Signals: the executor signals the whole process group, so the rank receives them directly; the
// wrapper only has to survive the catchable ones to write the file (libuv gives the rank default
// dispositions again). Forwarding them as well would deliver a checkpoint signal twice. SIGKILL
// kills the wrapper too: then there is no file, and the executor knows it sent the SIGKILL.

/** The exit file's content. */
export interface ExitRecord {
  readonly code: number | null;
  /** Without the SIG prefix (TERM, KILL, …), as ExecutorEvent reports it. */
  readonly signal: string | null;
  /** Epoch seconds. */
  readonly at: number;
}

/** What the wrapper is told, as JSON in the file named by its only argument. */
export interface RankSpec {
  readonly title: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly exitFile: string;
  /** Set when the rank runs isolated: then env and cwd are in the sandbox's arguments. */
  readonly sandbox?: RankSandbox;
}

/**
 * An isolated rank (see isolation/sandbox.ts). The wrapper, root and already inside the job's
 * network namespace, serves the replica's port on a Unix socket,
 * and starts `unshare --mount` → (mounts, cgroup) → `setpriv` (the job's user) → `bwrap`.
 */
export interface RankSandbox {
  readonly uid: number;
  readonly gid: number;
  /** cgroup.procs files the sandbox enters before anything of the job runs. */
  readonly cgroupProcs: readonly string[];
  /** Where the kernel counts the job's OOM kills, to tell the user why it died. */
  readonly oomEvents: string | null;
  /** The mount point of the staging tmpfs, and [source, name] pairs bound under it. */
  readonly stage: string;
  readonly mounts: readonly (readonly [string, string])[];
  readonly bwrap: string;
  /** bubblewrap's arguments, NUL-separated (root-only: they hold the job's environment). */
  readonly argsFile: string;
  /** Where bubblewrap writes the pid of the sandbox's init, to forward signals below it. */
  readonly infoFile: string;
  /** Rank 0 of a replica: connections to this Unix socket go to 127.0.0.1:port in the job's network. */
  readonly forward: { readonly socket: string; readonly port: number } | null;
  /** Told in the job's error log before it starts (a dataset not on this host). */
  readonly notes: readonly string[];
}

export const RANK_WRAPPER_SOURCE = `'use strict';
// Written by fabrik's local executor: runs one rank of a job and records how it ended.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
process.title = spec.title;
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']) process.on(s, () => {});

let recorded = false;
function record(code, signal) {
  if (recorded) return;
  recorded = true;
  const tmp = spec.exitFile + '.tmp';
  fs.writeFileSync(tmp, JSON.stringify({ code, signal, at: Date.now() / 1000 }) + '\\n');
  fs.renameSync(tmp, spec.exitFile);
  process.exit(code === null ? 128 + (os.constants.signals['SIG' + signal] || 0) : code);
}

function cannotRun(message, code) {
  process.stderr.write('fabrik: ' + message + '\\n');
  record(code, null);
}

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];

if (spec.sandbox) {
  runSandboxed(spec.sandbox);
} else {
  runPlain();
}

function runPlain() {
  let cwdOk = false;
  try {
    cwdOk = fs.statSync(spec.cwd).isDirectory();
  } catch {}
  if (!cwdOk) {
    cannotRun('working directory ' + spec.cwd + ' does not exist', 127);
    return;
  }
  const failed = (err) => cannotRun("cannot run '" + spec.argv[0] + "': " + err.message, err.code === 'EACCES' ? 126 : 127);
  let child;
  try {
    child = spawn(spec.argv[0], spec.argv.slice(1), { cwd: spec.cwd, env: spec.env, stdio: 'inherit' });
  } catch (err) {
    failed(err);
  }
  if (child) {
    child.on('error', failed);
    child.on('exit', (code, signal) => record(code, signal === null ? null : signal.replace(/^SIG/, '')));
  }
}

function runSandboxed(sb) {
  const net = require('node:net');
  // The job's logs are this process's stdout and stderr, opened by the executor before any rank ran.
  const out = 1;
  const err = 2;
  const say = (m) => fs.writeSync(err, 'fabrik: ' + m + '\\n');
  for (const n of sb.notes) say(n);
  if (sb.forward) {
    // The replica's port, for the server only: the socket lives in a root-only folder, and this
    // process is in the job's network namespace, where 127.0.0.1 is the job's own loopback.
    try { fs.unlinkSync(sb.forward.socket); } catch {}
    const server = net.createServer((c) => {
      const u = net.connect(sb.forward.port, '127.0.0.1');
      c.pipe(u);
      u.pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
      c.on('close', () => u.destroy());
      u.on('close', () => c.destroy());
    });
    server.on('error', (e) => say('cannot serve the replica on ' + sb.forward.socket + ': ' + e.message));
    server.listen(sb.forward.socket, () => fs.chmodSync(sb.forward.socket, 0o600));
    server.unref();
  }
  // Runs as root in a mount namespace of its own: joins the cgroup, makes the staging tmpfs that
  // the job's user can traverse (the job's folder lies in the root-only data folder), binds the
  // job's folder and datasets there, and becomes the job's user and bubblewrap.
  const script = [
    's=$1; shift',
    'while [ "$1" != --mounts ]; do echo $$ > "$1"; shift; done; shift',
    'mount -t tmpfs -o mode=0755,size=64k fabrik-stage "$s"',
    'while [ "$1" != -- ]; do',
    '  if [ -d "$1" ]; then mkdir "$s/$2"; else : > "$s/$2"; fi',
    '  mount --bind "$1" "$s/$2"',
    '  shift 2',
    'done; shift',
    'exec "$@"',
  ].join('\\n');
  const args = ['--mount', '--propagation', 'private', '--', '/bin/sh', '-ec', script, 'fabrik-sandbox', sb.stage]
    .concat(sb.cgroupProcs, ['--mounts'])
    .concat(...sb.mounts)
    .concat(['--', 'setpriv', '--reuid', String(sb.uid), '--regid', String(sb.gid), '--init-groups', '--no-new-privs', sb.bwrap, '--info-fd', '4', '--args', '3', '--'], spec.argv);
  let argsFd, infoFd;
  try {
    argsFd = fs.openSync(sb.argsFile, 'r');
    infoFd = fs.openSync(sb.infoFile, 'w', 0o600);
  } catch (e) {
    say('cannot prepare the sandbox: ' + e.message);
    record(127, null);
    return;
  }
  // Its own session: the executor signals this wrapper's process group, and the wrapper hands the
  // signal to the job's processes only (bubblewrap itself would die of it and take the job along).
  const child = spawn('unshare', args, {
    stdio: ['ignore', out, err, argsFd, infoFd],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    detached: true,
  });
  fs.closeSync(argsFd);
  fs.closeSync(infoFd);
  const forwarded = new Set();
  for (const s of SIGNALS)
    process.on(s, () => {
      forwarded.add(s.replace(/^SIG/, ''));
      for (const pid of jobPids(child.pid)) {
        try { process.kill(pid, s); } catch {}
      }
    });
  child.on('error', (e) => {
    say('cannot start the sandbox: ' + e.message);
    record(127, null);
  });
  child.on('exit', (code, signal) => {
    let oomKills = 0;
    if (sb.oomEvents) {
      try {
        const m = /oom_kill (\\d+)/.exec(fs.readFileSync(sb.oomEvents, 'utf8'));
        oomKills = m ? Number(m[1]) : 0;
      } catch {}
    }
    if (oomKills > 0) say('the job exceeded its memory limit and was killed by the kernel (out of memory)');
    if (signal !== null) return record(null, signal.replace(/^SIG/, ''));
    // bubblewrap exits 128+n when the job died of signal n, which an exit with code 128+n cannot be told from:
    // it is reported as the signal when the signal was one the job was sent, or an OOM kill.
    const n = code - 128;
    const name = Object.keys(os.constants.signals).find((k) => os.constants.signals[k] === n);
    if (name && (forwarded.has(name.replace(/^SIG/, '')) || (name === 'SIGKILL' && oomKills > 0)))
      return record(null, name.replace(/^SIG/, ''));
    record(code, null);
  });
}

// Every process of the sandbox below its init: the sandbox's PID namespace reparents orphans to
// its init, so this is all of the job, however it forked or called setsid.
function jobPids(bwrapPid) {
  let init = null;
  try {
    init = JSON.parse(fs.readFileSync(spec.sandbox.infoFile, 'utf8'))['child-pid'];
  } catch {}
  if (!init) return [];
  const parent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync('/proc/' + d + '/stat', 'utf8');
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const found = [];
  const below = new Set([init]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent)
      if (!below.has(pid) && below.has(ppid) && pid !== bwrapPid) {
        below.add(pid);
        found.push(pid);
        grew = true;
      }
  }
  return found;
}
`;

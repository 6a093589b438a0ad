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

let cwdOk = false;
try {
  cwdOk = fs.statSync(spec.cwd).isDirectory();
} catch {}
if (!cwdOk) {
  cannotRun('working directory ' + spec.cwd + ' does not exist', 127);
} else {
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
`;

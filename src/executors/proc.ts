// Process identity on Linux: a pid alone is reused by the kernel, so a process is named by its pid
// and its start time (clock ticks after boot, field 22 of /proc/<pid>/stat), and a handle from an
// earlier boot names nothing at all.
import fs from 'node:fs';

const HAS_PROC = fs.existsSync('/proc/self/stat');

export interface ProcStat {
  /** One letter: R running, S sleeping, Z zombie, … */
  readonly state: string;
  /** Clock ticks after boot, as the kernel writes it (a string: compared, never computed with). */
  readonly startTime: string;
}

/** Reads /proc/<pid>/stat; null when there is no such process (or no /proc). */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = fields[19];
  return state && startTime ? { state, startTime } : null;
}

/** The start time of a process, or null when it is gone or cannot be read. */
export function processStartTime(pid: number): string | null {
  return procStat(pid)?.startTime ?? null;
}

/** This boot's id: pids and start times from another boot name other processes. */
export function bootId(): string | null {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

/**
 * Whether `pid` is still the process that started at `startTime`. A zombie counts as gone: it
 * has ended and only waits for its parent. A null start time was unreadable right after the
 * spawn, so that process had already ended. Without /proc (not Linux) the pid alone has to do.
 */
export function isSameProcess(pid: number, startTime: string | null): boolean {
  if (!HAS_PROC) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  const stat = procStat(pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
  return stat.startTime === startTime;
}

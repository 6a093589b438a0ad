// Slurm's time strings (--time, and Fabrik's --checkpoint-interval and --min-runtime), read the way
// Slurm's time_str2secs reads them so that a script that worked with sbatch means the same here.
//
// Two deliberate differences from Slurm: the result is in seconds (Slurm rounds a time limit up to
// whole minutes; Fabrik's contract counts seconds, so 1:30 stays 90 s), and every field must be
// digits (Slurm's sscanf would read "1:x" as one minute).

/** What `UNLIMITED`, `INFINITE` and `-1` mean: no limit. The caller decides what that maps to. */
export const UNLIMITED = Number.POSITIVE_INFINITY;

/** A string that is none of Slurm's time formats. */
export class InvalidSlurmTimeError extends Error {
  override readonly name = 'InvalidSlurmTimeError';
  constructor(readonly text: string) {
    super(
      `'${text}' is not a Slurm time: give minutes, minutes:seconds, hours:minutes:seconds, days-hours, ` +
        'days-hours:minutes, days-hours:minutes:seconds or UNLIMITED',
    );
  }
}

// Each field is digits only. Like Slurm, fields after the first are not bounded (90:00 is 90
// minutes, 0:90:00 is 90 minutes too): scripts in the wild rely on it.
const MINUTES = /^(\d+)$/;
const MINUTES_SECONDS = /^(\d+):(\d+)$/;
const HOURS_MINUTES_SECONDS = /^(\d+):(\d+):(\d+)$/;
const DAYS = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/;

/**
 * Seconds in a Slurm time string, or `UNLIMITED` (Infinity) for `UNLIMITED`, `INFINITE` or `-1`
 * (any case). Formats: `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
 * `days-hours:minutes`, `days-hours:minutes:seconds`. Throws InvalidSlurmTimeError otherwise.
 */
export function parseSlurmTime(text: string): number {
  const upper = text.toUpperCase();
  if (upper === 'UNLIMITED' || upper === 'INFINITE' || text === '-1') return UNLIMITED;
  const n = (s: string | undefined): number => (s === undefined ? 0 : Number(s));
  let seconds: number;
  let m: RegExpExecArray | null;
  if ((m = MINUTES.exec(text))) seconds = n(m[1]) * 60;
  else if ((m = MINUTES_SECONDS.exec(text))) seconds = n(m[1]) * 60 + n(m[2]);
  else if ((m = HOURS_MINUTES_SECONDS.exec(text))) seconds = n(m[1]) * 3600 + n(m[2]) * 60 + n(m[3]);
  else if ((m = DAYS.exec(text))) {
    // days-hours:minutes:seconds with the trailing fields optional, in that order.
    seconds = n(m[1]) * 86_400 + n(m[2]) * 3600 + n(m[3]) * 60 + n(m[4]);
  } else throw new InvalidSlurmTimeError(text);
  // Thousands of digits parse to a number, but not to an exact one: no limit is written that way.
  if (!Number.isSafeInteger(seconds)) throw new InvalidSlurmTimeError(text);
  return seconds;
}

const two = (n: number): string => String(n).padStart(2, '0');

/**
 * `D-HH:MM:SS` for a number of seconds (the days always shown, so that the string reads back
 * unambiguously with parseSlurmTime); `UNLIMITED` for Infinity. Throws RangeError for anything
 * that is not a whole number of seconds ≥ 0.
 */
export function formatSlurmTime(seconds: number): string {
  if (seconds === UNLIMITED) return 'UNLIMITED';
  if (!Number.isSafeInteger(seconds) || seconds < 0) throw new RangeError(`not a number of seconds: ${seconds}`);
  const days = Math.floor(seconds / 86_400);
  const rest = seconds % 86_400;
  return `${days}-${two(Math.floor(rest / 3600))}:${two(Math.floor((rest % 3600) / 60))}:${two(rest % 60)}`;
}

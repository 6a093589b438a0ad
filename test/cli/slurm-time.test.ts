// Slurm's time strings: every format sbatch reads, the ones it refuses, and the display form
// reading back to the same number of seconds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatSlurmTime, InvalidSlurmTimeError, parseSlurmTime, UNLIMITED } from '../../src/cli/slurm-time.js';

const MINUTE = 60;
const HOUR = 3600;
const DAY = 86_400;

describe('parseSlurmTime', () => {
  it.each([
    // minutes
    ['0', 0],
    ['30', 30 * MINUTE],
    ['1440', DAY],
    // minutes:seconds
    ['5:30', 5 * MINUTE + 30],
    ['0:45', 45],
    ['90:00', 90 * MINUTE],
    // hours:minutes:seconds
    ['1:00:00', HOUR],
    ['48:00:00', 2 * DAY],
    ['12:34:56', 12 * HOUR + 34 * MINUTE + 56],
    // days-hours
    ['2-0', 2 * DAY],
    ['2-12', 2 * DAY + 12 * HOUR],
    // days-hours:minutes
    ['1-2:30', DAY + 2 * HOUR + 30 * MINUTE],
    // days-hours:minutes:seconds
    ['2-00:00:00', 2 * DAY],
    ['1-02:03:04', DAY + 2 * HOUR + 3 * MINUTE + 4],
    ['0-00:00:01', 1],
    // Fields after the first are not bounded, as in Slurm.
    ['0:90:00', 90 * MINUTE],
    ['1-30', DAY + 30 * HOUR],
  ])('%s is %i seconds', (text, seconds) => {
    expect(parseSlurmTime(text)).toBe(seconds);
  });

  it.each(['UNLIMITED', 'unlimited', 'INFINITE', 'Infinite', '-1'])('%s is no limit', (text) => {
    expect(parseSlurmTime(text)).toBe(UNLIMITED);
  });

  it.each([
    '',
    'abc',
    '1h',
    '1.5',
    ' 10',
    '10 ',
    '1:2:3:4',
    '1-',
    '-5',
    '1-2-3',
    '1:',
    ':1',
    '1--2',
    '1-2:3:4:5',
    '+5',
    '9'.repeat(400),
  ])('%j is not a Slurm time', (text) => {
    expect(() => parseSlurmTime(text)).toThrow(InvalidSlurmTimeError);
  });

  it('names the formats it reads in its message', () => {
    expect(() => parseSlurmTime('abc')).toThrow(
      /'abc' is not a Slurm time: give minutes, .*days-hours:minutes:seconds or UNLIMITED/,
    );
  });
});

describe('formatSlurmTime', () => {
  it.each([
    [0, '0-00:00:00'],
    [59, '0-00:00:59'],
    [HOUR, '0-01:00:00'],
    [2 * DAY, '2-00:00:00'],
    [DAY + HOUR + MINUTE + 1, '1-01:01:01'],
    [366 * DAY, '366-00:00:00'],
    [UNLIMITED, 'UNLIMITED'],
  ])('%d seconds is %s', (seconds, text) => {
    expect(formatSlurmTime(seconds)).toBe(text);
  });

  it.each([-1, 1.5, Number.NaN, Number.NEGATIVE_INFINITY])('refuses %d', (seconds) => {
    expect(() => formatSlurmTime(seconds)).toThrow(RangeError);
  });

  it('reads back to the same seconds (format, then parse)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000_000 }), (seconds) => {
        expect(parseSlurmTime(formatSlurmTime(seconds))).toBe(seconds);
      }),
    );
  });

  it('prints what each format read, in the display form', () => {
    const field = (max: number) => fc.integer({ min: 0, max });
    fc.assert(
      fc.property(field(400), field(23), field(59), field(59), (d, h, m, s) => {
        const seconds = d * DAY + h * HOUR + m * MINUTE + s;
        const two = (n: number) => String(n).padStart(2, '0');
        expect(parseSlurmTime(`${d}-${h}:${m}:${s}`)).toBe(seconds);
        expect(formatSlurmTime(seconds)).toBe(`${d}-${two(h)}:${two(m)}:${two(s)}`);
        expect(parseSlurmTime(`${d * 24 + h}:${m}:${s}`)).toBe(seconds);
      }),
    );
  });
});

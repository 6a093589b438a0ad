// `fabrik reservations` and `--reservation`: the start and duration forms people type, and the
// sbatch option and directive that put a job into a reservation.
import { describe, expect, it } from 'vitest';
import { parseDuration, parseStart } from '../../src/cli/reservations.js';
import { parseSubmission } from '../../src/cli/sbatch.js';

const NOW = 1_800_000_000;

describe('reservation times', () => {
  it('reads durations as people and Slurm write them', () => {
    expect(parseDuration('24h')).toBe(86_400);
    expect(parseDuration('90m')).toBe(5400);
    expect(parseDuration('3d')).toBe(3 * 86_400);
    expect(parseDuration('1w')).toBe(7 * 86_400);
    expect(parseDuration('1.5h')).toBe(5400);
    expect(parseDuration('3d12h')).toBe(3.5 * 86_400);
    expect(parseDuration('1-00:00:00')).toBe(86_400);
    expect(parseDuration('90')).toBe(5400);
    expect(() => parseDuration('soon')).toThrow(/not a duration/);
    expect(() => parseDuration('UNLIMITED')).toThrow(/not a duration/);
  });

  it('reads now, now+3d and ISO times with their zone, and refuses a time without one', () => {
    expect(parseStart('now', NOW)).toBe(NOW);
    expect(parseStart('now+3d', NOW)).toBe(NOW + 3 * 86_400);
    expect(parseStart('now+90m', NOW)).toBe(NOW + 5400);
    expect(parseStart('now+3d1h', NOW)).toBe(NOW + 3 * 86_400 + 3600);
    expect(parseStart('2026-12-10T08:00Z', NOW)).toBe(Date.parse('2026-12-10T08:00Z') / 1000);
    expect(parseStart('2026-12-10T09:00+01:00', NOW)).toBe(Date.parse('2026-12-10T08:00Z') / 1000);
    expect(() => parseStart('2026-12-10T08:00', NOW)).toThrow(/with its zone/);
    expect(() => parseStart('tomorrow', NOW)).toThrow(/not a start/);
  });
});

describe('submitting into a reservation', () => {
  it('sends --reservation, from the command line and from #SBATCH, the command line winning', () => {
    const cli = parseSubmission({ args: ['--reservation=cap', '--', 'true'], env: {} });
    expect(cli.request.reservation).toBe('cap');
    const script = '#!/bin/bash\n#SBATCH --reservation=from-script\nsrun true\n';
    const directive = parseSubmission({ args: ['job.sh'], script: { path: 'job.sh', text: script }, env: {} });
    expect(directive.request.reservation).toBe('from-script');
    const both = parseSubmission({ args: ['--reservation', 'cli', 'job.sh'], script: { path: 'job.sh', text: script }, env: {} });
    expect(both.request.reservation).toBe('cli');
  });

  it('leaves it unset without the option (the server runs the job anywhere)', () => {
    expect(parseSubmission({ args: ['--', 'true'], env: {} }).request.reservation).toBeUndefined();
  });
});

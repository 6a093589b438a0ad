// The gateway's windows: fixed minutes and days, and UTC calendar months (28 to 31 days, leap
// years, the turn of the year), checked against the calendar for any instant.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { periodOf, Window } from '../../src/inference/gateway/limits.js';

// 1970 to 2200, in seconds (fractions too: the server's clock has them).
const instant = fc.double({ min: 0, max: Date.UTC(2200, 0, 1) / 1000, noNaN: true });

describe('periodOf', () => {
  it('a month is [the 1st 00:00 UTC, the next 1st) around any instant', () => {
    fc.assert(
      fc.property(instant, (now) => {
        const [start, end] = periodOf('month', now);
        const d = new Date(now * 1000);
        expect(start).toBeLessThanOrEqual(now);
        expect(now).toBeLessThan(end);
        expect(new Date(start * 1000).toISOString()).toBe(
          new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)).toISOString(),
        );
        // The month that follows starts where this one ends.
        expect(periodOf('month', end)[0]).toBe(end);
        expect((end - start) / 86_400).toBeGreaterThanOrEqual(28);
        expect((end - start) / 86_400).toBeLessThanOrEqual(31);
      }),
      { numRuns: 2000 },
    );
  });

  it('minutes and days are fixed lengths on the epoch', () => {
    fc.assert(
      fc.property(instant, fc.constantFrom(60 as const, 86_400 as const), (now, seconds) => {
        const [start, end] = periodOf(seconds, now);
        expect(start % seconds).toBe(0);
        expect(end - start).toBe(seconds);
        expect(start <= now && now < end).toBe(true);
      }),
    );
  });

  it('February of a leap year, and the turn of the year', () => {
    const iso = (p: readonly [number, number]) => p.map((s) => new Date(s * 1000).toISOString());
    expect(iso(periodOf('month', Date.UTC(2028, 1, 29, 23, 59, 59) / 1000))).toEqual([
      '2028-02-01T00:00:00.000Z',
      '2028-03-01T00:00:00.000Z',
    ]);
    expect(iso(periodOf('month', Date.UTC(2026, 11, 31, 12) / 1000))).toEqual([
      '2026-12-01T00:00:00.000Z',
      '2027-01-01T00:00:00.000Z',
    ]);
  });
});

describe('Window', () => {
  it('counts within its period, starts afresh after it, and says when it resets', () => {
    const w = new Window(100, 'month');
    const jan31 = Date.UTC(2027, 0, 31, 23, 59) / 1000;
    w.roll(jan31).used += 60;
    expect(w.remaining(jan31 + 30)).toBe(40);
    expect(w.reset(jan31)).toBe(60);
    // Midnight, 1 February: a new month.
    expect(w.remaining(jan31 + 60)).toBe(100);
    expect(w.reset(jan31 + 60)).toBe(28 * 86_400);
    // A clock set back into the old month counts from zero there, as a new window does.
    expect(w.remaining(jan31)).toBe(100);
  });
});

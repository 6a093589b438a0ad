// The consortium file's `reservations:` block: what member admins may book themselves.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConsortium, loadSite, parseConsortium } from '../../src/config/index.js';
import { scaleConsortium } from '../../src/server/site.js';

const file = (relative: string) => fileURLToPath(new URL(`../../${relative}`, import.meta.url));
const site = loadSite(file('sites/se-factory.yaml'));
const members = `members:
  - { id: pharma, name: Pharma, entitlement: 100 }
`;

describe('reservation rules in the consortium file', () => {
  it("reads the demo consortium's rules: once a week, 576 GPUs for 24 h, 3 days ahead", () => {
    expect(loadConsortium(file('consortia/demo.yaml'), site).reservations).toEqual({
      maxGpus: 576,
      maxHours: 24,
      minNoticeHours: 72,
      perMemberPerWeek: 1,
    });
  });

  it('takes a percentage of the site for maxGpus, and leaves absent limits open', () => {
    const c = parseConsortium(`name: c\nreservations:\n  maxGpus: "50%"\n${members}`, 'c.yaml', site);
    expect(c.reservations).toEqual({ maxGpus: 576, maxHours: null, minNoticeHours: 0, perMemberPerWeek: null });
  });

  it('has no rules without the block (only operators book), and refuses unknown or bad fields', () => {
    expect(parseConsortium(`name: c\n${members}`, 'c.yaml', site).reservations).toBeUndefined();
    expect(() => parseConsortium(`name: c\nreservations:\n  maxGPUs: 8\n${members}`, 'c.yaml', site)).toThrow(/maxGPUs/);
    expect(() => parseConsortium(`name: c\nreservations:\n  maxHours: -1\n${members}`, 'c.yaml', site)).toThrow(/maxHours/);
  });

  it('scales maxGpus with the machine at hand, as entitlements are', () => {
    const c = loadConsortium(file('consortia/demo.yaml'), site);
    expect(scaleConsortium(c, 4 / 1152).reservations?.maxGpus).toBeCloseTo(2);
  });
});

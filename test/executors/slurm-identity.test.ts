// Names that Unix and Slurm accept, from any member and user id (OIDC subjects included).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { slurmName, unixUserOf } from '../../src/executors/slurm-identity.js';

describe('slurm identities', () => {
  it('keeps names Unix accepts, and rewrites others with a hash so that two never become one', () => {
    expect(slurmName('pharma')).toBe('pharma');
    expect(unixUserOf('{member}-{user}', { member: 'pharma', user: 'alice' })).toBe('pharma-alice');
    expect(unixUserOf('{user}', { member: 'pharma', user: 'alice' })).toBe('alice');
    const email = slurmName('Alice.Smith@pharma.example');
    expect(email).toMatch(/^alice-smith-pharma-exampl-[0-9a-f]{6}$/);
    expect(slurmName('alice.smith@pharma.example')).not.toBe(email);
    expect(slurmName('7up')).toMatch(/^u7up-[0-9a-f]{6}$/);
  });

  it('always gives a valid name of at most 32 characters', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 80 }), (raw) => {
        const name = slurmName(raw);
        expect(name).toMatch(/^[a-z_][a-z0-9_-]{0,31}$/);
      }),
    );
  });

  it('gives distinct raw names distinct Unix names', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ minLength: 1, maxLength: 40 }), (a, b) => {
        fc.pre(a !== b);
        expect(slurmName(a)).not.toBe(slurmName(b));
      }),
    );
  });
});

import { defineConfig } from 'vitest/config';

// The files that use the real Slurm cluster run one at a time (one of them restarts slurmctld,
// and they share its four nodes), next to the rest of the suite.
const SLURM = ['test/**/*slurm*.test.ts', 'test/**/site-import.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: SLURM } },
      { extends: true, test: { name: 'slurm', include: SLURM, fileParallelism: false } },
    ],
  },
});

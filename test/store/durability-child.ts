// Run by durability.test.ts: opens the store at argv[2] and submits jobs until it is killed,
// writing each job id to stdout once its submit() has resolved, that is once it is acknowledged.
// Eight submissions are in flight at a time, so acknowledgements come from group commits.
import { openStore } from '../../src/store/index.js';
import type { NewJob } from '../../src/store/index.js';

const job = {
  name: 'durable',
  member: 'pharma',
  project: 'discovery',
  user: 'ada',
  request: { command: ['true'], env: {}, topology: 'none', priorityClass: 'batch' } as unknown as NewJob['request'],
  gpus: 1,
  submittedAt: Date.now() / 1000,
  arrayTaskId: null,
  arrayThrottle: null,
} satisfies NewJob;

const store = await openStore(process.argv[2]);
for (;;) {
  await Promise.all(
    Array.from({ length: 8 }, () =>
      store.submit({ jobs: [job], idempotency: null }).then((outcome) => {
        if (outcome.kind === 'created') process.stdout.write(`${outcome.jobs[0].id}\n`);
      }),
    ),
  );
}

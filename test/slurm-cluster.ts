// What the tests against the real Slurm cluster (scripts/slurm/up.sh) share: whether it is
// there (in CI it must be), and a clean end: every Slurm job a test's Fabrik made is cancelled,
// whatever the test left running (a cancel's grace period can outlive the server).
import { execFileSync } from 'node:child_process';
import { fetchSlurmNodes, jobTagPrefix, type SlurmNodeInfo } from '../src/executors/slurm.js';
import type { Store } from '../src/store/store.js';
import type { TestServer } from './server/helpers.js';

/** The cluster's nodes, or null (with a notice) when it is not there; in CI it must be. */
export async function slurmNodesOrSkip(what: string): Promise<SlurmNodeInfo[] | null> {
  try {
    return await fetchSlurmNodes();
  } catch (e) {
    if (process.env.CI)
      throw new Error(`Slurm is not reachable in CI (start it with scripts/slurm/up.sh): ${(e as Error).message}`);
    console.warn(`${what} skipped: ${(e as Error).message} (start it with scripts/slurm/up.sh)`);
    return null;
  }
}

export const slurmReachable = async (what: string): Promise<boolean> => (await slurmNodesOrSkip(what)) !== null;

const slurmTag = async (store: Store) => jobTagPrefix(await store.installationId());

/**
 * Slurm jobs (ids) whose comment is the tag of this store's job `id`, in any state Slurm still
 * lists; `started`: only those that ran (a submit Slurm refused while its nodes re-registered
 * leaves a job that the executor cancels before it ever starts).
 */
export async function slurmJobsTagged(store: Store, id: string, o: { started?: boolean } = {}): Promise<string[]> {
  const tag = `${await slurmTag(store)}${id}`;
  return squeue()
    .filter(([, comment, nodes]) => comment === tag && (!o.started || nodes !== ''))
    .map(([jobId]) => jobId);
}

/** Closes the test server, then cancels every live Slurm job it submitted. */
export async function closeAndCancel(t: TestServer): Promise<void> {
  const tag = await slurmTag(t.server.store);
  await t.close();
  const ids = squeue(['-t', 'PD,R,CG,S'])
    .filter(([, comment]) => comment.startsWith(tag))
    .map(([jobId]) => jobId);
  if (ids.length > 0) execFileSync('scancel', ids);
}

/** [job id, comment, the nodes it ran on (empty: it never started)]. */
function squeue(states = ['-t', 'all']): [string, string, string][] {
  return execFileSync('squeue', ['-h', ...states, '-o', '%i|%k|%N'])
    .toString()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('|', 3) as [string, string, string]);
}

// npm run bench:audit — the audit log's two figures, on SQLite (the embedded default, synchronous
// = FULL: every acknowledged append is on disk):
//  1. durable appends per second from 256 concurrent writers, with a signed checkpoint every
//     second, beside the same load without checkpoints;
//  2. an inclusion proof in a log of 1,000,000 events (p50 over random leaves), beside what the
//     proof saves: recomputing the root from all the leaves.
// Last line: {"audit_appends_per_s":…,"inclusion_proof_ms_p50":…,"log_size":…}
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../src/audit/log.js';
import { MerkleTree } from '../src/audit/merkle.js';
import type { AuditEventInput } from '../src/core/audit.js';
import { openStore } from '../src/store/index.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 256);
const LOG_SIZE = Number(process.env.BENCH_LOG_SIZE ?? 1_000_000);
const PROOFS = 10_000;
const MEMBERS = ['pharma', 'telecom', 'defense', 'bank', 'invest'];
const signingKey = generateKeyPairSync('ed25519').privateKey;

const event = (i: number): AuditEventInput => ({
  kind: 'job.submitted',
  actor: `user${i % 97}`,
  member: MEMBERS[i % MEMBERS.length],
  subject: String(i),
  data: { name: 'train', project: 'discovery', gpus: 8, priorityClass: 'training' },
});

async function withLog<T>(checkpointIntervalMs: number, work: (log: AuditLog) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-bench-audit-'));
  const store = await openStore(`sqlite:${join(dir, 'fabrik.db')}`);
  const log = await AuditLog.open(store.db, { origin: 'fabrik/bench', signingKey, checkpointIntervalMs });
  try {
    return await work(log);
  } finally {
    await log.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `writers` callers appending one event after the other for `seconds`; acknowledged events per second. */
async function load(log: AuditLog, seconds: number, writers: number) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const writer = async () => {
    while (performance.now() < end) await log.append(event(n++));
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: writers }, writer));
  const elapsed = (performance.now() - t0) / 1000;
  return {
    perSecond: log.stats.events / elapsed,
    perCommit: log.stats.events / log.stats.commits,
    checkpoints: log.stats.checkpoints,
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

// 1. Appends, with and without checkpoints, each on a fresh database.
const withCheckpoints = await withLog(1000, (log) => load(log, SECONDS, WRITERS));
const without = await withLog(0, (log) => load(log, SECONDS, WRITERS));
console.log(`appends, SQLite, ${WRITERS} writers, ${SECONDS} s each (every one durable when acknowledged):`);
console.log(
  `  ${'with a checkpoint every second'.padEnd(34)} ${fmt(withCheckpoints.perSecond).padStart(8)}/s  ${fmt(withCheckpoints.perCommit)} events per commit, ${withCheckpoints.checkpoints} checkpoints`,
);
console.log(
  `  ${'without checkpoints'.padEnd(34)} ${fmt(without.perSecond).padStart(8)}/s  ${fmt(without.perCommit)} events per commit`,
);

// 2. A log of LOG_SIZE events, filled through append() and reopened (the tree rebuilt from the store).
const proofs = await (async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fabrik-bench-audit-'));
  const url = `sqlite:${join(dir, 'fabrik.db')}`;
  try {
    let store = await openStore(url);
    let log = await AuditLog.open(store.db, { origin: 'fabrik/bench', signingKey, checkpointIntervalMs: 1000 });
    const t0 = performance.now();
    const batch = 8192;
    for (let i = 0; i < LOG_SIZE; i += batch)
      await Promise.all(Array.from({ length: Math.min(batch, LOG_SIZE - i) }, (_, k) => log.append(event(i + k))));
    const fillSeconds = (performance.now() - t0) / 1000;
    await log.close();
    await store.close();
    store = await openStore(url);
    const t1 = performance.now();
    log = await AuditLog.open(store.db, { origin: 'fabrik/bench', signingKey, checkpointIntervalMs: 0 });
    const reopenSeconds = (performance.now() - t1) / 1000;
    const size = log.size;
    const times: number[] = [];
    let seed = 12345;
    for (let i = 0; i < PROOFS; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const seq = seed % size;
      const s = performance.now();
      log.inclusionProof(seq, size);
      times.push(performance.now() - s);
    }
    // What a proof saves: the root from every leaf again (the leaves are already hashed).
    const leaves = Array.from({ length: size }, (_, i) => log.leafHash(i));
    const r0 = performance.now();
    const again = new MerkleTree();
    for (const leaf of leaves) again.append(leaf);
    again.root();
    const recomputeMs = performance.now() - r0;
    await log.close();
    await store.close();
    return { size, fillSeconds, reopenSeconds, p50: quantile(times, 0.5), p99: quantile(times, 0.99), recomputeMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
console.log(
  `inclusion proofs in a log of ${fmt(proofs.size)} events (filled in ${proofs.fillSeconds.toFixed(1)} s, reopened in ${proofs.reopenSeconds.toFixed(1)} s):`,
);
console.log(`  ${'proof from the stored subtrees'.padEnd(34)} p50 ${proofs.p50.toFixed(4)} ms, p99 ${proofs.p99.toFixed(4)} ms`);
console.log(
  `  ${'root recomputed from all leaves'.padEnd(34)} ${proofs.recomputeMs.toFixed(0)} ms (${fmt(proofs.recomputeMs / proofs.p50)}x the proof)`,
);
console.log(
  JSON.stringify({
    audit_appends_per_s: Math.round(withCheckpoints.perSecond),
    inclusion_proof_ms_p50: Number(proofs.p50.toFixed(4)),
    log_size: proofs.size,
  }),
);

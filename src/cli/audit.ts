// `fabrik audit`: save a signed checkpoint, and later check from it, against a running Fabrik,
// that the log only grew and that given events are in it; or check the stored log itself
// (operators, on the store). Each check prints what it checked; the first thing that fails is
// named and the command exits 1.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import {
  SavedCheckpoint,
  type AuditEventView,
  type CheckpointView,
  type ConsistencyProofView,
  type InclusionProofView,
  type PublicKeyView,
} from '../audit/api.js';
import { checkpointSignedBy, KEY_FILE, keyFingerprint, publicKeyOf } from '../audit/checkpoint.js';
import { eventLeafHash } from '../audit/event.js';
import { verifyConsistency, verifyInclusion } from '../audit/merkle.js';
import { verifyStore } from '../audit/verify.js';
import { openStore } from '../store/index.js';
import { ApiClient, ApiRequestError, DEFAULT_DATA_DIR } from './client.js';

import { line, terminalJson } from './printable.js';

/** A check failed: the log was changed, shrank, or does not hold an event (exit 1). */
export class AuditVerificationError extends Error {
  override readonly name = 'AuditVerificationError';
  constructor(readonly what: string) {
    super(`audit verification FAILED: ${what}`);
  }
}

/** A checkpoint or key file that cannot be read as one (exit 2). */
export class AuditFileError extends Error {
  override readonly name = 'AuditFileError';
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

const DEFAULT_FILE = 'audit-checkpoint.json';
const b = (s: string) => Buffer.from(s, 'base64');
const seqArg = (v: string, previous: number[] = []) => {
  if (!/^\d{1,15}$/.test(v)) throw new InvalidArgumentError(`an event is its seq (a whole number), got '${v}'.`);
  return [...previous, Number(v)];
};
const describe = (e: AuditEventView) =>
  `${e.kind} by ${e.actor}${e.subject ? ` on ${e.subject}` : ''}${e.member ? ` (${e.member})` : ''} at ${e.at}`;

function readSaved(file: string): SavedCheckpoint {
  if (!existsSync(file)) throw new AuditFileError(file, 'no such file; save one with `fabrik audit checkpoint --out FILE`');
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new AuditFileError(file, `not JSON: ${(e as Error).message}`);
  }
  const saved = SavedCheckpoint.safeParse(parsed);
  if (!saved.success) throw new AuditFileError(file, `not a saved checkpoint: ${saved.error.issues[0]?.message}`);
  return saved.data;
}

function keyOf(file: string, pem: string): KeyObject {
  try {
    return publicKeyOf(pem);
  } catch (e) {
    throw new AuditFileError(file, (e as Error).message);
  }
}

async function checkpointCommand(o: { out: string; json?: boolean }): Promise<void> {
  const api = ApiClient.fromEnv();
  const [checkpoint, key] = await Promise.all([
    api.request<CheckpointView>('GET', '/v1/audit/checkpoint'),
    api.request<PublicKeyView>('GET', '/v1/audit/public-key'),
  ]);
  if (!checkpointSignedBy(checkpoint, publicKeyOf(key.publicKey)))
    throw new AuditVerificationError(`the server's checkpoint (size ${checkpoint.size}) is not signed by the key it serves`);
  const saved: SavedCheckpoint = { checkpoint, publicKey: key.publicKey, server: api.url, savedAt: new Date().toISOString() };
  writeFileSync(o.out, JSON.stringify(saved, null, 2) + '\n');
  if (o.json) return console.log(terminalJson(saved));
  console.log(
    line`saved checkpoint of ${checkpoint.origin}: size ${checkpoint.size}, root ${checkpoint.rootHash}, at ${checkpoint.at}`,
  );
  console.log(line`signed by ${key.fingerprint} (compare it with what your consortium publishes) -> ${o.out}`);
}

/** The latest checkpoint; when asked for events it does not cover yet, waits for the next (one a second). */
async function latestCovering(api: ApiClient, seqs: readonly number[]): Promise<CheckpointView> {
  const needed = Math.max(-1, ...seqs) + 1;
  const deadline = Date.now() + 3000;
  for (;;) {
    const latest = await api.request<CheckpointView>('GET', '/v1/audit/checkpoint');
    if (latest.size >= needed || Date.now() > deadline) return latest;
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function verifyAgainstServer(o: { checkpoint: string; event?: number[]; save?: boolean }): Promise<void> {
  const saved = readSaved(o.checkpoint);
  const key = keyOf(o.checkpoint, saved.publicKey);
  const fp = keyFingerprint(key);
  const was = saved.checkpoint;
  if (!checkpointSignedBy(was, key))
    throw new AuditVerificationError(
      `${o.checkpoint}: the saved checkpoint's signature does not verify with the saved key (the file was changed)`,
    );
  console.log(line`saved checkpoint: size ${was.size}, signed by ${fp}: ok`);

  const api = ApiClient.fromEnv();
  const events = o.event ?? [];
  const now = await latestCovering(api, events);
  if (now.origin !== was.origin)
    throw new AuditVerificationError(`the server's log is ${now.origin}, the saved checkpoint's is ${was.origin}`);
  if (!checkpointSignedBy(now, key))
    throw new AuditVerificationError(`the latest checkpoint (size ${now.size}) is not signed by the saved key ${fp}`);
  console.log(line`latest checkpoint: size ${now.size}, at ${now.at}, signed by ${fp}: ok`);
  if (now.size < was.size)
    throw new AuditVerificationError(`the log shrank: ${now.size} events now, ${was.size} in the saved checkpoint`);
  const c = await api.request<ConsistencyProofView>('GET', `/v1/audit/proofs/consistency?from=${was.size}&to=${now.size}`);
  if (!verifyConsistency(was.size, now.size, b(was.rootHash), b(now.rootHash), c.proof.map(b)))
    throw new AuditVerificationError(
      `the log was rewritten: the tree of ${now.size} events does not extend the saved tree of ${was.size} (consistency proof fails)`,
    );
  console.log(line`consistency ${was.size} -> ${now.size}: ok (the log only grew)`);

  const failed: string[] = [];
  for (const seq of events) {
    if (seq >= now.size) {
      failed.push(`event ${seq}: not in the latest checkpoint (size ${now.size})`);
      continue;
    }
    let p: InclusionProofView;
    try {
      p = await api.request<InclusionProofView>('GET', `/v1/audit/proofs/inclusion?seq=${seq}&size=${now.size}`);
    } catch (e) {
      if (e instanceof ApiRequestError && e.status === 404) {
        failed.push(`event ${seq}: the server has no such event for you (deleted, or another member's)`);
        continue;
      }
      throw e;
    }
    // Rehashed here from the content shown: the server's word for the leaf is not taken.
    const leaf = p.event.seq === seq ? eventLeafHash(p.event) : null;
    if (leaf === null || !verifyInclusion(seq, now.size, leaf, p.proof.map(b), b(now.rootHash))) {
      failed.push(`event ${seq}: its stored content (${describe(p.event)}) is not the leaf in the signed tree: it was changed`);
      continue;
    }
    console.log(line`event ${seq}: ${describe(p.event)}: included in ${now.size}: ok`);
  }
  if (failed.length > 0) {
    for (const f of failed) console.log(line`FAILED ${f}`);
    throw new AuditVerificationError(failed[0]);
  }
  if (o.save) {
    writeFileSync(o.checkpoint, JSON.stringify({ ...saved, checkpoint: now, savedAt: new Date().toISOString() }, null, 2) + '\n');
    console.log(line`saved the latest checkpoint (size ${now.size}) to ${o.checkpoint}`);
  }
  console.log('verified');
}

/** The key to check the store's signatures with: a public key file, or the server's key in its data folder. */
function storeKey(o: { publicKey?: string; data: string }): KeyObject | null {
  if (o.publicKey) {
    if (!existsSync(o.publicKey)) throw new AuditFileError(o.publicKey, 'no such file');
    return keyOf(o.publicKey, readFileSync(o.publicKey, 'utf8'));
  }
  const file = join(o.data, KEY_FILE);
  if (!existsSync(file)) return null;
  try {
    return createPublicKey(createPrivateKey(readFileSync(file)));
  } catch (e) {
    throw new AuditFileError(file, `not a private key: ${(e as Error).message}`);
  }
}

async function verifyOnStore(o: { store: string; publicKey?: string; data: string }): Promise<void> {
  const key = storeKey(o);
  const store = await openStore(o.store);
  try {
    const origin = `fabrik/${await store.installationId()}`;
    const r = await verifyStore(store.db, { origin, publicKey: key });
    if (r.firstBad) {
      console.log(line`rehashed ${r.events} events and ${r.checkpoints} checkpoints before the first bad entry`);
      throw new AuditVerificationError(`${r.firstBad.entry}: ${r.firstBad.problem}`);
    }
    console.log(line`${origin}: rehashed ${r.events} events from their content: ok`);
    console.log(
      line`${r.checkpoints} checkpoints match the rebuilt tree: ok; signatures ${key ? `checked with ${keyFingerprint(key)}: ok` : 'not checked (no key: give --public-key FILE or --data DIR)'}`,
    );
    console.log('verified');
  } finally {
    await store.close();
  }
}

export function auditCommand(): Command {
  const audit = new Command('audit').description('the verifiable audit log: save a checkpoint, verify the log from it');
  audit
    .command('checkpoint')
    .description('save the latest signed checkpoint and the key it is signed with')
    .option('--out <file>', 'where to save it', DEFAULT_FILE)
    .option('--json', 'print it as JSON too')
    .action((o) => checkpointCommand(o));
  audit
    .command('verify')
    .description('from a saved checkpoint: the log only grew and holds the given events; or, with --store, the stored log itself')
    .option('--checkpoint <file>', 'a checkpoint saved earlier with `fabrik audit checkpoint`')
    .option('--event <seq>', 'an event that must be in the log (repeat for more)', seqArg)
    .option('--save', 'after success, save the latest checkpoint in the file')
    .option('--store <url>', 'operators: rehash every stored event and check every checkpoint (sqlite:FILE or postgres://…)')
    .option('--public-key <file>', 'with --store: the PEM public key to check signatures with')
    .option('--data <dir>', "with --store: the server's data folder (its signing key)", DEFAULT_DATA_DIR)
    .action(async (o) => {
      if (o.store) return verifyOnStore(o);
      if (!o.checkpoint)
        throw new AuditFileError('fabrik audit verify', 'give --checkpoint FILE (or --store URL on the store itself)');
      return verifyAgainstServer(o);
    });
  audit
    .command('events')
    .description("logged events: your member's, or all for operators and consortium auditors")
    .option('--after <seq>', 'only events after this one')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const q = new URLSearchParams({ limit: o.limit, ...(o.after !== undefined ? { after: o.after } : {}) });
      const r = await ApiClient.fromEnv().request<{ events: AuditEventView[] }>('GET', `/v1/audit/events?${q}`);
      if (o.json) return console.log(terminalJson(r.events));
      for (const e of r.events) console.log(line`${e.seq}\t${describe(e)}`);
    });
  return audit;
}

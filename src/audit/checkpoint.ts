// Signed checkpoints, in the shape of a transparency log's (C2SP tlog-checkpoint): the log's
// origin, its size, its root in base64 and the time, one per line, signed with Ed25519. The text
// is rebuilt from the fields, so a stored or served checkpoint cannot say one thing and sign another.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Checkpoint {
  /** Which log: `fabrik/<installation id>`; a checkpoint of another installation never verifies here. */
  readonly origin: string;
  readonly size: number;
  /** Base64 of the root hash. */
  readonly rootHash: string;
  /** ISO 8601 with milliseconds. */
  readonly at: string;
}

export interface SignedCheckpoint extends Checkpoint {
  /** Base64 Ed25519 signature of checkpointText(). */
  readonly signature: string;
}

export const KEY_FILE = 'audit-ed25519.pem';

/** What is signed. */
export function checkpointText(c: Checkpoint): string {
  return `${c.origin}\n${c.size}\n${c.rootHash}\n${c.at}\n`;
}

export function signCheckpoint(c: Checkpoint, key: KeyObject): SignedCheckpoint {
  const signature = sign(null, Buffer.from(checkpointText(c)), key).toString('base64');
  return { origin: c.origin, size: c.size, rootHash: c.rootHash, at: c.at, signature };
}

/** False for a bad signature, a malformed one, or a key that is not Ed25519. */
export function checkpointSignedBy(c: SignedCheckpoint, publicKey: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(checkpointText(c)), publicKey, Buffer.from(c.signature, 'base64'));
  } catch {
    return false;
  }
}

/** Parses a PEM public key (SPKI); throws a sentence when it is not one. */
export function publicKeyOf(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new TypeError(`not a PEM public key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`the key is ${key.asymmetricKeyType}, not Ed25519`);
  return key;
}

/** createPublicKey refuses a key that is public already. */
const publicOf = (key: KeyObject) => (key.type === 'public' ? key : createPublicKey(key));

export const publicKeyPem = (key: KeyObject): string => publicOf(key).export({ type: 'spki', format: 'pem' }).toString();

/** A short name for a key, to print beside "signed by". */
export function keyFingerprint(key: KeyObject): string {
  const der = publicOf(key).export({ type: 'spki', format: 'der' });
  return 'SHA256:' + createHash('sha256').update(der).digest('base64').replace(/=+$/, '');
}

/**
 * The log's signing key, in the data folder: made on the first start and readable by this user
 * only, like the operator token. Losing it does not lose the log, but checkpoints signed after
 * that carry a new key that members must be told about.
 */
export function loadOrCreateSigningKey(dataDir: string): KeyObject {
  const file = join(dataDir, KEY_FILE);
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    try {
      // 'wx': two processes starting at once keep the first one's key.
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
      chmodSync(file, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  const key = createPrivateKey(readFileSync(file));
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError(`${file}: the key is ${key.asymmetricKeyType}, not Ed25519`);
  return key;
}

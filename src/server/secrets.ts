// Jobs' secret environment (`secretEnv`), sealed at rest. The store keeps only ciphertext, inside
// the job's stored request, so that whoever holds the database (a PostgreSQL administrator, a
// backup, a copy of fabrik.db) reads nothing: the key is a file on the control plane's own disk,
// never in the store. AES-256-GCM (node:crypto), a fresh 96-bit nonce per value; the associated
// data binds each value to its member, user and variable name, so that a ciphertext copied into
// another member's job by someone with write access to the store does not open there.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, writeSync, constants } from 'node:fs';

/** Sealed values start with this: a stored value without it is never taken for plaintext. */
const PREFIX = 'fabrik-sealed:v1:';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** The key cannot be read or made, or is not a key: secrets cannot be sealed or opened. */
export class SecretKeyError extends Error {
  override readonly name = 'SecretKeyError';
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`secrets key ${file}: ${message}`);
  }
}

/** A sealed value that does not open with this key (another key, or tampered with). */
export class SecretOpenError extends Error {
  override readonly name = 'SecretOpenError';
  constructor(readonly variable: string) {
    super(
      `the secret ${variable} cannot be decrypted with this server's key (was the secrets key replaced, or the store edited?)`,
    );
  }
}

/** Whose secret a value is: bound into its ciphertext. */
export interface SecretOwner {
  readonly member: string;
  readonly user: string;
}

export class SecretBox {
  private key: Buffer | null = null;
  private readonly subKeys = new Map<string, Buffer>();

  /**
   * `file`: the key (32 bytes, base64). Created 0600 with a random key on first use when
   * `create` is true (the data folder's own key); an operator's key file must exist.
   */
  constructor(
    readonly file: string,
    private readonly create: boolean,
  ) {}

  seal(owner: SecretOwner, name: string, value: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.loadKey(), nonce);
    cipher.setAAD(aad(owner, name));
    const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    return PREFIX + Buffer.concat([nonce, cipher.getAuthTag(), body]).toString('base64url');
  }

  open(owner: SecretOwner, name: string, sealed: string): string {
    if (!sealed.startsWith(PREFIX)) throw new SecretOpenError(name);
    const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64url');
    if (raw.length < NONCE_BYTES + TAG_BYTES) throw new SecretOpenError(name);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.loadKey(), raw.subarray(0, NONCE_BYTES));
      decipher.setAAD(aad(owner, name));
      decipher.setAuthTag(raw.subarray(NONCE_BYTES, NONCE_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (err) {
      if (err instanceof SecretKeyError) throw err;
      throw new SecretOpenError(name);
    }
  }

  sealAll(owner: SecretOwner, env: Readonly<Record<string, string>>): Record<string, string> {
    return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, this.seal(owner, k, v)]));
  }

  openAll(owner: SecretOwner, sealed: Readonly<Record<string, string>>): Record<string, string> {
    return Object.fromEntries(Object.entries(sealed).map(([k, v]) => [k, this.open(owner, k, v)]));
  }

  /**
   * A keyed fingerprint of a secret value, for the idempotency hash: a retry with the same secret
   * matches, and the stored hash reveals nothing a guesser could test values against.
   */
  fingerprint(value: string): string {
    return createHmac('sha256', this.loadKey()).update('fabrik idempotency\0').update(value).digest('base64url');
  }

  /**
   * A value derived from the key for `purpose` and `subject` (HMAC-SHA256 under an HKDF sub-key of
   * the purpose, base64url): a credential Fabrik can compute again at any time instead of storing
   * it. The sub-key is the key's use for that purpose alone, so no derived value ever equals a
   * fingerprint, a sealing key or a value derived for another purpose.
   */
  derive(purpose: string, subject: string): string {
    let sub = this.subKeys.get(purpose);
    if (!sub) {
      sub = Buffer.from(hkdfSync('sha256', this.loadKey(), Buffer.alloc(0), `fabrik ${purpose} v1`, KEY_BYTES));
      this.subKeys.set(purpose, sub);
    }
    return createHmac('sha256', sub).update(subject).digest('base64url');
  }

  private loadKey(): Buffer {
    if (this.key) return this.key;
    let text: string;
    try {
      text = readPrivate(this.file);
    } catch (err) {
      if (err instanceof SecretKeyError) throw err;
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !this.create)
        throw new SecretKeyError(this.file, `cannot be read (${(err as Error).message})`);
      text = this.makeKey();
    }
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length !== KEY_BYTES || key.toString('base64') !== text.trim())
      throw new SecretKeyError(this.file, `is not ${KEY_BYTES} bytes of base64 (make one with: openssl rand -base64 32)`);
    this.key = key;
    return key;
  }

  /** O_EXCL: two servers starting on one folder never write two keys; the loser reads the winner's. */
  private makeKey(): string {
    const text = randomBytes(KEY_BYTES).toString('base64') + '\n';
    let fd: number;
    try {
      fd = openSync(this.file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readPrivate(this.file);
      throw new SecretKeyError(this.file, `cannot be created (${(err as Error).message})`);
    }
    try {
      writeSync(fd, text);
      // The umask may have taken bits away, never added them; the mode is checked all the same.
      if ((fstatSync(fd).mode & 0o077) !== 0) throw new SecretKeyError(this.file, 'was created readable by others');
    } finally {
      closeSync(fd);
    }
    return text;
  }
}

/** The key file's text, refused when others than its owner may read it. */
function readPrivate(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if ((fstatSync(fd).mode & 0o077) !== 0)
      throw new SecretKeyError(file, `is readable by others than its owner: chmod 600 ${file}`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function aad(owner: SecretOwner, name: string): Buffer {
  return Buffer.from(`fabrik secretEnv v1\0${owner.member}\0${owner.user}\0${name}`, 'utf8');
}

/** What views show for a secret variable, to everyone, the owner included. */
export const SECRET_SHOWN = '(secret)';
/** What views show for a plain variable to anyone but the job's owner. */
export const HIDDEN_SHOWN = '(hidden)';

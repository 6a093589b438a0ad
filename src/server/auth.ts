// Who is asking. Two kinds of bearer token: Fabrik's own API tokens (`fbk_…`: shown once, stored
// as a SHA-256 hash, scoped to a member and a role, expiring, revocable) and OIDC ID/access
// tokens from the consortium's identity provider, checked against its JWKS with jose.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { ROLES, type Role } from '../api/contract.js';
import type { AuditSink } from '../core/audit.js';
import type { Store, TokenRecord } from '../store/store.js';
import { ApiError } from './errors.js';

export interface Principal {
  /** User id: the token's user, or the OIDC subject (preferred_username when present). */
  readonly user: string;
  /** null: the whole factory (operators; auditors of the consortium). */
  readonly member: string | null;
  readonly role: Role;
  readonly via: 'token' | 'oidc';
}

export interface OidcConfig {
  readonly issuer: string;
  /** Where the issuer publishes its keys (https://…/jwks.json), or a local JWKS file. */
  readonly jwksUrl?: string;
  readonly jwksFile?: string;
  readonly audience?: string;
  /** Claims that carry the member and the role (defaults: fabrik_member, fabrik_role). */
  readonly memberClaim?: string;
  readonly roleClaim?: string;
}

const TOKEN_PREFIX = 'fbk_';
const CACHE_SECONDS = 10;

export const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');

const unauthenticated = (message: string) => new ApiError(401, 'UNAUTHENTICATED', message);

export class Authenticator {
  private readonly jwks: JWTVerifyGetKey | null;
  private readonly cache = new Map<string, { principal: Principal; token: TokenRecord; until: number }>();
  /** Who has logged in since this server started: a login is recorded once, not per request. */
  private readonly loggedIn = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly members: ReadonlySet<string>,
    private readonly oidc: OidcConfig | null,
    private readonly now: () => number,
    /** Logins go here: the first successful authentication of each token (or OIDC subject) per server start. */
    private readonly audit: AuditSink | null = null,
  ) {
    this.jwks = !oidc
      ? null
      : oidc.jwksFile
        ? createLocalJWKSet(JSON.parse(readFileSync(oidc.jwksFile, 'utf8')))
        : createRemoteJWKSet(new URL(oidc.jwksUrl ?? `${oidc.issuer.replace(/\/$/, '')}/.well-known/jwks.json`));
  }

  async authenticate(header: string | undefined): Promise<Principal> {
    if (!header) throw unauthenticated('send Authorization: Bearer <token>');
    const match = /^Bearer\s+(\S{1,8192})$/i.exec(header);
    if (!match) throw unauthenticated('the Authorization header must be "Bearer <token>"');
    const token = match[1];
    if (token.startsWith(TOKEN_PREFIX)) return this.apiToken(token);
    if (this.jwks) return this.oidcToken(token);
    throw unauthenticated('unknown token');
  }

  /**
   * A token seen in the last few seconds is not looked up again: at thousands of requests a second
   * the lookup would be the API's biggest cost. Revocation clears this replica's entry at once;
   * other replicas stop accepting the token within CACHE_SECONDS.
   */
  private async apiToken(secret: string): Promise<Principal> {
    const hash = hashSecret(secret);
    const now = this.now();
    const cached = this.cache.get(hash);
    if (cached && cached.until > now && (cached.token.expiresAt === null || cached.token.expiresAt > now))
      return cached.principal;
    const t = await this.store.tokenByHash(hash);
    if (!t || t.revokedAt !== null) throw unauthenticated('unknown or revoked token');
    if (t.expiresAt !== null && t.expiresAt <= now) throw unauthenticated('the token has expired');
    const principal: Principal = { user: t.user, member: t.member, role: t.role, via: 'token' };
    await this.login(`token:${t.id}`, principal, t.id);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { principal, token: t, until: now + CACHE_SECONDS });
    return principal;
  }

  /** Forget a token at once (it was revoked here). */
  forget(tokenHash: string): void {
    this.cache.delete(tokenHash);
  }

  private async oidcToken(token: string): Promise<Principal> {
    const o = this.oidc!;
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.jwks!, { issuer: o.issuer, audience: o.audience }));
    } catch (e) {
      throw unauthenticated(`invalid identity token: ${(e as Error).message}`);
    }
    const role = payload[o.roleClaim ?? 'fabrik_role'];
    const member = payload[o.memberClaim ?? 'fabrik_member'] ?? null;
    const user = (payload.preferred_username ?? payload.sub) as unknown;
    if (typeof user !== 'string' || user === '') throw unauthenticated('the identity token names no subject');
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role))
      throw unauthenticated(`the identity token's role claim must be one of ${ROLES.join(', ')}`);
    if (member !== null && (typeof member !== 'string' || !this.members.has(member)))
      throw unauthenticated('the identity token names no known member');
    if (member === null && role !== 'operator' && role !== 'auditor')
      throw unauthenticated(`a ${role} belongs to a member: the token's member claim is missing`);
    const principal: Principal = { user, member: member as string | null, role: role as Role, via: 'oidc' };
    await this.login(`oidc:${user}`, principal, null);
    return principal;
  }

  private async login(who: string, p: Principal, token: string | null): Promise<void> {
    if (!this.audit || this.loggedIn.has(who)) return;
    // Taken before the write: requests that arrive together with the first make one login.
    this.loggedIn.add(who);
    try {
      await this.audit.append({
        kind: 'auth.login',
        actor: p.user,
        member: p.member,
        subject: token,
        data: { via: p.via, role: p.role },
      });
    } catch (e) {
      this.loggedIn.delete(who);
      throw e;
    }
  }
}

export interface NewToken {
  readonly name: string;
  readonly member: string | null;
  readonly role: Role;
  readonly user: string;
  readonly ttlSeconds: number | null;
}

/** A bearer secret (API token, gateway key): shown once; only its hash and first characters are kept. */
export function newSecret(prefix: string): { secret: string; hash: string; shown: string } {
  const secret = prefix + randomBytes(32).toString('base64url');
  return { secret, hash: hashSecret(secret), shown: secret.slice(0, prefix.length + 6) };
}

/** Creates a token; the secret is returned once and never stored. */
export async function issueToken(store: Store, t: NewToken, now: number): Promise<{ record: TokenRecord; secret: string }> {
  const { secret, hash, shown } = newSecret(TOKEN_PREFIX);
  const record: TokenRecord = {
    id: randomUUID(),
    hash,
    prefix: shown,
    name: t.name,
    member: t.member,
    role: t.role,
    user: t.user,
    createdAt: now,
    expiresAt: t.ttlSeconds === null ? null : now + t.ttlSeconds,
    revokedAt: null,
  };
  await store.createToken(record);
  return { record, secret };
}

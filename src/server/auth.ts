// Who is asking. Two kinds of bearer token: Fabrik's own API tokens (`fbk_…`: shown once, stored
// as a SHA-256 hash, scoped to a member and a role, expiring, revocable) and OIDC ID/access
// tokens from the consortium's identity provider, checked against its JWKS with jose.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { ROLES, UserName, type Role } from '../api/contract.js';
import type { AuditSink } from '../core/audit.js';
import { newUserId } from '../store/schema.js';
import { UserExistsError, VOUCHED, type Store, type TokenRecord, type UserRecord } from '../store/store.js';
import { ApiError } from './errors.js';

export interface Principal {
  /** The user's name: what jobs, approvals and the audit log show. */
  readonly user: string;
  /** The user record behind the token or OIDC subject: the person, where names may repeat or change. */
  readonly userId: string;
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

/** A subject as a user name: the characters a name may hold, the rest as '_'. */
const safeName = (sub: string) => sub.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 128);

export class Authenticator {
  private readonly jwks: JWTVerifyGetKey | null;
  private readonly cache = new Map<string, { principal: Principal; token: TokenRecord; until: number }>();
  /** OIDC subjects seen in the last few seconds, with the claims their record was checked against. */
  private readonly subjects = new Map<string, { user: UserRecord; until: number }>();
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
    const u = await this.store.userById(t.userId);
    if (!u) throw unauthenticated('the token belongs to no user');
    if (u.disabledAt !== null) throw unauthenticated(`user ${u.name} is disabled`);
    // A user whose member or roles changed since (an OIDC refresh) does not keep what its old tokens said.
    if (u.member !== t.member || !u.roles.includes(t.role))
      throw unauthenticated(`the token's member and role are no longer user ${u.name}'s`);
    const principal: Principal = { user: u.name, userId: u.id, member: t.member, role: t.role, via: 'token' };
    await this.login(`token:${t.id}`, principal, t.id);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { principal, token: t, until: now + CACHE_SECONDS });
    return principal;
  }

  /** Forget every token of a user at once (it was disabled here); other replicas within CACHE_SECONDS. */
  forgetUser(userId: string): void {
    for (const [hash, c] of this.cache) if (c.principal.userId === userId) this.cache.delete(hash);
    for (const [key, c] of this.subjects) if (c.user.id === userId) this.subjects.delete(key);
  }

  /** Forget a token at once (it was revoked here). */
  forget(tokenHash: string): void {
    this.cache.delete(tokenHash);
  }

  private async oidcToken(token: string): Promise<Principal> {
    const o = this.oidc!;
    let payload: Record<string, unknown>;
    try {
      // Without exp a stolen token would be good for ever; without sub there is nobody to be.
      ({ payload } = await jwtVerify(token, this.jwks!, {
        issuer: o.issuer,
        audience: o.audience,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (e) {
      throw unauthenticated(`invalid identity token: ${(e as Error).message}`);
    }
    const role = payload[o.roleClaim ?? 'fabrik_role'];
    const member = payload[o.memberClaim ?? 'fabrik_member'] ?? null;
    const sub = payload.sub;
    const shown = payload.preferred_username;
    if (typeof sub !== 'string' || sub === '' || sub.length > 255) throw unauthenticated('the identity token names no subject');
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role))
      throw unauthenticated(`the identity token's role claim must be one of ${ROLES.join(', ')}`);
    if (member !== null && (typeof member !== 'string' || !this.members.has(member)))
      throw unauthenticated('the identity token names no known member');
    // An operator runs the whole factory and a member's people act for it alone: one identity that
    // claims both would let the factory act as a member (read its sealed jobs, keep its prompts).
    if (role === 'operator' && member !== null)
      throw unauthenticated(`an operator belongs to no member: the token also claims member ${member as string}`);
    if (member === null && role !== 'operator' && role !== 'auditor')
      throw unauthenticated(`a ${role} belongs to a member: the token's member claim is missing`);
    const name = typeof shown === 'string' && UserName.safeParse(shown).success ? shown : safeName(sub);
    const u = await this.oidcUser(o.issuer, sub, name, member as string | null, role as Role);
    const principal: Principal = { user: u.name, userId: u.id, member: u.member, role: role as Role, via: 'oidc' };
    await this.login(`oidc:${u.id}`, principal, null);
    return principal;
  }

  /**
   * The record of an OIDC subject, made on its first login and brought up to date with its claims.
   * The subject is the person: preferred_username is only the name it is shown by, so a second
   * subject with a name that is taken in its member gets the name with a piece of its subject's hash.
   */
  private async oidcUser(issuer: string, sub: string, name: string, member: string | null, role: Role): Promise<UserRecord> {
    const key = JSON.stringify([issuer, sub, name, member, role]);
    const now = this.now();
    const cached = this.subjects.get(key);
    if (cached && cached.until > now) return cached.user;
    let u = await this.store.userBySubject(issuer, sub);
    const alias = `${name.slice(0, 119)}~${hashSecret(`${issuer}\n${sub}`).slice(0, 8)}`;
    if (!u) {
      const fresh = (n: string): UserRecord => ({
        id: newUserId(),
        member,
        name: n,
        roles: [role],
        origin: 'oidc',
        issuer,
        subject: sub,
        createdBy: VOUCHED.idp,
        createdAt: now,
        disabledAt: null,
      });
      try {
        await this.store.createUser((u = fresh(name)));
      } catch (e) {
        if (!(e instanceof UserExistsError)) throw e;
        // The name is someone else's, or this subject's first two logins raced: read again.
        u = await this.store.userBySubject(issuer, sub);
        if (!u) await this.store.createUser((u = fresh(alias)));
      }
    }
    if (u.disabledAt !== null) throw unauthenticated(`user ${u.name} is disabled`);
    if (u.member !== member || u.roles.length !== 1 || u.roles[0] !== role || (u.name !== name && u.name !== alias)) {
      // The identity provider is where these change; the record follows it.
      const set = { member, roles: [role] as Role[] };
      try {
        await this.store.updateUser(u.id, { ...set, name });
        u = { ...u, ...set, name };
      } catch (e) {
        if (!(e instanceof UserExistsError)) throw e;
        await this.store.updateUser(u.id, { ...set, name: alias });
        u = { ...u, ...set, name: alias };
      }
    }
    if (this.subjects.size > 10_000) this.subjects.clear();
    this.subjects.set(key, { user: u, until: now + CACHE_SECONDS });
    return u;
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
  /** The user the token belongs to: its member and name are the token's. */
  readonly user: Pick<UserRecord, 'id' | 'name' | 'member'>;
  readonly role: Role;
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
    member: t.user.member,
    role: t.role,
    user: t.user.name,
    userId: t.user.id,
    createdAt: now,
    expiresAt: t.ttlSeconds === null ? null : now + t.ttlSeconds,
    revokedAt: null,
  };
  await store.createToken(record);
  return { record, secret };
}

/**
 * The first operator, on a server's first start: a user vouched for by the server itself (whoever
 * can start it owns the factory) and a token that does not expire.
 */
export async function firstOperator(store: Store, now: number): Promise<{ record: TokenRecord; secret: string }> {
  let user = await store.userByName(null, 'operator');
  if (!user) {
    user = {
      id: newUserId(),
      member: null,
      name: 'operator',
      roles: ['operator'],
      origin: 'local',
      issuer: null,
      subject: null,
      createdBy: VOUCHED.server,
      createdAt: now,
      disabledAt: null,
    };
    await store.createUser(user);
  }
  return issueToken(store, { name: 'bootstrap', user, role: 'operator', ttlSeconds: null }, now);
}

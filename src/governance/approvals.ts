// The two-person rule: who may approve what, and when two approvals are enough.
//
// Two approvals count only when two different PEOPLE gave them, and the requester gave neither. A
// user record is not a person: whoever holds a user may create more users (a member admin makes its
// member's people, an operator makes operators), and so may be behind each of them. So every user
// has a vouching chain: itself, the user that created it, that user's creator, and so on up to a
// record nobody in Fabrik made (an OIDC subject, which the identity provider vouches for; a
// member's first admins, made at bootstrap; the first operator, made by the server). Records from
// before users were records (`legacy`) all share one link, so together they count as one person.
//
//   * two approvers are two people only if their chains have no user in common: pam and a user pam
//     created are one person, and so are two users both created by pam;
//   * an approver whose chain holds the requester (a user the requester made, directly or not) is the
//     requester, and the requester never approves.
//
// So one human who controls a user and everything that user created can never supply both
// approvals, however many records they make (test/governance/two-person.test.ts checks it over
// random creation trees), while two people with their own identities always can.
import type { Role } from '../api/contract.js';
import { VOUCHED, type UserRecord } from '../store/store.js';
import type { Approval, Approver } from './models-store.js';

export interface Approving {
  readonly user: string;
  readonly userId: string;
  readonly member: string | null;
  readonly role: Role;
}

export type Refusal = { readonly status: 403 | 409; readonly message: string };

/** The vouching chain of a person (user id → its chain: itself first). */
export type ChainOf = (person: string) => readonly string[];

/** A chain longer than this is a loop or an attack; it stops there (and still holds its first links). */
const MAX_CHAIN = 64;

/**
 * A user's vouching chain: its id, then its creators' ids, up to a root. A user Fabrik does not know
 * (an approval recorded before migration 008, by name) is a chain of itself.
 */
export async function vouchingChain(
  userId: string,
  userById: (id: string) => Promise<Pick<UserRecord, 'id' | 'createdBy'> | undefined>,
): Promise<string[]> {
  const chain: string[] = [];
  let next: string | undefined = userId;
  while (next !== undefined && chain.length < MAX_CHAIN && !chain.includes(next)) {
    chain.push(next);
    const u = await userById(next);
    if (!u) break;
    if (u.createdBy === VOUCHED.legacy) chain.push(VOUCHED.legacy);
    next = (Object.values(VOUCHED) as string[]).includes(u.createdBy) ? undefined : u.createdBy;
  }
  return chain;
}

/** Who a recorded approver is: its user id, or (approvals from before user records) its name. */
export const approverPerson = (x: Approver): string => x.userId ?? `name:${x.user}`;
/** Who asked for an approval. */
export const requesterPerson = (a: Pick<Approval, 'requestedById' | 'requestedBy'>): string =>
  a.requestedById ?? `name:${a.requestedBy}`;

const overlap = (a: readonly string[], b: readonly string[]) => a.some((x) => b.includes(x));

/**
 * Whether two different people of the right kinds approved, neither of them the requester: for a
 * model export, two member admins of the owning member; for break-glass, a member admin of the
 * member and an operator.
 */
export function complete(
  a: Pick<Approval, 'kind' | 'requestedById' | 'requestedBy'>,
  approvers: readonly Approver[],
  chainOf: ChainOf,
): boolean {
  const requester = requesterPerson(a);
  const eligible = approvers.filter((x) => !chainOf(approverPerson(x)).includes(requester));
  const fits = (x: Approver, y: Approver) =>
    a.kind === 'model-export'
      ? x.role === 'member-admin' && y.role === 'member-admin'
      : new Set([x.role, y.role]).size === 2 && [x.role, y.role].every((r) => r === 'member-admin' || r === 'operator');
  return eligible.some((x, i) =>
    eligible.slice(i + 1).some((y) => fits(x, y) && !overlap(chainOf(approverPerson(x)), chainOf(approverPerson(y)))),
  );
}

/** Null when `p` may add its approval now; otherwise why not. */
export function refuseApproval(a: Approval, p: Approving, chainOf: ChainOf, now: number): Refusal | null {
  if (a.state !== 'pending') return { status: 409, message: `approval ${a.id} is ${a.state} already` };
  if (a.expiresAt <= now) return { status: 409, message: `approval ${a.id} expired` };
  const requester = requesterPerson(a);
  const mine = chainOf(p.userId);
  if (p.userId === requester || (a.requestedById === null && p.user === a.requestedBy))
    return { status: 403, message: 'the requester cannot approve their own request' };
  if (mine.includes(requester))
    return {
      status: 403,
      message: `${p.user} was created by the requester ${a.requestedBy} (or by a user they created): the same person may be behind both, and the requester does not approve`,
    };
  if (a.approvers.some((x) => approverPerson(x) === p.userId || (x.userId === undefined && x.user === p.user)))
    return { status: 409, message: `${p.user} approved already; the same person counts once` };
  const same = a.approvers.find((x) => overlap(mine, chainOf(approverPerson(x))));
  if (same)
    return {
      status: 403,
      message: `${p.user} and ${same.user} were created by the same user (or one by the other): they count as one person, and the second approval must come from someone else`,
    };
  const memberAdmin = p.role === 'member-admin' && p.member === a.member;
  if (a.kind === 'model-export') {
    if (!memberAdmin) return { status: 403, message: `a model export is approved by member admins of ${a.member}` };
    return null;
  }
  if (!memberAdmin && p.role !== 'operator')
    return { status: 403, message: `break-glass is approved by a member admin of ${a.member} and another operator` };
  // Two of one kind would never complete: the second approver must be of the other kind.
  const kind = memberAdmin ? 'member-admin' : 'operator';
  if (a.approvers.some((x) => x.role === kind))
    return {
      status: 403,
      message: `break-glass needs one member admin of ${a.member} and one operator; a${kind === 'operator' ? 'n operator' : ' member admin'} approved already`,
    };
  return null;
}

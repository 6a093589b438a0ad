// The two-person rule: who may approve what, and when two approvals are enough. A person is a
// user id: the same user approving twice (through two tokens, or as two roles) counts once, and
// the requester never approves their own request.
import type { Role } from '../api/contract.js';
import type { Approval, ApprovalKind, Approver } from './models-store.js';

export interface Approving {
  readonly user: string;
  readonly member: string | null;
  readonly role: Role;
}

export type Refusal = { readonly status: 403 | 409; readonly message: string };

/**
 * Whether two distinct people of the right kinds approved: for a model export, two member admins
 * of the owning member; for break-glass, a member admin of the member and an operator (neither
 * the operator who asked).
 */
export function complete(kind: ApprovalKind, approvers: readonly Approver[]): boolean {
  const people = new Map(approvers.map((a) => [a.user, a.role]));
  const roles = [...people.values()];
  if (kind === 'model-export') return roles.filter((r) => r === 'member-admin').length >= 2;
  return people.size >= 2 && roles.includes('member-admin') && roles.includes('operator');
}

/** Null when `p` may add its approval now; otherwise why not. */
export function refuseApproval(a: Approval, p: Approving, now: number): Refusal | null {
  if (a.state !== 'pending') return { status: 409, message: `approval ${a.id} is ${a.state} already` };
  if (a.expiresAt <= now) return { status: 409, message: `approval ${a.id} expired` };
  if (p.user === a.requestedBy) return { status: 403, message: 'the requester cannot approve their own request' };
  if (a.approvers.some((x) => x.user === p.user))
    return { status: 409, message: `${p.user} approved already; the same person counts once` };
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

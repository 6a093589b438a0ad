// Who may do what, in one place. A member's objects are invisible to everyone outside it (the
// API answers 404, never 403, so not even their existence leaks); within a member, roles decide.
// An operator runs the machine and protects it; it never does a member's work for it (MEMBERS_WORK):
// a job it submitted for telecom naming pharma's dataset would be admitted under telecom's
// agreement with pharma and read pharma's data; a key it made for pharma would call pharma's models.
//
//   action          operator   member-admin    researcher        auditor
//   job.submit      —⁴         own member      own member        —
//   job.read        all        own member      own member        own member (all if consortium-wide)
//   job.logs        all        own member      own member        —   (logs hold the member's data)
//   job.cancel      all        own member      own jobs          —
//   token.manage    own¹       own member¹     —                 —
//   user.manage     own¹ ³     own member¹     —                 —
//   user.read       all        own member      —                 own member (all if consortium-wide)
//   node.manage     yes        —               —                 —
//   member.read     all        own             own               own (all if consortium-wide)
//   data.register   —⁴         own member      own member        —
//   data.read       all        own + granted   own + granted     own + granted (all if consortium-wide)
//   agreement.propose —⁴       own member      own member        —
//   agreement.approve —        own (grantor)   —                 —
//   agreement.revoke  all      own (grantor)   —                 —
//   policy.manage   yes        —               —                 —
//   model.register  —          own member      own member        —
//   model.read      all        own + trained on its data (lineage) (all if consortium-wide)
//   model.edit      —          own member      own member        —   (the card's people-filled fields)
//   model.export    —          own member      own member        —   (restricted: two approvers)
//   approval.request break-glass own (export)  own (export)      —
//   approval.approve break-glass own member    —                 —
//   breakglass.manage —        own member      —                 —
//   deployment.create —⁴       own member      own member        —
//   deployment.scale  —⁴       own member      own member        —
//   deployment.delete all      own member      own member        —   (stops the replicas, like cancel)
//   deployment.read all        own member      own member        own member (all if consortium-wide)
//   gateway.key.create —⁴      own member      own member        —
//   gateway.key.read  all      own member      own member        —
//   gateway.key.revoke all     own member      own keys²         —
//   gateway.logging —          own member      —                 —   (whether its prompts are kept)
//   gateway.logs.read —        own member      —                 —   (the prompts themselves)
//   reservation.book  all⁵     own member⁵     —                 —
//   reservation.read  all      all (sinfo -T)  all (sinfo -T)    all (sinfo -T)
//   reservation.delete all     own member      —                 —
//
// ¹ people, not names (routes/admin.ts): a member admin creates member-admin, researcher and auditor
//   users of its own member; an operator creates operators and consortium-wide auditors. Tokens are
//   made for yourself and for users you created (directly or through users you created) only: so an
//   operator never holds a token of a member's user, and nobody holds another person's.
// ² a researcher revokes only the gateway keys they created.
// ³ and a member's first member admins, once, before the member has people of its own (bootstrap).
// ⁴ a member's work, done by its people only: an operator is refused with who may (MEMBERS_WORK).
//   What an operator keeps is operations and protection: reading, cancelling any job, draining
//   nodes, revoking agreements and keys, deleting deployments, break-glass, site policies.
// ⁵ a member admin books within the consortium file's `reservations:` rules; an operator books for
//   any member beyond them (routes/reservations.ts). Everyone sees every reservation's name, member,
//   window and GPUs, as Slurm's `sinfo -T` shows them; who booked it, only its member and operators.
import type { Role } from '../api/contract.js';
import type { Principal } from './auth.js';
import { ApiError, forbidden, notFound } from './errors.js';

export type Action =
  | 'job.submit'
  | 'job.read'
  | 'job.logs'
  | 'job.cancel'
  | 'token.manage'
  | 'user.manage'
  | 'user.read'
  | 'node.manage'
  | 'member.read'
  | 'data.register'
  | 'data.read'
  | 'agreement.propose'
  | 'agreement.approve'
  | 'agreement.revoke'
  | 'policy.manage'
  | 'model.register'
  | 'model.read'
  | 'model.edit'
  | 'model.export'
  | 'approval.request'
  | 'approval.approve'
  | 'breakglass.manage'
  | 'deployment.create'
  | 'deployment.scale'
  | 'deployment.delete'
  | 'deployment.read'
  | 'gateway.key.create'
  | 'gateway.key.read'
  | 'gateway.key.revoke'
  | 'gateway.logging'
  | 'gateway.logs.read'
  | 'reservation.book'
  | 'reservation.read'
  | 'reservation.delete';

const ALLOWED: Readonly<Record<Action, readonly Role[]>> = {
  'job.submit': ['member-admin', 'researcher'],
  'job.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'job.logs': ['operator', 'member-admin', 'researcher'],
  'job.cancel': ['operator', 'member-admin', 'researcher'],
  'token.manage': ['operator', 'member-admin'],
  'user.manage': ['operator', 'member-admin'],
  'user.read': ['operator', 'member-admin', 'auditor'],
  'node.manage': ['operator'],
  'member.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'data.register': ['member-admin', 'researcher'],
  'data.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'agreement.propose': ['member-admin', 'researcher'],
  'agreement.approve': ['member-admin'],
  'agreement.revoke': ['operator', 'member-admin'],
  'policy.manage': ['operator'],
  'model.register': ['member-admin', 'researcher'],
  'model.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'model.edit': ['member-admin', 'researcher'],
  'model.export': ['member-admin', 'researcher'],
  'approval.request': ['operator', 'member-admin', 'researcher'],
  'approval.approve': ['operator', 'member-admin'],
  'breakglass.manage': ['member-admin'],
  'deployment.create': ['member-admin', 'researcher'],
  'deployment.scale': ['member-admin', 'researcher'],
  'deployment.delete': ['operator', 'member-admin', 'researcher'],
  'deployment.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'gateway.key.create': ['member-admin', 'researcher'],
  'gateway.key.read': ['operator', 'member-admin', 'researcher'],
  'gateway.key.revoke': ['operator', 'member-admin', 'researcher'],
  'gateway.logging': ['member-admin'],
  'gateway.logs.read': ['member-admin'],
  'reservation.book': ['operator', 'member-admin'],
  'reservation.read': ['operator', 'member-admin', 'researcher', 'auditor'],
  'reservation.delete': ['operator', 'member-admin'],
};

/** Whether the principal sees the member's objects at all. */
export function seesMember(p: Principal, member: string): boolean {
  return p.member === null || p.member === member;
}

const DOING: Readonly<Record<Action, string>> = {
  'job.submit': 'submit jobs',
  'job.read': 'read jobs',
  'job.logs': 'read job logs',
  'job.cancel': 'cancel jobs',
  'token.manage': 'manage tokens',
  'user.manage': 'manage users',
  'user.read': 'read users',
  'node.manage': 'manage nodes',
  'member.read': 'read members',
  'data.register': 'register datasets',
  'data.read': 'read datasets and agreements',
  'agreement.propose': 'propose data-use agreements',
  'agreement.approve': 'approve data-use agreements',
  'agreement.revoke': 'revoke data-use agreements',
  'policy.manage': 'manage site policies',
  'model.register': 'register models',
  'model.read': 'read models',
  'model.edit': 'edit model cards',
  'model.export': 'export models',
  'approval.request': 'request approvals',
  'approval.approve': 'approve requests',
  'breakglass.manage': 'change the break-glass setting',
  'deployment.create': 'create deployments',
  'deployment.scale': 'scale deployments',
  'deployment.delete': 'delete deployments',
  'deployment.read': 'read deployments',
  'gateway.key.create': 'create gateway keys',
  'gateway.key.read': 'read gateway keys',
  'gateway.key.revoke': 'revoke gateway keys',
  'gateway.logging': "decide whether a member's prompts are kept",
  'gateway.logs.read': "read a member's kept prompts",
  'reservation.book': 'book reservations',
  'reservation.read': 'read reservations',
  'reservation.delete': 'delete reservations',
};

/**
 * A member's own work, and the answer an operator gets when it tries to do it for a member: who
 * does it instead, and the field of the request that names the member, where it has one.
 */
const OPERATIONS = "an operator runs the machine, not a member's work";
const MEMBERS_WORK: Readonly<Partial<Record<Action, { readonly message: string; readonly field?: string }>>> = {
  'job.submit': { message: `jobs are submitted by a member's people; ${OPERATIONS}`, field: 'body.member' },
  'data.register': { message: `datasets are registered by a member's people; ${OPERATIONS}`, field: 'body.owner' },
  'agreement.propose': { message: `data-use agreements are proposed by a member's people; ${OPERATIONS}` },
  'deployment.create': {
    message: `models are deployed by a member's people; ${OPERATIONS} (it may delete a deployment)`,
    field: 'body.member',
  },
  'deployment.scale': { message: `deployments are scaled by a member's people; ${OPERATIONS} (it may delete a deployment)` },
  'gateway.key.create': {
    message: `gateway keys are created by a member's people; ${OPERATIONS} (it may revoke a key)`,
    field: 'body.member',
  },
};

/** Throws 403 if the role may never do this. */
export function requireRole(p: Principal, action: Action): void {
  if (ALLOWED[action].includes(p.role)) return;
  const work = p.role === 'operator' ? MEMBERS_WORK[action] : undefined;
  if (work) throw new ApiError(403, 'FORBIDDEN', work.message, work.field);
  throw forbidden(`${/^[aeiou]/.test(p.role) ? 'an' : 'a'} ${p.role} may not ${DOING[action]}`);
}

/**
 * For a member's own work (MEMBERS_WORK: submitting, deploying, registering…): requireRole, then the
 * member the work is for, which is always the asker's own. `named` is what the request says in its
 * member field, where it has one: it may repeat the asker's member, and nothing else.
 */
export function memberOfWork(p: Principal, action: Action, named?: { value?: string | null; field: string }): string {
  requireRole(p, action);
  // Only a member's people pass requireRole for such work; this keeps it so if the table changes.
  const work = MEMBERS_WORK[action];
  if (p.member === null) throw new ApiError(403, 'FORBIDDEN', work?.message ?? `${p.role}s act for no member`, work?.field);
  if (named?.value != null && named.value !== p.member)
    throw new ApiError(403, 'FORBIDDEN', `you ${DOING[action]} of member ${p.member} only`, named.field);
  return p.member;
}

/**
 * Checks an action on an object of `member` (owned by `user`, for jobs): 404 when the object is
 * another member's, 403 when it is visible but the role may not act on it.
 */
export function authorize(p: Principal, action: Action, object: { member: string; user?: string; what: string }): void {
  if (!seesMember(p, object.member)) throw notFound(object.what);
  requireRole(p, action);
  if (action === 'job.cancel' && p.role === 'researcher' && object.user !== p.user)
    throw forbidden('a researcher may cancel only their own jobs');
  if (action === 'gateway.key.revoke' && p.role === 'researcher' && object.user !== p.user)
    throw forbidden('a researcher may revoke only their own keys');
}

// The two-person rule over random people: random creation trees of users (OIDC subjects, bootstrap
// admins, the first operator and legacy names at the roots; users made by users below them), random
// roles, requesters and approval sequences. One human who controls a user and every record that
// user created (directly or not) never completes an approval alone, whatever order they approve in;
// two people whose records share no creator, neither made by the requester, always can.
//
// Reproduce a failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/governance/two-person.test.ts
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Role } from '../../src/api/contract.js';
import { complete, refuseApproval, vouchingChain, type ChainOf } from '../../src/governance/approvals.js';
import type { Approval, ApprovalKind, Approver } from '../../src/governance/models-store.js';
import { VOUCHED } from '../../src/store/store.js';

const MEMBER = 'pharma';
const NOW = 1_000;

interface Person {
  readonly id: string;
  readonly createdBy: string;
  readonly role: Role;
  readonly member: string | null;
}

const ROOTS = [VOUCHED.idp, VOUCHED.bootstrap, VOUCHED.server, VOUCHED.legacy];
const ROLES: readonly Role[] = ['member-admin', 'operator', 'researcher', 'auditor'];

/** A forest of users: user i is a root or was created by some user before it. */
const forest = fc.integer({ min: 2, max: 14 }).chain((n) =>
  fc.tuple(
    ...Array.from({ length: n }, (_, i) =>
      fc.record({
        parent: i === 0 ? fc.constant(-1) : fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: i - 1 })),
        root: fc.constantFrom(...ROOTS),
        role: fc.constantFrom(...ROLES),
        member: fc.constantFrom<string | null>(MEMBER, 'telecom', null),
      }),
    ),
  ),
);

function people(spec: readonly { parent: number; root: string; role: Role; member: string | null }[]): Person[] {
  return spec.map((s, i) => ({
    id: `usr_${i}`,
    createdBy: s.parent < 0 ? s.root : `usr_${s.parent}`,
    role: s.role,
    // An operator belongs to no member; a member's roles to a member (what the API enforces).
    member: s.role === 'operator' ? null : (s.member ?? MEMBER),
  }));
}

async function chainsOf(all: readonly Person[]): Promise<ChainOf> {
  const byId = new Map(all.map((p) => [p.id, p]));
  const chains = new Map<string, string[]>();
  for (const p of all) chains.set(p.id, await vouchingChain(p.id, async (id) => byId.get(id)));
  return (id) => chains.get(id) ?? [id];
}

function request(kind: ApprovalKind, requester: Person): Approval {
  return {
    id: 'apr-1',
    kind,
    subject: kind === 'model-export' ? 'model:m@1' : 'job:1',
    member: MEMBER,
    reason: 'r',
    requestedBy: requester.id,
    requestedById: requester.id,
    requestedRole: requester.role,
    createdAt: 0,
    expiresAt: NOW + 100,
    approvers: [],
    state: 'pending',
    approvedAt: null,
    usedAt: null,
  };
}

/** Approves as each of `who` in turn, keeping the approvals the rule accepts; whether it completed. */
function approveAll(a: Approval, who: readonly Person[], chainOf: ChainOf): { approval: Approval; accepted: Person[] } {
  let approval = a;
  const accepted: Person[] = [];
  for (const p of who) {
    if (approval.state !== 'pending') break;
    if (refuseApproval(approval, { user: p.id, userId: p.id, member: p.member, role: p.role }, chainOf, NOW)) continue;
    accepted.push(p);
    const approvers: Approver[] = [...approval.approvers, { user: p.id, userId: p.id, role: p.role, at: NOW }];
    approval = { ...approval, approvers, state: complete(approval, approvers, chainOf) ? 'approved' : 'pending' };
  }
  return { approval, accepted };
}

describe('the two-person rule against one person with many records', () => {
  it('no human who controls a user and everything it created completes an approval alone', async () => {
    await fc.assert(
      fc.asyncProperty(
        forest,
        fc.nat(),
        fc.nat(),
        fc.constantFrom<ApprovalKind>('model-export', 'break-glass'),
        fc.array(fc.nat(), { minLength: 1, maxLength: 12 }),
        async (spec, controllerPick, requesterPick, kind, order) => {
          const all = people(spec);
          const chainOf = await chainsOf(all);
          const controller = all[controllerPick % all.length];
          // What this human holds: the controller's record and every record below it.
          const held = all.filter((p) => chainOf(p.id).includes(controller.id));
          const requester = all[requesterPick % all.length];
          const who = order.map((i) => held[i % held.length]);
          const { approval } = approveAll(request(kind, requester), who, chainOf);
          expect(approval.state).toBe('pending');
          expect(complete(approval, approval.approvers, chainOf)).toBe(false);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('nor with the requester: an approver the requester created never counts', async () => {
    await fc.assert(
      fc.asyncProperty(forest, fc.nat(), fc.array(fc.nat(), { maxLength: 8 }), async (spec, pick, order) => {
        const all = people(spec);
        const chainOf = await chainsOf(all);
        const requester = all[pick % all.length];
        const made = all.filter((p) => chainOf(p.id).includes(requester.id));
        for (const kind of ['model-export', 'break-glass'] as const) {
          const { accepted } = approveAll(
            request(kind, requester),
            order.map((i) => made[i % made.length]),
            chainOf,
          );
          expect(accepted).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('two people with records of their own, of the right roles, always complete it', async () => {
    await fc.assert(
      fc.asyncProperty(
        forest,
        fc.nat(),
        fc.constantFrom<ApprovalKind>('model-export', 'break-glass'),
        fc.nat(),
        async (spec, requesterPick, kind, pairPick) => {
          const all = people(spec);
          const chainOf = await chainsOf(all);
          const requester = all[requesterPick % all.length];
          const fits = (p: Person, role: Role) =>
            p.role === role && (role === 'operator' || p.member === MEMBER) && !chainOf(p.id).includes(requester.id);
          const [first, second]: [Role, Role] =
            kind === 'model-export' ? ['member-admin', 'member-admin'] : ['member-admin', 'operator'];
          const pairs = all.flatMap((x) =>
            all
              .filter((y) => y.id !== x.id && fits(x, first) && fits(y, second))
              .filter((y) => !chainOf(x.id).some((c) => chainOf(y.id).includes(c)))
              .map((y) => [x, y] as const),
          );
          fc.pre(pairs.length > 0);
          const [x, y] = pairs[pairPick % pairs.length];
          const { approval, accepted } = approveAll(request(kind, requester), [x, y], chainOf);
          expect(accepted).toEqual([x, y]);
          expect(approval.state).toBe('approved');
        },
      ),
      { numRuns: 300 },
    );
  });

  it('legacy names (from before users were records) count as one person together', async () => {
    const all: Person[] = [
      { id: 'usr_req', createdBy: VOUCHED.idp, role: 'researcher', member: MEMBER },
      { id: 'usr_a', createdBy: VOUCHED.legacy, role: 'member-admin', member: MEMBER },
      { id: 'usr_b', createdBy: VOUCHED.legacy, role: 'member-admin', member: MEMBER },
      { id: 'usr_c', createdBy: VOUCHED.idp, role: 'member-admin', member: MEMBER },
    ];
    const chainOf = await chainsOf(all);
    expect(approveAll(request('model-export', all[0]), [all[1], all[2]], chainOf).approval.state).toBe('pending');
    expect(approveAll(request('model-export', all[0]), [all[1], all[3]], chainOf).approval.state).toBe('approved');
  });

  it('a loop in the creators (never made by the API) still ends, and counts as one person', async () => {
    const all: Person[] = [
      { id: 'usr_req', createdBy: VOUCHED.idp, role: 'researcher', member: MEMBER },
      { id: 'usr_a', createdBy: 'usr_b', role: 'member-admin', member: MEMBER },
      { id: 'usr_b', createdBy: 'usr_a', role: 'member-admin', member: MEMBER },
    ];
    const chainOf = await chainsOf(all);
    expect(chainOf('usr_a')).toEqual(['usr_a', 'usr_b']);
    expect(approveAll(request('model-export', all[0]), [all[1], all[2]], chainOf).accepted).toEqual([all[1]]);
  });
});

// fabrik users: the people of a member (or of the factory) as records. A member admin creates its
// member's users and then their tokens (fabrik tokens create --user); an operator creates operators,
// consortium auditors, and a member's first admins, whose token comes back with them (bootstrap).
// Names are printed as they are: the server takes only letters, digits and . _ @ - ~ in them.
import { Command } from 'commander';
import type { TokenView, UserView } from '../api/contract.js';
import { client, commaList, json, print } from './output.js';
import { table } from './table.js';

const ROLE_NAMES = ['operator', 'member-admin', 'researcher', 'auditor'];

function roles(v: string, previous: string[] = []): string[] {
  const list = commaList(v);
  const unknown = list.find((r) => !ROLE_NAMES.includes(r));
  if (unknown) throw new Error(`--role: '${unknown}' is not a role (${ROLE_NAMES.join(', ')})`);
  return [...previous, ...list];
}

/** A user's id from its id or its name (in the member, for operators who see several). */
async function userId(ref: string, member: string | undefined): Promise<UserView> {
  const q = member ? `?member=${encodeURIComponent(member)}` : '';
  const { users } = await client().request<{ users: UserView[] }>('GET', `/v1/users${q}`);
  const found = users.filter((u) => u.id === ref || (u.name === ref && (member === undefined || u.member === member)));
  if (found.length === 0) throw new Error(`no user ${ref}${member ? ` in ${member}` : ''} (fabrik users lists them)`);
  if (found.length > 1)
    throw new Error(
      `${found.length} users are named ${ref} (in ${found.map((u) => u.member ?? 'no member').join(', ')}): give --member or the id`,
    );
  return found[0];
}

export function usersCommand(): Command {
  const users = new Command('users').description('people as records: list, create, disable');
  users
    .command('list', { isDefault: true })
    .option('--member <id>', "only this member's users (operators and consortium auditors)")
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const q = o.member ? `?member=${encodeURIComponent(o.member)}` : '';
      const r = await client().request<{ users: UserView[] }>('GET', `/v1/users${q}`);
      if (o.json) return json(r.users);
      print(
        table(
          ['ID', 'NAME', 'MEMBER', 'ROLES', 'ORIGIN', 'CREATED BY', 'DISABLED'],
          r.users.map((u) => [
            u.id,
            u.name,
            u.member ?? '*',
            u.roles.join(','),
            u.origin === 'oidc' ? `oidc ${u.subject}` : 'local',
            u.createdBy,
            u.disabledAt ?? '',
          ]),
        ),
      );
    });
  users
    .command('create')
    .description(
      "a member admin: a user of its member; an operator: an operator, a consortium auditor, or (--member) a member's first admin, which comes with a token for a day",
    )
    .argument('<name>', 'the name jobs and logs will show')
    .requiredOption(
      '--role <roles>',
      'its role(s), comma-separated or repeated: member-admin, researcher, auditor, operator',
      roles,
    )
    .option('--member <id>', 'its member (a member admin may leave it out: its own)')
    .option('--json', 'JSON for scripts')
    .action(async (name: string, o) => {
      const r = await client().request<{ user: UserView; token?: TokenView; secret?: string }>('POST', '/v1/users', {
        name,
        roles: o.role,
        ...(o.member !== undefined ? { member: o.member } : {}),
      });
      if (o.json) return json(r);
      const u = r.user;
      console.log(`user ${u.name} (${u.id}) created${u.member ? ` for ${u.member}` : ''}: ${u.roles.join(', ')}`);
      if (r.secret && r.token)
        console.log(
          `${u.member}'s first admin: its token expires ${r.token.expiresAt}; ${u.name} makes its own with it (fabrik tokens create --user ${u.name}). Shown only now:` +
            `\n${r.secret}`,
        );
      else console.log(`its token: fabrik tokens create --user ${u.name}`);
    });
  users
    .command('disable')
    .description('for good: its tokens and logins are refused at once')
    .argument('<user>', 'its name or id')
    .option('--member <id>', 'its member, where a name is in several (operators)')
    .action(async (ref: string, o) => {
      const u = await userId(ref, o.member);
      const after = await client().request<UserView>('POST', `/v1/users/${encodeURIComponent(u.id)}/disable`);
      console.log(`user ${after.name} (${after.id}) disabled`);
    });
  return users;
}

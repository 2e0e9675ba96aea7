// Who may open a qube's dispatcher socket. The socket is the caller's
// identity, so on a host where several users or services stand in for
// different qubes each socket gets its own owner, group and mode:
// "USER:GROUP:MODE" with names or numeric ids, either part empty to keep
// root's, MODE in octal (default 0660). Names are resolved once, at start,
// through the system's user database (getent), so LDAP or systemd-userdb
// users work as well as /etc/passwd ones.
import { execFileSync } from 'node:child_process';
import type { SocketAccess } from './dispatcher.js';

export type SocketOwners = Map<string, SocketAccess>;

function lookup(db: 'passwd' | 'group', name: string): number {
  if (/^[0-9]+$/.test(name)) return Number(name);
  let line: string;
  try {
    line = execFileSync('getent', [db, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    throw new Error(`no such ${db === 'passwd' ? 'user' : 'group'} ${JSON.stringify(name)}`);
  }
  const id = line.split(':')[2];
  if (!id || !/^[0-9]+$/.test(id)) throw new Error(`cannot read the id of ${JSON.stringify(name)} from getent ${db}`);
  return Number(id);
}

/** "USER:GROUP[:MODE]" → ids and mode; throws with a message naming what is wrong. */
export function parseSocketOwner(spec: string): SocketAccess {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new Error(`socket owner ${JSON.stringify(spec)}: expected [USER]:[GROUP][:MODE]`);
  const [user, group, mode] = parts as [string, string, string | undefined];
  const out: SocketAccess = {};
  if (user) out.uid = lookup('passwd', user);
  if (group) out.gid = lookup('group', group);
  if (mode !== undefined && mode !== '') {
    if (!/^0?[0-7]{3}$/.test(mode)) throw new Error(`socket mode ${JSON.stringify(mode)}: expected octal, e.g. 0660`);
    out.mode = parseInt(mode, 8);
  }
  return out;
}

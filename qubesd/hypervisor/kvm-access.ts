// Whether QEMU, as libvirtd starts it, can open /dev/kvm: the choice between
// KVM and TCG guests when no accel is configured. libvirtd runs QEMU as an
// unprivileged user (Debian builds it as libvirt-qemu, group kvm, with that
// user's supplementary groups); a /dev/kvm that user cannot open makes every
// start fail ("Could not access KVM kernel module: Permission denied"),
// where TCG would have worked. A device group-writable for some other group
// is common where no udev gave it Debian's root:kvm (containers, hosts whose
// kvm group has another number), so the group is checked against the user's.
import { readFileSync, statSync } from 'node:fs';

/** QEMU's user and group in Debian's libvirt (qemu.conf's compiled-in defaults). */
const QEMU_USER = 'libvirt-qemu';
const QEMU_GROUP = 'kvm';

interface Device {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * The group ids QEMU runs with: `user`'s primary group, the groups that list
 * it as a member, and `group`; null when `user` is not in the passwd file
 * (QEMU's user is not known here).
 */
export function qemuGroupIds(passwd: string, group: string, user = QEMU_USER, qemuGroup = QEMU_GROUP): { uid: number; gids: Set<number> } | null {
  const pw = passwd.split('\n').find((l) => l.split(':')[0] === user);
  if (!pw) return null;
  const f = pw.split(':');
  const uid = Number(f[2]),
    primary = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(primary)) return null;
  const gids = new Set<number>([primary]);
  for (const line of group.split('\n')) {
    const [name, , gid, members = ''] = line.split(':');
    const id = Number(gid);
    if (!name || !Number.isInteger(id)) continue;
    if (name === qemuGroup || members.split(',').includes(user)) gids.add(id);
  }
  return { uid, gids };
}

/** Whether a process of that user and those groups may read and write `dev`. */
export function deviceUsable(dev: Device, who: { uid: number; gids: Set<number> } | null): boolean {
  if ((dev.mode & 0o006) === 0o006) return true;
  // QEMU's user not known: a group other than root's is taken to be QEMU's
  if (!who) return dev.gid !== 0 && (dev.mode & 0o060) === 0o060;
  if (who.uid === 0) return true;
  if (dev.uid === who.uid && (dev.mode & 0o600) === 0o600) return true;
  return who.gids.has(dev.gid) && (dev.mode & 0o060) === 0o060;
}

/** Whether QEMU, running as libvirt's unprivileged user, can open /dev/kvm. */
export function kvmUsable(): boolean {
  let dev: Device;
  try {
    dev = statSync('/dev/kvm');
  } catch {
    return false;
  }
  let who: ReturnType<typeof qemuGroupIds>;
  try {
    who = qemuGroupIds(readFileSync('/etc/passwd', 'utf8'), readFileSync('/etc/group', 'utf8'));
  } catch {
    who = null;
  }
  return deviceUsable(dev, who);
}

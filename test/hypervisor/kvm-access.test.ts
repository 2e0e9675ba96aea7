// The choice between KVM and TCG guests: whether QEMU's user (libvirt-qemu)
// can open /dev/kvm, decided from the device's owner, group and mode and
// from passwd and group texts written out here.
import t from 'tap';
import { deviceUsable, qemuGroupIds } from '../../qubesd/hypervisor/kvm-access.js';

const PASSWD = ['root:x:0:0:root:/root:/bin/bash', 'libvirt-qemu:x:64055:107:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin', ''].join('\n');
const GROUP = ['root:x:0:', 'kvm:x:107:', 'render:x:108:', 'libvirt-qemu:x:64055:libvirt-qemu', 'video:x:44:someone,libvirt-qemu', ''].join('\n');

t.test("QEMU's groups: its primary group, the groups listing it, and kvm", async (t) => {
  const who = qemuGroupIds(PASSWD, GROUP);
  t.same(who && { uid: who.uid, gids: [...who.gids].sort((a, b) => a - b) }, { uid: 64055, gids: [44, 107, 64055] });
  t.equal(qemuGroupIds('root:x:0:0::/root:/bin/sh\n', GROUP), null, 'no libvirt-qemu user: not known');
});

t.test('/dev/kvm of a group QEMU is in, of another group, or open to all', async (t) => {
  const who = qemuGroupIds(PASSWD, GROUP);
  t.ok(deviceUsable({ uid: 0, gid: 107, mode: 0o20660 }, who), 'root:kvm 0660 (Debian with udev)');
  // the case met on a machine whose /dev/kvm came with the host's group number
  t.notOk(deviceUsable({ uid: 0, gid: 995, mode: 0o20660 }, who), 'root:995 0660, a group QEMU is not in');
  t.ok(deviceUsable({ uid: 0, gid: 995, mode: 0o20666 }, who), 'root:995 0666');
  t.notOk(deviceUsable({ uid: 0, gid: 0, mode: 0o20660 }, who), 'root:root 0660');
  t.ok(deviceUsable({ uid: 64055, gid: 0, mode: 0o20600 }, who), "QEMU's own, 0600");
  t.notOk(deviceUsable({ uid: 0, gid: 107, mode: 0o20600 }, who), 'root:kvm 0600');
  t.ok(deviceUsable({ uid: 0, gid: 44, mode: 0o20660 }, who), 'a supplementary group of QEMU');
});

t.test("QEMU's user not known: a group other than root's is taken as its", async (t) => {
  t.ok(deviceUsable({ uid: 0, gid: 995, mode: 0o20660 }, null));
  t.notOk(deviceUsable({ uid: 0, gid: 0, mode: 0o20660 }, null));
  t.ok(deviceUsable({ uid: 0, gid: 0, mode: 0o20666 }, null));
});

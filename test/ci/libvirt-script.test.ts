// .ci/libvirt.sh on the two hosts the issue met, in a sandbox (a private
// mount namespace with a copy of /etc, a private /run and stand-ins for
// libvirtd, virtlogd and virsh): libvirtd installed without Debian's
// libvirt-daemon-system (no libvirt-qemu user: the script creates it, once),
// and a system libvirtd holding /run/libvirt (ours keeps its state apart).
// Needs root, unshare and overlayfs; skipped elsewhere.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/qubesd.js';

const LIBDIR = '/usr/lib/x86_64-linux-gnu';
const why =
  process.getuid?.() !== 0
    ? 'not root'
    : spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0
      ? 'no mount namespaces here'
      : !existsSync(LIBDIR)
        ? `no ${LIBDIR}`
        : null;

if (why) {
  t.test('.ci/libvirt.sh in a sandbox', { skip: why }, () => {});
} else {
  const dir = mkdtempSync(join(tmpdir(), 'ci-libvirt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin'),
    state = join(dir, 'lv');
  mkdirSync(bin);
  mkdirSync(join(dir, 'up', 'libvirt', 'connection-driver'), { recursive: true });
  mkdirSync(join(dir, 'work'));
  writeFileSync(join(dir, 'up', 'libvirt', 'connection-driver', 'libvirt_driver_qemu.so'), '');
  writeFileSync(join(dir, 'kvm'), '');
  cpSync('/etc', join(dir, 'etc'), { recursive: true, verbatimSymlinks: true, errorOnExist: false, force: true });
  // the sandbox is a machine without Debian's libvirt-daemon-system, whatever
  // this one has (.ci/run installs it before the tests run)
  for (const f of ['passwd', 'group', 'shadow', 'gshadow']) {
    const p = join(dir, 'etc', f);
    if (existsSync(p))
      writeFileSync(
        p,
        readFileSync(p, 'utf8')
          .split('\n')
          .filter((l) => !/^(libvirt-qemu|libvirt|kvm):/.test(l))
          .join('\n'),
      );
  }
  const tool = (name: string, text: string) => {
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  };
  // libvirtd: serves its socket in unix_sock_dir and leaves a mark in /run/libvirt
  tool(
    'libvirtd',
    `#!/usr/bin/env python3
import os, re, socket, sys
conf = sys.argv[sys.argv.index('-f') + 1]; pidfile = sys.argv[sys.argv.index('-p') + 1]
sockdir = re.search(r'unix_sock_dir = "(.*)"', open(conf).read()).group(1)
open(pidfile, 'w').write(str(os.getpid()))
open('/run/libvirt/our-libvirtd-was-here', 'w').write('')
s = socket.socket(socket.AF_UNIX); s.bind(sockdir + '/libvirt-sock'); s.listen(5)
while True: s.accept()[0].close()
`,
  );
  tool('virtlogd', '#!/bin/sh\nsleep 600 </dev/null >/dev/null 2>&1 &\necho $! > "$3"\n');
  tool('virsh', '#!/bin/sh\nexec python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print(\'fake 1.0\')" "${3#*socket=}"\n');
  tool('qemu-system-x86_64', '#!/bin/sh\nexit 0\n');
  const script = join(ROOT, '.ci', 'libvirt.sh');
  const sandbox = (held: boolean) => `set -u
mount --bind ${dir}/etc /etc
mount -t overlay overlay -o lowerdir=${LIBDIR},upperdir=${dir}/up,workdir=${dir}/work ${LIBDIR}
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt
# the script gives /dev/kvm the sandbox's kvm group: a stand-in, so that the
# machine's own device keeps its group (QEMU outside needs it)
if [ -e /dev/kvm ]; then mount --bind ${dir}/kvm /dev/kvm; fi
${
  held
    ? `python3 -c "import socket, time; s = socket.socket(socket.AF_UNIX); s.bind('/run/libvirt/libvirt-sock'); s.listen(1); time.sleep(60)" &
SYSTEM=$!
while [ ! -S /run/libvirt/libvirt-sock ]; do sleep 0.05; done`
    : ''
}
export PATH=${bin}:$PATH QUBES_LIBVIRT_NO_INSTALL=1
sh ${script} ${state} >/dev/null; echo "first=$?"
sh ${script} ${state} >/dev/null; echo "second=$?"
echo "run=$(ls /run/libvirt | tr '\\n' ' ')"
sh ${script} stop ${state}; echo "stop=$?"
${held ? 'kill $SYSTEM' : ''}
`;
  /** owner, group and mode of the machine's /dev/kvm (null without one) */
  const kvmNow = () => {
    if (!existsSync('/dev/kvm')) return null;
    const st = statSync('/dev/kvm');
    return { uid: st.uid, gid: st.gid, mode: st.mode };
  };
  const run = (held: boolean) => {
    const kvmBefore = kvmNow();
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', sandbox(held)], { encoding: 'utf8', timeout: 60_000 });
    return { out: r.stdout, err: r.stderr, kvmBefore, kvmAfter: kvmNow() };
  };
  const alive = (pidfile: string) => existsSync(pidfile) && spawnSync('kill', ['-0', readFileSync(pidfile, 'utf8').trim()]).status === 0;

  t.test("libvirtd without libvirt-daemon-system: QEMU's user and groups are created, once", async (t) => {
    const { out, err, kvmBefore, kvmAfter } = run(false);
    t.same(kvmAfter, kvmBefore, "the machine's /dev/kvm keeps its owner, group and mode");
    t.match(out, /^first=0\nsecond=0\nrun=our-libvirtd-was-here \nstop=0\n$/, 'both starts succeed');
    t.match(err, /creating user libvirt-qemu/);
    t.equal(err.match(/creating user/g)?.length, 1, 'the second run creates nothing');
    const passwd = readFileSync(join(dir, 'etc', 'passwd'), 'utf8'),
      group = readFileSync(join(dir, 'etc', 'group'), 'utf8');
    const user = passwd.split('\n').filter((l) => l.startsWith('libvirt-qemu:'));
    t.equal(user.length, 1);
    const kvm = group.split('\n').find((l) => l.startsWith('kvm:'))!;
    t.equal(user[0]!.split(':')[3], kvm.split(':')[2], 'its primary group is kvm');
    t.match(group, /^libvirt-qemu:x:\d+:libvirt-qemu$/m, 'and it is in the libvirt-qemu group');
    t.notOk(alive(join(state, 'libvirtd.pid')) || alive(join(state, 'virtlogd.pid')), 'stop leaves nothing running');
  });

  t.test('a system libvirtd holds /run/libvirt: ours keeps its state apart', async (t) => {
    const { out, err } = run(true);
    t.match(out, /^first=0\nsecond=0\nrun=libvirt-sock \nstop=0\n$/, "both starts succeed; the system's /run/libvirt holds only its own socket");
    t.match(err, /another libvirtd holds \/run\/libvirt; ours gets private state under/);
    t.ok(existsSync(join(state, 'state', 'run', 'libvirt', 'our-libvirtd-was-here')), 'ours wrote into its private /run/libvirt');
    t.notOk(alive(join(state, 'libvirtd.pid')) || alive(join(state, 'virtlogd.pid')), 'stop leaves nothing running');
  });
}

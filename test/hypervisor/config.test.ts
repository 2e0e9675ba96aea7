import t from 'tap';
import { backendConfigFromOptions, createBackend } from '../../qubesd/hypervisor/index.js';
import { DEFAULT_LIBVIRT_SOCKET, LibvirtBackend, parseLibvirtUri } from '../../qubesd/hypervisor/libvirt-backend.js';
import { SimBackend } from '../../qubesd/hypervisor/sim.js';

t.test('libvirt URIs: driver URI for ConnectOpen, socket to dial', async (t) => {
  t.same(parseLibvirtUri('qemu:///system'), { driver: 'qemu', openUri: 'qemu:///system', socketPath: DEFAULT_LIBVIRT_SOCKET });
  t.same(parseLibvirtUri('qemu+unix:///system?socket=/tmp/x/libvirt-sock'), { driver: 'qemu', openUri: 'qemu:///system', socketPath: '/tmp/x/libvirt-sock' });
  t.same(parseLibvirtUri('test:///default', '/s'), { driver: 'test', openUri: 'test:///default', socketPath: '/s' });
  t.same(
    parseLibvirtUri('xen:///system?socket=/a&mode=legacy', '/b'),
    { driver: 'xen', openUri: 'xen:///system?mode=legacy', socketPath: '/b' },
    'explicit socket wins, other parameters are kept',
  );
  t.throws(() => parseLibvirtUri('qemu+ssh://host/system'), /only local UNIX-socket/);
  t.throws(() => parseLibvirtUri('qemu://host/system'), /remote hosts/);
  t.throws(() => parseLibvirtUri('not a uri'), /invalid libvirt URI/);
});

t.test('backend selection', async (t) => {
  t.same(backendConfigFromOptions({}), { backend: 'sim' }, 'sim is the default');
  t.same(backendConfigFromOptions({ backend: 'libvirt' }), { backend: 'libvirt', uri: 'qemu:///system' });
  t.same(backendConfigFromOptions({ backend: 'libvirt', libvirtUri: 'test:///default', libvirtSocket: '/s' }), {
    backend: 'libvirt',
    uri: 'test:///default',
    socket: '/s',
  });
  t.throws(() => backendConfigFromOptions({ backend: 'vmware' }), /unknown hypervisor backend "vmware"/);
  t.ok(createBackend({ backend: 'sim' }) instanceof SimBackend);
  const lv = createBackend({ backend: 'libvirt', uri: 'test:///default', socket: '/nonexistent/sock' });
  t.ok(lv instanceof LibvirtBackend);
  t.equal((lv as LibvirtBackend).flavour, 'test');
  t.equal(new LibvirtBackend({ uri: 'qemu:///system', accel: 'tcg' }).flavour, 'qemu');
  t.equal(new LibvirtBackend({ uri: 'qemu:///system', accel: 'kvm' }).flavour, 'kvm');
  t.equal(new LibvirtBackend({ uri: 'xen:///system' }).flavour, 'xen');
  t.throws(() => new LibvirtBackend({ uri: 'lxc:///' }), /unsupported libvirt driver "lxc"/);
  const err = await lv.connect().then(
    () => null,
    (e: { type?: string; message: string }) => e,
  );
  t.equal(err?.type, 'QubesException', 'no libvirtd: a clean Qubes exception');
  t.match(err?.message, /cannot connect to libvirtd socket \/nonexistent\/sock: No such file or directory/);
});

// admin.deviceclass.List, admin.vm.device.<class>.* and
// admin.vm.device.denied.* through a real qubesd socket on the conformance
// fixture. No qube exposes devices here; persistent assignments are stored
// in qubes.xml in Qubes' format and read back after a restart.
import t from 'tap';

type Tap = Pick<typeof t, 'same'>;
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, SHARED, type Daemon } from '../helpers/qubesd.js';
import { caller, eventually, snapshotFiles, startDaemon, watchEvents } from '../helpers/daemon-session.js';

let d: Daemon;
t.before(async () => {
  d = await startDaemon();
});
t.teardown(async () => {
  await d.stop();
  cleanup(d);
});
const { ok, err } = caller(() => d);

/**
 * The <devices> elements of one qube in qubes.xml, after a restart and a
 * clean stop (which folds the store's journal into qubes.xml).
 */
async function storedDevices(qube: string): Promise<string> {
  await d.stop();
  d = await startDaemon(d.dir);
  await d.stop();
  const xml = readFileSync(d.store, 'utf8');
  d = await startDaemon(d.dir);
  const at = xml.indexOf(`<property name="name">${qube}</property>`);
  const domain = xml.slice(xml.lastIndexOf('<domain ', at), xml.indexOf('</domain>', at));
  return domain
    .split('\n')
    .filter((l) => /<\/?devices|<device |<\/device>|<option /.test(l))
    .map((l) => l.trim())
    .join('\n');
}

/** Expect a refusal and that no file changed because of it. */
async function refused(tt: Tap, method: string, dest: string, arg: string, payload: string | Buffer): Promise<string> {
  const before = snapshotFiles(d.dir);
  const e = await err(method, dest, arg, payload);
  tt.same(snapshotFiles(d.dir), before, `${method}+${arg} ${dest}: nothing changed`);
  return e;
}

t.test('device classes, and no devices exposed or attached', async (t) => {
  t.equal(await ok('admin.deviceclass.List'), 'block\npci\n');
  t.equal(await err('admin.deviceclass.List', 'work'), 'ProtocolError: expected destination to be AdminVM');
  for (const cls of ['pci', 'block']) {
    t.equal(await ok(`admin.vm.device.${cls}.Available`, 'dom0'), '');
    t.equal(await ok(`admin.vm.device.${cls}.Available`, 'sys-net', 'sda'), '');
    t.equal(await ok(`admin.vm.device.${cls}.Attached`, 'work'), '');
    t.equal(await ok(`admin.vm.device.${cls}.Assigned`, 'work'), '');
  }
  t.equal(await err('admin.vm.device.usb.Available', 'dom0'), "ProtocolError: no such method: 'admin.vm.device.usb.Available'");
  t.equal(await err('admin.vm.device.pci.Available', 'dom0', '', 'x'), 'ProtocolError: unexpected payload');
});

t.test('Assign, Assigned, and the stored form', async (t) => {
  const watch = await watchEvents(d.socket);
  t.teardown(() => watch.close());
  // what qvm-device pci assign --port --required sends
  t.equal(
    await ok(
      'admin.vm.device.pci.Assign',
      'work',
      'dom0+00_1f.2',
      "device_id='*' port_id='00_1f.2' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'",
    ),
    '',
  );
  // a raw payload: block device with an identity and an option, no frontend
  t.equal(await ok('admin.vm.device.block.Assign', 'work', 'sys-net+sda+0000+0000++_______', "mode='auto-attach' _read-only='yes'"), '');
  t.equal(
    await ok('admin.vm.device.pci.Assigned', 'work'),
    "dom0+00_1f.2:* device_id='*' port_id='00_1f.2' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n",
  );
  t.equal(
    await ok('admin.vm.device.block.Assigned', 'work'),
    "sys-net+sda:0000:0000::?****** device_id='0000:0000::?******' port_id='sda' devclass='block' backend_domain='sys-net' mode='auto-attach' _read-only='yes'\n",
  );
  t.equal(await ok('admin.vm.device.block.Assigned', 'work', 'sys-net+sda'), await ok('admin.vm.device.block.Assigned', 'work'));
  t.equal(await ok('admin.vm.device.block.Assigned', 'work', 'sys-net+sdb'), '');
  t.equal(await err('admin.vm.device.block.Assigned', 'work', 'sda'), "ProtocolError: Invalid device selector 'sda': expected <backend>+<port>");
  await eventually(() => watch.events.some(([s, e]) => s === 'work' && e === 'device-assign:block'), 'device-assign:block');
  t.same(
    watch.events.filter(([s, e]) => s === 'work' && e.startsWith('device-')).map(([, e, kw]) => [e, kw]),
    [
      [
        'device-pre-assign:pci',
        [
          ['device', 'dom0:00_1f.2:*'],
          ['options', '{}'],
        ],
      ],
      [
        'device-assign:pci',
        [
          ['device', 'dom0:00_1f.2:*'],
          ['options', '{}'],
        ],
      ],
      [
        'device-pre-assign:block',
        [
          ['device', 'sys-net:sda:0000:0000::?******'],
          ['options', "{'read-only': 'yes'}"],
        ],
      ],
      [
        'device-assign:block',
        [
          ['device', 'sys-net:sda:0000:0000::?******'],
          ['options', "{'read-only': 'yes'}"],
        ],
      ],
    ],
  );

  watch.close();
  t.equal(
    await storedDevices('work'),
    [
      '<devices class="pci">',
      '<device backend-domain="dom0" id="00_1f.2" mode="required" identity="*"/>',
      '</devices>',
      '<devices class="block">',
      '<device backend-domain="sys-net" id="sda" mode="auto-attach" identity="0000:0000::?******">',
      '<option name="read-only">yes</option>',
      '</device>',
      '</devices>',
    ].join('\n'),
  );
  t.equal(
    await ok('admin.vm.device.block.Assigned', 'work'),
    "sys-net+sda:0000:0000::?****** device_id='0000:0000::?******' port_id='sda' devclass='block' backend_domain='sys-net' mode='auto-attach' frontend_domain='work' _read-only='yes'\n",
    'after a restart the qube itself is the frontend, as in Qubes',
  );
});

t.test('refused assignments change nothing', async (t) => {
  const A = 'admin.vm.device.pci.Assign';
  t.equal(
    await refused(t, A, 'work', 'dom0+00_1f.2', "mode='required' frontend_domain='work'"),
    "DeviceAlreadyAssigned: 'pci device dom0:00_1f.2:* already assigned to work'",
  );
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', "mode='manual'"), 'QubesValueError: Only auto-attachable devices can be assigned.');
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', "mode='bogus'"), "ProtocolError: 'bogus' is not a valid AssignmentMode");
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', "mode='required' devclass='block'"), 'ProtocolError: Got block device when expected pci.');
  t.equal(
    await refused(t, A, 'work', 'dom0+00_02.0', "mode='required' port_id='00_03.0'"),
    'ProtocolError: Got device from port: 00_03.0 when expected port: 00_02.0.',
  );
  t.equal(
    await refused(t, A, 'work', 'dom0+00_02.0', "mode='required' backend_domain='sys-net'"),
    'ProtocolError: Got device exposed by sys-netwhen expected devices from dom0.',
  );
  t.equal(
    await refused(t, A, 'work', 'dom0+00_02.0+dead', "mode='required' device_id='beef'"),
    "ProtocolError: Unrecognized device identity 'beef' expected 'dead'",
  );
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', "mode='required' frontend_domain='nosuch'"), "ProtocolError: 'nosuch'");
  t.equal(await refused(t, A, 'work', '_+00_02.0', "mode='required' frontend_domain='work'"), 'ProtocolError: Cannot determine backend domain');
  t.equal(
    await refused(t, A, 'work', 'dom0+00_02.0', "mode='required' foo='bar'"),
    "ProtocolError: DeviceAssignment.__init__() got an unexpected keyword argument 'foo'",
  );
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', 'mode="required"'), "ProtocolError: Invalid chars in property name: {'\"', '='}");
  t.equal(
    await refused(t, A, 'work', 'dom0+00_02.0', Buffer.from("mode='r\u00e9quired'")),
    "ProtocolError: 'ascii' codec can't decode byte 0xc3 in position 7: ordinal not in range(128)",
  );
  t.equal(await refused(t, A, 'work', 'nosuch+00_02.0', "mode='required'"), "QubesVMNotFoundError: No such domain: 'nosuch'");
  t.equal(await refused(t, A, 'work', 'dom0', "mode='required'"), "ProtocolError: Invalid device argument 'dom0': expected <backend>+<port>");
  t.equal(await refused(t, A, 'work', 'dom0+00_02.0', ''), 'ProtocolError: expected payload');
  t.equal(await refused(t, A, 'work', '', "mode='required'"), 'ProtocolError: expected an argument');
});

t.test('Set.assignment and Unassign', async (t) => {
  const watch = await watchEvents(d.socket);
  t.teardown(() => watch.close());
  await ok('admin.vm.device.pci.Assign', 'vault', 'dom0+00_1b.0', "mode='required' _no-strict-reset='True'");
  await ok('admin.vm.device.pci.Assign', 'vault', 'dom0+00_1c.0+8086+a110', "mode='required'");
  t.equal(
    await refused(t, 'admin.vm.device.pci.Set.assignment', 'vault', 'dom0+00_1b.0', 'manual'),
    'QubesUnrecognizedDeviceAssignmentMode: Invalid assignment mode',
  );
  t.equal(
    await refused(t, 'admin.vm.device.pci.Set.assignment', 'vault', 'dom0+00_1d.0', 'auto-attach'),
    'QubesValueError: Device dom0:00_1d.0:* not assigned to vault',
  );
  t.equal(await ok('admin.vm.device.pci.Set.assignment', 'vault', 'dom0+00_1b.0', 'auto-attach'), '');
  t.equal(
    await ok('admin.vm.device.pci.Assigned', 'vault'),
    "dom0+00_1b.0:* device_id='*' port_id='00_1b.0' devclass='pci' backend_domain='dom0' mode='auto-attach' _no-strict-reset='True'\n" +
      "dom0+00_1c.0:8086:a110 device_id='8086:a110' port_id='00_1c.0' devclass='pci' backend_domain='dom0' mode='required'\n",
  );
  t.equal(
    await refused(t, 'admin.vm.device.pci.Unassign', 'vault', 'dom0+00_1c.0', ''),
    "DeviceNotAssigned: 'pci device dom0:00_1c.0:* not assigned to vault'",
    'the device id is part of the assignment',
  );
  t.equal(await ok('admin.vm.device.pci.Unassign', 'vault', 'dom0+00_1c.0+8086+a110'), '');
  t.equal(await ok('admin.vm.device.pci.Unassign', 'vault', 'dom0+00_1b.0'), '');
  t.equal(await ok('admin.vm.device.pci.Assigned', 'vault'), '');
  await eventually(() => watch.events.filter(([s, e]) => s === 'vault' && e === 'device-unassign:pci').length === 2, 'device-unassign:pci');
  t.same(
    watch.events.filter(([s, e]) => s === 'vault' && /^device-(assignment-changed|unassign)/.test(e)).map(([, e, kw]) => [e, kw]),
    [
      ['device-assignment-changed:pci', [['device', 'dom0:00_1b.0:*']]],
      ['device-unassign:pci', [['device', 'dom0:00_1c.0:8086:a110']]],
      ['device-unassign:pci', [['device', 'dom0:00_1b.0:*']]],
    ],
  );
  watch.close();
  t.equal(await storedDevices('vault'), '<devices class="pci"/>', 'an emptied class stays as an empty element');
});

t.test('Attach and Detach fail as for a device nobody exposes', async (t) => {
  t.equal(
    await refused(t, 'admin.vm.device.block.Attach', 'work', 'sys-net+sdb', ''),
    'QubesVMNotRunningError: VM not running, cannot attach device, do you mean `assign`?',
  );
  t.equal(await refused(t, 'admin.vm.device.block.Attach', 'dom0', 'sys-net+sdb', "_read-only='yes'"), 'ProtocolError: Cannot attach ambiguous block device.');
  t.equal(await refused(t, 'admin.vm.device.block.Attach', 'work', 'sys-net+sdb', "mode='x'"), "ProtocolError: 'x' is not a valid AssignmentMode");
  t.equal(await refused(t, 'admin.vm.device.block.Detach', 'work', 'sys-net+sdb', ''), "DeviceNotAssigned: 'block device sdb not attached to work'");
  t.equal(await refused(t, 'admin.vm.device.block.Detach', 'work', 'nosuch+sdb', ''), "QubesVMNotFoundError: No such domain: 'nosuch'");
});

t.test('denied device interfaces', async (t) => {
  t.equal(await ok('admin.vm.device.denied.List', 'personal'), '');
  t.equal(await ok('admin.vm.device.denied.Add', 'personal', '', 'u03****p0902**'), '');
  t.equal(await ok('admin.vm.device.denied.Add', 'personal', '', 'b******'), '');
  t.equal(await ok('admin.vm.device.denied.List', 'personal'), 'b******\np0902**\nu03****');
  t.equal(await ok('admin.vm.property.Get', 'personal', 'devices_denied'), 'default=False type=str b******p0902**u03****');
  t.equal(await refused(t, 'admin.vm.device.denied.Add', 'personal', '', 'u112233u112233'), 'ProtocolError: Duplicated device interfaces in payload.');
  t.equal(
    await refused(t, 'admin.vm.device.denied.Add', 'personal', '', Buffer.from('u112233\u00f6')),
    'ProtocolError: Device interface contains non-ASCII characters',
  );
  t.equal(
    await refused(t, 'admin.vm.device.denied.Add', 'personal', '', 'u0301'),
    "QubesValueError: Invalid length of interfaces='u0301' (is 5, expected multiple of 7)",
  );
  t.match(await refused(t, 'admin.vm.device.denied.Add', 'personal', '', 'x123456'), /^QubesPropertyValueError: Interface code list should be in the form/);
  t.equal(await refused(t, 'admin.vm.device.denied.Remove', 'personal', '', 'b******b******'), 'ProtocolError: Duplicated device interfaces in payload.');
  const before = snapshotFiles(d.dir);
  t.equal(await ok('admin.vm.device.denied.Remove', 'personal', '', 'm******'), '', 'removing what is not there');
  t.same(snapshotFiles(d.dir), before, 'changes nothing');
  t.equal(await ok('admin.vm.device.denied.Remove', 'personal', '', 'm******p0902**'), '');
  t.equal(await ok('admin.vm.device.denied.List', 'personal'), 'b******\nu03****');
  t.equal(await ok('admin.vm.device.denied.Remove', 'personal', '', 'all'), '');
  t.equal(await ok('admin.vm.device.denied.List', 'personal'), '');
  t.equal(await ok('admin.vm.device.denied.Add', 'dom0', '', 'p0c03**'), '', 'dom0 has a denied list too');
  t.equal(await ok('admin.vm.device.denied.List', 'dom0'), 'p0c03**');
  t.equal(await err('admin.vm.device.denied.List', 'dom0', 'x'), 'ProtocolError: unexpected argument');
  // a RemoteVM has no such list (Qubes fails reading it and drops the call)
  t.equal(await ok('admin.vm.Create.RemoteVM', 'dom0', '', 'name=remote1 label=red'), '');
  t.equal(await err('admin.vm.device.denied.List', 'remote1'), "QubesNoSuchPropertyError: Invalid property 'devices_denied' of remote1");
  t.equal(await refused(t, 'admin.vm.device.denied.Add', 'remote1', '', 'b******'), "QubesNoSuchPropertyError: Invalid property 'devices_denied' of remote1");
  t.equal(await refused(t, 'admin.vm.device.denied.Remove', 'remote1', '', 'all'), "QubesNoSuchPropertyError: Invalid property 'devices_denied' of remote1");
  // nor devices: Qubes refuses to change its assignments once the request has been read
  const noDevices = "QubesException: This qube doesn't support devices";
  t.equal(await refused(t, 'admin.vm.device.block.Assign', 'remote1', 'sys-net+sda', "mode='auto-attach'"), noDevices);
  t.equal(await refused(t, 'admin.vm.device.block.Unassign', 'remote1', 'sys-net+sda', ''), noDevices);
  t.equal(await refused(t, 'admin.vm.device.pci.Detach', 'remote1', 'sys-net+00_1f.6', ''), noDevices);
  t.equal(await refused(t, 'admin.vm.device.block.Set.assignment', 'remote1', 'sys-net+sda', 'required'), noDevices);
  // a bad request is still refused for what is wrong with it
  t.equal(
    await refused(t, 'admin.vm.device.block.Set.assignment', 'remote1', 'sys-net+sda', 'x'),
    'QubesUnrecognizedDeviceAssignmentMode: Invalid assignment mode',
  );
  t.equal(await ok('admin.vm.device.block.Assigned', 'remote1'), '');
  t.equal(await ok('admin.vm.device.block.Available', 'remote1'), '');
  t.equal(await ok('admin.vm.Remove', 'remote1'), '');
});

const client = process.env.QUBES_CORE_ADMIN_CLIENT;
t.test('the real qvm-device assigns and lists through this daemon', { skip: !client && 'QUBES_CORE_ADMIN_CLIENT not set' }, async (t) => {
  const qvm = (...args: string[]) =>
    spawnSync('python3', [join(SHARED, 'conformance', 'tools', 'qvm.py'), ...args], {
      env: { ...process.env, QUBESD_SOCKET: d.socket },
      encoding: 'utf8',
      timeout: 60000,
    });
  const assign = qvm('qvm-device', 'pci', 'assign', '--port', '--required', 'standalone', 'dom0:00_14.0');
  t.equal(assign.status, 0, assign.stderr);
  const list = qvm('qvm-device', 'pci', 'list', '--assignments', 'standalone');
  t.equal(list.status, 0, list.stderr);
  t.match(list.stdout, /^dom0:00_14\.0\s+any device\s+\*standalone \(required\)$/m);
  const again = qvm('qvm-device', 'pci', 'assign', '--port', '--required', 'standalone', 'dom0:00_14.0');
  t.not(again.status, 0);
  t.match(again.stderr, /already assigned to standalone/);
});

// admin.vm.firewall.* through a real qubesd socket on the conformance
// fixture: replies as Qubes gives them (expected lines from Qubes' own API
// tests and its firewall.xml), refused input, firewall.xml written in
// Qubes' format and read back after a restart, events, and rule expiry.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, FIXTURE, SHARED, type Daemon } from '../helpers/qubesd.js';
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

const fwFile = (qube: string) => join(d.base, 'appvms', qube, 'firewall.xml');

t.test('Get: the rules of firewall.xml written by Qubes, the default without one', async (t) => {
  t.equal(
    await ok('admin.vm.firewall.Get', 'work'),
    'action=accept dsthost=qubes-os.org proto=tcp dstports=443-443\naction=accept specialtarget=dns\naction=drop\n',
  );
  t.equal(await ok('admin.vm.firewall.Get', 'fedora-41'), 'action=accept\n', 'no file: accept everything');
  t.notOk(existsSync(join(d.base, 'vm-templates', 'fedora-41', 'firewall.xml')), 'reading does not create the file');
  t.equal(await err('admin.vm.firewall.Get', 'dom0'), 'ProtocolError: expected destination to not be AdminVM');
  t.equal(await err('admin.vm.firewall.Get', 'work', 'x'), 'ProtocolError: unexpected argument');
  t.equal(await err('admin.vm.firewall.Get', 'work', '', 'x'), 'ProtocolError: unexpected payload');
  t.equal(await err('admin.vm.firewall.Get', 'nosuch'), "QubesVMNotFoundError: No such domain: 'nosuch'");
});

t.test('Set: rules in, the same rules out; expired ones hidden and not saved', async (t) => {
  const watch = await watchEvents(d.socket);
  t.teardown(() => watch.close());
  const rules =
    'action=accept proto=tcp dstports=1-1024\n' +
    'action=drop proto=icmp comment=No ICMP\n' +
    'action=drop expire=1499450306 proto=udp\n' +
    'action=drop proto=udp expire=2099450306\n' +
    'action=accept dst4=192.168.0.1 proto=udp dstports=53\n' +
    'action=accept\n';
  t.equal(await ok('admin.vm.firewall.Set', 'personal', '', rules), '');
  t.equal(
    await ok('admin.vm.firewall.Get', 'personal'),
    'action=accept proto=tcp dstports=1-1024\n' +
      'action=drop proto=icmp comment=No ICMP\n' +
      'action=drop expire=2099450306 proto=udp\n' +
      'action=accept dst4=192.168.0.1/32 proto=udp dstports=53-53\n' +
      'action=accept\n',
  );
  const file = readFileSync(fwFile('personal'), 'utf8');
  t.match(
    file,
    /^<firewall version="2">\n  <rules>\n    <rule>\n      <properties>\n        <property name="action">accept<\/property>\n        <property name="proto">tcp<\/property>\n        <property name="dstports">1-1024<\/property>\n/,
  );
  t.match(
    file,
    /<property name="action">drop<\/property>\n        <property name="comment">No ICMP<\/property>\n        <property name="proto">icmp<\/property>/,
    "comment is stored in Qubes' property order",
  );
  t.notMatch(file, /1499450306/, 'the expired rule is not written');
  t.match(file, /<property name="dsthost">192.168.0.1\/32<\/property>/);
  t.equal(statSync(fwFile('personal')).mode & 0o777, 0o664);
  t.same(
    readdirSync(join(d.base, 'appvms', 'personal')).filter((f) => f.includes('~')),
    [],
    'no temporary file left',
  );
  await eventually(() => watch.events.some(([s, e]) => s === 'personal' && e === 'firewall-changed'), 'firewall-changed');
});

t.test('a file written by Qubes is written back byte for byte', async (t) => {
  const before = readFileSync(fwFile('work'), 'utf8');
  await ok('admin.vm.firewall.Set', 'work', '', await ok('admin.vm.firewall.Get', 'work'));
  t.equal(readFileSync(fwFile('work'), 'utf8'), before);
  t.equal(before, readFileSync(join(FIXTURE, 'base', 'appvms', 'work', 'firewall.xml'), 'utf8'));
});

t.test('refused rules change nothing', async (t) => {
  const before = snapshotFiles(d.dir);
  const getBefore = await ok('admin.vm.firewall.Get', 'work');
  const refused: Array<[string, string]> = [
    ['action=accept protoxyz=tcp dst4=127.0.0.1\naction=drop\n', 'QubesValueError: Unknown firewall option'],
    ['proto=tcp dstports=1-1024\naction=drop\n', "QubesValueError: Required property 'action' not set on firewall rule"],
    ['action=accept proto=tcp dstports=1-1024 action=drop\n', "QubesValueError: Option 'action' already set"],
    ['action=accept dstports=1-1024\n', "QubesValueError: dstports valid only for 'tcp' and 'udp' protocols"],
    ['action=accept proto=tcp icmptype=8\n', "QubesValueError: icmptype valid only for 'icmp' protocol"],
    ['action=accept proto=tcp dstports=0-65536\n', 'QubesValueError: Ports out of range'],
    ['action=accept proto=tcp dstports=90-80\n', 'QubesValueError: Invalid port range'],
    ['action=accept proto=icmp icmptype=256\n', 'QubesValueError: ICMP type out of range'],
    ['action=reject\n', 'QubesValueError: reject'],
    ['action=accept dsthost=Example.com\n', 'QubesValueError: Invalid hostname'],
    ['action=accept dsthost=10.0.0.0/33\n', 'QubesValueError: netmask for IPv4 must be <= 32'],
    ['action=accept dsthost=fe80::1/129\n', 'QubesValueError: netmask for IPv6 must be <= 128'],
    ['action=accept dsthost=10.0.0/8\n', 'QubesValueError: Invalid IP address: 10.0.0'],
    ['action=accept dst4=1.2.3.4 dsthost=5.6.7.8\n', "QubesValueError: Option 'dsthost' already set"],
    ['action=accept expire=soon\n', 'QubesValueError: bad expiration time'],
    ['action=accept specialtarget=ntp\n', 'QubesValueError: ntp'],
    ['action=accept comment=a=b\n', 'QubesValueError: strange characters comment'],
    ['action=accept  proto=tcp\n', 'QubesValueError: not enough values to unpack (expected 2, got 1)'],
    ['action=accept\n\naction=drop\n', 'QubesValueError: not enough values to unpack (expected 2, got 1)'],
    ['action=accept dstports=1-1024 comment=\u0105\u017c\u017a\u0142\naction=drop\n', 'ProtocolError: Rules contains non-ASCII characters'],
    ['', 'ProtocolError: expected payload'],
  ];
  for (const [payload, expected] of refused) t.equal(await err('admin.vm.firewall.Set', 'work', '', payload), expected, JSON.stringify(payload));
  t.equal(await err('admin.vm.firewall.Set', 'dom0', '', 'action=accept\n'), 'ProtocolError: expected destination to not be AdminVM');
  t.equal(await ok('admin.vm.firewall.Get', 'work'), getBefore);
  t.same(snapshotFiles(d.dir), before, 'no file changed');
});

t.test('Reload fires firewall-changed and writes nothing', async (t) => {
  const watch = await watchEvents(d.socket);
  t.teardown(() => watch.close());
  const before = snapshotFiles(d.dir);
  t.equal(await ok('admin.vm.firewall.Reload', 'vault'), '');
  await eventually(() => watch.events.some(([s, e]) => s === 'vault' && e === 'firewall-changed'), 'firewall-changed');
  t.same(snapshotFiles(d.dir), before);
  t.equal(await err('admin.vm.firewall.Reload', 'dom0'), 'ProtocolError: expected destination to not be AdminVM');
  t.equal(await err('admin.vm.firewall.Reload', 'vault', '', 'x'), 'ProtocolError: unexpected payload');
});

t.test("a disposable starts with its template's rules, however it is created", async (t) => {
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', 'fedora-41', 'name=fw-dvm label=red'), '');
  t.equal(await ok('admin.vm.property.Set', 'fw-dvm', 'template_for_dispvms', 'True'), '');
  t.equal(await ok('admin.vm.firewall.Set', 'fw-dvm', '', 'action=accept dsthost=10.1.2.0/24 proto=tcp dstports=22-22\naction=drop\n'), '');
  const rules = 'action=accept dst4=10.1.2.0/24 proto=tcp dstports=22-22\naction=drop\n';
  // Qubes' DispVM.__init__ clones the template's firewall for admin.vm.Create.DispVM too
  t.equal(await ok('admin.vm.Create.DispVM', 'dom0', 'fw-dvm', 'name=fw-disp label=red'), '');
  t.equal(await ok('admin.vm.firewall.Get', 'fw-disp'), rules, 'admin.vm.Create.DispVM');
  const disp = await ok('admin.vm.CreateDisposable', 'fw-dvm');
  t.equal(await ok('admin.vm.firewall.Get', disp), rules, 'admin.vm.CreateDisposable');
  for (const n of [disp, 'fw-disp', 'fw-dvm']) t.equal(await ok('admin.vm.Remove', n), '', `remove ${n}`);
});

t.test('a rule expires: it disappears from the file, with an event', async (t) => {
  const watch = await watchEvents(d.socket);
  t.teardown(() => watch.close());
  const at = Math.floor(Date.now() / 1000) + 2;
  await ok('admin.vm.firewall.Set', 'untrusted', '', `action=accept dsthost=example.com expire=${at}\naction=drop\n`);
  t.equal(await ok('admin.vm.firewall.Get', 'untrusted'), `action=accept expire=${at} dsthost=example.com\naction=drop\n`);
  const changes = () => watch.events.filter(([s, e]) => s === 'untrusted' && e === 'firewall-changed').length;
  await eventually(() => changes() >= 2, 'the expiry save');
  t.equal(await ok('admin.vm.firewall.Get', 'untrusted'), 'action=drop\n');
  t.notMatch(readFileSync(fwFile('untrusted'), 'utf8'), /example\.com/);
});

t.test('rules survive a restart; a broken firewall.xml is refused cleanly', async (t) => {
  const rules = 'action=accept dsthost=2001:db8::/32 proto=tcp dstports=22 comment=ssh to lab\naction=drop\n';
  await ok('admin.vm.firewall.Set', 'sys-net', '', rules);
  await d.stop();
  writeFileSync(fwFile('vault'), '<firewall version="2"><rules><rule><properties>');
  d = await startDaemon(d.dir);
  t.equal(await ok('admin.vm.firewall.Get', 'sys-net'), 'action=accept dst6=2001:db8::/32 proto=tcp dstports=22-22 comment=ssh to lab\naction=drop\n');
  t.match(await err('admin.vm.firewall.Get', 'vault'), /^QubesException: firewall\.xml of vault: not well-formed XML/);
  writeFileSync(fwFile('vault'), '<firewall version="3"><rules/></firewall>\n');
  t.equal(await err('admin.vm.firewall.Get', 'vault'), 'QubesException: firewall.xml of vault: Unsupported firewall.xml version: 3');
});

const client = process.env.QUBES_CORE_ADMIN_CLIENT;
t.test('the real qvm-firewall reads and writes through this daemon', { skip: !client && 'QUBES_CORE_ADMIN_CLIENT not set' }, async (t) => {
  const qvm = (...args: string[]) =>
    spawnSync('python3', [join(SHARED, 'conformance', 'tools', 'qvm.py'), ...args], {
      env: { ...process.env, QUBESD_SOCKET: d.socket },
      encoding: 'utf8',
      timeout: 60000,
    });
  const list = qvm('qvm-firewall', 'work', 'list');
  t.equal(list.status, 0, list.stderr);
  t.match(list.stdout, /^0\s+accept\s+qubes-os\.org\s+tcp\s+443\s/m);
  t.match(list.stdout, /^1\s+accept\s+-\s+-\s+-\s+dns\s/m);
  const add = qvm('qvm-firewall', 'work', 'add', '--before', '2', 'accept', 'dst4=10.1.0.0/16', 'proto=udp', 'dstports=53', 'comment=lab dns');
  t.equal(add.status, 0, add.stderr);
  t.equal(
    await ok('admin.vm.firewall.Get', 'work'),
    'action=accept dsthost=qubes-os.org proto=tcp dstports=443-443\naction=accept specialtarget=dns\n' +
      'action=accept dst4=10.1.0.0/16 proto=udp dstports=53-53 comment=lab dns\naction=drop\n',
  );
});

// qubes-install's layout, checked against the method table it is derived from.
import t from 'tap';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { METHODS } from '../../lib/api-methods.js';
import { install, handlerPath } from '../../rpc-services/install.js';
import { loadConfig } from '../../lib/stack-config.js';
import { POLICY_SERVICES } from '../../rpc-services/service-names.js';

const prefix = mkdtempSync(join(tmpdir(), 'rpc-install-'));
t.teardown(() => rmSync(prefix, { recursive: true, force: true }));

t.test('handler entries for every service a qube may call, none for internal ones', async (t) => {
  install({ prefix });
  const rpc = join(prefix, 'etc', 'qubes-rpc');
  const names = readdirSync(rpc).sort();
  const expected = [...METHODS.filter((m) => m.name.startsWith('admin.')).map((m) => m.name), ...POLICY_SERVICES.map((p) => p.name)].sort();
  t.same(names, expected);
  for (const n of names) t.equal(resolve(rpc, readlinkSync(join(rpc, n))), handlerPath(prefix), `${n} is the handler`);
  const program = readFileSync(handlerPath(prefix), 'utf8');
  t.match(program, new RegExp(`^#!${process.execPath.replace(/[/.]/g, '\\$&')}\n`), 'started by this node directly');
  t.notMatch(program, /^\s*(import|export)\s/m, 'no ES module syntax left');
});

t.test('socket mode links admin.* to qubesd.sock but keeps the handler where a program is needed', async (t) => {
  const p2 = join(prefix, 'sockmode');
  install({ prefix: p2, entries: 'socket' });
  const rpc = join(p2, 'etc', 'qubes-rpc');
  const link = (n: string) => readlinkSync(join(rpc, n));
  t.equal(resolve(rpc, link('admin.vm.List')), join(p2, 'var', 'run', 'qubesd.sock'));
  t.notOk(link('admin.vm.List').startsWith('/'), 'relative, as Qubes installs it');
  t.equal(resolve(rpc, link('admin.vm.volume.Import')), handlerPath(p2));
  t.equal(resolve(rpc, link('policy.Replace')), handlerPath(p2));
  t.equal(loadConfig(join(p2, 'etc', 'qubes', 'stack.json')).qrexec.entries, 'socket');
});

// What Qubes' admin policy grants through which include file (literal, from
// the scope and read/write/execute of each method in qubes/api/admin.py).
const EXPECTED_INCLUDES: Record<string, readonly string[]> = {
  'admin-local-ro': [
    'admin.vm.property.List',
    'admin.vm.property.Get',
    'admin.vm.property.GetAll',
    'admin.vm.property.GetDefault',
    'admin.vm.property.Help',
    'admin.vm.volume.List',
    'admin.vm.volume.Info',
    'admin.vm.volume.ListSnapshots',
    'admin.vm.tag.List',
    'admin.vm.tag.Get',
    'admin.vm.feature.List',
    'admin.vm.feature.Get',
    'admin.vm.feature.CheckWithTemplate',
    'admin.vm.feature.CheckWithNetvm',
    'admin.vm.feature.CheckWithAdminVM',
    'admin.vm.feature.CheckWithTemplateAndAdminVM',
    'admin.vm.device.block.Available',
    'admin.vm.device.pci.Available',
    'admin.vm.device.block.Assigned',
    'admin.vm.device.pci.Assigned',
    'admin.vm.device.block.Attached',
    'admin.vm.device.pci.Attached',
    'admin.vm.device.denied.List',
    'admin.vm.firewall.Get',
    'admin.backup.Info',
    'admin.vm.CurrentState',
    'admin.vm.notes.Get',
  ],
  'admin-local-rwx': [
    'admin.vm.property.Set',
    'admin.vm.property.Reset',
    'admin.vm.volume.Revert',
    'admin.vm.volume.CloneFrom',
    'admin.vm.volume.CloneTo',
    'admin.vm.volume.Resize',
    'admin.vm.volume.Clear',
    'admin.vm.volume.Set.revisions_to_keep',
    'admin.vm.volume.Set.rw',
    'admin.vm.volume.Set.ephemeral',
    'admin.vm.volume.Export',
    'admin.vm.tag.Set',
    'admin.vm.tag.Remove',
    'admin.vm.Console',
    'admin.vm.Start',
    'admin.vm.Shutdown',
    'admin.vm.Pause',
    'admin.vm.Unpause',
    'admin.vm.Suspend',
    'admin.vm.Resume',
    'admin.vm.Kill',
    'admin.vm.feature.Remove',
    'admin.vm.feature.Set',
    'admin.vm.device.block.Assign',
    'admin.vm.device.pci.Assign',
    'admin.vm.device.block.Unassign',
    'admin.vm.device.pci.Unassign',
    'admin.vm.device.block.Attach',
    'admin.vm.device.pci.Attach',
    'admin.vm.device.block.Detach',
    'admin.vm.device.pci.Detach',
    'admin.vm.device.block.Set.assignment',
    'admin.vm.device.pci.Set.assignment',
    'admin.vm.device.denied.Add',
    'admin.vm.device.denied.Remove',
    'admin.vm.firewall.Set',
    'admin.vm.firewall.Reload',
    'admin.vm.backup.Stream',
    'admin.vm.notes.Set',
    'admin.vm.volume.Import',
    'admin.vm.volume.ImportWithSize',
  ],
  'admin-global-ro': [
    'admin.vmclass.List',
    'admin.vm.List',
    'admin.property.List',
    'admin.property.Get',
    'admin.property.GetAll',
    'admin.property.GetDefault',
    'admin.property.Help',
    'admin.pool.List',
    'admin.pool.ListDrivers',
    'admin.pool.Info',
    'admin.pool.UsageDetails',
    'admin.pool.volume.List',
    'admin.label.List',
    'admin.label.Get',
    'admin.label.Index',
    'admin.Events',
    'admin.deviceclass.List',
    'admin.vm.Stats',
  ],
  'admin-global-rwx': [
    'admin.property.Set',
    'admin.property.Reset',
    'admin.pool.Add',
    'admin.pool.Remove',
    'admin.pool.Set.revisions_to_keep',
    'admin.pool.Set.ephemeral_volatile',
    'admin.label.Create',
    'admin.label.Remove',
    'admin.vm.Create.AppVM',
    'admin.vm.Create.DispVM',
    'admin.vm.Create.RemoteVM',
    'admin.vm.Create.StandaloneVM',
    'admin.vm.Create.TemplateVM',
    'admin.vm.CreateInPool.AppVM',
    'admin.vm.CreateInPool.DispVM',
    'admin.vm.CreateInPool.RemoteVM',
    'admin.vm.CreateInPool.StandaloneVM',
    'admin.vm.CreateInPool.TemplateVM',
    'admin.vm.CreateDisposable',
    'admin.vm.Remove',
    'admin.backup.Execute',
    'admin.backup.Cancel',
  ],
};

t.test('the admin policy has one include line per delegated method', async (t) => {
  const text = readFileSync(join(prefix, 'etc', 'qubes', 'policy.d', '90-admin-default.policy'), 'utf8');
  const lines = text.split('\n').filter((l) => l.startsWith('!include-service'));
  const got: Record<string, string[]> = {};
  for (const l of lines) {
    const [, name, source, inc] = l.split(/\s+/);
    t.equal(source, '*', name);
    (got[inc!.replace('include/', '')] ??= []).push(name!);
  }
  t.same(got, EXPECTED_INCLUDES, 'each delegated method in its include file, once; internal.* and AdminVM creation in none');
  const pol = readFileSync(join(prefix, 'etc', 'qubes', 'policy.d', '90-admin-policy-default.policy'), 'utf8');
  t.same(
    pol
      .split('\n')
      .filter((l) => l.startsWith('!include-service'))
      .map((l) => l.split(/\s+/).join(' ')),
    [
      '!include-service policy.List * include/admin-policy-ro',
      '!include-service policy.Get * include/admin-policy-ro',
      '!include-service policy.GetFiles * include/admin-policy-ro',
      '!include-service policy.include.List * include/admin-policy-ro',
      '!include-service policy.include.Get * include/admin-policy-ro',
      '!include-service policy.Replace * include/admin-policy-rwx',
      '!include-service policy.Remove * include/admin-policy-rwx',
      '!include-service policy.include.Replace * include/admin-policy-rwx',
      '!include-service policy.include.Remove * include/admin-policy-rwx',
    ],
  );
  for (const f of ['admin-local-ro', 'admin-local-rwx', 'admin-global-ro', 'admin-global-rwx', 'admin-policy-ro', 'admin-policy-rwx']) {
    t.ok(existsSync(join(prefix, 'etc', 'qubes', 'policy.d', 'include', f)), f);
  }
  t.match(readFileSync(join(prefix, 'etc', 'qubes', 'policy.d', 'include', 'admin-local-ro'), 'utf8'), /^!include include\/admin-local-rwx$/m);
});

t.test('configuration and units describe this installation', async (t) => {
  const c = loadConfig(join(prefix, 'etc', 'qubes', 'stack.json'));
  t.equal(c.qubesd.socket, join(prefix, 'var', 'run', 'qubesd.sock'));
  t.equal(c.policy.dir, join(prefix, 'etc', 'qubes', 'policy.d'));
  t.equal(c.qrexec.serviceDir, join(prefix, 'etc', 'qubes-rpc'));
  const unitDir = join(prefix, 'usr', 'lib', 'systemd', 'system');
  for (const u of readdirSync(unitDir)) {
    const text = readFileSync(join(unitDir, u), 'utf8');
    t.notMatch(text, /@[A-Z]+@/, `${u}: every placeholder filled`);
    t.match(text, /^ExecStart=\S+ /m, `${u}: has a command`);
  }
  t.ok(existsSync(join(unitDir, 'qubesd.service')));
  t.ok(existsSync(dirname(c.policy.socket)));
});

t.test("a reinstall keeps the administrator's include files", async (t) => {
  const inc = join(prefix, 'etc', 'qubes', 'policy.d', 'include', 'admin-local-rwx');
  writeFileSync(inc, 'admin.vm.List * mgmt @tag:x allow target=dom0\n');
  install({ prefix });
  t.equal(readFileSync(inc, 'utf8'), 'admin.vm.List * mgmt @tag:x allow target=dom0\n');
  t.ok(lstatSync(join(prefix, 'etc', 'qubes-rpc', 'admin.vm.List')).isSymbolicLink());
});

t.test("the ask agent goes to the policy daemon's configuration; an unknown one is refused", async (t) => {
  const p4 = join(prefix, 'asking');
  install({ prefix: p4, ask: "command:/opt/my agent's" });
  const conf = () => readFileSync(join(p4, 'etc', 'qubes', 'qubes-policy-daemon.conf'), 'utf8');
  t.match(conf(), /^ask_command = '\/opt\/my agent'\\''s'$/m, 'quoted for the sh -c the agent runs under');
  t.match(
    readFileSync(join(p4, 'usr', 'lib', 'systemd', 'system', 'qubes-qrexec-policy-daemon.service'), 'utf8'),
    / daemon --config \S+\/etc\/qubes\/qubes-policy-daemon\.conf\n/,
    'the unit passes the configuration file',
  );
  install({ prefix: p4, ask: 'socket:/run/ask.sock' });
  t.match(conf(), /^ask_socket = \/run\/ask\.sock$/m);
  install({ prefix: p4, ask: 'deny' });
  t.notMatch(conf(), /^ask_/m, 'deny: no agent key set');
  t.throws(() => install({ prefix: join(prefix, 'bad-ask'), ask: 'maybe' }), /unknown ask agent "maybe"/);
});

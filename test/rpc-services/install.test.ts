// qubes-install's layout, checked against the method table it is derived from.
import t from 'tap';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { METHODS, policyInclude } from '../../lib/api-methods.js';
import { install, handlerPath } from '../../rpc-services/install.js';
import { loadConfig } from '../../rpc-services/config.js';
import { POLICY_SERVICES } from '../../rpc-services/names.js';

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

t.test('the admin policy has one include line per delegated method', async (t) => {
  const text = readFileSync(join(prefix, 'etc', 'qubes', 'policy.d', '90-admin-default.policy'), 'utf8');
  const lines = text.split('\n').filter((l) => l.startsWith('!include-service'));
  const got = new Map(lines.map((l) => { const f = l.split(/\s+/); return [f[1]!, f]; }));
  for (const m of METHODS) {
    const inc = policyInclude(m);
    const delegated = m.name.startsWith('admin.') && inc && !m.name.endsWith('.AdminVM');
    if (!delegated) { t.notOk(got.has(m.name), `${m.name} not delegated`); continue; }
    t.same(got.get(m.name), ['!include-service', m.name, '*', `include/${inc}`], m.name);
  }
  t.equal(lines.length, got.size, 'no method listed twice');
  const pol = readFileSync(join(prefix, 'etc', 'qubes', 'policy.d', '90-admin-policy-default.policy'), 'utf8');
  for (const p of POLICY_SERVICES) t.match(pol, new RegExp(`^!include-service ${p.name.replace(/\./g, '\\.')} +\\* include/admin-policy-${p.write ? 'rwx' : 'ro'}$`, 'm'));
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

t.test('a reinstall keeps the administrator\'s include files', async (t) => {
  const inc = join(prefix, 'etc', 'qubes', 'policy.d', 'include', 'admin-local-rwx');
  writeFileSync(inc, 'admin.vm.List * mgmt @tag:x allow target=dom0\n');
  install({ prefix });
  t.equal(readFileSync(inc, 'utf8'), 'admin.vm.List * mgmt @tag:x allow target=dom0\n');
  t.ok(lstatSync(join(prefix, 'etc', 'qubes-rpc', 'admin.vm.List')).isSymbolicLink());
});

// qubes-stack --demo: an empty system gets templates, service qubes and app
// qubes through the Admin API; a system with qubes is left alone.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';
import { loadConfig } from '../../lib/stack-config.js';
import { runStack } from './helpers.js';

const prefix = mkdtempSync(join(tmpdir(), 'rpc-demo-'));
t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
install({ prefix });
const c = loadConfig(join(prefix, 'etc', 'qubes', 'stack.json'));
const get = async (method: string, dest = 'dom0', arg = '') => {
  const r = await call(c.qubesd.socket, method, dest, arg);
  if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type} ${r.message}`);
  return r.content;
};
const listing = async () =>
  (await get('admin.vm.List'))
    .split('\n')
    .filter(Boolean)
    .map((l) => l.replace(/ uuid=\S+/, ''))
    .sort();

t.test('an empty system gets the demo qubes', async (t) => {
  const stack = await runStack(prefix, ['--demo']);
  t.teardown(() => stack.stop());
  t.match(stack.output(), /qubes-stack: demo qubes created: debian-12-xfce, fedora-41-xfce, sys-net, sys-firewall, work, personal, untrusted, vault\n/);
  t.same(await listing(), [
    'debian-12-xfce class=TemplateVM state=Halted',
    'dom0 class=AdminVM state=Running',
    'fedora-41-xfce class=TemplateVM state=Halted',
    'personal class=AppVM state=Halted',
    'sys-firewall class=AppVM state=Halted',
    'sys-net class=AppVM state=Halted',
    'untrusted class=AppVM state=Halted',
    'vault class=AppVM state=Halted',
    'work class=AppVM state=Halted',
  ]);
  t.equal(await get('admin.property.Get', 'dom0', 'default_template'), 'default=False type=vm debian-12-xfce');
  t.equal(await get('admin.property.Get', 'dom0', 'default_netvm'), 'default=False type=vm sys-firewall');
  t.equal(await get('admin.vm.property.Get', 'work', 'netvm'), 'default=True type=vm sys-firewall');
  t.equal(await get('admin.vm.property.Get', 'vault', 'netvm'), 'default=False type=vm ');
  t.equal(await get('admin.vm.property.Get', 'personal', 'template'), 'default=False type=vm fedora-41-xfce');
  t.equal(await get('admin.vm.property.Get', 'sys-firewall', 'provides_network'), 'default=False type=bool True');
  await get('admin.vm.Remove', 'untrusted');
});

t.test('a system with qubes is left alone', async (t) => {
  const stack = await runStack(prefix, ['--demo']);
  t.teardown(() => stack.stop());
  t.match(stack.output(), /qubes-stack: --demo: the system has qubes already; nothing created\n/);
  t.notOk(
    (await listing()).some((l) => l.startsWith('untrusted ')),
    'the removed qube is not recreated',
  );
});

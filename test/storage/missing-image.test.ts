// A qube whose files have gone: admin.vm.Start is refused as Qubes'
// storage.verify refuses it (QubesVMError "VM directory does not exist: ..."
// for its directory, StoragePoolException "Missing image file: ....", with
// its full stop, for an image), before anything starts (its network chain
// included), with domain-start-failed; every file named inside qubesd's base
// directory or its pool's, never by qubesd's own directory layout.
import t from 'tap';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { call, startDaemon, cleanup, subscribeEvents } from '../helpers/qubesd.js';

const d = await startDaemon();
t.teardown(async () => {
  await d.stop();
  cleanup(d);
});

t.test('a standalone qube without its root image', async (t) => {
  const c = await call(d.socket, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=lost label=red');
  t.equal(c.ok, true);
  t.equal((await call(d.socket, 'admin.vm.property.Set', 'lost', 'netvm', '')).ok, true); // no network qube to start first
  rmSync(join(d.base, 'appvms', 'lost', 'root.img'));
  const r = await call(d.socket, 'admin.vm.Start', 'lost');
  t.equal(r.type, 'StoragePoolException');
  t.equal(r.message, 'Missing image file: appvms/lost/root.img.');
  t.notOk(JSON.stringify(r).includes(d.base), 'no path of qubesd in the reply');
});

t.test('a qube without its directory: refused before its network qube starts', async (t) => {
  // the fixture's personal has sys-firewall as its network qube, and no directory
  const events = await subscribeEvents(d.socket);
  const r = await call(d.socket, 'admin.vm.Start', 'personal');
  t.equal(r.type, 'QubesVMError');
  t.equal(r.message, 'VM directory does not exist: appvms/personal');
  t.match((await call(d.socket, 'admin.vm.CurrentState', 'sys-firewall')).content, / power_state=Halted$/, 'its network qube was not started');
  const failed = await events.waitFor((e) => e.subject === 'personal' && e.event === 'domain-start-failed');
  t.same(failed.kwargs, { reason: 'VM directory does not exist: appvms/personal' });
  events.close();
  // with its directory, the next thing missing is an image of its template (a full stop: Qubes' verify)
  mkdirSync(join(d.base, 'appvms', 'personal'));
  const again = await call(d.socket, 'admin.vm.Start', 'personal');
  t.equal(again.type, 'StoragePoolException');
  t.equal(again.message, 'Missing image file: vm-templates/debian-12/root.img.');
  t.match((await call(d.socket, 'admin.vm.CurrentState', 'sys-firewall')).content, / power_state=Halted$/, 'its network qube was not started');
});

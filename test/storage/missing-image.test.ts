// A qube whose image file has gone: admin.vm.Start is refused with Qubes'
// StoragePoolException "Missing image file: ...", the file named inside its
// pool's directory, never by qubesd's own directory layout.
import t from 'tap';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { call, startDaemon, cleanup } from '../helpers/qubesd.js';

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
  t.equal(r.message, 'Missing image file: appvms/lost/root.img');
  t.notOk(JSON.stringify(r).includes(d.base), 'no path of qubesd in the reply');
});

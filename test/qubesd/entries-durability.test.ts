// Feature, tag and property calls journal only what they changed of the qube
// (store 'domain-entries' records): after SIGKILL the restarted daemon
// answers as before the kill, in the same order.
import t from 'tap';
import { call, cleanup, startDaemon } from '../helpers/qubesd.js';

t.test('feature, tag and property changes survive SIGKILL, in order', async (t) => {
  const d0 = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(() => cleanup(d0));
  const ok = async (method: string, dest: string, arg = '', payload = '') => {
    const r = await call(d0.socket, method, dest, arg, payload);
    t.ok(r.ok, `${method} ${dest} ${arg}: ${r.message ?? 'ok'}`);
  };
  await ok('admin.vm.feature.Set', 'work', 'gui', '1');
  await ok('admin.vm.feature.Remove', 'work', 'service.crond');
  await ok('admin.vm.feature.Set', 'work', 'service.crond', 'again');
  await ok('admin.vm.feature.Set', 'work', 'menu-items', 'x.desktop');
  await ok('admin.vm.tag.Set', 'work', 'new-tag');
  await ok('admin.vm.tag.Remove', 'work', 'proj-x');
  await ok('admin.vm.property.Set', 'work', 'memory', '900');
  await ok('admin.vm.property.Reset', 'work', 'vcpus');
  d0.proc.kill('SIGKILL');
  await d0.stop();

  const d1 = await startDaemon({ dir: d0.dir, args: ['--log', 'none'] });
  t.teardown(() => d1.stop());
  const get = async (method: string, arg = '') => (await call(d1.socket, method, 'work', arg)).content;
  t.equal(await get('admin.vm.feature.List'), 'menu-items\ngui\nservice.crond\n');
  t.equal(await get('admin.vm.feature.Get', 'menu-items'), 'x.desktop');
  t.equal(await get('admin.vm.feature.Get', 'service.crond'), 'again');
  t.equal(await get('admin.vm.tag.List'), 'audio-allowed\naudiovm-dom0\ncreated-by-dom0\nguivm-dom0\nnew-tag\n');
  t.equal(await get('admin.vm.property.Get', 'memory'), 'default=False type=int 900');
  t.equal(await get('admin.vm.property.Get', 'vcpus'), 'default=True type=int 2');
});

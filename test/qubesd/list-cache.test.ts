// admin.vm.List reuses its reply while nothing it shows changed: check that
// every kind of change shows at once (power state, a qube added, removed).
import t from 'tap';
import { call, cleanup, startDaemon } from '../helpers/qubesd.js';

t.test('admin.vm.List follows power states, creation and removal', async (t) => {
  const d = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const list = async () => (await call(d.socket, 'admin.vm.List', 'dom0')).content;
  t.ok((await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).ok);
  t.match(await list(), /^tpl class=TemplateVM state=Halted /m);
  t.equal(await list(), await list(), 'stable while nothing changes');
  t.ok((await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=a label=red')).ok);
  t.match(await list(), /^a class=AppVM state=Halted /m, 'a new qube appears');
  const started = await call(d.socket, 'admin.vm.Start', 'a');
  t.ok(started.ok, started.message ?? '');
  t.match(await list(), /^a class=AppVM state=Running /m, 'a power change shows');
  t.match((await call(d.socket, 'admin.vm.List', 'a')).content, /^a class=AppVM state=Running /, 'the single-qube form agrees');
  t.ok((await call(d.socket, 'admin.vm.Kill', 'a')).ok);
  t.match(await list(), /^a class=AppVM state=Halted /m);
  t.ok((await call(d.socket, 'admin.vm.Remove', 'a')).ok);
  t.notMatch(await list(), /^a /m, 'a removed qube disappears');
});

// admin.vm.List's reply is rebuilt only when the app's listVersion moves:
// each change the list shows (a qube created, started, paused, resumed,
// killed, removed) must show at once, and changes it does not show leave
// it as it was. Replies compared with the literal list of the fixture.
import t from 'tap';
import { call, cleanup, startDaemon } from '../helpers/qubesd.js';

const FIXTURE_QUBES: Array<[string, string, string]> = [
  ['dom0', 'AdminVM', '00000000-0000-0000-0000-000000000000'],
  ['debian-12', 'TemplateVM', 'ff27bd62-63c7-4fd1-9d50-0bda6dfe244c'],
  ['fedora-41', 'TemplateVM', '3b419275-ec4f-41be-a9b1-80fd37edd69d'],
  ['fedora-41-dvm', 'AppVM', '13ca5d81-4ea9-44f6-ab64-cf618730c8a9'],
  ['personal', 'AppVM', '8e9f2dc1-e8a0-4b1a-8363-e2723c8a8a56'],
  ['standalone', 'StandaloneVM', '0254116e-3728-47ad-bac6-8646396c48db'],
  ['sys-firewall', 'AppVM', 'ae75e0da-e190-4b08-a3e0-dce676be235b'],
  ['sys-net', 'AppVM', 'e5587637-24c5-46af-b2fe-02768a3f9747'],
  ['untrusted', 'AppVM', '8a8a599f-fc28-406c-9727-deea53c8e669'],
  ['vault', 'AppVM', '7fcdc220-9ad9-4d20-b4a8-3666ac5d4d69'],
  ['win-hvm', 'StandaloneVM', '035ad518-c94c-40f5-828e-0752bebba766'],
  ['work', 'AppVM', '103edb2e-47ad-4629-a9b7-61d9c421ba37'],
];

/** The fixture's list, all halted but dom0 and the states given. */
function expected(states: Record<string, string> = {}, extra: Array<[string, string, string, string]> = []): string {
  const rows = FIXTURE_QUBES.map(([n, c, u]) => [n, c, states[n] ?? (n === 'dom0' ? 'Running' : 'Halted'), u]);
  return [...rows, ...extra]
    .sort((a, b) => (a[0] === 'dom0' ? -1 : b[0] === 'dom0' ? 1 : a[0]! < b[0]! ? -1 : 1))
    .map(([n, c, s, u]) => `${n} class=${c} state=${s} uuid=${u}\n`)
    .join('');
}

t.test('admin.vm.List shows every change of what it lists, and only those', async (t) => {
  const d = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const list = async () => (await call(d.socket, 'admin.vm.List', 'dom0')).content;
  const ok = async (method: string, dest: string, arg = '', payload = '') => {
    const r = await call(d.socket, method, dest, arg, payload);
    t.ok(r.ok, `${method} ${dest}: ${r.message ?? 'ok'}`);
    return r.content;
  };
  t.equal(await list(), expected());
  t.equal(await list(), expected(), 'again, unchanged');

  await ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=new1 label=red');
  const uuid = (await ok('admin.vm.property.Get', 'new1', 'uuid')).replace('default=False type=str ', '');
  t.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  const withNew = (state: string) => expected({}, [['new1', 'TemplateVM', state, uuid]]);
  t.equal(await list(), withNew('Halted'), 'created');

  await ok('admin.vm.Start', 'new1');
  t.equal(await list(), withNew('Running'), 'started');
  await ok('admin.vm.Pause', 'new1');
  t.equal(await list(), withNew('Paused'), 'paused');
  await ok('admin.vm.Unpause', 'new1');
  t.equal(await list(), withNew('Running'), 'resumed');
  await ok('admin.vm.Kill', 'new1');
  t.equal(await list(), withNew('Halted'), 'killed');

  // what the list does not show leaves it alone
  await ok('admin.vm.property.Set', 'work', 'label', 'green');
  await ok('admin.vm.feature.Set', 'work', 'gui', '1');
  await ok('admin.vm.tag.Set', 'work', 'x');
  t.equal(await list(), withNew('Halted'), 'label, feature and tag changes do not show');

  await ok('admin.vm.Remove', 'new1');
  t.equal(await list(), expected(), 'removed');
});

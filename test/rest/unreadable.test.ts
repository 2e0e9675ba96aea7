// A qube one of whose properties qubesd cannot work out (a keyboard layout
// whose guivm chain loops: Qubes fails every read of all its properties)
// over real HTTP: the collection still lists every qube, and PATCH can still
// change the other properties, the guivm that mends the loop among them.
import t from 'tap';
import { http, startRestStack, type RestStack } from './helpers.js';

const s: RestStack = await startRestStack();
t.teardown(() => s.stop());
const req = (method: string, path: string, body?: unknown) => http(s.url + path, method, s.token, body);

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
// every qube's guivm is the default one, tpl, whose own guivm is itself
await s.dom0('admin.property.Set', 'dom0', 'default_guivm', 'tpl');
await t.rejects(s.dom0('admin.vm.property.GetAll', 'work'), {
  message:
    "admin.vm.property.GetAll work : QubesException the default value of property 'keyboard_layout' of work cannot be worked out: the default of 'keyboard_layout' of tpl depends on itself",
});

t.test('the collection lists every qube, without the properties that cannot be read', async (t) => {
  const r = await req('GET', '/vms?fields=name_label,maxmem,power_state');
  t.equal(r.status, 200);
  const work = (r.json as Array<Record<string, unknown>>).find((o) => o.name_label === 'work');
  t.same(Object.keys(work!).sort(), ['href', 'name_label', 'power_state']);
  const dom0 = (r.json as Array<Record<string, unknown>>).find((o) => o.name_label === 'dom0');
  t.equal(dom0!.maxmem, 4096, 'a qube out of the loop has them');
  const one = await req('GET', '/vms/work');
  t.equal(one.status, 200);
  t.equal((one.json as Record<string, unknown>).name_label, 'work');
});

t.test('PATCH changes the other properties, and mends the loop', async (t) => {
  t.equal((await req('PATCH', '/vms/work', { memory: 500 })).status, 204);
  t.equal((await s.dom0('admin.vm.property.Get', 'work', 'memory')).content, 'default=False type=int 500');
  const refused = await req('PATCH', '/vms/work', { memory: 600, keyboard_layout: 'de++' });
  t.equal(refused.status, 400, 'the property that cannot be read cannot be set either (Qubes reads the old value first)');
  t.match(
    (refused.json as { message: string }).message,
    /'keyboard_layout' of work cannot be worked out: the default of 'keyboard_layout' of tpl depends on itself/,
  );
  t.equal((await s.dom0('admin.vm.property.Get', 'work', 'memory')).content, 'default=False type=int 500', 'nothing changed');
  t.equal((await req('PATCH', '/vms/work', { bogus: 1 })).status, 400, 'an unknown field is still one');
  t.equal((await req('PATCH', '/vms/tpl', { guivm: 'dom0' })).status, 204);
  const r = await req('GET', '/vms/work');
  t.equal((r.json as Record<string, unknown>).keyboard_layout, 'us++', 'read again once the loop is gone');
});

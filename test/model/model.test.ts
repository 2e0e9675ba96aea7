// The domain model in-process: loading the conformance fixture, computed
// defaults, validation before mutation, events in Qubes' order, and the
// changes handed to the store.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QubesApp, validateVmName, type Vm } from '../../qubesd/model/app.js';
import { lookup, resetProperty, setFromApi } from '../../qubesd/model/properties.js';
import { serializeDefault, serializeProperty } from '../../qubesd/api/format/property.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { QubesError } from '../../qubesd/errors.js';
import { FIXTURE } from '../helpers/qubesd.js';

function load(): { app: QubesApp; base: string } {
  const base = mkdtempSync(join(tmpdir(), 'model-test-'));
  const xml = readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base);
  const app = QubesApp.fromDoc(parseQubesXml(xml), { baseDir: base });
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  return { app, base };
}

function recordEvents(app: QubesApp): string[] {
  const seen: string[] = [];
  app.events.subscribe((subject, event, kw) => seen.push(`${subject}|${event}|${kw.map(([k, v]) => `${k}=${v}`).join(',')}`));
  return seen;
}

function qubesError(fn: () => unknown): QubesError {
  try {
    fn();
  } catch (e) {
    if (e instanceof QubesError) return e;
    throw e;
  }
  throw new Error('expected a QubesError');
}

t.test('loads the fixture with Qubes sort order and lookups', async (t) => {
  const { app } = load();
  const names = app.allVms().map((v) => v.name);
  t.equal(names[0], 'dom0');
  t.same(names.slice(1), [...names.slice(1)].sort());
  t.equal(app.getVmByUuid('103edb2e-47ad-4629-a9b7-61d9c421ba37')?.name, 'work');
  t.equal(app.getVm('nosuch'), undefined);
  t.same(app.drainChanges(), [], 'loading changes nothing');
});

t.test('computed defaults follow templates, netvm and globals', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  t.equal(serializeProperty(work, lookup(work, 'netvm')), 'default=True type=vm sys-firewall');
  t.equal(serializeProperty(work, lookup(work, 'ip')), 'default=True type=str 10.137.0.6');
  t.equal(serializeProperty(work, lookup(work, 'visible_gateway')), 'default=True type=str 10.137.0.4');
  t.equal(serializeProperty(app.getVm('vault')!, lookup(app.getVm('vault')!, 'dns')), 'default=True type=str ');
  t.equal(
    serializeProperty(app.getVm('win-hvm')!, lookup(app.getVm('win-hvm')!, 'maxmem')),
    'default=True type=int 0',
    'no memory balancing for an HVM without qrexec',
  );
  t.equal(serializeDefault(work, lookup(work, 'label')), null, 'label has no default');
  const tpl = app.getVm('fedora-41')!;
  setFromApi(tpl, 'vcpus', Buffer.from('3'));
  t.equal(serializeProperty(app.getVm('sys-net')!, lookup(app.getVm('sys-net')!, 'vcpus')), 'default=True type=int 3', 'children inherit the template value');
  t.equal(serializeProperty(work, lookup(work, 'vcpus')), 'default=False type=int 4', 'an explicit value wins');
});

t.test('refused sets change nothing and fire nothing', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  const seen = recordEvents(app);
  const cases: Array<[string, string, string, string]> = [
    ['memory', '', 'QubesValueError', 'Failed to parse property value as int'],
    ['memory', '0', 'QubesPropertyValueError', 'memory must be positive'],
    ['maxmem', '-1', 'QubesPropertyValueError', 'maxmem must be positive or zero'],
    ['netvm', 'work', 'QubesValueError', 'The work qube does not provide network'],
    ['netvm', 'nosuch', 'QubesPropertyValueError', "Can't set netvm to non-existing qube nosuch"],
    ['netvm', '-x', 'QubesValueError', 'VM name cannot start with hyphen, underscore, dot or numbers'],
    ['label', 'nosuch', 'QubesLabelNotFoundError', 'Label does not exist: nosuch'],
    ['debug', 'maybe', 'QubesValueError', "Invalid literal for boolean property: 'maybe'"],
    ['updateable', 'True', 'QubesPropertyValueError', "property 'updateable' on AppVM instance cannot be set"],
    ['kernel', 'a/b', 'QubesPropertyValueError', "Kernel name cannot contain '/'"],
    ['virt_mode', 'xen', 'QubesPropertyValueError', 'Invalid virtualization mode, supported values: hvm, pv, pvh'],
    [
      'default_dispvm',
      'work',
      'QubesPropertyValueError',
      "Cannot set invalid property to qube 'work', default_dispvm 'work' has template_for_dispvms set to False",
    ],
    ['nosuch', '1', 'QubesNoSuchPropertyError', "Invalid property 'nosuch' of work"],
  ];
  for (const [prop, value, type, message] of cases) {
    const e = qubesError(() => setFromApi(work, prop, Buffer.from(value)));
    t.equal(`${e.type}: ${e.message}`, `${type}: ${message}`, `${prop}=${JSON.stringify(value)}`);
  }
  t.same(seen, [], 'no events');
  t.same(app.drainChanges(), [], 'no changes');
  t.equal(serializeProperty(work, lookup(work, 'memory')), 'default=False type=int 800');
});

t.test('a network loop is refused', async (t) => {
  const { app } = load();
  const net = app.getVm('sys-net')!;
  const e = qubesError(() => setFromApi(net, 'netvm', Buffer.from('sys-firewall')));
  t.equal(e.message, 'Loops in network are unsupported');
  const e2 = qubesError(() => setFromApi(app.getVm('sys-firewall')!, 'provides_network', Buffer.from('False')));
  t.equal(e2.message, "The qube is still used by other qubes, change theirs 'netvm' first");
});

t.test('set and reset fire Qubes events and mark the qube dirty', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  const seen = recordEvents(app);
  setFromApi(work, 'memory', Buffer.from('700'));
  resetProperty(work, lookup(work, 'memory'));
  t.same(seen, [
    'work|property-pre-set:memory|name=memory,newvalue=700,oldvalue=800',
    'work|property-set:memory|name=memory,newvalue=700,oldvalue=800',
    'work|property-pre-reset:memory|name=memory,oldvalue=700',
    'work|property-pre-del:memory|name=memory,oldvalue=700',
    'work|property-reset:memory|name=memory,oldvalue=700',
    'work|property-del:memory|name=memory,oldvalue=700',
  ]);
  // only the property list goes to the store (memory back to default), in Qubes' order
  t.same(app.drainChanges(), [
    {
      kind: 'domain-entries',
      id: 'domain-6',
      properties: [
        ['label', 'blue'],
        ['maxmem', '4000'],
        ['name', 'work'],
        ['qid', '6'],
        ['uuid', '103edb2e-47ad-4629-a9b7-61d9c421ba37'],
        ['vcpus', '4'],
        ['template', 'fedora-41'],
      ],
    },
  ]);
});

t.test('label change resets the icon; guivm change moves the guivm tag', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  const seen = recordEvents(app);
  setFromApi(work, 'label', Buffer.from('green'));
  t.ok(seen.includes('work|property-reset:icon|name=icon'));
  t.equal(serializeProperty(work, lookup(work, 'icon')), 'default=True type=str appvm-green');
  setFromApi(work, 'guivm', Buffer.from('sys-net'));
  t.ok(work.tags.has('guivm-sys-net'));
  t.notOk(work.tags.has('guivm-dom0'));
  setFromApi(work, 'provides_network', Buffer.from('yes'));
  t.equal(work.features.get('servicevm'), '1', 'servicevm feature follows provides_network');
});

t.test('global default_netvm change is seen by qubes using the default', async (t) => {
  const { app } = load();
  const seen = recordEvents(app);
  setFromApi(app, 'default_netvm', Buffer.from('sys-net'));
  t.ok(seen.includes('work|property-set:netvm|name=netvm,newvalue=sys-net,oldvalue=sys-firewall'));
  t.ok(seen.includes('|property-set:default_netvm|name=default_netvm,newvalue=sys-net,oldvalue=sys-firewall'));
  const work = app.getVm('work')!;
  t.equal(serializeProperty(work, lookup(work, 'netvm')), 'default=True type=vm sys-net');
  const e = qubesError(() => setFromApi(app, 'default_netvm', Buffer.from('work')));
  t.match(e.message, /does not provide network|Network loop/);
});

t.test('create and remove', async (t) => {
  const { app } = load();
  const dom0 = app.getVm('dom0')!;
  const vm: Vm = app.addNewVm('AppVM', { name: 'new1', label: app.labels.get('red'), creator: dom0 });
  t.equal(vm.template?.name, 'fedora-41', 'template defaults to default_template');
  t.ok(vm.tags.has('created-by-dom0') && vm.tags.has('guivm-dom0') && vm.tags.has('audiovm-dom0'));
  t.equal(vm.qid, 12, 'first free qid');
  t.ok(app.drainChanges().some((c) => c.kind === 'domain' && c.doc.id === 'domain-12'));
  const e = qubesError(() => app.removeVm(app.getVm('fedora-41')!));
  t.equal(e.type, 'QubesVMInUseError');
  app.removeVm(vm);
  t.equal(app.getVm('new1'), undefined);
  t.same(app.drainChanges(), [{ kind: 'domain-removed', id: 'domain-12' }]);
});

t.test('a disposable starts as a copy of its disposable template', async (t) => {
  const { app } = load();
  const dvm = app.getVm('fedora-41-dvm')!;
  setFromApi(dvm, 'vcpus', Buffer.from('3'));
  dvm.setFeature('preload-dispvm-delay', '1');
  dvm.setFeature('kept', 'yes');
  dvm.addTag('from-template');
  const seen = recordEvents(app);
  const disp = app.addNewVm('DispVM', { name: 'disp1', label: app.labels.get('red'), creator: app.getVm('dom0')! });
  t.equal(disp.template, dvm, 'template defaults to default_dispvm');
  t.equal(serializeProperty(disp, lookup(disp, 'vcpus')), 'default=False type=int 3', 'explicit template values are copied');
  t.equal(disp.features.get('kept'), 'yes');
  t.notOk(disp.features.has('preload-dispvm-delay'), 'preloading settings are not copied');
  t.ok(disp.tags.has('from-template'));
  t.ok(seen.includes('|domain-add|vm=disp1'));
  t.notOk(
    seen.some((e) => e.includes('created-by')),
    'the created-by tag came with the template tags: no tag event',
  );
});

t.test('store round trip keeps what was set', async (t) => {
  const { app, base } = load();
  setFromApi(app.getVm('work')!, 'memory', Buffer.from('1234'));
  app.getVm('work')!.setFeature('f1', 'v1');
  const again = QubesApp.fromDoc(app.toDoc(), { baseDir: base });
  const work = again.getVm('work')!;
  t.equal(serializeProperty(work, lookup(work, 'memory')), 'default=False type=int 1234');
  t.equal(work.features.get('f1'), 'v1');
  t.equal(serializeProperty(again, lookup(again, 'default_netvm')), 'default=False type=vm sys-firewall');
});

t.test('broken stores are refused with a clear message', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'model-test-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const doc = QubesApp.freshDoc({ baseDir: base });
  t.doesNotThrow(() => QubesApp.fromDoc(doc, { baseDir: base }));
  const bad = structuredClone(doc);
  bad.properties.push(['default_netvm', 'ghost']);
  t.throws(() => QubesApp.fromDoc(bad, { baseDir: base }), /missing qube 'ghost'/);
  const bad2 = structuredClone(doc);
  bad2.domains[0]!.properties.push(['bogus', '1']);
  t.throws(() => QubesApp.fromDoc(bad2, { baseDir: base }), /not applicable/);
});

t.test('qube name syntax', async (t) => {
  t.doesNotThrow(() => validateVmName('work-1.x_y'));
  for (const [name, msg] of [
    ['', 'VM name contains illegal characters'],
    ['a'.repeat(32), 'VM name must be shorter than 32 characters'],
    ['1abc', 'VM name cannot start with hyphen, underscore, dot or numbers'],
    ['Domain-0', "VM name cannot be 'Domain-0'"],
    ['none', "VM name cannot be 'none' nor 'default'"],
    ['x-dm', 'VM name cannot end with -dm'],
  ] as const) {
    t.equal(qubesError(() => validateVmName(name)).message, msg, name);
  }
});

t.test('feature and tag changes go to the store as those entries only, in their order', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  work.setFeature('gui', '1');
  work.setFeature('service.crond', '');
  work.addTag('t1');
  const net = app.getVm('sys-net')!;
  net.setFeature('x', 'y');
  net.addTag('t2');
  net.removeTag('t2');
  net.addTag('t3');
  t.same(app.drainChanges(), [
    {
      kind: 'domain-entries',
      id: 'domain-6',
      setFeatures: [
        ['gui', '1'],
        ['service.crond', ''],
      ],
      addTags: ['t1'],
    },
    // a removal sends the whole (current) list
    { kind: 'domain-entries', id: 'domain-3', setFeatures: [['x', 'y']], tags: ['guivm-dom0', 'audiovm-dom0', 'created-by-dom0', 't3'] },
  ]);
  work.deleteFeature('gui');
  work.setFeature('gui', '2');
  work.setFeature('z', '3');
  t.same(
    app.drainChanges(),
    [
      {
        kind: 'domain-entries',
        id: 'domain-6',
        features: [
          ['service.crond', ''],
          ['menu-items', 'firefox.desktop org.gnome.Nautilus.desktop'],
          ['gui', '2'],
          ['z', '3'],
        ],
      },
    ],
    'a deletion sends the whole feature list, in the model order',
  );
  t.same(app.drainChanges(), [], 'drained');
});

t.test('a qube stored whole, added or removed carries no entries record', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  work.setFeature('before', '1');
  app.markDirty(work); // e.g. its devices changed
  work.setFeature('after', '1');
  const changes = app.drainChanges();
  t.same(
    changes.map((c) => c.kind),
    ['domain'],
  );
  t.same(changes[0]!.kind === 'domain' && changes[0]!.doc.features.slice(-2), [
    ['before', '1'],
    ['after', '1'],
  ]);
  const vm = app.addNewVm('AppVM', { name: 'new1', label: app.labels.get('red'), creator: app.getVm('dom0')! });
  vm.setFeature('f', '1');
  t.same(
    app.drainChanges().map((c) => c.kind === 'domain' && c.doc.id),
    ['domain-12'],
    'a new qube is stored whole',
  );
  vm.setFeature('g', '1');
  app.removeVm(vm);
  t.same(app.drainChanges(), [{ kind: 'domain-removed', id: 'domain-12' }]);
});

t.test('listVersion moves when a qube is added or removed or its power state changes, and only then', async (t) => {
  const { app } = load();
  const work = app.getVm('work')!;
  const v0 = app.listVersion;
  work.power = 'Halted';
  work.setFeature('x', '1');
  t.equal(app.listVersion, v0, 'same power state, a feature: no change');
  work.power = 'Running';
  t.equal(app.listVersion, v0 + 1);
  t.equal(work.power, 'Running');
  const vm = app.addNewVm('AppVM', { name: 'new1', label: app.labels.get('red'), creator: app.getVm('dom0')! });
  t.equal(app.listVersion, v0 + 2, 'added');
  app.removeVm(vm);
  t.equal(app.listVersion, v0 + 3, 'removed');
});

// The model's Admin API families through a real bin/qubesd socket: good and
// bad input for each, that refused calls change nothing (also on disk,
// across a restart), and the event stream.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, cleanup, startFixtureDaemon, subscribeEvents, type Daemon } from '../helpers/qubesd.js';

let d: Daemon;
t.before(async () => {
  d = await startFixtureDaemon();
});
t.teardown(async () => {
  await d.stop();
  cleanup(d);
});

const ok = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
  const r = await call(d.socket, method, dest, arg, payload, source);
  if (!r.ok) throw new Error(`${method}+${arg} ${dest}: ${r.type}: ${r.message}`);
  return r.content;
};
const err = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
  const r = await call(d.socket, method, dest, arg, payload, source);
  if (r.ok) throw new Error(`${method}+${arg} ${dest} unexpectedly succeeded`);
  return `${r.type}: ${r.message}`;
};

t.test('vmclass and vm listing', async (t) => {
  t.equal(await ok('admin.vmclass.List'), 'AdminVM\nAppVM\nDispVM\nRemoteVM\nStandaloneVM\nTemplateVM\n');
  const all = (await ok('admin.vm.List')).split('\n');
  t.equal(all[0], 'dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000');
  t.equal(await ok('admin.vm.List', 'work'), 'work class=AppVM state=Halted uuid=103edb2e-47ad-4629-a9b7-61d9c421ba37\n');
  t.equal(await err('admin.vm.List', 'nosuch'), "QubesVMNotFoundError: No such domain: 'nosuch'");
});

t.test('global properties', async (t) => {
  t.equal(await ok('admin.property.Get', 'dom0', 'default_netvm'), 'default=False type=vm sys-firewall');
  t.equal(await ok('admin.property.GetDefault', 'dom0', 'default_template'), '');
  t.equal(await ok('admin.property.Help', 'dom0', 'stats_interval'), 'Interval in seconds for VM stats reporting (memory, CPU usage)');
  t.equal(await ok('admin.property.Set', 'dom0', 'stats_interval', '5'), '');
  t.equal(await ok('admin.property.Get', 'dom0', 'stats_interval'), 'default=False type=int 5');
  t.equal(await ok('admin.property.Reset', 'dom0', 'stats_interval'), '');
  t.equal(await ok('admin.property.Get', 'dom0', 'stats_interval'), 'default=True type=int 3');
  t.equal(await err('admin.property.Set', 'dom0', 'stats_interval', 'x'), 'QubesValueError: Failed to parse property value as int');
  t.equal(
    await err('admin.property.Set', 'dom0', 'default_template', 'work'),
    "QubesPropertyValueError: wrong VM class: domains['work'] is of type AppVM and not TemplateVM",
  );
  t.equal(await err('admin.property.Set', 'dom0', 'default_pool', 'nosuch'), 'QubesPropertyValueError: No such storage pool');
  t.equal(await err('admin.property.Set', 'dom0', 'no_cpus', '4'), "QubesPropertyValueError: property 'no_cpus' on Qubes instance cannot be set");
  t.equal(await err('admin.property.Get', 'dom0', 'nosuch'), "QubesNoSuchPropertyError: Invalid property 'nosuch' of Qubes");
  const all = await ok('admin.property.GetAll');
  t.match(all, /^clockvm default=False type=vm sys-net$/m);
});

t.test('qube properties', async (t) => {
  t.equal(await ok('admin.vm.property.Get', 'work', 'memory'), 'default=False type=int 800');
  t.equal(await ok('admin.vm.property.Set', 'work', 'kernelopts', 'a\\b'), '');
  t.match(await ok('admin.vm.property.GetAll', 'work'), /^kernelopts default=False type=str a\\\\b$/m, 'GetAll escapes backslashes');
  t.equal(await ok('admin.vm.property.Reset', 'work', 'kernelopts'), '');
  t.equal(await err('admin.vm.property.Set', 'work', 'vcpus', '0'), 'QubesPropertyValueError: vcpus must be positive');
  t.equal(await err('admin.vm.property.Set', 'work', 'name', 'other'), "QubesException: property 'name' is write-once and already set");
  t.equal(
    await err('admin.vm.property.Set', 'work', 'template', ''),
    "QubesPropertyValueError: Invalid value None for property 'template' of " + (await reprOf('work')),
  );
  t.equal(
    await err('admin.vm.property.Reset', 'work', 'template'),
    'QubesValueError: Cannot unset template. You can set it to the current default (fedora-41) instead',
  );
  t.equal(
    await err('admin.vm.property.Set', 'work', 'default_user', 'a b'),
    'QubesPropertyValueError: Username can contain only those characters: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.',
  );
  t.equal(await err('admin.vm.property.Set', 'work', 'label', 'caf\u00e9'), 'QubesValueError: Non-ASCII bytes in property value');
  t.equal(await err('admin.vm.property.Set', 'work', 'keyboard_layout', 'us'), 'QubesPropertyValueError: invalid number of keyboard layout parameters');
  t.equal(await ok('admin.vm.property.Set', 'work', 'netvm', ''), '');
  t.equal(await ok('admin.vm.property.Get', 'work', 'netvm'), 'default=False type=vm ');
  t.equal(await ok('admin.vm.property.Get', 'work', 'ip'), 'default=True type=str ');
  t.equal(await ok('admin.vm.property.Reset', 'work', 'netvm'), '');
  t.equal(await ok('admin.vm.property.Get', 'work', 'memory'), 'default=False type=int 800', 'refused sets changed nothing');
});

/** The repr Qubes puts into its generic value error (the address is normalised by the checker). */
async function reprOf(name: string): Promise<string> {
  const r = await call(d.socket, 'admin.vm.property.Set', name, 'template', '');
  return /of (<.*>)$/.exec(r.message ?? '')?.[1] ?? '';
}

t.test('features', async (t) => {
  t.equal(await ok('admin.vm.feature.Set', 'work', 'f1', 'v1'), '');
  t.equal(await ok('admin.vm.feature.Get', 'work', 'f1'), 'v1');
  t.equal(await err('admin.vm.feature.Set', 'work', 'f/1', 'v'), 'ProtocolError: feature name contains illegal characters');
  t.equal(await err('admin.vm.feature.Set', 'work', 'f2', 'a\tb'), 'ProtocolError: f2 value contains illegal characters');
  t.equal(await err('admin.vm.feature.Set', 'work', 'service.' + 'x'.repeat(49), '1'), 'QubesValueError: Service name must not exceed 48 bytes');
  t.equal(
    await err('admin.vm.feature.Set', 'work', 'preload-dispvm', '1'),
    'PermissionDenied: changing this feature is prohibited by qubes.ext.admin.AdminExtension',
  );
  t.equal(await ok('admin.vm.feature.CheckWithTemplate', 'work', 'os'), 'Linux');
  t.equal(await err('admin.vm.feature.CheckWithNetvm', 'work', 'os'), 'QubesFeatureNotFoundError: Feature not set for domain work: os');
  t.equal(await ok('admin.vm.feature.Remove', 'work', 'f1'), '');
  t.equal(await err('admin.vm.feature.Remove', 'work', 'f1'), 'QubesFeatureNotFoundError: Feature not set for domain work: f1');
  t.notMatch(await ok('admin.vm.feature.List', 'work'), /^f1$/m);
});

t.test('tags', async (t) => {
  t.equal(await ok('admin.vm.tag.Set', 'work', 't1'), '');
  t.equal(await ok('admin.vm.tag.Get', 'work', 't1'), '1');
  t.equal(await ok('admin.vm.tag.Get', 'work', 'nosuch'), '0');
  t.equal(await err('admin.vm.tag.Set', 'work', 'a.b'), 'QubesInvalidTagError: disallowed characters');
  t.equal(
    await err('admin.vm.tag.Set', 'work', 'created-by-x', '', 'vault'),
    'PermissionDenied: changing this tag is prohibited by qubes.ext.admin.AdminExtension',
  );
  t.equal(await ok('admin.vm.tag.Remove', 'work', 't1'), '');
  t.equal(await err('admin.vm.tag.Remove', 'work', 't1'), 'QubesTagNotFoundError: Tag not set for domain work: t1');
});

t.test('labels', async (t) => {
  t.equal(await ok('admin.label.Index', 'dom0', 'blue'), '6');
  t.equal(await ok('admin.label.Create', 'dom0', 'mint', '0x98ff98'), '');
  t.equal(await ok('admin.label.Index', 'dom0', 'mint'), '9');
  t.equal(await err('admin.label.Create', 'dom0', 'mint', '0x98ff98'), "QubesLabelInUseError: Label is still in use: 'mint'");
  t.equal(await err('admin.label.Create', 'dom0', '42', '0x98ff98'), 'QubesInvalidLabelError: Label must not be a digit');
  t.equal(await err('admin.label.Create', 'dom0', 'x', '0x98ff9'), 'QubesInvalidLabelValueError: Label value must have length of 8');
  t.equal(await err('admin.label.Remove', 'dom0', 'red'), 'ProtocolError: Can only remove custom labels');
  t.equal(await ok('admin.label.Remove', 'dom0', 'mint'), '');
  t.equal(await err('admin.label.Get', 'dom0', 'mint'), 'QubesLabelNotFoundError: Label does not exist: mint');
});

t.test('notes', async (t) => {
  t.equal(await ok('admin.vm.notes.Get', 'vault'), readFileSync(join(d.base, 'appvms', 'vault', 'notes.txt'), 'utf8'));
  t.equal(await ok('admin.vm.notes.Get', 'personal'), '', 'no notes file yet');
  t.equal(await ok('admin.vm.notes.Set', 'work', '', 'line\n\u0007bell'), '');
  t.equal(await ok('admin.vm.notes.Get', 'work'), 'line\n_bell', 'control characters are replaced');
  t.equal(await ok('admin.vm.notes.Set', 'work', '', Buffer.from([0xc3, 0xa9, 0x0a])), '');
  t.equal(await ok('admin.vm.notes.Get', 'work'), '\u00e9\n', 'UTF-8 kept');
  t.match(await err('admin.vm.notes.Set', 'work', '', Buffer.from([0xff])), /^ProtocolError: Unable to sanitise qube notes/);
  t.equal(await err('admin.vm.notes.Get', 'dom0'), 'ProtocolError: expected destination to not be AdminVM');
});

t.test('a new qube starts with update checks off when check_updates_vm is False', async (t) => {
  t.equal(await ok('admin.property.Set', 'dom0', 'check_updates_vm', 'False'), '');
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', '', 'name=cu1 label=green'), '');
  t.equal(await ok('admin.vm.feature.List', 'cu1'), 'check-updates\n');
  t.equal(await ok('admin.vm.feature.Get', 'cu1', 'check-updates'), '', 'False is stored as an empty string');
  t.notMatch(await ok('admin.vm.feature.List', 'work'), /^check-updates$/m, 'existing qubes are left alone');
  t.equal(await ok('admin.property.Reset', 'dom0', 'check_updates_vm'), '');
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', '', 'name=cu2 label=green'), '');
  t.equal(await ok('admin.vm.feature.List', 'cu2'), '');
  for (const q of ['cu1', 'cu2']) t.equal(await ok('admin.vm.Remove', q), '');
});

// Qubes recurses without end (and drops the call) when a qube's guivm chain
// comes back to it, for every qube whose chain reaches the loop, and refuses
// to set or reset their layout (it reads the old value first); here those
// calls are refused with an error that says why, and nothing changes.
// A daemon of its own: default_guivm moves the guivm-* tags of every qube.
t.test('a keyboard layout whose guivm chain comes back to the qube', async (t) => {
  const own = await startFixtureDaemon();
  t.teardown(async () => {
    await own.stop();
    cleanup(own);
  });
  const get = async (method: string, dest: string, arg = '', payload = '') => {
    const r = await call(own.socket, method, dest, arg, payload, 'dom0');
    return r.ok ? r.content : `${r.type}: ${r.message}`;
  };
  const loop = (vm: string, back: string) =>
    `QubesException: the default value of property 'keyboard_layout' of ${vm} cannot be worked out: the default of 'keyboard_layout' of ${back} depends on itself`;
  t.equal(await get('admin.property.Get', 'dom0', 'default_guivm'), 'default=True type=vm dom0');
  // fedora-41's guivm is the default one, which is now fedora-41 itself
  t.equal(await get('admin.property.Set', 'dom0', 'default_guivm', 'fedora-41'), '');
  t.equal(await get('admin.vm.property.Get', 'fedora-41', 'guivm'), 'default=True type=vm fedora-41');
  t.equal(await get('admin.vm.property.Get', 'fedora-41', 'keyboard_layout'), loop('fedora-41', 'fedora-41'));
  t.equal(await get('admin.vm.property.GetAll', 'fedora-41'), loop('fedora-41', 'fedora-41'));
  // a qube whose guivm is fedora-41 (the default) reaches the loop too
  t.equal(await get('admin.vm.property.Get', 'debian-12', 'keyboard_layout'), loop('debian-12', 'fedora-41'));
  t.equal(await get('admin.vm.property.Set', 'fedora-41', 'keyboard_layout', 'de+neo+'), loop('fedora-41', 'fedora-41'));
  t.equal(await get('admin.vm.property.Reset', 'fedora-41', 'keyboard_layout'), loop('fedora-41', 'fedora-41'));
  // a qube with a guivm out of the loop is not affected
  t.equal(await get('admin.vm.property.Get', 'dom0', 'keyboard_layout'), 'default=True type=str us++');
  // breaking the loop gives every one of them a value again; the refused set left none behind
  t.equal(await get('admin.vm.property.Set', 'fedora-41', 'guivm', 'dom0'), '');
  t.equal(await get('admin.vm.property.Get', 'fedora-41', 'keyboard_layout'), 'default=True type=str us++');
  t.equal(await get('admin.vm.property.Set', 'fedora-41', 'keyboard_layout', 'de+neo+'), '');
  t.equal(await get('admin.vm.property.Get', 'debian-12', 'keyboard_layout'), 'default=True type=str de+neo+');
  // two qubes that are each other's guivm
  t.equal(await get('admin.vm.property.Set', 'work', 'guivm', 'personal'), '');
  t.equal(await get('admin.vm.property.Set', 'personal', 'guivm', 'work'), '');
  t.equal(await get('admin.vm.property.Get', 'work', 'keyboard_layout'), loop('work', 'work'));
  t.equal(await get('admin.vm.property.Get', 'personal', 'keyboard_layout'), loop('personal', 'personal'));
});

// DispVM.from_appvm: the new qube is added, made on disk, then tagged by its creator
t.test('the events of a new disposable', async (t) => {
  const own = await startFixtureDaemon();
  t.teardown(async () => {
    await own.stop();
    cleanup(own);
  });
  const events = await subscribeEvents(own.socket);
  const r = await call(own.socket, 'admin.vm.CreateDisposable', 'fedora-41-dvm', '', '', 'dom0');
  if (!r.ok) throw new Error(`${r.type}: ${r.message}`);
  const name = r.content;
  await events.waitFor((e) => e.subject === name && e.event === 'domain-tag-add:disp-created-by-dom0');
  events.close();
  const seen = events.events.filter((e) => e.subject === name || (e.subject === '' && e.kwargs.vm === name)).map((e) => `${e.subject}:${e.event}`);
  t.same(seen, [':domain-add', `${name}:domain-create-on-disk`, `${name}:domain-tag-add:disp-created-by-dom0`]);
});

t.test('create, use and remove qubes', async (t) => {
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', '', 'name=c1 label=green'), '');
  t.equal(await ok('admin.vm.property.Get', 'c1', 'template'), 'default=False type=vm fedora-41');
  t.match(await ok('admin.vm.tag.List', 'c1'), /^created-by-dom0$/m);
  t.ok(existsSync(join(d.base, 'appvms', 'c1')), 'qube directory created');
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=c2 label=red'), '');
  t.equal(await ok('admin.vm.property.Get', 'c2', 'template'), 'default=False type=vm debian-12');
  t.equal(await ok('admin.vm.CreateInPool.StandaloneVM', 'dom0', '', 'name=c3 label=red pool=varlibqubes'), '');
  t.equal(await err('admin.vm.Create.AppVM', 'dom0', '', 'name=c1 label=green'), 'QubesVMAlreadyExistsError: Qube already exists: c1');
  t.equal(await err('admin.vm.Create.AppVM', 'dom0', '', 'name=c4 label=green name=c5'), 'ProtocolError: Options must be unique');
  t.equal(await err('admin.vm.Create.AppVM', 'dom0', '', 'name=c4'), 'ProtocolError: Creation requested without key: label');
  t.equal(
    await err('admin.vm.Create.AppVM', 'dom0', '', 'name=c4 label=red pool=varlibqubes'),
    "ProtocolError: Pool option specified but 'allow_pool' is False",
  );
  t.equal(
    await err('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=c4 label=red pool=varlibqubes pool:root=varlibqubes'),
    "ProtocolError: Conflicting options specified: 'pool=', 'pool:volume='",
  );
  t.equal(await err('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=c4 label=red pool=nosuch'), 'QubesException: Unknown storage pool nosuch');
  t.equal(await err('admin.vm.Create.TemplateVM', 'dom0', 'fedora-41', 'name=c4 label=red'), 'ProtocolError: TemplateVM cannot be based on template');
  t.equal(await err('admin.vm.Create.AppVM', 'dom0', 'nosuch', 'name=c4 label=red'), "QubesVMNotFoundError: No such domain: 'nosuch'");
  t.equal(await err('admin.vm.Create.AppVM', 'dom0', '', 'name=1x label=red'), 'QubesValueError: VM name cannot start with hyphen, underscore, dot or numbers');
  t.equal(
    await err('admin.vm.Create.DispVM', 'dom0', 'work', 'name=c4 label=red'),
    'QubesValueError: template for disposable (work) needs to be an AppVM with template_for_dispvms=True',
  );
  t.equal(await ok('admin.vm.property.Set', 'c1', 'template_for_dispvms', 'True'), '');
  t.equal(await ok('admin.vm.Create.DispVM', 'dom0', 'c1', 'name=c5 label=red'), '');
  t.equal(await err('admin.vm.Remove', 'c1'), "QubesVMInUseError: Domain is in use: 'c1';  see 'journalctl -u qubesd -e' in dom0 for details");
  t.equal(
    await err('admin.vm.property.Set', 'c1', 'template_for_dispvms', 'False'),
    'QubesVMInUseError: Cannot change template_for_dispvms to False while it is the disposable template of a qube by any of these properties: default_dispvm, management_dispvm, template',
  );
  t.equal(await err('admin.vm.Remove', 'dom0'), "QubesVMInUseError: 'dom0' cannot be removed");
  for (const n of ['c5', 'c1', 'c2', 'c3']) t.equal(await ok('admin.vm.Remove', n), '', `remove ${n}`);
  t.equal(await err('admin.vm.List', 'c1'), "QubesVMNotFoundError: No such domain: 'c1'");
  t.notOk(existsSync(join(d.base, 'appvms', 'c1')), 'qube directory removed');
  t.equal(await ok('admin.vm.CurrentState', 'work'), 'mem=0 mem_static_max=0 cputime=0 power_state=Halted');
});

t.test('a qube created by another qube is tagged with its creator', async (t) => {
  t.equal(await ok('admin.vm.Create.AppVM', 'dom0', '', 'name=byvault label=red', 'vault'), '');
  t.match(await ok('admin.vm.tag.List', 'byvault'), /^created-by-vault$/m);
  t.equal(
    await err('admin.vm.tag.Remove', 'byvault', 'created-by-vault', '', 'vault'),
    'PermissionDenied: changing this tag is prohibited by qubes.ext.admin.AdminExtension',
  );
  t.equal(await ok('admin.vm.tag.Remove', 'byvault', 'created-by-vault'), '', 'dom0 may');
  t.equal(await ok('admin.vm.Remove', 'byvault'), '');
});

t.test('system info for the policy engine', async (t) => {
  const r = await call(d.internalSocket, 'internal.GetSystemInfo');
  t.ok(r.ok);
  t.match(r.content, /^\{"domains": \{"dom0": \{/, "Python's json.dumps layout");
  const info = JSON.parse(r.content) as { domains: Record<string, Record<string, unknown>> };
  t.same(info.domains['fedora-41-dvm'], {
    internal: null,
    tags: ['guivm-dom0', 'audiovm-dom0', 'created-by-dom0'],
    type: 'AppVM',
    template_for_dispvms: true,
    default_dispvm: 'fedora-41-dvm',
    icon: 'appvm-red',
    label: 'red',
    guivm: 'dom0',
    relayvm: null,
    transport_rpc: null,
    power_state: 'Halted',
    uuid: '13ca5d81-4ea9-44f6-ab64-cf618730c8a9',
  });
  t.equal(info.domains['dom0']!['icon'], 'adminvm-black');
});

/** Collect EVENT frames of one admin.Events stream while `during` runs, as "subject|event|k=v,...". */
async function events(dest: string, during: () => Promise<void>): Promise<string[]> {
  const sub = await subscribeEvents(d.socket, dest);
  try {
    await during();
    await ok('admin.vm.feature.Set', dest, 'end-marker', 'x');
    await sub.waitFor((e) => e.event === 'domain-feature-set:end-marker', 5000);
  } finally {
    sub.close();
  }
  return sub.events.map((e) => `${e.subject}|${e.event}|${e.pairs.map(([k, v]) => `${k}=${v}`).join(',')}`);
}

t.test('event streams', async (t) => {
  const all = await events('dom0', async () => {
    await ok('admin.vm.tag.Set', 'work', 'ev');
    await ok('admin.vm.Create.AppVM', 'dom0', '', 'name=ev1 label=red');
    await ok('admin.vm.Remove', 'ev1');
  });
  t.same(all.slice(0, 7), [
    '|connection-established|',
    'work|domain-tag-add:ev|tag=ev',
    '|domain-add|vm=ev1',
    'ev1|domain-tag-add:created-by-dom0|tag=created-by-dom0',
    'ev1|domain-create-on-disk|',
    '|domain-pre-delete|vm=ev1',
    '|domain-delete|vm=ev1',
  ]);
  const one = await events('vault', async () => {
    await ok('admin.vm.tag.Set', 'work', 'ev2');
    await ok('admin.vm.property.Set', 'vault', 'vcpus', '3');
  });
  t.same(
    one.slice(0, 3),
    ['|connection-established|', 'vault|property-pre-set:vcpus|name=vcpus,newvalue=3,oldvalue=2', 'vault|property-set:vcpus|name=vcpus,newvalue=3,oldvalue=2'],
    'a qube stream carries only that qube',
  );
});

t.test('refused calls leave the store as it was, also after a restart', async (t) => {
  const before = await ok('admin.vm.property.GetAll', 'sys-net');
  await err('admin.vm.property.Set', 'sys-net', 'netvm', 'sys-firewall');
  await err('admin.vm.property.Set', 'sys-net', 'provides_network', 'nope');
  await err('admin.vm.Remove', 'sys-net');
  await ok('admin.vm.property.Set', 'personal', 'memory', '555');
  await d.stop();
  d = await startFixtureDaemon(d.dir);
  t.equal(await ok('admin.vm.property.GetAll', 'sys-net'), before);
  t.equal(await ok('admin.vm.property.Get', 'personal', 'memory'), 'default=False type=int 555', 'accepted change persisted');
});

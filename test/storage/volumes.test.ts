// Volume life cycle on real files: creation per class, Info in Qubes'
// format, start/stop with commit, revisions (keep, prune, revert), resize,
// clear, removal leaving nothing behind.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, openSync, writeSync, readSync, closeSync } from 'node:fs';
import { volumeInfoText } from '../../qubesd/api/format/storage.js';
import { join } from 'node:path';
import { makeEnv, parseInfo, attrsOf } from './fake.js';

function writeAt(file: string, pos: number, text: string): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.from(text), 0, text.length, pos);
  } finally {
    closeSync(fd);
  }
}
function readAt(file: string, pos: number, len: number): string {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, pos);
    return b.toString();
  } finally {
    closeSync(fd);
  }
}
function throwsType(t: Test, fn: () => unknown, type: string, message?: string): void {
  try {
    fn();
    t.fail(`expected ${type}`);
  } catch (e) {
    t.equal((e as { type?: string }).type, type);
    if (message !== undefined) t.equal((e as Error).message, message);
  }
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(p.slice(dir.length + 1));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort();
}

t.test("new qubes get Qubes' volume layout in the default pools", async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base } = env;
  const tpl = await app.addVm('fedora', 'TemplateVM');
  const work = await app.addVm('work', 'AppVM', tpl);
  t.same(m.volumeNames(work), ['root', 'private', 'volatile', 'kernel']);
  t.same(Object.fromEntries(attrsOf(work, 'root')), {
    name: 'root',
    pool: 'varlibqubes',
    vid: 'appvms/work/root',
    revisions_to_keep: '0',
    rw: 'True',
    save_on_stop: 'False',
    snap_on_start: 'True',
    size: String(10 * 1024 ** 3),
    source: 'vm-templates/fedora/root',
  });
  t.equal(attrsOf(work, 'private').get('revisions_to_keep'), '1');
  t.equal(attrsOf(work, 'kernel').get('pool'), 'linux-kernel');
  t.ok(app.dirty.has('work'));
  // files: sparse images of every volume that is not a snapshot
  t.same(
    listFiles(base).filter((f) => f.endsWith('.img')),
    [
      'appvms/work/private.img',
      'appvms/work/volatile.img',
      'vm-templates/fedora/private.img',
      'vm-templates/fedora/root.img',
      'vm-templates/fedora/volatile.img',
    ],
    'the file driver makes every non-snapshot image, as Qubes',
  );
  t.equal(statSync(join(base, 'vm-templates/fedora/root.img')).size, 10 * 1024 ** 3);
  t.equal(statSync(join(base, 'vm-templates/fedora/root.img')).blocks, 0, 'sparse');

  const info = parseInfo(await volumeInfoText(m, work, 'root'));
  t.same(
    [...info.keys()],
    ['pool', 'vid', 'size', 'usage', 'rw', 'source', 'path', 'save_on_stop', 'snap_on_start', 'revisions_to_keep', 'ephemeral', 'is_outdated'],
  );
  t.equal(info.get('path'), join(base, 'vm-templates/fedora/root.img'), 'file driver shows the template image for a snapshot');
  t.equal(info.get('source'), 'vm-templates/fedora/root');
  const kinfo = parseInfo(await volumeInfoText(m, work, 'kernel'));
  t.equal(kinfo.get('vid'), '6.1.0');
  t.equal(kinfo.get('path'), join(base, 'vm-kernels/6.1.0/modules.img'));
  t.equal(kinfo.get('rw'), 'False');
  t.same(await m.poolVolumeIds('varlibqubes'), [
    'vm-templates/fedora/root',
    'vm-templates/fedora/private',
    'vm-templates/fedora/volatile',
    'appvms/work/root',
    'appvms/work/private',
    'appvms/work/volatile',
  ]);
  t.same(await m.poolVolumeIds('linux-kernel'), ['6.1.0']);

  m.setEphemeral(work, 'volatile', true);
  const disp = await app.addVm('disp1', 'DispVM', work);
  t.equal(attrsOf(disp, 'volatile').get('ephemeral'), 'True', "a disposable inherits its AppVM's ephemeral volatile");
  t.equal(attrsOf(disp, 'volatile').get('size'), String(12 * 1024 ** 3), 'disposable volatile: root + private size');
  t.equal(attrsOf(disp, 'private').get('source'), 'appvms/work/private', 'DispVM private snapshots its AppVM');
  t.equal(attrsOf(disp, 'root').get('source'), 'vm-templates/fedora/root', 'DispVM root snapshots the template, through the AppVM');

  await app.removeVm(disp);
  await app.removeVm(work);
  t.same(listFiles(join(base, 'appvms')), [], 'removing qubes leaves nothing behind');
  t.ok(existsSync(join(base, 'vm-templates/fedora/root.img')), 'the template image is untouched');
});

t.test('CreateInPool placement: pool= for all, pool:<volume>= per volume', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, dir } = env;
  await m.addPool('file', 'other', new Map([['dir_path', join(dir, 'other')]]));
  const tpl = await app.addVm('tpl', 'TemplateVM');
  const a = await app.addVm('a', 'AppVM', tpl, { pool: 'other' });
  t.equal(attrsOf(a, 'private').get('pool'), 'other');
  t.equal(attrsOf(a, 'volatile').get('pool'), 'other');
  t.equal(attrsOf(a, 'root').get('pool'), 'varlibqubes', 'a snapshot stays with its origin');
  t.equal(attrsOf(a, 'kernel').get('pool'), 'linux-kernel', 'read-only kernel is not moved');
  t.ok(existsSync(join(dir, 'other/appvms/a/private.img')));
  const b = await app.addVm('b', 'AppVM', tpl, { pools: { volatile: 'other' } });
  t.equal(attrsOf(b, 'volatile').get('pool'), 'other');
  t.equal(attrsOf(b, 'private').get('pool'), 'varlibqubes');
  await t.rejects(app.addVm('c', 'AppVM', tpl, { pools: { root: 'other' } }), {
    type: 'QubesException',
    message: /Snapshot volume root must be in the same pool as its origin/,
  });
  await t.rejects(app.addVm('d', 'AppVM', tpl, { pool: 'nope' }), { type: 'QubesException', message: 'Unknown storage pool nope' });
  t.notOk(existsSync(join(dir, 'base/appvms/c')), 'failed creation leaves no files');
  mkdirSync(join(dir, 'base/appvms/e'), { recursive: true });
  writeFileSync(join(dir, 'base/appvms/e/private.img'), 'orphaned data');
  await t.rejects(app.addVm('e', 'AppVM', tpl), { type: 'StoragePoolException', message: `Volume ${join(dir, 'base/appvms/e/private.img')} already exists` });
  t.equal(readFileSync(join(dir, 'base/appvms/e/private.img'), 'utf8'), 'orphaned data', 'an orphaned image is never created over');
  await t.rejects(m.removePool('other'), {
    type: 'QubesPoolInUseError',
    message: /^Storage pool is in use: <qubes\.storage\.file\.FilePool object at 0x[0-9a-f]+>$/,
  });
});

t.test('start/stop: private committed with revisions, volatile discarded, snapshot from template', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base, dir } = env;
  await m.addPool(
    'file-reflink',
    'rl',
    new Map([
      ['dir_path', join(dir, 'rl')],
      ['setup_check', 'False'],
      ['revisions_to_keep', '2'],
    ]),
  );
  app.props.set('default_pool', 'rl');
  const tpl = await app.addVm('tpl', 'TemplateVM');
  const vm = await app.addVm('vm', 'AppVM', tpl);
  const rl = join(dir, 'rl');
  // Qubes' ReflinkVolume.verify, before a start: in its words, the image named inside the pool
  const gone = join(rl, 'appvms/vm/private.img');
  renameSync(gone, gone + '.away');
  await t.rejects(m.verifyVolumes(vm), {
    type: 'StoragePoolException',
    message: "Missing image file 'appvms/vm/private.img' for volume appvms/vm/private",
  });
  renameSync(gone + '.away', gone);
  await m.verifyVolumes(vm);
  writeAt(join(rl, 'vm-templates/tpl/root.img'), 0, 'template-v1');

  const devs = await m.startVolumes(vm);
  vm.power = 'Running';
  t.same(
    devs.map((d) => d.name),
    ['root', 'private', 'volatile'],
    'kernel without modules.img is not a disk',
  );
  const priv = devs.find((d) => d.name === 'private')!.path;
  t.equal(priv, join(rl, 'appvms/vm/private-dirty.img'));
  t.equal(readAt(devs.find((d) => d.name === 'root')!.path, 0, 11), 'template-v1');
  t.equal(parseInfo(await volumeInfoText(m, vm, 'root')).get('is_outdated'), 'False');
  writeAt(priv, 0, 'first');
  await t.rejects(m.revert(vm, 'private', '1'), { type: 'QubesVMNotHaltedError', message: /(?:)/ });
  await t.rejects(m.clear(vm, 'private'), { type: 'QubesVMNotHaltedError', message: /(?:)/ });
  // the template gets a new root while the qube runs: its snapshot is outdated
  await m.startVolumes(tpl);
  tpl.power = 'Running';
  writeAt(join(rl, 'vm-templates/tpl/root-dirty.img'), 0, 'template-v2');
  tpl.power = 'Halted';
  await m.stopVolumes(tpl);
  t.equal(parseInfo(await volumeInfoText(m, vm, 'root')).get('is_outdated'), 'True');

  vm.power = 'Halted';
  await m.stopVolumes(vm);
  t.equal(readAt(join(rl, 'appvms/vm/private.img'), 0, 5), 'first', 'private committed');
  t.notOk(existsSync(join(rl, 'appvms/vm/volatile-dirty.img')), 'volatile discarded');
  t.notOk(existsSync(join(rl, 'appvms/vm/root.img')), 'snapshot discarded');
  t.same(await m.listSnapshots(vm, 'private'), ['1'], 'the empty image before the first run is a revision');

  for (const text of ['second', 'third!']) {
    await m.startVolumes(vm);
    vm.power = 'Running';
    writeAt(join(rl, 'appvms/vm/private-dirty.img'), 0, text);
    vm.power = 'Halted';
    await m.stopVolumes(vm);
  }
  t.same(await m.listSnapshots(vm, 'private'), ['2', '3'], 'old revisions pruned to revisions_to_keep=2');
  const revFiles = readdirSync(join(rl, 'appvms/vm')).filter((f) => f.startsWith('private.img.'));
  t.equal(revFiles.length, 2);
  t.match(revFiles[0]!, /^private\.img\.\d+@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.equal(readAt(join(rl, 'appvms/vm/private.img'), 0, 6), 'third!');

  await m.revert(vm, 'private', '3');
  t.equal(readAt(join(rl, 'appvms/vm/private.img'), 0, 6), 'second', 'revert restores the revision');
  t.same(await m.listSnapshots(vm, 'private'), ['2', '4'], 'and keeps the replaced data as a new revision');
  await t.rejects(m.revert(vm, 'private', '99'), /No revision/);

  await m.setRevisionsToKeep(vm, 'private', 0);
  t.equal(attrsOf(vm, 'private').get('revisions_to_keep'), '0');
  await t.rejects(m.setRevisionsToKeep(vm, 'private', -2), { type: 'QubesValueError', message: 'Invalid value for revisions_to_keep' });
  void base;
});

t.test('file driver: one revision "old", resize, clear, Set.rw/ephemeral', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base } = env;
  const sa = await app.addVm('sa', 'StandaloneVM');
  const img = join(base, 'appvms/sa/private.img');
  writeAt(img, 0, 'one');
  await m.startVolumes(sa);
  sa.power = 'Running';
  t.ok(existsSync(join(base, 'appvms/sa/private-cow.img')));
  t.ok(existsSync(join(base, 'appvms/sa/volatile.img')), 'volatile is <vid>.img, as Qubes');
  writeAt(join(base, 'appvms/sa/private-cow.img'), 0, 'two');
  sa.power = 'Halted';
  await m.stopVolumes(sa);
  t.equal(readAt(img, 0, 3), 'two');
  t.same(await m.listSnapshots(sa, 'private'), ['old']);
  t.equal(readAt(join(base, 'appvms/sa/private-cow.img.old'), 0, 3), 'one');
  t.notOk(existsSync(join(base, 'appvms/sa/volatile.img')));
  throwsType(t, () => m.volume(sa, 'private').setRevisionsToKeep(2), 'QubesNotImplementedError', 'FileVolume supports maximum 1 volume revision to keep');

  await m.resize(sa, 'private', 4 * 1024 ** 3);
  t.equal(statSync(img).size, 4 * 1024 ** 3);
  t.equal(readAt(img, 0, 3), 'two', 'growing keeps the data');
  t.equal(attrsOf(sa, 'private').get('size'), String(4 * 1024 ** 3));
  t.equal(statSync(join(base, 'appvms/sa/private-cow.img.old')).size, 2 * 1024 ** 3, 'the revision keeps its own size');
  await t.rejects(m.resize(sa, 'kernel', 1), { type: 'QubesNotImplementedError', message: 'Volume LinuxModules has resize() not implemented' });

  await m.clear(sa, 'private');
  t.equal(statSync(img).size, 4 * 1024 ** 3);
  t.equal(readAt(img, 0, 3), '\0\0\0', 'cleared');
  await t.rejects(m.clear(sa, 'volatile'), { type: 'StoragePoolException', message: 'Can not import into save_on_stop=False volume appvms/sa/volatile' });

  throwsType(t, () => m.setEphemeral(sa, 'private', true), 'QubesValueError');
  m.setEphemeral(sa, 'volatile', true);
  t.equal(attrsOf(sa, 'volatile').get('ephemeral'), 'True');
  t.equal(parseInfo(await volumeInfoText(m, sa, 'volatile')).get('ephemeral'), 'True');
  throwsType(t, () => m.setRw(sa, 'kernel', true), 'QubesValueError', 'LinuxModules supports only read-only volumes');
  sa.power = 'Running';
  throwsType(t, () => m.setRw(sa, 'private', false), 'QubesVMNotHaltedError');
  sa.power = 'Halted';
  m.setRw(sa, 'private', false);
  t.equal(parseInfo(await volumeInfoText(m, sa, 'private')).get('rw'), 'False');
  await t.rejects(m.resize(sa, 'private', 1), { type: 'StoragePoolException', message: 'Can not resize readonly volume appvms/sa/private' });
});

t.test('revert on the file driver swaps in the "old" revision', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base } = env;
  const tpl = await app.addVm('tpl', 'TemplateVM');
  const img = join(base, 'vm-templates/tpl/root.img');
  writeAt(img, 0, 'AAAA');
  await m.startVolumes(tpl);
  tpl.power = 'Running';
  writeAt(join(base, 'vm-templates/tpl/root-cow.img'), 0, 'BBBB');
  tpl.power = 'Halted';
  await m.stopVolumes(tpl);
  await m.revert(tpl, 'root', 'old');
  t.equal(readAt(img, 0, 4), 'AAAA');
  t.equal(readAt(join(base, 'vm-templates/tpl/root-cow.img.old'), 0, 4), 'BBBB', 'the replaced data is the new "old"');
});

t.test('names that would escape the pool directory are refused', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, dir } = env;
  const tpl = await app.addVm('tpl', 'TemplateVM');
  writeFileSync(join(dir, 'victim.img'), 'keep me');
  tpl.volumeConfig[1] = {
    attrs: [
      ['name', 'private'],
      ['pool', 'varlibqubes'],
      ['vid', '../victim'],
      ['revisions_to_keep', '1'],
      ['rw', 'True'],
      ['save_on_stop', 'True'],
      ['snap_on_start', 'False'],
      ['size', '100'],
    ],
  };
  await t.rejects(volumeInfoText(m, tpl, 'private'), { type: 'StoragePoolException', message: /Invalid volume id/ });
  await t.rejects(m.clear(tpl, 'private'), { type: 'StoragePoolException', message: /(?:)/ });
  await t.rejects(m.resize(tpl, 'private', 5), { type: 'StoragePoolException', message: /(?:)/ });
  await app.removeVm(tpl);
  t.equal(readFileSync(join(dir, 'victim.img'), 'utf8'), 'keep me');
  const other = await app.addVm('other', 'TemplateVM');
  other.volumeConfig[0] = {
    attrs: [
      ['name', 'root'],
      ['pool', 'varlibqubes'],
      ['vid', 'vm-templates/tpl2/../../../x'],
      ['rw', 'True'],
      ['save_on_stop', 'True'],
      ['snap_on_start', 'False'],
    ],
  };
  await t.rejects(m.startVolumes(other), { type: 'StoragePoolException', message: /Invalid volume id/ });
});

t.test('a volume shared by mistake is neither created over nor removed', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base } = env;
  const a = await app.addVm('a', 'StandaloneVM');
  writeAt(join(base, 'appvms/a/private.img'), 0, 'mine');
  const b = await app.addVm('b', 'StandaloneVM');
  b.volumeConfig[1] = { attrs: [...a.volumeConfig[1]!.attrs] }; // b's private points at a's
  await app.removeVm(b);
  t.equal(readAt(join(base, 'appvms/a/private.img'), 0, 4), 'mine');
  const c = app.vms.get('a')!;
  t.ok(c);
  void m;
});

// The storage calls through a real qubesd on its real sockets: a qube
// created in a new pool, data imported the way Qubes' Import script does it
// (ImportBegin on the internal socket, dd into the given path, ImportEnd),
// cloned, persisted across a restart, and removed without leftovers.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { ROOT, SHARED, call, startDaemon, type Daemon } from '../helpers/qubesd.js';

/** One call on the daemon's socket for it (internal.* on the internal one); a refusal fails the test. */
function okOn(t: Test, daemon: () => Daemon) {
  return async (method: string, dest: string, arg = '', payload = '', source = 'dom0'): Promise<string> => {
    const d = daemon();
    const r = await call(method.startsWith('internal.') ? d.internalSocket : d.socket, method, dest, arg, payload, source);
    if (!r.ok) t.fail(`${method} ${arg}: ${r.type}: ${r.message}`);
    return r.content;
  };
}

/** A daemon on a fresh copy of the fixture that a test may restart on the same store; removed at the end. */
async function restartable(t: Test): Promise<{ ok: ReturnType<typeof okOn>; restart: () => Promise<void>; daemon: () => Daemon }> {
  let d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    rmSync(d.dir, { recursive: true, force: true });
  });
  return {
    ok: okOn(t, () => d),
    restart: async () => {
      await d.stop();
      d = await startDaemon({ dir: d.dir });
    },
    daemon: () => d,
  };
}

t.test('storage over the sockets', async (t) => {
  const d = await startDaemon();
  const running = [d];
  t.teardown(async () => {
    for (const x of running) await x.stop();
    rmSync(d.dir, { recursive: true, force: true });
  });
  const ok = okOn(t, () => d);
  const poolDir = join(d.dir, 'pool2');
  await ok('admin.pool.Add', 'dom0', 'file', `name=pool2\ndir_path=${poolDir}\nrevisions_to_keep=1`);
  t.match(await ok('admin.pool.List', 'dom0'), /^varlibqubes\nlinux-kernel\npool2\n$/);
  await ok('admin.vm.CreateInPool.StandaloneVM', 'dom0', '', 'name=stor label=red pool=pool2');
  t.equal(await ok('admin.vm.volume.List', 'stor'), 'root\nprivate\nvolatile\nkernel\n');
  t.match(
    await ok('admin.vm.volume.Info', 'stor', 'private'),
    new RegExp(`^pool=pool2\nvid=appvms/stor/private\nsize=2147483648\n[^]*path=${poolDir}/appvms/stor/private.img\n`),
  );

  // the import script's protocol, with dd as the writer
  const data = join(d.dir, 'data.bin');
  writeFileSync(data, Buffer.concat([Buffer.from('IMPORTED'), Buffer.alloc(65536 - 8, 1)]));
  const begin = await ok('internal.vm.volume.ImportBegin', 'stor', 'private', '65536', 'dom0');
  const [size, path] = begin.split(' ');
  t.equal(size, '65536');
  t.equal(path, `${poolDir}/appvms/stor/private-import.img`);
  execFileSync('dd', [
    `if=${data}`,
    `of=${path}`,
    'bs=128K',
    'count=65536',
    'iflag=count_bytes,fullblock',
    'conv=sparse,notrunc,nocreat,fdatasync',
    'status=none',
  ]);
  await ok('internal.vm.volume.ImportEnd', 'stor', 'private', 'ok');
  t.match(await ok('admin.vm.volume.Info', 'stor', 'private'), /size=65536\n/);

  // a failed import leaves it alone
  await ok('internal.vm.volume.ImportBegin', 'stor', 'private', '100');
  const fail = await call(d.internalSocket, 'internal.vm.volume.ImportEnd', 'stor', 'private', 'fail\nnot enough data (copied 1 bytes, expected 100 bytes)');
  t.same([fail.type, fail.message], ['QubesException', 'Data import failed: not enough data (copied 1 bytes, expected 100 bytes)']);
  t.match(await ok('admin.vm.volume.Info', 'stor', 'private'), /size=65536\n/);

  // clone into a new qube in the default pool
  await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=stor2 label=red');
  const token = await ok('admin.vm.volume.CloneFrom', 'stor', 'private');
  await ok('admin.vm.volume.CloneTo', 'stor2', 'private', token);
  t.match(await ok('admin.vm.volume.Info', 'stor2', 'private'), new RegExp(`size=65536\n[^]*path=${d.base}/appvms/stor2/private.img\n`));
  const again = await call(d.socket, 'admin.vm.volume.CloneTo', 'stor2', 'private', token);
  t.equal(again.type, 'QubesVolumeCopyTokenNotFoundError');

  const inUse = await call(d.socket, 'admin.pool.Remove', 'dom0', 'pool2');
  t.equal(inUse.type, 'QubesPoolInUseError');

  // restart on the same store: pools and volume config survive
  await d.stop();
  const d2 = await startDaemon({ dir: d.dir });
  running.push(d2);
  const r = await call(d2.socket, 'admin.pool.Info', 'dom0', 'pool2');
  t.match(r.content, new RegExp(`^dir_path=${poolDir}\ndriver=file\nephemeral_volatile=False\nname=pool2\nrevisions_to_keep=1\n`));
  t.match((await call(d2.socket, 'admin.vm.volume.Info', 'stor2', 'private')).content, /size=65536\n/);
  t.equal((await call(d2.socket, 'admin.vm.Remove', 'stor')).ok, true);
  t.same(readdirSync(join(poolDir, 'appvms')), [], 'removed qube left nothing in the pool');
  t.equal((await call(d2.socket, 'admin.pool.Remove', 'dom0', 'pool2')).ok, true);
  t.notOk(existsSync(join(d.base, 'appvms/stor')));
});

// The real Qubes client tools, when a qubesadmin checkout is at hand.
const CLIENT = process.env.QUBES_CORE_ADMIN_CLIENT ?? join(ROOT, '..', 'ref', 'qubes-core-admin-client');

t.test(
  'qvm-pool and qvm-volume (the real Qubes tools) against our socket',
  { skip: existsSync(join(CLIENT, 'qubesadmin')) ? false : `no qubesadmin checkout at ${CLIENT}` },
  async (t) => {
    const d = await startDaemon();
    t.teardown(async () => {
      await d.stop();
      rmSync(d.dir, { recursive: true, force: true });
    });
    const qvm = (...args: string[]): string =>
      execFileSync('python3', [join(SHARED, 'conformance/tools/qvm.py'), ...args], {
        env: { ...process.env, QUBES_CORE_ADMIN_CLIENT: CLIENT, QUBESD_SOCKET: d.socket },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    t.match(qvm('qvm-pool'), /^NAME +DRIVER\nvarlibqubes +file\nlinux-kernel +linux-kernel\n$/);
    t.match(qvm('qvm-pool', 'info', 'varlibqubes'), new RegExp(`dir_path +${d.base}\n`));
    t.match(qvm('qvm-pool', 'drivers'), /file-reflink +revisions_to_keep, dir_path, setup_check, ephemeral_volatile/);
    qvm('qvm-pool', 'add', 'extra', 'file', '-o', `dir_path=${join(d.dir, 'extra')}`);
    qvm('qvm-pool', 'set', 'extra', '-o', 'revisions_to_keep=0');
    t.match(qvm('qvm-pool', 'info', 'extra'), /revisions_to_keep +0\n/);
    qvm('qvm-create', '-t', 'fedora-41', '-l', 'red', '-P', 'extra', 'newvm');
    t.ok(existsSync(join(d.dir, 'extra/appvms/newvm/private.img')));
    qvm('qvm-volume', 'resize', 'newvm:private', '3G');
    t.match(qvm('qvm-volume', 'info', 'newvm:private'), /pool +extra\n[^]*size +3000000000\n/);
    t.throws(() => qvm('qvm-volume', 'resize', 'newvm:private', '1G'), /Refusing to shrink/, 'the client guards shrinking');
    qvm('qvm-volume', 'config', 'newvm:private', 'rw', 'false');
    t.match(qvm('qvm-volume', 'info', 'newvm:private', 'rw'), /^False\n$/);
    t.throws(() => qvm('qvm-pool', 'remove', 'extra'), /Storage pool is in use/);
    qvm('qvm-remove', '-f', 'newvm');
    qvm('qvm-pool', 'remove', 'extra');
    t.notOk(existsSync(join(d.dir, 'extra/appvms/newvm')), 'nothing left of the removed qube');
    t.match(qvm('qvm-volume', 'list', 'work'), /varlibqubes:appvms\/work\/private +work +private +No/);
  },
);

// Qubes' file pools list a qube's volumes from when the qube is loaded or
// created: qubes.xml's order (names, as Qubes writes it), then creation
// order; a removed qube's volumes leave, and come back last if it is made again.
t.test('admin.pool.volume.List: loaded qubes, then created ones in creation order', async (t) => {
  const { ok, restart } = await restartable(t);
  const qubes = (list: string) => [
    ...new Set(
      list
        .split('\n')
        .filter(Boolean)
        .map((v) => v.split('/')[1]),
    ),
  ];
  const loaded = ['debian-12', 'fedora-41', 'fedora-41-dvm', 'personal', 'standalone', 'sys-firewall', 'sys-net', 'untrusted', 'vault', 'win-hvm', 'work'];
  t.same(qubes(await ok('admin.pool.volume.List', 'dom0', 'varlibqubes')), loaded);
  await ok('admin.vm.Create.AppVM', 'dom0', 'fedora-41', 'name=zed label=red');
  await ok('admin.vm.Create.AppVM', 'dom0', 'fedora-41', 'name=aaa label=red');
  await ok('admin.vm.Remove', 'work');
  await ok('admin.vm.Create.AppVM', 'dom0', 'fedora-41', 'name=work label=red');
  const after = await ok('admin.pool.volume.List', 'dom0', 'varlibqubes');
  t.same(qubes(after), [...loaded.filter((n) => n !== 'work'), 'zed', 'aaa', 'work']);
  t.match(
    after,
    /appvms\/vault\/volatile\nappvms\/win-hvm\/root\nappvms\/win-hvm\/private\nappvms\/win-hvm\/volatile\nappvms\/zed\/root\nappvms\/zed\/private\nappvms\/zed\/volatile\nappvms\/aaa\/root\n/,
  );
  // after a restart, as Qubes: qubes.xml is written in name order
  await restart();
  t.same(qubes(await ok('admin.pool.volume.List', 'dom0', 'varlibqubes')), ['aaa', ...loaded.filter((n) => n !== 'work'), 'work', 'zed']);
});

t.test('revisions_to_keep set on a file volume that is not save_on_stop: kept until the next start, as Qubes', async (t) => {
  const { ok, restart } = await restartable(t);
  const rtk = async (qube: string, volume: string) => /\nrevisions_to_keep=(-?\d+)\n/.exec(await ok('admin.vm.volume.Info', qube, volume))?.[1];
  // the file pool's init_volume gives 0 to a volume that is not save_on_stop (sys-net's root is snap_on_start)
  t.equal(await rtk('sys-net', 'root'), '0');
  await ok('admin.vm.volume.Set.revisions_to_keep', 'sys-net', 'root', '1');
  t.equal(await rtk('sys-net', 'root'), '1', 'the value given stays on the volume');
  await ok('admin.vm.volume.Set.revisions_to_keep', 'work', 'volatile', '-1');
  t.equal(await rtk('work', 'volatile'), '-1');
  t.equal(await rtk('work', 'private'), '1', 'other volumes keep theirs');
  await ok('admin.vm.volume.Set.revisions_to_keep', 'untrusted', 'root', '1');
  await ok('admin.vm.property.Set', 'untrusted', 'template', 'debian-12');
  t.equal(await rtk('untrusted', 'root'), '0', "a new template initialises the qube's snapshot volumes again");
  await restart();
  t.equal(await rtk('sys-net', 'root'), '0', 'loaded again: 0, as init_volume gives it');
  t.equal(await rtk('work', 'volatile'), '0');
});

// Qubes' template_changed_update_storage: a qube given another template
// snapshots the new one from its next start (its root, and its disposables'
// root, are re-pointed), and that survives a restart.
t.test('a new template is what the qube and its disposables start from', async (t) => {
  const { ok, restart, daemon } = await restartable(t);
  const d = daemon();
  for (const [name, mark] of [
    ['tpla', 'TEMPLATE-A'],
    ['tplb', 'TEMPLATE-B'],
  ]) {
    await ok('admin.vm.Create.TemplateVM', 'dom0', '', `name=${name} label=black`);
    // at the start of the (sparse, 10 GiB) image, which keeps its size
    const fd = openSync(join(d.base, 'vm-templates', name!, 'root.img'), 'r+');
    writeSync(fd, mark!, 0);
    closeSync(fd);
  }
  await ok('admin.vm.Create.AppVM', 'dom0', 'tpla', 'name=child label=red');
  await ok('admin.vm.property.Set', 'child', 'netvm', '');
  await ok('admin.vm.property.Set', 'child', 'template_for_dispvms', 'True');
  await ok('admin.vm.Create.DispVM', 'dom0', 'child', 'name=disp9 label=red');
  await ok('admin.vm.volume.Set.rw', 'child', 'root', 'False');
  t.match(await ok('admin.vm.volume.Info', 'child', 'root'), /\nrw=False\nsource=vm-templates\/tpla\/root\n/);

  await ok('admin.vm.property.Set', 'child', 'template', 'tplb');
  const expected = `pool=varlibqubes\nvid=appvms/child/root\nsize=10737418240\nusage=0\nrw=True\nsource=vm-templates/tplb/root\npath=${d.base}/vm-templates/tplb/root.img\n`;
  t.equal((await ok('admin.vm.volume.Info', 'child', 'root')).slice(0, expected.length), expected, 'the default configuration again, from the new template');
  t.match(await ok('admin.vm.volume.Info', 'disp9', 'root'), /\nsource=vm-templates\/tplb\/root\n/, "the disposable's root follows");
  t.match(await ok('admin.vm.volume.Info', 'disp9', 'private'), /\nsource=appvms\/child\/private\n/);

  await ok('admin.vm.Start', 'child');
  const head = Buffer.alloc(10);
  const cow = openSync(join(d.base, 'appvms', 'child', 'root-cow.img'), 'r');
  readSync(cow, head, 0, 10, 0);
  closeSync(cow);
  t.equal(head.toString(), 'TEMPLATE-B', 'started from the new template');
  await ok('admin.vm.Kill', 'child');

  await restart();
  const r = await call(daemon().socket, 'admin.vm.volume.Info', 'child', 'root');
  t.match(r.content, /\nsource=vm-templates\/tplb\/root\n/, 'kept across a restart');
});

// Qubes writes a linux-kernel volume's vid as the qube's kernel when it
// saves; the value is read by neither daemon, but the file says the same.
t.test("a kernel volume's stored vid is the qube's kernel in effect", async (t) => {
  const { ok, restart, daemon } = await restartable(t);
  const d = daemon();
  const kernels = join(d.base, 'vm-kernels');
  cpSync(join(kernels, '6.6.33-1.fc37'), join(kernels, '6.7.0-1'), { recursive: true });
  /** The stored vid of each qube's kernel volume, as a clean stop left it. */
  const stored = async (): Promise<Record<string, string>> => {
    await restart();
    const out: Record<string, string> = {};
    for (const dom of readFileSync(d.store, 'utf8').split('<domain ').slice(1)) {
      const name = /<property name="name">([^<]+)<\/property>/.exec(dom)?.[1];
      const vid = /<volume name="kernel" pool="linux-kernel" vid="([^"]*)"/.exec(dom)?.[1];
      if (name && vid !== undefined) out[name] = vid;
    }
    return out;
  };
  await ok('admin.vm.property.Set', 'work', 'kernel', '');
  let vids = await stored();
  t.equal(vids.work, '', 'a qube without a kernel');
  t.equal(vids.personal, '6.6.33-1.fc37');
  await ok('admin.property.Set', 'dom0', 'default_kernel', '6.7.0-1');
  vids = await stored();
  t.same(
    [vids.personal, vids['fedora-41'], vids.vault, vids.work, vids['win-hvm']],
    ['6.7.0-1', '6.7.0-1', '6.7.0-1', '', ''],
    'the default kernel, where it is in effect',
  );
  // vault takes its kernel from its template, fedora-41; personal from debian-12
  await ok('admin.vm.property.Set', 'fedora-41', 'kernel', '6.6.33-1.fc37');
  vids = await stored();
  t.same([vids['fedora-41'], vids.vault, vids.personal], ['6.6.33-1.fc37', '6.6.33-1.fc37', '6.7.0-1']);
  await ok('admin.vm.property.Reset', 'work', 'kernel');
  t.equal((await stored()).work, '6.6.33-1.fc37', "back to its template's");
  t.match(await ok('admin.vm.volume.Info', 'work', 'kernel'), /\nvid=6\.6\.33-1\.fc37\n/);
  await ok('admin.vm.property.Set', 'vault', 'template', 'debian-12');
  t.equal((await stored()).vault, '6.7.0-1', 'another template, its kernel');
});

// Qubes' FileVolume.resize opens the image for appending and truncates it,
// so a halted qube's volatile image (removed at its last stop) is made
t.test('resizing the volatile volume of a halted qube makes its image at that size', async (t) => {
  const { ok, daemon } = await restartable(t);
  const d = daemon();
  const image = join(d.base, 'appvms', 'work', 'volatile.img');
  mkdirSync(join(d.base, 'appvms', 'work'), { recursive: true });
  t.notOk(existsSync(image));
  await ok('admin.vm.volume.Resize', 'work', 'volatile', String(2 ** 30));
  t.equal(statSync(image).size, 2 ** 30);
  t.match(await ok('admin.vm.volume.Info', 'work', 'volatile'), /\nsize=1073741824\n/);
  await ok('admin.vm.volume.Resize', 'work', 'volatile', '0');
  t.equal(statSync(image).size, 0, 'and truncated, as the file is');
  t.match(await ok('admin.vm.volume.Info', 'work', 'volatile'), /\nsize=0\n/);
});

// The Admin API handlers of the storage family: replies and errors in
// Qubes' format and wording, called as the dispatcher calls them.
import t from 'tap';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Call, HandlerResult } from '../../qubesd/api/call.js';
import { handlers as pool } from '../../qubesd/api/handlers/pool.js';
import { handlers as volume } from '../../qubesd/api/handlers/volume.js';
import { makeEnv, parseInfo, type FakeApp, type FakeVm } from './fake.js';

const all = { ...pool, ...volume };

function call(app: FakeApp, method: string, dest: FakeVm, arg = '', payload: string | Buffer = ''): Promise<HandlerResult> {
  const c = {
    app,
    services: { storage: app.storage },
    method,
    dest,
    source: app.getVm('dom0'),
    arg,
    payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
  } as unknown as Call;
  return Promise.resolve().then(() => all[method]!(c));
}

async function err(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    return `${(e as { type?: string }).type}: ${(e as Error).message}`;
  }
}

t.test('admin.pool.* replies', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, base, dir } = env;
  const dom0 = app.getVm('dom0')!;
  t.equal(await call(app, 'admin.pool.List', dom0), 'varlibqubes\nlinux-kernel\n');
  t.equal(
    await call(app, 'admin.pool.ListDrivers', dom0),
    'callback conf_id\nfile revisions_to_keep dir_path ephemeral_volatile\nfile-reflink revisions_to_keep dir_path setup_check ephemeral_volatile\n' +
      'linux-kernel dir_path\nlvm_thin revisions_to_keep volume_group thin_pool ephemeral_volatile\nzfs revisions_to_keep container ephemeral_volatile snap_on_start_forensics\n',
  );
  t.match(
    await call(app, 'admin.pool.Info', dom0, 'varlibqubes'),
    new RegExp(`^dir_path=${base}\ndriver=file\nephemeral_volatile=False\nname=varlibqubes\nrevisions_to_keep=1\nsize=\\d+\nusage=\\d+\n$`),
  );
  t.equal(
    await call(app, 'admin.pool.Info', dom0, 'linux-kernel'),
    `dir_path=${base}/vm-kernels\ndriver=linux-kernel\nname=linux-kernel\nincluded_in=varlibqubes\n`,
  );
  t.match(await call(app, 'admin.pool.UsageDetails', dom0, 'varlibqubes'), /^data_size=\d+\ndata_usage=\d+\n$/);
  t.equal(await call(app, 'admin.pool.UsageDetails', dom0, 'linux-kernel'), '');
  for (const m of ['admin.pool.Info', 'admin.pool.UsageDetails', 'admin.pool.volume.List', 'admin.pool.Remove']) {
    t.equal(await err(call(app, m, dom0, 'nosuchpool')), "PermissionDenied: Argument not in 'pools'", m);
  }

  const add = (driver: string, payload: string) => err(call(app, 'admin.pool.Add', dom0, driver, payload));
  t.equal(await add('nodriver', 'name=x'), "PermissionDenied: Argument not in 'available drivers'");
  t.equal(await add('file', 'name=x\ndir_path'), 'ProtocolError: Options must be separated by equal sign');
  t.equal(await add('file', 'name=x\nname=y'), 'ProtocolError: Options must be unique');
  t.equal(await add('file', 'dir_path=/tmp'), 'ProtocolError: Pool configuration must contain key: name');
  t.equal(
    await add('file', 'name=a/b\ndir_path=/tmp'),
    'ProtocolError: Pool name must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.',
  );
  t.equal(await add('file', 'name=x\ndir_path=/tmp\nbogus=1'), 'ProtocolError: Unexpected driver options found');
  t.equal(await add('file', 'name=x'), 'QubesException: missing required driver options: dir_path');
  t.equal(await add('file', `name=varlibqubes\ndir_path=${dir}/p`), "QubesPoolInUseError: Storage pool is in use: 'varlibqubes'");
  t.equal(await add('file', 'name=x\ndir_path=relative/dir'), 'QubesValueError: Invalid dir_path "relative/dir": must be an absolute path');
  t.equal(await add('file', `name=x\ndir_path=${dir}/p\nrevisions_to_keep=2`), 'QubesNotImplementedError: FilePool supports maximum 1 volume revision to keep');
  t.equal(
    await add('file', `name=x\ndir_path=${dir}/p\nrevisions_to_keep=lots`),
    'QubesValueError: Invalid value for revisions_to_keep: "lots" (expected an integer)',
  );
  t.equal(
    await add('file', `name=x\ndir_path=${dir}/p\nephemeral_volatile=maybe`),
    'QubesValueError: Invalid value for ephemeral_volatile: "maybe" (expected True or False)',
  );
  t.equal(
    await add('file', `name=x\ndir_path=${dir}/no/such/parent`),
    `StoragePoolException: Cannot create pool directory ${dir}/no/such/parent: its parent directory does not exist`,
  );
  t.equal(
    await add('lvm_thin', 'name=x\nvolume_group=qubes_dom0\nthin_pool=pool00'),
    "StoragePoolException: Storage driver 'lvm_thin' is not supported by this qubesd (supported: file, file-reflink, linux-kernel)",
  );
  t.equal(await add('file', 'name=x\ndir_path=/tmp\xe9'), 'ProtocolError: Pool parameters contains non-ASCII characters');
  t.equal(app.pools.length, 2, 'nothing added by refused calls');
  t.notOk(existsSync(join(dir, 'p')));

  t.equal(await call(app, 'admin.pool.Add', dom0, 'file-reflink', `name=new\ndir_path=${dir}/new\nsetup_check=False\nrevisions_to_keep=3`), undefined);
  t.ok(statSync(join(dir, 'new/appvms')).isDirectory());
  t.same(app.pools[2], {
    attrs: [
      ['name', 'new'],
      ['dir_path', `${dir}/new`],
      ['driver', 'file-reflink'],
      ['revisions_to_keep', '3'],
      ['ephemeral_volatile', 'False'],
    ],
  });
  t.ok(app.globalsDirty > 0);
  t.equal(await err(call(app, 'admin.pool.Set.revisions_to_keep', dom0, 'new', '-2')), "ProtocolError: Value can't be lower than -1");
  t.equal(await err(call(app, 'admin.pool.Set.revisions_to_keep', dom0, 'new', '01')), 'ProtocolError: Revisions to keep contains spurious leading zeros');
  await call(app, 'admin.pool.Set.revisions_to_keep', dom0, 'new', '5');
  t.equal(await err(call(app, 'admin.pool.Set.ephemeral_volatile', dom0, 'new', 'perhaps')), 'ProtocolError: Payload is not boolean ASCII');
  await call(app, 'admin.pool.Set.ephemeral_volatile', dom0, 'new', 'true');
  t.match(await call(app, 'admin.pool.Info', dom0, 'new'), /ephemeral_volatile=True\n[^]*revisions_to_keep=5\n/);
  app.props.set('default_pool_private', 'new');
  t.equal(await err(call(app, 'admin.pool.Remove', dom0, 'new')), 'QubesPoolInUseError: Storage pool is in use: set as default_pool_private');
  app.props.delete('default_pool_private');
  await call(app, 'admin.pool.Remove', dom0, 'new');
  t.equal(await call(app, 'admin.pool.List', dom0), 'varlibqubes\nlinux-kernel\n');
});

t.test('admin.vm.volume.* replies', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, base } = env;
  const tpl = await app.addVm('tpl', 'TemplateVM');
  const work = await app.addVm('work', 'AppVM', tpl);
  const dom0 = app.getVm('dom0')!;
  t.equal(await call(app, 'admin.vm.volume.List', work), 'root\nprivate\nvolatile\nkernel\n');
  t.equal(await call(app, 'admin.vm.volume.List', dom0), '');
  t.equal(await err(call(app, 'admin.vm.volume.Info', work, 'nope')), "PermissionDenied: Argument not in 'work volumes'");
  const info = parseInfo(String(await call(app, 'admin.vm.volume.Info', work, 'private')));
  t.same(Object.fromEntries(info), {
    pool: 'varlibqubes',
    vid: 'appvms/work/private',
    size: String(2 * 1024 ** 3),
    usage: '0',
    rw: 'True',
    source: '',
    path: join(base, 'appvms/work/private.img'),
    save_on_stop: 'True',
    snap_on_start: 'False',
    revisions_to_keep: '1',
    ephemeral: 'False',
    is_outdated: 'False',
  });
  t.equal(await call(app, 'admin.vm.volume.ListSnapshots', work, 'private'), '');

  t.equal(
    await err(call(app, 'admin.vm.volume.Revert', work, 'private', 'a/b')),
    'ProtocolError: Revision name must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.',
  );
  t.equal(await err(call(app, 'admin.vm.volume.Revert', work, 'private', 'old')), 'QubesVolumeRevisionNotFoundError: ');

  t.equal(await err(call(app, 'admin.vm.volume.Resize', work, 'private', 'big')), 'ProtocolError: Volume size contains non ASCII digits');
  t.equal(
    await err(call(app, 'admin.vm.volume.Resize', work, 'private', '12345678901234567890')),
    'ProtocolError: Volume size is bigger than 19 decimal digits',
  );
  t.equal(
    await err(call(app, 'admin.vm.volume.Resize', work, 'root', '1000')),
    'StoragePoolException: Cannot resize volume based on a template - resizethe template instead',
  );
  await call(app, 'admin.vm.volume.Resize', work, 'private', ' 3221225472\n');
  t.equal(statSync(join(base, 'appvms/work/private.img')).size, 3221225472);

  t.equal(await err(call(app, 'admin.vm.volume.Set.revisions_to_keep', work, 'private', '-3')), 'QubesValueError: Invalid value for revisions_to_keep');
  t.equal(await err(call(app, 'admin.vm.volume.Set.revisions_to_keep', work, 'private', '1\n')), 'ProtocolError: Revisions to keep contains non ASCII digits');
  t.equal(await err(call(app, 'admin.vm.volume.Set.rw', work, 'private', 'yes please')), 'ProtocolError: Payload is not boolean ASCII');
  t.equal(
    await err(call(app, 'admin.vm.volume.Set.ephemeral', work, 'kernel', 'False')),
    'QubesValueError: LinuxModules does not support setting ephemeral value',
  );

  const token = String(await call(app, 'admin.vm.volume.CloneFrom', tpl, 'private'));
  t.match(token, /^[A-Za-z0-9]{32}$/);
  t.equal(
    await err(call(app, 'admin.vm.volume.CloneTo', work, 'private', 'wrong')),
    "QubesVolumeCopyTokenNotFoundError: 'Token to clone volume of qube was not found'",
  );
  t.equal(await err(call(app, 'admin.vm.volume.CloneTo', work, 'private', Buffer.from([0xff]))), 'ProtocolError: Token contains non-ASCII characters');
  t.equal(await call(app, 'admin.vm.volume.CloneTo', work, 'private', token + '\n'), undefined);
  t.equal(statSync(join(base, 'appvms/work/private.img')).size, 2 * 1024 ** 3, 'the clone has the source size');
  t.equal(
    await err(call(app, 'admin.vm.volume.CloneTo', work, 'private', token)),
    "QubesVolumeCopyTokenNotFoundError: 'Token to clone volume of qube was not found'",
    'one-time token',
  );
  const t2 = String(await call(app, 'admin.vm.volume.CloneFrom', work, 'root'));
  t.equal(
    await err(call(app, 'admin.vm.volume.CloneTo', tpl, 'private', t2)),
    'StoragePoolException: Can not import snapshot volume appvms/work/root in to pool vm-templates/tpl/private ',
  );

  t.equal(await err(call(app, 'internal.vm.volume.ImportBegin', work, 'nope')), 'ProtocolError: Argument not in work volumes');
  work.power = 'Running';
  t.equal(
    await err(call(app, 'internal.vm.volume.ImportBegin', work, 'private', 'x')),
    "QubesVMNotHaltedError: Domain is not powered off: 'work'",
    'halted check comes before the size check',
  );
  work.power = 'Halted';
  t.equal(await err(call(app, 'internal.vm.volume.ImportBegin', work, 'private', 'x')), 'ProtocolError: Size of new data contains non ASCII digits');
  t.equal(await call(app, 'internal.vm.volume.ImportBegin', work, 'private', '4096'), `4096 ${join(base, 'appvms/work/private-import.img')}`);
  t.equal(
    await err(call(app, 'internal.vm.volume.ImportEnd', work, 'private', 'fail\nnot enough data (copied 1 bytes, expected 4096 bytes)')),
    'QubesException: Data import failed: not enough data (copied 1 bytes, expected 4096 bytes)',
  );
  await call(app, 'internal.vm.volume.ImportBegin', work, 'private', '10');
  t.equal(
    await err(call(app, 'internal.vm.volume.ImportEnd', work, 'private', Buffer.from('fail\nbad \xff byte', 'latin1'))),
    'QubesException: Data import failed: bad ? byte',
    'a non-ASCII failure message still ends the import',
  );
  t.equal(await call(app, 'internal.vm.volume.ImportBegin', work, 'private'), `${2 * 1024 ** 3} ${join(base, 'appvms/work/private-import.img')}`);
  t.equal(await call(app, 'internal.vm.volume.ImportEnd', work, 'private', 'ok'), undefined);
  t.equal(await call(app, 'admin.vm.volume.Clear', work, 'private'), undefined);
});

// Failure paths on real small filesystems: a full disk during import, clone
// and start leaves every volume as it was and says why; reflink copies where
// the filesystem can, plain copies where it cannot, and says which.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, readSync, closeSync, statSync, writeSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { open } from 'node:fs/promises';
import { importFromStream } from '../../qubesd/storage/index.js';
import { supportsReflink } from '../../qubesd/storage/fileops.js';
import { makeEnv, attrsOf } from './fake.js';
import { mountTmpfs, mountReflinkFs } from './mounts.js';

const MiB = 1024 * 1024;
const head = (file: string, n: number): string => {
  const fd = openSync(file, 'r');
  const b = Buffer.alloc(n);
  readSync(fd, b, 0, n, 0);
  closeSync(fd);
  return b.toString();
};
const mark = (file: string, text: string): void => {
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from(text), 0, text.length, 0);
  closeSync(fd);
};
function* randomChunks(total: number): Generator<Buffer> {
  for (let p = 0; p < total; p += MiB) yield randomBytes(Math.min(MiB, total - p));
}

t.test('disk full (8 MiB tmpfs): import, clone and start fail cleanly, data intact', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const mnt = mountTmpfs(env.dir, 'small', '8M');
  if (typeof mnt === 'string') {
    t.comment(`skipped: ${mnt}`);
    return;
  }
  t.teardown(mnt.unmount);
  t.comment(`disk full simulated with a real ${mnt.kind}`);
  const { app, m } = env;
  await m.addPool('file', 'small', new Map([['dir_path', join(mnt.dir, 'pool')]]));
  const vm = await app.addVm('tiny', 'StandaloneVM', null, { pool: 'small' });
  const priv = join(mnt.dir, 'pool/appvms/tiny/private.img');
  t.equal(statSync(priv).size, 2 * 1024 * MiB, 'a 2 GiB sparse image fits on 8 MiB');
  await importFromStream(m, vm, 'private', Readable.from(randomChunks(5 * MiB)), 5 * MiB);
  mark(priv, 'KEEP-ME');

  await t.rejects(importFromStream(m, vm, 'private', Readable.from(randomChunks(6 * MiB)), 6 * MiB), {
    type: 'QubesException',
    message: 'Data import failed: error copying data',
  });
  t.equal(head(priv, 7), 'KEEP-ME', 'import on a full disk: old data intact');
  t.equal(statSync(priv).size, 5 * MiB);
  t.notOk(existsSync(join(mnt.dir, 'pool/appvms/tiny/private-import.img')));

  const src = await app.addVm('big', 'StandaloneVM');
  await importFromStream(m, src, 'private', Readable.from(randomChunks(6 * MiB)), 6 * MiB);
  const token = m.cloneFrom(src, 'private');
  await t.rejects(m.cloneTo(vm, 'private', token), { type: 'StoragePoolException', message: /Error while copying .* No space left on device/ });
  t.equal(head(priv, 7), 'KEEP-ME', 'clone on a full disk: old data intact');
  t.equal(attrsOf(vm, 'private').get('size'), String(5 * MiB));
  await t.rejects(
    m.cloneTo(vm, 'private', token),
    { type: 'QubesVolumeCopyTokenNotFoundError', message: "'Token to clone volume of qube was not found'" },
    'the token was spent by the failed clone',
  );

  await t.rejects(m.startVolumes(vm), { type: 'StoragePoolException', message: /No space left on device/ });
  t.notOk(existsSync(join(mnt.dir, 'pool/appvms/tiny/private-cow.img')), 'a failed start leaves no running images');
  t.equal(head(priv, 7), 'KEEP-ME');

  await app.removeVm(vm);
  t.notOk(existsSync(join(mnt.dir, 'pool/appvms/tiny')), 'removed qube leaves nothing behind');
});

t.test('disk full (simulated ENOSPC writer): import fails cleanly, data intact', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, base } = env;
  const vm = await app.addVm('sim', 'StandaloneVM');
  const priv = join(base, 'appvms/sim/private.img');
  await m.resize(vm, 'private', 4 * MiB);
  mark(priv, 'KEEP-ME');
  // a writer whose disk fills up after 1 MiB, as write(2) reports it
  const fullAfter1MiB = async (file: string, flags: string) => {
    const fh = await open(file, flags);
    const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<{ bytesWritten: number; buffer: Buffer }>;
    let written = 0;
    (fh as unknown as { write: unknown }).write = async (...a: unknown[]) => {
      if (written >= MiB) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      const r = await write(...a);
      written += r.bytesWritten;
      return r;
    };
    return fh;
  };
  t.comment('disk full simulated by a writer failing with ENOSPC after 1 MiB');
  await t.rejects(importFromStream(m, vm, 'private', Readable.from(randomChunks(3 * MiB)), 3 * MiB, { open: fullAfter1MiB }), {
    type: 'QubesException',
    message: 'Data import failed: error copying data',
  });
  t.equal(head(priv, 7), 'KEEP-ME');
  t.equal(statSync(priv).size, 4 * MiB);
  t.notOk(existsSync(join(base, 'appvms/sim/private-import.img')));
});

t.test('file-reflink: reflinks where the filesystem can, copies where not, and says which', async (t) => {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const { app, m, dir } = env;
  // on this test's own filesystem: the setup check speaks the truth
  const here = await supportsReflink(dir);
  if (!here) {
    await t.rejects(m.addPool('file-reflink', 'rl0', new Map([['dir_path', join(dir, 'rl0')]])), {
      type: 'StoragePoolException',
      message: `The filesystem for '${join(dir, 'rl0')}' does not support reflinks. If you can live with delays on VM startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option.`,
    });
    t.notOk(existsSync(join(dir, 'rl0')), 'a refused pool leaves no directory');
  }
  await m.addPool(
    'file-reflink',
    'rlcopy',
    new Map([
      ['dir_path', join(dir, 'rlcopy')],
      ['setup_check', 'False'],
    ]),
  );
  const a = await app.addVm('a', 'StandaloneVM', null, { pool: 'rlcopy' });
  mark(join(dir, 'rlcopy/appvms/a/private.img'), 'DATA');
  const b = await app.addVm('b', 'StandaloneVM', null, { pool: 'rlcopy' });
  const method = await m.cloneTo(b, 'private', m.cloneFrom(a, 'private'));
  t.equal(method, here ? 'reflink' : 'copy', `without reflink support: ${method}`);
  t.equal(head(join(dir, 'rlcopy/appvms/b/private.img'), 4), 'DATA');
  t.equal(m.recentCopies.at(-1)?.method, method);

  const mnt = mountReflinkFs(dir, 'xfs');
  if (typeof mnt === 'string') {
    t.comment(`skipped: ${mnt}`);
    return;
  }
  t.teardown(mnt.unmount);
  await m.addPool('file-reflink', 'rl', new Map([['dir_path', join(mnt.dir, 'pool')]]));
  const c = await app.addVm('c', 'StandaloneVM', null, { pool: 'rl' });
  await importFromStream(m, c, 'private', Readable.from(randomChunks(64 * MiB)), 64 * MiB);
  const d = await app.addVm('d', 'StandaloneVM', null, { pool: 'rl' });
  t.equal(await m.cloneTo(d, 'private', m.cloneFrom(c, 'private')), 'reflink', `on ${mnt.kind}: reflink`);
  t.equal(head(join(mnt.dir, 'pool/appvms/d/private.img'), 4096), head(join(mnt.dir, 'pool/appvms/c/private.img'), 4096));
  // a clone across filesystems cannot be a reflink: falls back to a copy
  t.equal(await m.cloneTo(a, 'private', m.cloneFrom(c, 'private')), 'copy', 'across filesystems: copy');
  await app.removeVm(c);
  await app.removeVm(d);
});

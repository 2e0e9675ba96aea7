// admin.vm.backup.Stream (our extension) through a real qubesd: the reply is
// a format-4 archive of the one qube, which lists, verifies and restores
// (through the Admin API restore, with the calls handed in as a function,
// as the REST gateway does) to the same data; bad payloads are refused.
import t from 'tap';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { setup } from './helpers.js';
import { call } from '../helpers/qubesd.js';
import { callStream } from '../../lib/qubesd-client.js';
import { parseExport, rawBytes } from '../../lib/volume-export.js';
import { listBackup } from '../../qubesd/backup/restore.js';
import { adminCall, restoreThroughAdminApi } from '../../qubesd/backup/admin-restore.js';

t.test('one qube streamed as an archive, restored through a call function', async (t) => {
  const env = await setup(t);
  const { d } = env;
  const archive = join(d.dir, 'work.qbkp');
  const s = await callStream(d.socket, { method: 'admin.vm.backup.Stream', dest: 'work', payload: 'passphrase=s3cret\ncompression=False\n' });
  await pipeline(Readable.from(s.content), createWriteStream(archive));

  const listing = await listBackup(archive, { passphrase: 's3cret' });
  t.same(
    listing.qubes.map((q) => [q.name, q.klass]),
    [['work', 'AppVM']],
  );
  t.equal(listing.header.compressed, false);

  const calls: string[] = [];
  const restored = await restoreThroughAdminApi(archive, {
    passphrase: 's3cret',
    internalSocket: d.internalSocket,
    call: (method, dest, arg = '', payload = '') => {
      calls.push(`${method} ${dest}`);
      return adminCall(d.socket, method, dest, arg, payload);
    },
  });
  t.same(
    restored.map((r) => r.name),
    ['work-1'],
  );
  t.ok(calls.includes('admin.vm.Create.AppVM dom0'), 'the qube was created through the given function');
  t.ok(calls.includes('admin.vm.tag.Set work-1'));
  t.equal((await call(d.socket, 'admin.vm.notes.Get', 'work-1')).content, 'my notes\n');

  // the restored private volume holds the same bytes (read with Export)
  const ex = await parseExport((await callStream(d.socket, { method: 'admin.vm.volume.Export', dest: 'work-1', arg: 'private' })).content);
  t.equal(ex.size, 2 ** 31);
  const want = new Map([
    [64 << 20, env.data],
    [2 ** 31 - 3, Buffer.from('end')],
  ]);
  let pos = 0;
  let checked = 0;
  for await (const chunk of rawBytes(ex)) {
    for (const [at, bytes] of want) {
      const from = Math.max(at, pos),
        to = Math.min(at + bytes.length, pos + chunk.length);
      if (from < to) {
        t.ok(chunk.subarray(from - pos, to - pos).equals(bytes.subarray(from - at, to - at)) || t.fail(`differs at ${from}`));
        checked += to - from;
      }
    }
    pos += chunk.length;
  }
  t.equal(checked, (3 << 20) + 3);

  // refusals
  const noPass = await call(d.socket, 'admin.vm.backup.Stream', 'work', '', 'compression=True\n');
  t.same([noPass.type, noPass.message], ['ProtocolError', 'Invalid payload: no passphrase']);
  const badComp = await call(d.socket, 'admin.vm.backup.Stream', 'work', '', 'passphrase=x\ncompression=lz4\n');
  t.same([badComp.type, badComp.message], ['QubesValueError', 'Invalid compression: use True, False, gzip, bzip2, xz, lzma, pbzip2, pigz, zstd, zstdmt']);
  const dom0 = await call(d.socket, 'admin.vm.backup.Stream', 'dom0', '', 'passphrase=x\n');
  t.same([dom0.type, dom0.message], ['ProtocolError', 'expected destination to not be AdminVM']);
});

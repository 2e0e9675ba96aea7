// admin.vm.volume.Export through a real qubesd on its real socket: the map
// of data extents comes first, then only the data; holes are neither read
// nor sent, a 10 GiB volume holding 12 KiB answers in a few KiB, and the
// shared client (callStream + lib/volume-export.ts) gives back the bytes.
import t from 'tap';
import { openSync, writeSync, closeSync, rmSync } from 'node:fs';
import { call, rawCall, startDaemon } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';
import { callStream } from '../../lib/qubesd-client.js';
import { parseExport, rawBytes } from '../../lib/volume-export.js';

t.test('volume export over the socket', async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    rmSync(d.dir, { recursive: true, force: true });
  });
  const ok = async (method: string, dest: string, arg = '', payload = '') => {
    const r = await call(method.startsWith('internal.') ? d.internalSocket : d.socket, method, dest, arg, payload);
    if (!r.ok) t.fail(`${method} ${arg}: ${r.type}: ${r.message}`);
    return r.content;
  };
  await ok('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=exp label=red');
  // 4 MiB: 8 KiB of 'a' at 0, 4 KiB of 'b' at 3 MiB, zeros elsewhere
  const [, path] = (await ok('internal.vm.volume.ImportBegin', 'exp', 'private', '4194304')).split(' ');
  const fd = openSync(path!, 'r+');
  writeSync(fd, Buffer.alloc(8192, 'a'), 0, 8192, 0);
  writeSync(fd, Buffer.alloc(4096, 'b'), 0, 4096, 3 << 20);
  closeSync(fd);
  await ok('internal.vm.volume.ImportEnd', 'exp', 'private', 'ok');

  const raw = await rawCall(d.socket, encodeRequest('admin.vm.volume.Export', 'private', 'dom0', 'exp'));
  const header = '4194304 2\n0 8192\n3145728 4096\n';
  t.equal(raw.length, 2 + header.length + 12288, 'only the data is sent');
  t.equal(raw.subarray(0, 2 + header.length).toString('latin1'), `0\0${header}`);
  t.ok(raw.subarray(2 + header.length, 2 + header.length + 8192).equals(Buffer.alloc(8192, 'a')));
  t.ok(raw.subarray(2 + header.length + 8192).equals(Buffer.alloc(4096, 'b')));

  // the client side: streamed, parsed, holes filled back in
  const s = await callStream(d.socket, { method: 'admin.vm.volume.Export', dest: 'exp', arg: 'private' });
  const parsed = await parseExport(s.content);
  t.same(
    [parsed.size, parsed.extents],
    [
      4194304,
      [
        [0, 8192],
        [3145728, 4096],
      ],
    ],
  );
  const back: Buffer[] = [];
  for await (const c of rawBytes(parsed)) back.push(Buffer.from(c));
  const all = Buffer.concat(back);
  t.equal(all.length, 4194304);
  t.equal(all.subarray(0, 8192).toString('latin1'), 'a'.repeat(8192));
  t.equal(
    all.subarray(8192, 3 << 20).every((b) => b === 0),
    true,
  );
  t.equal(all.subarray(3 << 20, (3 << 20) + 4096).toString('latin1'), 'b'.repeat(4096));

  // 10 GiB, still 12 KiB of data: a header and 12 KiB, quickly
  await ok('admin.vm.volume.Resize', 'exp', 'private', String(10 * 2 ** 30));
  const t0 = Date.now();
  const big = await rawCall(d.socket, encodeRequest('admin.vm.volume.Export', 'private', 'dom0', 'exp'));
  t.equal(big.subarray(0, 36).toString('latin1'), '0\x0010737418240 2\n0 8192\n3145728 4096\n');
  t.equal(big.length, 2 + 34 + 12288);
  t.ok(Date.now() - t0 < 20000, `10 GiB sparse export took ${Date.now() - t0} ms`);

  // refusals are ordinary exception frames
  const badVol = await call(d.socket, 'admin.vm.volume.Export', 'exp', 'nope');
  t.same([badVol.type, badVol.message], ['PermissionDenied', "Argument not in 'exp volumes'"]);
  const withPayload = await call(d.socket, 'admin.vm.volume.Export', 'exp', 'private', 'x');
  t.same([withPayload.type, withPayload.message], ['ProtocolError', 'unexpected payload']);
  await t.rejects(callStream(d.socket, { method: 'admin.vm.volume.Export', dest: 'exp', arg: 'nope' }), {
    name: 'QubesdException',
    type: 'PermissionDenied',
    message: "Argument not in 'exp volumes'",
  });
});

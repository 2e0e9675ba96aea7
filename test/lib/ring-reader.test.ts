// callStream's ring reading (lib/ring-reader.ts) against a real UNIX socket
// server: every byte arrives in order even when the consumer is slow and the
// ring is small (reading pauses and resumes), a chunk stays intact until the
// next one is asked for, and an EXCEPTION reply still becomes a
// QubesdException.
import t from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callStream, QubesdException } from '../../lib/qubesd-client.js';

const dir = mkdtempSync(join(tmpdir(), 'ring-reader-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** 4 MiB where byte i is (i * 7 + (i >> 12)) & 0xff: no two 4 KiB blocks alike. */
const DATA = Buffer.alloc(4 << 20);
for (let i = 0; i < DATA.length; i++) DATA[i] = (i * 7 + (i >> 12)) & 0xff;

function serve(reply: (s: net.Socket) => void): Promise<{ path: string; close(): void }> {
  const path = join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.resume();
    s.once('end', () => reply(s));
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ path, close: () => server.close() })));
}

t.test('a slow consumer of a small ring gets every byte, in order', async (t) => {
  const srv = await serve((s) => {
    // uneven writes: some smaller than a ring buffer, some many times larger
    let at = 0;
    const sizes = [1, 3000, 4096, 70000, 9, 1 << 20];
    let i = 0;
    s.write(Buffer.from([0x30, 0x00]));
    const go = (): void => {
      while (at < DATA.length) {
        const n = Math.min(sizes[i++ % sizes.length]!, DATA.length - at);
        const more = s.write(DATA.subarray(at, at + n));
        at += n;
        if (!more) return void s.once('drain', go);
      }
      s.end();
    };
    go();
  });
  t.teardown(srv.close);
  const r = await callStream(srv.path, { method: 'admin.vm.volume.Export', dest: 'q', arg: 'private' }, { ring: { count: 2, size: 4096 } });
  const hash = createHash('sha256');
  let n = 0;
  let chunks = 0;
  for await (const c of r.content) {
    if (c.length > 4096) t.fail('a chunk larger than a ring buffer');
    const before = Buffer.from(c);
    // slow down now and then: the ring fills and reading pauses meanwhile
    if (chunks++ % 64 === 0) await new Promise((res) => setTimeout(res, 5));
    if (!c.equals(before)) t.fail('a chunk changed before the next one was asked for');
    hash.update(c);
    n += c.length;
  }
  t.equal(n, 4 << 20);
  t.equal(hash.digest('hex'), createHash('sha256').update(DATA).digest('hex'));
  t.ok(chunks >= 1024, 'read in ring-sized pieces');
});

t.test('an EXCEPTION reply read through a ring', async (t) => {
  const srv = await serve((s) => s.end(Buffer.concat([Buffer.from([0x32, 0x00]), Buffer.from('QubesVMNotHaltedError\0\0Domain is powered on: work\0')])));
  t.teardown(srv.close);
  const e = await callStream(srv.path, { method: 'admin.vm.volume.Export', dest: 'work', arg: 'private' }, { ring: { count: 2, size: 8 } }).catch((x) => x);
  t.type(e, QubesdException);
  t.equal(e.type, 'QubesVMNotHaltedError');
  t.equal(e.message, 'Domain is powered on: work');
});

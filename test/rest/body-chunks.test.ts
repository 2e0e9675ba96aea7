// bodyChunks (rest/body-chunks.ts): an upload's pieces become large chunks in
// buffers used in turn. Every byte arrives in order, a chunk stays intact
// until the chunk after the next is asked for (copyStreamInto's overlap), the
// body is paused while no buffer is free, a consumer that stops early leaves
// the rest of the body to be drained, and onBytes can end it.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import { bodyChunks } from '../../rest/body-chunks.js';

/** 300 KiB + 17 bytes where byte i is (i * 13 + (i >> 10)) & 0xff. */
const DATA = Buffer.alloc(300 * 1024 + 17);
for (let i = 0; i < DATA.length; i++) DATA[i] = (i * 13 + (i >> 10)) & 0xff;

/** Writes DATA in uneven pieces, honouring backpressure. */
function feed(s: PassThrough, data = DATA): void {
  const sizes = [1, 700, 4096, 65536, 3, 9000];
  let at = 0;
  let i = 0;
  const go = (): void => {
    while (at < data.length) {
      const n = Math.min(sizes[i++ % sizes.length]!, data.length - at);
      const more = s.write(data.subarray(at, at + n));
      at += n;
      if (!more) return void s.once('drain', go);
    }
    s.end();
  };
  go();
}

t.test('every byte in order; a chunk intact until the chunk after the next is asked for', async (t) => {
  const s = new PassThrough({ highWaterMark: 1024 });
  let seen = 0;
  const chunks = bodyChunks(s, { size: 8192, onBytes: (n) => void (seen += n) });
  feed(s);
  const hash = createHash('sha256');
  const held: Array<{ view: Buffer; copy: Buffer }> = [];
  let count = 0;
  for await (const c of chunks) {
    count++;
    // the chunk before this one is still being "written": it must not have changed
    for (const h of held) if (!h.view.equals(h.copy)) t.fail(`chunk ${count - 1} changed while the next was filled`);
    held.splice(0, held.length, { view: c, copy: Buffer.from(c) });
    hash.update(c);
    if (count % 5 === 0) await new Promise((r) => setTimeout(r, 2)); // a slow disk now and then
  }
  t.equal(count, 38, '37 full chunks of 8192 bytes and one of 4113');
  t.equal(seen, 307217, 'onBytes saw every byte');
  t.equal(hash.digest('hex'), createHash('sha256').update(DATA).digest('hex'));
});

t.test('a consumer that stops early does not hold the rest of the body', async (t) => {
  const s = new PassThrough({ highWaterMark: 1024 });
  feed(s);
  for await (const c of bodyChunks(s, { size: 4096 })) {
    t.equal(c.length, 4096);
    break;
  }
  // what a refused upload does next: read the rest and drop it
  let rest = 0;
  s.on('data', (b: Buffer) => void (rest += b.length));
  s.resume();
  await new Promise((r) => s.once('end', r));
  t.ok(rest > 0 && rest < DATA.length, `the rest was drained (${rest} bytes)`);
});

t.test('onBytes throwing ends the body with its error', async (t) => {
  const s = new PassThrough();
  let total = 0;
  const chunks = bodyChunks(s, {
    size: 4096,
    onBytes: (n) => {
      total += n;
      if (total > 20000) throw new Error('the task was aborted');
    },
  });
  feed(s);
  await t.rejects(
    (async () => {
      for await (const c of chunks) void c;
    })(),
    { message: 'the task was aborted' },
  );
});

t.test('a body that breaks off is an error, not a short success', async (t) => {
  const s = new PassThrough();
  const chunks = bodyChunks(s, { size: 4096 });
  s.write(DATA.subarray(0, 10000));
  setTimeout(() => s.destroy(), 10);
  await t.rejects(async () => {
    for await (const c of chunks) void c;
  });
});

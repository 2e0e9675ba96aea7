// Replies read into buffers sized for them (lib/reply-socket.ts), from a
// real UNIX socket server: after one large reply the next of that size comes
// in one piece, not copied; a small reply does not keep a large buffer alive;
// large and many-piece replies arrive intact.
import t, { type Test } from 'tap';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectForReply, noteReplySize, onChunk } from '../../lib/reply-socket.js';
import { callRaw } from '../../lib/qubesd-client.js';

/** Answers each request with the bytes `replyFor(request)` gives, written in `writes` parts. */
async function server(t: Test, replyFor: (req: string) => Buffer, writes = 1): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'reply-'));
  const path = join(dir, 'sock');
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => {
      const reply = replyFor(Buffer.concat(parts).toString('latin1'));
      const step = Math.ceil(reply.length / writes);
      for (let i = 0; i < writes; i++) s.write(reply.subarray(i * step, (i + 1) * step));
      s.end();
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.teardown(() => {
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

/** One request on a reply socket; the pieces it was handed. */
function pieces(path: string, request: string): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s = connectForReply(path);
    onChunk(s, (c) => got.push(c));
    s.on('connect', () => s.end(request));
    s.on('end', () => {
      s.destroy();
      resolve(got);
    });
    s.on('error', reject);
  });
}

/** Bytes 0..n-1 of a pattern that shows a misplaced or missing byte. */
const pattern = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

t.test('after a large reply, the next as large comes in one piece, uncopied', async (t) => {
  const big = pattern(100_000);
  const path = await server(t, () => big);
  noteReplySize(100_000);
  const got = await pieces(path, 'x');
  t.equal(got.length, 1, 'one piece');
  t.ok(got[0]!.equals(big), 'the whole reply');
  t.equal(got[0]!.byteOffset, 0, 'at the start of its own buffer (not a copy into a pool)');
  t.ok(got[0]!.buffer.byteLength >= 100_000 && got[0]!.buffer.byteLength < 200_000, `a buffer sized for it (${got[0]!.buffer.byteLength})`);
});

t.test('a small reply does not keep a large buffer alive', async (t) => {
  const path = await server(t, () => Buffer.from('0\0small'));
  noteReplySize(100_000);
  const got = await pieces(path, 'x');
  t.equal(Buffer.concat(got).toString('latin1'), '0\0small');
  for (const p of got) t.ok(p.buffer.byteLength <= 8192, `held in a small buffer (${p.buffer.byteLength} bytes)`);
});

t.test('replies larger than any first read, and replies in many writes, arrive intact', async (t) => {
  const huge = pattern(3_000_000);
  const path = await server(t, () => huge);
  noteReplySize(10);
  const got = await pieces(path, 'x');
  t.ok(got.length > 1, `several pieces (${got.length})`);
  t.ok(Buffer.concat(got).equals(huge), 'the whole reply, in order');
  const many = pattern(200_000);
  const path2 = await server(t, () => many, 50);
  t.ok(Buffer.concat(await pieces(path2, 'x')).equals(many), 'written in 50 parts, read whole');
});

t.test('through callRaw: the content of each reply, whatever came before', async (t) => {
  const sizes = [10, 100_000, 5, 300_000, 70_000, 70_000, 1];
  const path = await server(t, (req) => Buffer.concat([Buffer.from('0\0'), pattern(Number(req.split(' ')[0]!.split('+')[1]))]));
  for (const n of sizes) {
    const r = await callRaw(path, { method: 'm', arg: String(n), dest: 'dom0' });
    t.ok(r.equals(pattern(n)), `${n} bytes`);
  }
});

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
    // a spare closed unused (the warm-connection test) sent nothing and gets nothing
    s.on('error', () => undefined);
    s.on('end', () => {
      if (parts.length === 0) return void s.end();
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

// A call given the reply it most likely gets (CallOptions.expect): the reply
// is compared as it comes; exactly that reply resolves with the caller's own
// buffer, any other with the reply's own bytes, whichever read differs.
const ok = (content: Buffer): Buffer => Buffer.concat([Buffer.from('0\0'), content]);
/** `base` with byte `at` changed */
const flipped = (base: Buffer, at: number): Buffer => {
  const b = Buffer.from(base);
  b[at] = b[at]! ^ 0xff;
  return b;
};

t.test('an expected reply that comes exactly: the caller gets its own buffer back', async (t) => {
  for (const n of [0, 1, 80_000, 3_000_000]) {
    const content = pattern(n);
    const path = await server(t, () => ok(content), n > 100_000 ? 40 : 1);
    const expect = Buffer.from(content);
    const r = await callRaw(path, { method: 'm', dest: 'dom0' }, { expect });
    t.equal(r, expect, `${n} bytes: the very buffer that was expected`);
    t.ok(r.equals(pattern(n)), `${n} bytes: its content`);
  }
});

t.test('a reply other than the expected one is read whole, wherever it differs', async (t) => {
  const expect = pattern(3_000_000);
  const cases: Array<[string, Buffer]> = [
    ['differs in the first byte of content', flipped(expect, 0)],
    ['differs in the first read', flipped(expect, 40_000)],
    ['differs in a later read', flipped(expect, 2_500_000)],
    ['differs in the last byte', flipped(expect, expect.length - 1)],
    ['is shorter (a prefix of it)', expect.subarray(0, 2_000_000)],
    ['is longer (it is a prefix of the reply)', Buffer.concat([expect, Buffer.from('more')])],
    ['is empty', Buffer.alloc(0)],
  ];
  for (const [what, content] of cases) {
    const path = await server(t, () => ok(content), 30);
    const r = await callRaw(path, { method: 'm', dest: 'dom0' }, { expect });
    t.not(r, expect, `${what}: not the expected buffer`);
    t.ok(r.equals(content), `${what}: the reply's own bytes (${r.length} of ${content.length})`);
  }
});

t.test('an EXCEPTION where an OK was expected is the exception', async (t) => {
  const path = await server(t, () => Buffer.from('2\0QubesVMNotFoundError\0\0no such qube\0'));
  await t.rejects(callRaw(path, { method: 'm', dest: 'dom0' }, { expect: pattern(100) }), {
    name: 'QubesdException',
    type: 'QubesVMNotFoundError',
    message: 'no such qube',
  });
});

t.test('many calls at once, some expecting what comes and some not, each get their own reply', async (t) => {
  // replies of several reads each, written in parts: the sockets' reads
  // interleave, all comparing in the one scratch buffer
  const contents = Array.from({ length: 12 }, (_, i) => pattern(200_000 + i * 50_000));
  const path = await server(t, (req) => ok(contents[Number(req.split(' ')[0]!.split('+')[1])]!), 25);
  const results = await Promise.all(
    contents.map((c, i) => {
      const expect = i % 3 === 0 ? Buffer.from(c) : i % 3 === 1 ? flipped(c, 150_000) : undefined;
      return callRaw(path, { method: 'm', arg: String(i), dest: 'dom0' }, expect ? { expect } : {}).then((r) => ({ r, expect }));
    }),
  );
  results.forEach(({ r, expect }, i) => {
    t.ok(r.equals(contents[i]!), `call ${i}: its own reply`);
    if (i % 3 === 0) t.equal(r, expect, `call ${i}: expected exactly, its own buffer`);
  });
});

t.test('through a warm connection, with and without an expected reply', async (t) => {
  const { WarmConnection } = await import('../../lib/warm-connection.js');
  const content = pattern(120_000);
  const path = await server(t, (req) => (req.startsWith('m+other') ? ok(flipped(content, 7)) : ok(content)));
  const warm = new WarmConnection(path);
  t.teardown(() => warm.close());
  const expect = Buffer.from(content);
  for (let i = 0; i < 6; i++) {
    // the first call opens the spare the next ones use
    const exact = await callRaw(path, { method: 'm', dest: 'dom0' }, { warm, expect });
    t.equal(exact, expect, `call ${i}: the expected buffer`);
    await new Promise((r) => setImmediate(r));
    const other = await callRaw(path, { method: 'm', arg: 'other', dest: 'dom0' }, { warm, expect });
    t.ok(other.equals(flipped(content, 7)), `call ${i}: a different reply, read whole`);
    await new Promise((r) => setImmediate(r));
    const plain = await callRaw(path, { method: 'm', dest: 'dom0' }, { warm });
    t.ok(plain.equals(content) && plain !== expect, `call ${i}: no expectation, the reply's own bytes`);
    await new Promise((r) => setImmediate(r));
  }
});

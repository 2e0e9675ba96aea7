// Calls made on a connection opened ahead (lib/warm-connection.ts), against a
// real UNIX socket server that records what each connection did: the spare
// is connected before the call that uses it, an unused spare is closed
// having sent nothing, and a spare the server closed is replaced by a new
// connection without the caller seeing an error. Against a real qubesd:
// reads through a warm connection answer as any call, and an expired spare
// leaves no line in qubesd's audit log.
import t, { type Test } from 'tap';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callRaw, call } from '../../lib/qubesd-client.js';
import { WarmConnection } from '../../lib/warm-connection.js';
import { startDaemon, cleanup, settledAuditCalls } from '../helpers/qubesd.js';

interface Seen {
  /** when the connection was accepted, in accept order */
  accepted: number;
  /** what it sent before its end, or null while it has not ended */
  request: string | null;
  /** when its request ended */
  ended: number;
  sock: net.Socket;
}

/**
 * A server answering `reply` to every request (`delayMs` after it); `closeIdle`: it ends
 * connections at once, before any request.
 */
async function recordingServer(t: Test, reply: Buffer, closeIdle = false, delayMs = 0): Promise<{ path: string; seen: Seen[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'warm-'));
  const path = join(dir, 'sock');
  const seen: Seen[] = [];
  let n = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const rec: Seen = { accepted: n++, request: null, ended: -1, sock: s };
    seen.push(rec);
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', () => undefined);
    s.on('end', () => {
      rec.request = Buffer.concat(parts).toString('latin1');
      rec.ended = n;
      if (!rec.request.length) s.end();
      else if (delayMs) setTimeout(() => s.end(reply), delayMs);
      else s.end(reply);
    });
    if (closeIdle) s.destroy();
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, seen };
}

/** A WarmConnection to `path` whose spares wait `idleMs`, closed when the test ends. */
function warmTo(t: Test, path: string, idleMs: number): WarmConnection {
  const warm = new WarmConnection(path, idleMs);
  t.teardown(() => warm.close());
  return warm;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the next call goes out on a connection opened while the last one was made', async (t) => {
  const { path, seen } = await recordingServer(t, Buffer.from('0\0first'));
  const warm = warmTo(t, path, 5000);
  t.equal((await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm })).toString(), 'first');
  await sleep(100);
  t.equal(seen.length, 2, 'a spare was connected after the first call');
  t.equal(seen[1]!.request, null, 'and has sent nothing');
  t.equal((await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm })).toString(), 'first');
  t.equal(seen[1]!.request, 'admin.vm.List+ dom0 name dom0\0', 'the second call was made on it');
  await sleep(100);
  t.equal(seen.length, 3, 'and the next spare is there');
});

t.test('the next connection is opened while qubesd works on the call, not after its answer', async (t) => {
  const { path, seen } = await recordingServer(t, Buffer.from('0\0slow'), false, 300);
  const warm = warmTo(t, path, 5000);
  const first = callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm });
  await sleep(150);
  t.equal(seen.length, 2, 'a spare was connected while the call waited for its answer');
  t.equal(seen[1]!.request, null, 'and has sent nothing');
  t.equal((await first).toString(), 'slow');
  const second = callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm });
  await sleep(150);
  t.equal(seen[1]!.request, 'admin.vm.List+ dom0 name dom0\0', 'the second call went out on it');
  t.equal(seen.length, 3, 'and the next spare was opened meanwhile');
  await second;
});

t.test('a spare nobody uses is closed without a byte sent', async (t) => {
  const { path, seen } = await recordingServer(t, Buffer.from('0\0'));
  const warm = warmTo(t, path, 150);
  await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm });
  await sleep(50);
  t.equal(seen.length, 2);
  t.equal(seen[1]!.request, null, 'open and silent while it waits');
  await sleep(300);
  t.equal(seen[1]!.request, '', 'ended after its idle time, having sent nothing');
  t.equal(seen.length, 2, 'and no other was opened');
});

t.test('a server that closes every connection unasked: each call fails once, with no endless retry', async (t) => {
  const { path, seen } = await recordingServer(t, Buffer.from('0\0fresh'), true);
  const warm = warmTo(t, path, 5000);
  for (let i = 0; i < 3; i++) {
    const r = await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm }).catch((e: Error) => e);
    t.match(r, { name: 'QubesdTransportError' }, `call ${i} fails`);
  }
  await sleep(100);
  t.ok(seen.length >= 3 && seen.length <= 7, `one or two connections a call (${seen.length})`);
});

t.test('a spare closed before a call that needed it is retried, against a live server', async (t) => {
  const { path, seen } = await recordingServer(t, Buffer.from('0\0live'));
  const warm = warmTo(t, path, 5000);
  await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm });
  await sleep(100);
  t.equal(seen.length, 2, 'spare connected');
  // the server closes the spare just before it is used, and the client has
  // not yet seen it go (as when qubesd restarts between two calls)
  seen[1]!.sock.destroy();
  t.equal((await callRaw(path, { method: 'admin.vm.List', dest: 'dom0' }, { warm })).toString(), 'live', 'the call succeeds');
  await sleep(50);
  t.equal(seen.filter((s) => s.request === 'admin.vm.List+ dom0 name dom0\0').length, 2, 'made once more, on a fresh connection');
});

t.test('against qubesd: reads answer as usual, and an expired spare is no call', async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const warm = warmTo(t, d.socket, 200);
  for (let i = 0; i < 3; i++) {
    t.equal(await call(d.socket, { method: 'admin.vm.property.Get', dest: 'personal', arg: 'label' }, { warm }), 'default=False type=label yellow');
  }
  await sleep(600);
  t.same(
    (await settledAuditCalls(d)).map((l) => `${l.method} ${l.dest} ${l.outcome}`),
    ['admin.vm.property.Get personal ok', 'admin.vm.property.Get personal ok', 'admin.vm.property.Get personal ok'],
    'three calls, and nothing for the spare that expired',
  );
});

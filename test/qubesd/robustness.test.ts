// What an attacker's run against qubesd found (issue 11), each through
// bin/qubesd's real socket: concurrent notes writes, Node's error text in
// replies, NUL in reply frames, event streams that do not read, and closed
// or too many event streams.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { call, cleanup, rawCall, startDaemon, subscribeEvents, type Daemon } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function daemon(t: Test, args: string[] = []): Promise<Daemon> {
  const d = await startDaemon({ args });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  return d;
}

/** Split a complete reply into its NUL-separated fields (after the kind byte). */
function fields(raw: Buffer): string[] {
  return raw.subarray(2).toString('utf8').split('\0');
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

t.test('24 concurrent notes.Set on one qube all succeed; the file is one of them, whole', async (t) => {
  const d = await daemon(t);
  const texts = Array.from({ length: 24 }, (_, i) => `note ${i} `.repeat(200 + i));
  const replies = await Promise.all(texts.map((text) => call(d.socket, 'admin.vm.notes.Set', 'work', '', text)));
  t.same(
    replies.map((r) => (r.ok ? 'ok' : `${r.type}: ${r.message}`)),
    texts.map(() => 'ok'),
  );
  const file = readFileSync(join(d.base, 'appvms', 'work', 'notes.txt'), 'utf8');
  t.ok(texts.includes(file), 'notes.txt holds exactly one of the texts');
  t.equal((await call(d.socket, 'admin.vm.notes.Get', 'work')).content, file);
  t.same(
    readdirSync(join(d.base, 'appvms', 'work')).filter((f) => f.includes('tmp')),
    [],
    'no temporary file left',
  );
});

t.test('no Node error text in replies', async (t) => {
  const profiles = mkdtempSync(join(tmpdir(), 'qubesd-profiles-'));
  t.teardown(() => rmSync(profiles, { recursive: true, force: true }));
  mkdirSync(join(profiles, 'x.conf'));
  const d2 = await daemon(t, ['--backup-profile-dir', profiles]);
  const long = 'a'.repeat(251);
  const r1 = await call(d2.socket, 'admin.backup.Info', 'dom0', long);
  t.equal(r1.type, 'QubesBackupProfileNotFoundError');
  t.equal(r1.message, `Backup profile does not exist: ${long}`);
  const r2 = await call(d2.socket, 'admin.backup.Info', 'dom0', 'x');
  t.equal(r2.type, 'QubesException');
  t.equal(r2.message, 'Invalid backup profile - x.conf: Is a directory');
  // a notes.txt that is a directory: Qubes' words, without errno or path
  mkdirSync(join(d2.base, 'appvms', 'personal', 'notes.txt'), { recursive: true });
  const r3 = await call(d2.socket, 'admin.vm.notes.Get', 'personal');
  t.equal(r3.type, 'QubesException');
  t.equal(r3.message, 'Failed to read notes file: Is a directory');
  const r4 = await call(d2.socket, 'admin.vm.notes.Set', 'personal', '', 'hello');
  t.equal(r4.message, 'Failed to write notes file: Is a directory');
  for (const r of [r1, r2, r3, r4]) {
    t.notMatch(r.message!, /E[A-Z]{3,}|\/tmp|\[Errno|at [^ ]+\.js/, `no errno code, path or stack in ${JSON.stringify(r.message)}`);
  }
});

t.test('a NUL echoed from the payload does not break the reply frame', async (t) => {
  const d = await daemon(t);
  const raw = await rawCall(d.socket, encodeRequest('admin.vm.CreateInPool.AppVM', 'debian-12', 'dom0', 'dom0', Buffer.from('name=a label=red pool=x\0y')));
  t.equal(raw[0], 0x32, 'an EXCEPTION frame');
  t.same(fields(raw), ['QubesException', '', 'Unknown storage pool x\\x00y', ''], 'exactly type, traceback, message');
  t.equal((await call(d.socket, 'admin.vm.List', 'a')).type, 'QubesVMNotFoundError', 'nothing created');
});

t.test('event streams that do not read are disconnected; memory stays bounded', async (t) => {
  const d = await daemon(t, ['--stream-buffer', '1M', '--stream-buffer-total', '16M']);
  const before = rssKiB(d.proc.pid!);
  const N = 150;
  const closed: boolean[] = [];
  const socks: net.Socket[] = [];
  await Promise.all(
    Array.from(
      { length: N },
      (_, i) =>
        new Promise<void>((res) => {
          const c = net.connect(d.socket, () => {
            c.end(encodeRequest('admin.Events', '', 'dom0', 'dom0'));
            c.once('readable', () => res());
          });
          c.pause(); // never reads
          closed[i] = false;
          c.on('close', () => {
            closed[i] = true;
          });
          c.on('error', () => undefined);
          socks.push(c);
        }),
    ),
  );
  t.teardown(() => {
    for (const c of socks) c.destroy();
  });
  const value = 'v'.repeat(4096);
  let peak = 0;
  for (let i = 0; i < 300; i++) {
    const r = await call(d.socket, 'admin.vm.feature.Set', 'work', `f${i % 10}`, `${value}${i}`);
    if (!r.ok) t.fail(`feature.Set: ${r.type}: ${r.message}`);
    if (i % 20 === 0) peak = Math.max(peak, rssKiB(d.proc.pid!));
  }
  peak = Math.max(peak, rssKiB(d.proc.pid!));
  // 150 clients x 300 events x 4 KiB = 180 MiB would be queued without a bound
  t.ok(peak - before < 100 * 1024, `qubesd grew by ${Math.round((peak - before) / 1024)} MiB (bound: 100)`);
  // a client sees the end only once it reads what was sent before
  for (const c of socks) c.resume();
  const deadline = Date.now() + 5000;
  while (closed.filter(Boolean).length < N && Date.now() < deadline) await sleep(100);
  t.ok(closed.filter(Boolean).length >= N / 2, `clients that fell behind were disconnected (${closed.filter(Boolean).length} of ${N})`);
  t.match(d.log(), /event stream disconnected: client does not read/);
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok, 'the daemon still answers');
});

t.test('closed event streams free their descriptors at once', async (t) => {
  const d = await daemon(t);
  const pid = d.proc.pid!;
  const base = fdCount(pid);
  for (let i = 0; i < 2000; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const s = await subscribeEvents(d.socket);
        s.close();
      }),
    );
  }
  const deadline = Date.now() + 5000;
  let now = fdCount(pid);
  while (now > base + 5 && Date.now() < deadline) {
    await sleep(100);
    now = fdCount(pid);
  }
  t.ok(now <= base + 5, `descriptors: ${base} before, ${now} after 2000 open/read/close cycles`);
});

t.test("a low cap: other callers' streams are refused, dom0 still gets in", async (t) => {
  const d = await daemon(t, ['--max-connections', '16']);
  const streams: net.Socket[] = [];
  let refused: { type?: string; message?: string } | null = null;
  for (let i = 0; i < 16 && !refused; i++) {
    const raw = await new Promise<Buffer>((res) => {
      const c = net.connect(d.socket, () => c.end(encodeRequest('admin.Events', '', 'work', 'work')));
      c.once('data', (b) => res(b));
      c.on('error', () => undefined);
      streams.push(c);
    });
    if (raw[0] === 0x32) {
      const f = fields(raw);
      refused = { type: f[0], message: f[2] };
    }
  }
  t.teardown(() => {
    for (const c of streams) c.destroy();
  });
  t.same(refused, { type: 'QubesException', message: 'Too many event streams open, try again later' });
  t.equal(streams.length, 13, "12 streams (16 less dom0's 4) then a refusal");
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok, 'dom0 calls get in');
  const s = await subscribeEvents(d.socket);
  t.equal(s.events[0]!.event, 'connection-established', "and so do dom0's streams");
  s.close();
});

t.test('past the connection cap, a clear refusal', async (t) => {
  const d = await daemon(t, ['--max-connections', '16']);
  const held: net.Socket[] = [];
  for (let i = 0; i < 16; i++) {
    await new Promise<void>((res) => {
      const c = net.connect(d.socket, () => res());
      c.on('error', () => undefined);
      held.push(c);
    });
  }
  t.teardown(() => {
    for (const c of held) c.destroy();
  });
  await sleep(100);
  const r = await call(d.socket, 'admin.vm.List', 'dom0');
  t.same([r.type, r.message], ['QubesException', 'Too many connections to qubesd, try again later']);
  for (const c of held) c.destroy();
  await sleep(200);
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok, 'room again once they left');
});

t.test('a client that never finishes its request is cut at request_timeout; one that is answered is not', async (t) => {
  const d = await daemon(t, ['--request-timeout', '1']);
  const t0 = Date.now();
  const slow = net.connect(d.socket, () => slow.write('admin.vm.List dom0 name'));
  slow.on('error', () => undefined);
  // an event stream has sent its whole request: it is never cut for slowness
  const events = await subscribeEvents(d.socket);
  t.teardown(() => {
    slow.destroy();
    events.close();
  });
  // other calls come and go meanwhile
  for (let i = 0; i < 5; i++) {
    await sleep(150);
    t.ok((await call(d.socket, 'admin.vm.property.Get', 'personal', 'netvm')).ok);
  }
  const cutAfter = await new Promise<number>((res) => slow.once('close', () => res(Date.now() - t0)));
  t.ok(cutAfter >= 1000 && cutAfter < 3500, `cut after ${cutAfter} ms (request_timeout 1 s, checked every second)`);
  await sleep(1200);
  t.ok((await call(d.socket, 'admin.vm.feature.Set', 'personal', 'cut-test', 'v')).ok);
  const e = await events.waitFor((e) => e.event === 'domain-feature-set:cut-test', 5000);
  t.equal(e.subject, 'personal', 'the event stream still delivers');
});

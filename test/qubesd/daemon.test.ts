// qubesd as a process: its sockets, its store's durability under SIGKILL,
// refusal of a corrupt store or a second daemon, and the audit log.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QUBESD_NODE_FLAGS } from '../../lib/node-flags.js';
import { ROOT, call, cleanup, rawCall, startDaemon } from '../helpers/qubesd.js';

function runQubesd(args: string[], ms = 10000): { status: number | null; out: string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, [...QUBESD_NODE_FLAGS, join(ROOT, 'bin', 'qubesd'), ...args], { encoding: 'utf8', timeout: ms, env });
  return { status: r.status, out: r.stdout + r.stderr };
}

t.test('sockets: mode 0660, a stale socket is replaced, a live one is never stolen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qubesd-sock-'));
  const run = join(dir, 'run');
  mkdirSync(run, { recursive: true });
  // a stale socket: its owner died without removing it
  const path = join(run, 'qubesd.sock');
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  t.ok(statSync(path).isSocket(), 'a stale socket file is in the way');
  const d = await startDaemon({ dir });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  t.equal(statSync(d.socket).mode & 0o777, 0o660, 'admin socket mode 0660');
  t.equal(statSync(d.internalSocket).mode & 0o777, 0o660, 'internal socket mode 0660');
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok, 'serving on the reclaimed path');

  // a second daemon with another store on the same sockets must not steal them
  const other = mkdtempSync(join(tmpdir(), 'qubesd-other-'));
  t.teardown(() => rmSync(other, { recursive: true, force: true }));
  const r = runQubesd(['--store', join(other, 'qubes.xml'), '--base-dir', join(other, 'base'), '--socket-dir', run, '--log', 'none']);
  t.not(r.status, 0, 'second daemon refuses to start');
  t.match(r.out, /already in use/, 'and says why');
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok, 'the first daemon still answers');
});

t.test('a second daemon on the same store is refused while the first runs', async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const run2 = join(d.dir, 'run2');
  const r = runQubesd(['--store', d.store, '--base-dir', d.base, '--socket-dir', run2, '--log', 'none']);
  t.not(r.status, 0);
  t.match(r.out, /lock|in use|another/i, 'the refusal names the lock');
  t.ok((await call(d.socket, 'admin.vm.List', 'dom0')).ok);
});

t.test('a corrupt store stops the daemon with a clear message and is never overwritten', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qubesd-corrupt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [what, text] of [
    ['truncated', '<qubes>\n  <labels>\n    <label id="label-1" color="0xcc0000">red'],
    ['not qubes', '<html><body/></html>\n'],
    ['binary', '\u0000\u0001garbage'],
  ]) {
    const store = join(dir, `${what.replace(' ', '-')}.xml`);
    writeFileSync(store, text);
    const r = runQubesd(['--store', store, '--base-dir', join(dir, 'base'), '--socket-dir', join(dir, 'run'), '--log', 'none']);
    t.not(r.status, 0, `${what}: refused`);
    t.match(r.out, store, `${what}: the message names the file`);
    t.equal(readFileSync(store, 'utf8'), text, `${what}: the file is untouched`);
  }
});

t.test('SIGKILL during a burst of writes loses no acknowledged write', async (t) => {
  const d0 = await startDaemon();
  const dir = d0.dir;
  t.teardown(() => cleanup(d0));
  const acked: string[] = [];
  let stop = false;
  // 8 concurrent writers, each setting fresh features until the daemon dies
  const writers = Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const name = `burst-${w}-${i}`;
      const r = await call(d0.socket, 'admin.vm.feature.Set', 'work', name, String(i)).catch(() => null);
      if (r?.ok) acked.push(name);
      else break;
    }
  });
  await new Promise((r) => setTimeout(r, 700));
  d0.proc.kill('SIGKILL');
  stop = true;
  await Promise.all(writers);
  await d0.stop();
  t.ok(acked.length > 20, `writes were acknowledged before the kill (${acked.length})`);

  const d1 = await startDaemon({ dir });
  t.teardown(() => d1.stop());
  const listed = new Set((await call(d1.socket, 'admin.vm.feature.List', 'work')).content.split('\n'));
  const lost = acked.filter((n) => !listed.has(n));
  t.same(lost, [], 'every acknowledged feature is there after the restart');
  t.equal(await d1.stop('SIGTERM'), 0, 'clean stop');
  // after a clean stop, qubes.xml alone holds everything
  const left = readdirSync(dir).filter((f) => f.startsWith('qubes.xml.journal'));
  t.same(left, [], 'no journal left after a clean stop');
  const xml = readFileSync(join(dir, 'qubes.xml'), 'utf8');
  t.ok(
    acked.every((n) => xml.includes(`<feature name="${n}">`)),
    'qubes.xml holds every acknowledged write',
  );
});

t.test('every call leaves one structured audit line, dom0 included', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qubesd-audit-'));
  const logFile = join(dir, 'audit.log');
  const d = await startDaemon({ args: ['--log', logFile] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
    rmSync(dir, { recursive: true, force: true });
  });
  await call(d.socket, 'admin.vm.property.Get', 'work', 'netvm');
  await call(d.socket, 'admin.vm.property.Get', 'nosuchvm', 'netvm', '', 'dom0');
  await rawCall(d.socket, Buffer.from('garbage without a header end'));
  await new Promise((r) => setTimeout(r, 200));
  const lines = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.ev === 'call');
  const ok = lines.find((l) => l.method === 'admin.vm.property.Get' && l.dest === 'work');
  t.match(ok, { source: 'dom0', arg: 'netvm', outcome: 'ok', socket: 'admin' }, 'successful call logged with source, method, argument, destination, outcome');
  t.type(ok?.ms, 'number', 'with its duration');
  t.match(
    lines.find((l) => l.dest === 'nosuchvm'),
    { outcome: 'QubesVMNotFoundError' },
    'refused call logged with the exception type',
  );
  t.ok(
    lines.some((l) => l.outcome === 'dropped'),
    'a framing error is logged as dropped',
  );
});

t.test('oversized and malformed requests are dropped without a reply, and change nothing', async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const before = await call(d.socket, 'admin.vm.feature.List', 'work');
  const big = Buffer.concat([Buffer.from('admin.vm.feature.Set+x dom0 name work\0'), Buffer.alloc(70000, 0x61)]);
  t.equal((await rawCall(d.socket, big)).length, 0, 'over 64 KiB: no reply');
  for (const bad of ['', '\0', 'admin.vm.List+ dom0 dom0\0', 'admin.vm.List+ dom0 keyword default\0']) {
    t.equal((await rawCall(d.socket, Buffer.from(bad))).length, 0, `framing error ${JSON.stringify(bad)}: no reply`);
  }
  t.equal((await call(d.socket, 'admin.vm.feature.List', 'work')).content, before.content, 'store unchanged');
});

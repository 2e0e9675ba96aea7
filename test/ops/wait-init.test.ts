// bin/qubes-wait-init-complete SECONDS --prefix DIR, as XAPI's
// xapi-wait-init-complete: 0 once every part has started, otherwise after
// SECONDS a message naming what is not ready. On a slow start, a failed
// start, stale ready files and a broken configuration.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { liveReady } from '../../lib/config/ready.js';
import { prefixDir, runBin, runBinSync, runStack } from './stack.js';

const ALL_MISSING =
  'qubesd (store loaded, hypervisor connected, running qubes reconciled); ' +
  'qubes-policy-daemon (policy loaded, socket listening); qrexec-dispatcher (qube sockets listening)';

t.test('nothing running: fails after SECONDS naming every part; stale ready files do not count', async (t) => {
  const prefix = prefixDir();
  const r = runBinSync('qubes-wait-init-complete', ['0.5', '--prefix', prefix]);
  t.equal(r.status, 1);
  t.equal(r.stderr, `qubes-wait-init-complete: not ready after 0.5 s: ${ALL_MISSING}\n`);
  // a ready file left by a killed daemon names a pid that is gone
  const dead = spawnSync('true').pid!;
  mkdirSync(join(prefix, 'var', 'run', 'qubes'), { recursive: true });
  writeFileSync(join(prefix, 'var', 'run', 'qubes', 'qubesd.ready'), JSON.stringify({ daemon: 'qubesd', pid: dead, since: '' }));
  const stale = runBinSync('qubes-wait-init-complete', ['0.2', '--prefix', prefix]);
  t.equal(stale.status, 1);
  t.equal(stale.stderr, `qubes-wait-init-complete: not ready after 0.2 s: ${ALL_MISSING}\n`);
  // the gateway counts once it is configured to listen
  writeFileSync(join(prefix, 'etc', 'qubes', 'qubes-rest.conf.d', 'on.conf'), 'listen = 127.0.0.1:8443\n');
  const rest = runBinSync('qubes-wait-init-complete', ['0', '--prefix', prefix]);
  t.equal(rest.stderr, `qubes-wait-init-complete: not ready after 0 s: ${ALL_MISSING}; qubes-rest (gateway listening)\n`);
  const usage = runBinSync('qubes-wait-init-complete', ['--prefix', prefix]);
  t.equal(usage.status, 2);
  t.match(usage.stderr, /^qubes-wait-init-complete: SECONDS \(a number\) is required\nusage: /);
});

t.test('slow start: waits until the whole stack is up, then exits 0', async (t) => {
  const prefix = prefixDir();
  const waiting = runBin('qubes-wait-init-complete', ['60', '--prefix', prefix]);
  let done = false;
  void waiting.then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, 1500));
  t.notOk(done, 'still waiting before the stack is started');
  const stack = runStack(prefix);
  const r = await waiting;
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  for (const d of ['qubesd', 'qubes-policy-daemon', 'qrexec-dispatcher']) {
    t.ok(liveReady(join(prefix, 'var', 'run', 'qubes', `${d}.ready`)), `${d} is ready when it returns`);
  }
  await stack.waitFor('qubes-stack: ready');
  const again = runBinSync('qubes-wait-init-complete', ['0', '--prefix', prefix]);
  t.equal(again.status, 0, 'a started stack answers at once');
  await stack.stop();
  const after = runBinSync('qubes-wait-init-complete', ['0', '--prefix', prefix]);
  t.equal(after.status, 1, 'a stopped stack is not ready: the ready files are gone');
});

t.test('failed start: the part that did not come up is named', async (t) => {
  const prefix = prefixDir();
  writeFileSync(
    join(prefix, 'etc', 'qubes', 'qubesd.conf.d', 'libvirt.conf'),
    `backend = libvirt\nlibvirt_uri = qemu+unix:///system?socket=${prefix}/no-libvirt-sock\n`,
  );
  const stack = runStack(prefix);
  const r = await runBin('qubes-wait-init-complete', ['3', '--prefix', prefix]);
  t.equal(r.status, 1);
  t.equal(r.stderr, `qubes-wait-init-complete: not ready after 3 s: ${ALL_MISSING}\n`);
  t.equal(await stack.exited, 1, 'the stack gave up');
  t.match(stack.out(), /qubesd: cannot start: cannot connect to the libvirt hypervisor backend/);
});

t.test('a configuration that does not load is reported at once', async (t) => {
  const prefix = prefixDir();
  const file = join(prefix, 'etc', 'qubes', 'qubes-policy-daemon.conf.d', 'bad.conf');
  writeFileSync(file, 'ask_answer = perhaps\n');
  const r = await runBin('qubes-wait-init-complete', ['30', '--prefix', prefix]);
  t.equal(r.status, 1);
  t.equal(r.stderr, `qubes-wait-init-complete: ${file}:1: ask_answer: must be one of (empty), allow, deny, got "perhaps"\n`);
  t.ok(r.ms < 10000, 'without waiting for SECONDS');
});

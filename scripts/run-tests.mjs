#!/usr/bin/env node
// Runs the compiled tap suite (dist/test/**/*.test.js) and ends with one plain
// line "N passed, M failed[, K skipped]" that CI and humans can read at a glance.
// Usage: node scripts/run-tests.mjs [test files or dirs under dist/test ...]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(p, out) {
  const st = statSync(p);
  if (st.isDirectory()) for (const e of readdirSync(p).sort()) collect(join(p, e), out);
  else if (p.endsWith('.test.js')) out.push(p);
  return out;
}
const roots = process.argv.slice(2);
const files = (roots.length ? roots : ['dist/test']).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('no test files found (did the build run?)');
  process.exit(1);
}
// The hypervisor tests use a real libvirtd. Start our private one when the
// packages are installed and none answers yet (.ci/run installs them; when a
// system libvirtd holds /run/libvirt, .ci/libvirt.sh keeps ours in a private
// mount namespace). If ours cannot start but the system's answers, use that
// one. Otherwise those tests say so loudly and skip.
const libvirtDir = '/tmp/qubes-libvirt';
const libvirtSock = join(libvirtDir, 'libvirt-sock');
const systemSock = '/run/libvirt/libvirt-sock';
const answers = (sock) =>
  existsSync(sock) && spawnSync('virsh', ['-q', '-c', `qemu+unix:///system?socket=${sock}`, 'version'], { stdio: 'ignore' }).status === 0;
const useLibvirt = (sock) => {
  process.env.QUBES_TEST_LIBVIRT_SOCK = sock;
  process.env.QUBES_TEST_LIBVIRT_URI = `qemu+unix:///system?socket=${sock}`;
};
if (!process.env.QUBES_TEST_LIBVIRT_SOCK) {
  // never restart a libvirtd that answers: guests of other runs live there
  if (
    answers(libvirtSock) ||
    (process.getuid?.() === 0 &&
      existsSync('.ci/libvirt.sh') &&
      spawnSync('sh', ['.ci/libvirt.sh', libvirtDir], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, QUBES_LIBVIRT_NO_INSTALL: '1' } })
        .status === 0)
  ) {
    useLibvirt(libvirtSock);
  } else if (answers(systemSock)) {
    console.error(`run-tests: NOTE: using the system libvirtd at ${systemSock} for the libvirt/QEMU tests (ours could not start)`);
    useLibvirt(systemSock);
  } else {
    console.error('run-tests: NOTE: no libvirtd could be started here; the libvirt/QEMU tests will skip (install: sh .ci/libvirt.sh)');
  }
}
const child = spawn(process.execPath, ['node_modules/tap/dist/esm/run.mjs', '-R', 'tap', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
let pass = 0,
  fail = 0,
  skip = 0,
  buf = '',
  failsInFile = 0;
const failures = [];
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    // Count assertions and subtests at depth >= 1 (depth 0 is one line per file).
    // A file that fails as a whole (crash, no tests, timeout) fails at depth 0
    // without a failing assertion inside: count it too.
    const top = /^(not ok|ok) \d+ - (.*)$/.exec(line);
    if (top) {
      if (top[1] === 'not ok' && failsInFile === 0) {
        fail++;
        failures.push(line.trim());
      }
      failsInFile = 0;
      continue;
    }
    const m = /^( +)(not ok|ok) \d+(.*)$/.exec(line);
    if (!m) continue;
    if (/# (SKIP|TODO)/i.test(m[3])) skip++;
    else if (m[2] === 'ok') pass++;
    else {
      fail++;
      failsInFile++;
      failures.push(line.trim());
    }
  }
});
child.on('exit', (code) => {
  if (failures.length) {
    console.log('\nFailures:');
    for (const f of failures.slice(0, 50)) console.log('  ' + f);
  }
  console.log(`\n${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}`);
  process.exit(code === 0 && fail === 0 ? 0 : 1);
});

// `qubes-stack restart --prefix DIR` on a running stack: the daemons restart
// in order; a running qube keeps running and is listed Running afterwards; a
// backup in flight ends cancelled (its caller is told) with nothing left in
// the destination; an admin.Events client sees its stream end cleanly
// (whole frames, then EOF). Then the operator's third command,
// qubes-wait-init-complete, returns once the new daemons are up.
//
// The simulator keeps its domains in BASE_DIR/sim-domains.json, so a
// simulated running qube outlives qubesd; with QUBES_TEST_LIBVIRT_URI (the
// test runner sets it when .ci/libvirt.sh's libvirtd answers) the same runs
// with a real QEMU guest, whose QEMU process must be the same one after.
import t from 'tap';
import { chmodSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync, closeSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { BOOTS_WITHOUT_KERNEL, call } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';
import { FrameStreamParser } from '../../lib/qubesd-client.js';
import { prefixDir, runBin, runBinSync, runStack } from './stack.js';

interface Stream {
  frames: string[];
  ended: Promise<{ clean: boolean; leftover: number }>;
}

/**
 * An admin.Events client that also sees how its stream ended: frames are
 * parsed by lib/qubesd-client.ts's FrameStreamParser; `leftover` is what
 * followed the last whole frame (0 when the stream ended cleanly).
 */
function eventStream(socket: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const frames: string[] = [];
    let error = false;
    let settle: (r: { clean: boolean; leftover: number }) => void = () => {};
    const ended = new Promise<{ clean: boolean; leftover: number }>((r) => {
      settle = r;
    });
    const parser = new FrameStreamParser((e) => {
      frames.push(`${e.subject}:${e.event}`);
      if (e.event === 'connection-established' && frames.length === 1) resolve({ frames, ended });
    });
    c.on('connect', () => c.end(encodeRequest('admin.Events', '', 'dom0', 'dom0')));
    c.on('error', () => {
      error = true;
    });
    c.on('data', (d: Buffer) => parser.push(d));
    c.on('close', () => {
      settle({ clean: !error, leftover: parser.trailer()?.length ?? 0 });
      if (!frames.length) reject(new Error('no stream'));
    });
  });
}

async function ok(socket: string, method: string, dest: string, arg = '', payload = ''): Promise<string> {
  const r = await call(socket, method, dest, arg, payload);
  if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type}: ${r.message}`);
  return r.content;
}

const LIBVIRT_URI = process.env.QUBES_TEST_LIBVIRT_URI;
const backends: Array<'sim' | 'libvirt'> = ['sim'];
if (LIBVIRT_URI) backends.push('libvirt');
else {
  process.stderr.write(
    '\n*** ops/restart: QUBES_TEST_LIBVIRT_URI is not set: the whole-stack restart with a real QEMU guest is SKIPPED (run sh .ci/libvirt.sh) ***\n',
  );
  t.test('whole-stack restart with a running QEMU guest', { skip: 'no libvirtd (run sh .ci/libvirt.sh)' }, async () => {});
}

for (const backend of backends) {
  t.test(`restart on ${backend}: running qube kept, backup cancelled without a trace, event stream ends cleanly`, { timeout: 240000 }, async (t) => {
    const prefix = prefixDir({ backend });
    // QEMU runs as an unprivileged user and must reach the volume files.
    if (backend === 'libvirt') {
      chmodSync(prefix, 0o755);
      writeFileSync(join(prefix, 'etc', 'qubes', 'qubesd.conf.d', '10-libvirt.conf'), `libvirt_uri = ${LIBVIRT_URI}\n`);
    }
    const stack = runStack(prefix);
    await stack.waitFor('qubes-stack: ready');
    const sock = join(prefix, 'var', 'run', 'qubesd.sock');
    const vm = `keep${process.pid % 10000}`;
    await ok(sock, 'admin.vm.Create.StandaloneVM', 'dom0', '', `name=${vm} label=red`);
    for (const [p, v] of BOOTS_WITHOUT_KERNEL) await ok(sock, 'admin.vm.property.Set', vm, p!, v!);
    // removed, not only killed: a shared libvirtd keeps a domain's definition
    // after the stack is gone, and a later run whose pid gives the same name
    // could not start it
    t.teardown(async () => {
      await call(sock, 'admin.vm.Kill', vm).catch(() => undefined);
      await call(sock, 'admin.vm.Remove', vm).catch(() => undefined);
    });
    await ok(sock, 'admin.vm.Start', vm);
    t.match(await ok(sock, 'admin.vm.List', vm), new RegExp(`^${vm} class=StandaloneVM state=Running uuid=\\S+\n$`), 'running before');
    const qemuPidFile = `/run/libvirt/qemu/${vm}.pid`;
    const qemuPid = backend === 'libvirt' && existsSync(qemuPidFile) ? readFileSync(qemuPidFile, 'utf8').trim() : null;

    // a backup slow enough to be in flight: 64 MiB of random data, xz
    await ok(sock, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
    await ok(sock, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
    const img = join(prefix, 'var', 'lib', 'qubes', 'appvms', 'work', 'private.img');
    const fd = openSync(img, 'r+');
    for (let i = 0; i < 8; i++) writeSync(fd, randomBytes(8 << 20), 0, 8 << 20, (64 << 20) + i * (8 << 20));
    closeSync(fd);
    const out = join(prefix, 'backups');
    mkdirSync(out);
    writeFileSync(
      join(prefix, 'etc', 'qubes', 'backup', 'slow.conf'),
      `include: [work]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: pw\ncompression: xz\n`,
    );

    const events = await eventStream(sock);
    const backup = call(sock, 'admin.backup.Execute', 'dom0', 'slow');
    let early = '';
    void backup.then((r) => {
      early = `${r.type ?? 'OK'} ${r.message ?? ''}`;
    });
    const deadline = Date.now() + 30000;
    // in flight: the archive is being written under its temporary name
    while (readdirSync(out).length === 0) {
      if (Date.now() > deadline) throw new Error(`the backup did not start writing: ${events.frames.join(', ')}; backup: ${early}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.equal(early, '', 'the backup is still running when the restart begins');
    const partial = readdirSync(out);
    const oldReady = JSON.parse(readFileSync(join(prefix, 'var', 'run', 'qubes', 'qubesd.ready'), 'utf8')) as { pid: number };

    const restart = await runBin('qubes-stack', ['restart', '--prefix', prefix]);
    t.equal(restart.status, 0, restart.stderr);
    t.equal(
      restart.stdout,
      `qubes-stack restart: the daemons are restarting in order; wait for them with: qubes-wait-init-complete SECONDS --prefix ${prefix}\n`,
    );

    const r = await backup;
    t.equal(r.type, 'BackupCancelledError', `the backup's caller is told it was cancelled (${r.type}: ${r.message})`);
    t.same(readdirSync(out), [], `no archive and no temporary file in the destination (there was ${partial.join(', ')})`);
    const end = await events.ended;
    t.same(end, { clean: true, leftover: 0 }, 'the event stream ended with whole frames and EOF');
    t.equal(events.frames[0], ':connection-established');

    const wait = await runBin('qubes-wait-init-complete', ['60', '--prefix', prefix]);
    t.equal(wait.status, 0, wait.stderr);
    const newReady = JSON.parse(readFileSync(join(prefix, 'var', 'run', 'qubes', 'qubesd.ready'), 'utf8')) as { pid: number };
    t.not(newReady.pid, oldReady.pid, 'a new qubesd');
    await stack.waitFor('qubes-stack: ready again');
    const order = [...stack.out().matchAll(/^\[(qubesd|qrexec-dispatcher)\] (?:qubesd: listening|qrexec-dispatcher: serving)/gm)].map((m) => m[1]);
    t.same(order, ['qubesd', 'qrexec-dispatcher', 'qubesd', 'qrexec-dispatcher'], 'started in order, twice');

    t.match(await ok(sock, 'admin.vm.List', vm), new RegExp(`^${vm} class=StandaloneVM state=Running uuid=\\S+\n$`), 'the qube is still running');
    if (qemuPid) t.equal(readFileSync(qemuPidFile, 'utf8').trim(), qemuPid, 'the same QEMU process');
    t.match(await ok(sock, 'admin.vm.property.Get', 'work', 'backup_timestamp'), /^default=True/, 'the cancelled backup is not recorded');
    const again = await eventStream(sock);
    t.equal(again.frames[0], ':connection-established', 'a new event stream works');
    await ok(sock, 'admin.vm.Kill', vm);
    await ok(sock, 'admin.vm.Remove', vm);
    await stack.stop();
    t.equal(stack.proc.exitCode, 0);
    t.equal(
      runBinSync('qubes-stack', ['restart', '--prefix', prefix]).stderr,
      `qubes-stack restart: no running qubes-stack for ${prefix} (no ${prefix}/var/run/qubes/qubes-stack.pid)\n`,
      'restart needs a running stack',
    );
  });
}

// The VM life cycle through qubesd's real socket, on both backends: the
// in-process simulator, and a real QEMU guest under the libvirtd that
// .ci/libvirt.sh starts. Covers start, pause, unpause, kill, start again,
// shutdown with a timeout (a guest sitting in its firmware ignores ACPI, so
// qubesd must kill it), restarting qubesd while the guest runs, the refusals
// that depend on the power state, and the event stream.
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOOTS_WITHOUT_KERNEL, call, startDaemon, subscribeEvents, type Daemon } from '../helpers/qubesd.js';

const LIBVIRT_URI = process.env.QUBES_TEST_LIBVIRT_URI;

interface Backend {
  name: string;
  args: string[];
}
const backends: Backend[] = [{ name: 'sim', args: ['--backend', 'sim'] }];
if (LIBVIRT_URI) backends.push({ name: 'libvirt-qemu', args: ['--backend', 'libvirt', '--libvirt-uri', LIBVIRT_URI] });
else {
  console.error(
    '\n*** lifecycle: QUBES_TEST_LIBVIRT_URI is not set and no libvirtd answers: the real-QEMU lifecycle test is SKIPPED (run sh .ci/libvirt.sh) ***\n',
  );
  t.test('life cycle on a real QEMU guest', { skip: 'no libvirtd (run sh .ci/libvirt.sh)' }, async () => {});
}

async function ok(d: Daemon, method: string, dest: string, arg = '', payload = ''): Promise<string> {
  const r = await call(d.socket, method, dest, arg, payload);
  if (!r.ok) throw new Error(`${method} ${dest} ${arg}: ${r.type}: ${r.message}`);
  return r.content;
}

async function state(d: Daemon, vm: string): Promise<string> {
  const line = await ok(d, 'admin.vm.List', vm);
  return /state=(\S+)/.exec(line)![1]!;
}

for (const b of backends) {
  t.test(`life cycle on ${b.name}`, { timeout: 240000 }, async (t) => {
    // QEMU runs as an unprivileged user and must reach the volume files.
    const dir = mkdtempSync(join(tmpdir(), `qubes-lc-${b.name}-`));
    chmodSync(dir, 0o755);
    const vm = `lc${process.pid % 10000}`;
    let d = await startDaemon({ dir, args: b.args });
    t.teardown(async () => {
      await d.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });

    await ok(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', `name=${vm} label=red`);
    for (const [p, v] of [...BOOTS_WITHOUT_KERNEL, ['shutdown_timeout', '2']]) {
      await ok(d, 'admin.vm.property.Set', vm, p!, v!);
    }
    const ev = await subscribeEvents(d.socket);
    t.teardown(() => ev.close());

    // refusals that depend on the power state
    for (const [m, type] of [
      ['admin.vm.Pause', 'QubesVMNotRunningError'],
      ['admin.vm.Unpause', 'QubesVMNotPausedError'],
      ['admin.vm.Kill', 'QubesVMNotStartedError'],
      ['admin.vm.Shutdown', 'QubesVMNotStartedError'],
    ]) {
      const r = await call(d.socket, m!, vm);
      t.equal(r.type, type, `${m} on a halted qube`);
    }

    await ok(d, 'admin.vm.Start', vm);
    t.equal(await state(d, vm), 'Running', 'running after Start');
    await ev.waitFor((e) => e.subject === vm && e.event === 'domain-start');
    t.same(
      ev.events.filter((e) => e.subject === vm && /^domain-(pre-start|spawn|start)$/.test(e.event)).map((e) => e.event),
      ['domain-pre-start', 'domain-spawn', 'domain-start'],
      'start events in Qubes order',
    );
    t.equal(await ok(d, 'admin.vm.Start', vm), '', 'starting a running qube is a no-op, as in Qubes');
    t.match(await ok(d, 'admin.vm.CurrentState', vm), /^mem=\d+ mem_static_max=\d+ cputime=\d+ power_state=Running$/);
    const rm = await call(d.socket, 'admin.vm.Remove', vm);
    t.equal(rm.type, 'QubesVMNotHaltedError', 'a running qube cannot be removed');

    await ok(d, 'admin.vm.Pause', vm);
    t.equal(await state(d, vm), 'Paused');
    await ev.waitFor((e) => e.subject === vm && e.event === 'domain-paused');
    t.equal((await call(d.socket, 'admin.vm.Pause', vm)).type, 'QubesVMNotRunningError', 'pausing a paused qube');
    await ok(d, 'admin.vm.Unpause', vm);
    t.equal(await state(d, vm), 'Running');

    await ok(d, 'admin.vm.Kill', vm);
    t.equal(await state(d, vm), 'Halted', 'halted when Kill returns');
    await ev.waitFor((e) => e.subject === vm && e.event === 'domain-shutdown');
    const stops = ev.events.filter((e) => e.subject === vm && (e.event === 'domain-stopped' || e.event === 'domain-shutdown')).map((e) => e.event);
    t.same(stops, ['domain-stopped', 'domain-shutdown'], 'stop events once each, in Qubes order');

    // start again; restart qubesd under the running guest
    await ok(d, 'admin.vm.Start', vm);
    ev.close();
    t.equal(await d.stop('SIGTERM'), 0, 'qubesd exits cleanly on SIGTERM');
    d = await startDaemon({ dir, args: b.args });
    t.equal(await state(d, vm), 'Running', 'still running and reported so after qubesd restarted');

    // shutdown with wait: the guest ignores ACPI in its firmware on QEMU
    // (the simulator obeys), so on QEMU the timeout kills it.
    const ev2 = await subscribeEvents(d.socket);
    t.teardown(() => ev2.close());
    const sd = await call(d.socket, 'admin.vm.Shutdown', vm, 'wait');
    if (b.name === 'sim') t.ok(sd.ok, 'Shutdown+wait completes on a guest that obeys');
    else t.equal(sd.type, 'QubesVMShutdownTimeoutError', 'Shutdown+wait times out on a guest that ignores ACPI');
    t.equal(await state(d, vm), 'Halted', 'halted after Shutdown+wait (killed after the timeout where needed)');
    await ev2.waitFor((e) => e.subject === vm && e.event === 'domain-stopped');
    t.equal((await call(d.socket, 'admin.vm.Shutdown', vm, 'bogus')).type, 'ProtocolError', 'bad Shutdown argument');

    await ok(d, 'admin.vm.Remove', vm);
  });
}

t.test('disposables: created from a disposable template, streamed stats, removed with their files when they stop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qubes-disp-'));
  const d = await startDaemon({ dir, args: ['--backend', 'sim'] });
  t.teardown(async () => {
    await d.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await ok(d, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await ok(d, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=dvm label=red');
  const refused = await call(d.socket, 'admin.vm.CreateDisposable', 'dvm');
  t.equal(refused.type, 'QubesException', 'refused while template_for_dispvms is False');
  await ok(d, 'admin.vm.property.Set', 'dvm', 'template_for_dispvms', 'True');
  t.equal((await call(d.socket, 'admin.vm.CreateDisposable', 'dvm', '', 'bogus')).type, 'ProtocolError', 'bad payload');
  const uuidReply = await ok(d, 'admin.vm.CreateDisposable', 'dvm', '', 'uuid');
  t.match(uuidReply, /^uuid:[0-9a-f-]{36}$/, 'payload "uuid" answers with the new qube\'s uuid');
  const name = await ok(d, 'admin.vm.CreateDisposable', 'dvm');
  t.match(name, /^disp\d+$/, 'named disp<N>');
  t.match(await ok(d, 'admin.vm.List', name), /class=DispVM state=Halted/);
  t.match(await ok(d, 'admin.vm.property.Get', name, 'template'), /type=vm dvm$/, 'based on the disposable template');
  t.match(await ok(d, 'admin.vm.tag.List', name), /created-by-dom0/);

  await ok(d, 'admin.vm.Start', name);
  const stats = await subscribeEvents(d.socket, 'dom0', 'dom0', 'admin.vm.Stats');
  const st = await stats.waitFor((e) => e.event === 'vm-stats' && e.subject === name);
  stats.close();
  t.ok(Number(st.kwargs.memory_kb) > 0, 'vm-stats carries memory_kb');
  t.match(
    Object.keys(st.kwargs),
    ['memory_kb', 'memory_assigned_total', 'memory_assigned_usable', 'memory_with_swap_used', 'cpu_time', 'cpu_usage', 'online_vcpus'],
    "with Qubes' keys",
  );

  const ev = await subscribeEvents(d.socket);
  t.teardown(() => ev.close());
  await ok(d, 'admin.vm.Shutdown', name, 'wait');
  await ev.waitFor((e) => e.event === 'domain-delete' && e.kwargs.vm === name);
  t.equal((await call(d.socket, 'admin.vm.List', name)).type, 'QubesVMNotFoundError', 'gone after it stopped');
  t.notOk(existsSync(join(dir, 'base', 'appvms', name)), 'and its directory with it');
});

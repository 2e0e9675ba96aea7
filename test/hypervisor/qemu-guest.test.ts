// A real guest: QEMU (TCG when KVM is not usable) with 64 MiB, one vcpu, no
// disk, sitting in its firmware: the StandaloneVM of the issue
// (virt_mode=hvm, empty kernel). Its XML comes from our generator.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { LibvirtBackend } from '../../qubesd/hypervisor/libvirt-backend.js';
import { EventLog, libvirtSocket, skipLoudly, tinySpec, uniqueName } from './helpers.js';

const sock = await libvirtSocket();
if (!sock) {
  t.test('QEMU guest', { skip: skipLoudly('the QEMU guest lifecycle') }, async () => {});
} else {
  t.test('tiny HVM guest: start, stats, pause, resume, kill; survives a qubesd restart', async (t) => {
    const uri = `qemu+unix:///system?socket=${sock}`;
    const spec = tinySpec(uniqueName('qemu-tiny'), { memoryMb: 64, vcpus: 1, virtMode: 'hvm', kernel: null });
    let b = new LibvirtBackend({ uri });
    await b.connect();
    t.ok(b.flavour === 'qemu' || b.flavour === 'kvm', `QEMU flavour (${b.flavour})`);
    let log = new EventLog(b, spec.name);
    t.teardown(async () => {
      // Whatever happened, leave no guest and no connection behind.
      await b.close();
      const c = new LibvirtBackend({ uri });
      await c.connect();
      if ((await c.state(spec.name)) !== 'Halted') await c.destroy(spec.name);
      if ((await c.list()).some((d) => d.name === spec.name)) await c.undefine(spec.name);
      await c.close();
    });

    await b.start(spec);
    await log.waitFor((e) => e.event === 'started', 30_000, 'started');
    t.same(
      log.kinds().filter((k) => !k.startsWith('defined')),
      ['started/booted'],
      'same start events as the simulator',
    );
    t.equal(await b.state(spec.name), 'Running');
    const dom = await b.client.lookupByName(spec.name);
    const pid = Number(readFileSync(`/run/libvirt/qemu/${spec.name}.pid`, 'utf8'));
    t.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system-x86_64'), 'a QEMU process runs the guest');
    t.ok(dom.id > 0, 'with a domain id');
    const st = (await b.stats()).find((s) => s.name === spec.name)!;
    t.equal(st.vcpus, 1);
    t.equal(st.maxMemoryKb, 64 * 1024);
    t.ok(st.cpuTimeNs > 0, 'the firmware has used some CPU');

    await b.pause(spec.name);
    await log.waitFor((e) => e.event === 'paused', 10_000, 'paused');
    t.equal(await b.state(spec.name), 'Paused');
    await b.resume(spec.name);
    await log.waitFor((e) => e.event === 'resumed', 10_000, 'resumed');
    t.equal(await b.state(spec.name), 'Running');
    const pm = await b.suspend(spec.name).then(
      () => null,
      (e: { type?: string }) => e,
    );
    t.equal(pm?.type, 'QubesNotImplementedError', 'S3 suspend without a guest agent is refused cleanly');
    t.equal(await b.state(spec.name), 'Running');

    // qubesd goes away and comes back: the guest keeps running and is found.
    await b.close();
    t.equal(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu'), true, 'closing the connection leaves the guest alone');
    b = new LibvirtBackend({ uri });
    const resync = new Promise<Array<{ name: string; state: string }>>((r) => b.once('resync', r));
    await b.connect();
    t.equal((await resync).find((d) => d.name === spec.name)?.state, 'Running', 'a restarted qubesd sees it running');

    log = new EventLog(b, spec.name);
    await b.destroy(spec.name);
    const stopped = await log.waitFor((e) => e.event === 'stopped', 30_000, 'stopped');
    t.equal(stopped.detail, 'destroyed');
    t.equal(await b.state(spec.name), 'Halted');
    let gone = false;
    try {
      readFileSync(`/proc/${pid}/cmdline`);
    } catch {
      gone = true;
    }
    t.ok(gone, 'the QEMU process is gone (reaped)');
    await b.undefine(spec.name);
    await b.close();
  });

  t.test('the same guest under TCG emulation', async (t) => {
    const b = new LibvirtBackend({ uri: `qemu+unix:///system?socket=${sock}`, accel: 'tcg' });
    await b.connect();
    const spec = tinySpec(uniqueName('qemu-tcg'));
    t.teardown(async () => {
      if ((await b.state(spec.name)) !== 'Halted') await b.destroy(spec.name);
      if ((await b.list()).some((d) => d.name === spec.name)) await b.undefine(spec.name);
      await b.close();
    });
    t.equal(b.flavour, 'qemu');
    t.match(b.xmlFor(spec), '<domain type="qemu">');
    await b.start(spec);
    t.equal(await b.state(spec.name), 'Running');
    t.match(await b.client.getXmlDesc(await b.client.lookupByName(spec.name)), "<domain type='qemu'", 'libvirt runs it as TCG');
    await b.destroy(spec.name);
    t.equal(await b.state(spec.name), 'Halted');
  });
}

// The behaviour every HypervisorBackend must show, written once and run
// against each backend (sim-backend.test.ts, libvirt-test-driver.test.ts,
// and the lifecycle part against a real QEMU guest in qemu-guest.test.ts).

import type { Test } from 'tap';
import type { HypervisorBackend } from '../../qubesd/hypervisor/backend.js';
import { DomainSpecError } from '../../qubesd/hypervisor/domain-xml.js';
import { EventLog, rejectsWith, tinySpec, uniqueName } from './helpers.js';

export interface SuiteOptions {
  /** Fresh connected backend; the suite closes it. */
  make: () => Promise<HypervisorBackend>;
  /** Whether the driver implements ACPI S3 (PM) suspend. */
  pmSuspend: boolean;
}

const errType = (e: unknown) => (e as { type?: string }).type;

export function behaviourSuite(t: Test, opts: SuiteOptions): void {
  let b: HypervisorBackend;
  t.before(async () => {
    b = await opts.make();
  });
  t.teardown(async () => {
    await b.close();
  });

  t.test('define, inspect and undefine a domain', async (t) => {
    const spec = tinySpec(uniqueName('bh-def'));
    const log = new EventLog(b, spec.name);
    t.equal(await b.state(spec.name), 'Halted', 'unknown domain reads as Halted');
    await b.define(spec);
    await log.waitFor((e) => e.event === 'defined', undefined, 'defined');
    t.equal(await b.state(spec.name), 'Halted');
    const entry = (await b.list()).find((d) => d.name === spec.name);
    t.same(entry, { name: spec.name, uuid: spec.uuid, state: 'Halted', id: -1 });
    await b.define({ ...spec, memoryMb: 128 });
    await log.waitFor((e) => e.event === 'defined' && e.detail === 'updated', undefined, 'defined/updated');
    await b.undefine(spec.name);
    await log.waitFor((e) => e.event === 'undefined', undefined, 'undefined');
    t.notOk(
      (await b.list()).some((d) => d.name === spec.name),
      'gone from the list',
    );
    await rejectsWith(t, b.undefine(spec.name), 'QubesVMNotFoundError');
    log.stop();
  });

  t.test('start, pause, resume, destroy', async (t) => {
    const spec = tinySpec(uniqueName('bh-life'), { vcpus: 1, memoryMb: 64 });
    const log = new EventLog(b, spec.name);
    await b.start(spec);
    await log.waitFor((e) => e.event === 'started', undefined, 'started');
    t.equal(await b.state(spec.name), 'Running');
    const entry = (await b.list()).find((d) => d.name === spec.name)!;
    t.equal(entry.state, 'Running');
    t.ok(entry.id >= 0, 'active domain has an id');
    const st = (await b.stats()).find((s) => s.name === spec.name)!;
    t.ok(st, 'running domain has stats');
    t.equal(st.vcpus, 1);
    t.equal(st.uuid, spec.uuid);
    t.ok(st.maxMemoryKb >= st.memoryKb && st.memoryKb > 0, 'memory figures are sane');
    await rejectsWith(t, b.start(spec), 'QubesVMNotHaltedError', 'start twice');
    await rejectsWith(t, b.undefine(spec.name), 'QubesVMNotHaltedError', 'undefine while running');
    await rejectsWith(t, b.resume(spec.name), 'QubesVMNotPausedError', 'resume while running');

    await b.pause(spec.name);
    await log.waitFor((e) => e.event === 'paused', undefined, 'paused');
    t.equal(await b.state(spec.name), 'Paused');
    await rejectsWith(t, b.pause(spec.name), 'QubesVMNotRunningError', 'pause twice');
    await b.resume(spec.name);
    await log.waitFor((e) => e.event === 'resumed', undefined, 'resumed');
    t.equal(await b.state(spec.name), 'Running');

    await b.destroy(spec.name);
    const stopped = await log.waitFor((e) => e.event === 'stopped', undefined, 'stopped');
    t.equal(stopped.detail, 'destroyed');
    t.equal(await b.state(spec.name), 'Halted');
    t.notOk(
      (await b.stats()).some((s) => s.name === spec.name),
      'no stats once halted',
    );
    await rejectsWith(t, b.destroy(spec.name), 'QubesVMNotStartedError', 'destroy twice');
    await rejectsWith(t, b.pause(spec.name), 'QubesVMNotRunningError', 'pause a halted domain');
    t.same(
      log.kinds().filter((k) => !k.startsWith('defined')),
      ['started/booted', 'paused/paused', 'resumed/unpaused', 'stopped/destroyed'],
      'event sequence',
    );
    await b.undefine(spec.name);
    log.stop();
  });

  t.test('graceful shutdown ends in Halted with a stopped/shutdown event', async (t) => {
    const spec = tinySpec(uniqueName('bh-shut'));
    const log = new EventLog(b, spec.name);
    await b.start(spec);
    await log.waitFor((e) => e.event === 'started');
    await b.shutdown(spec.name);
    const stopped = await log.waitFor((e) => e.event === 'stopped', undefined, 'stopped');
    t.equal(stopped.detail, 'shutdown');
    t.equal(await b.state(spec.name), 'Halted');
    await rejectsWith(t, b.shutdown(spec.name), 'QubesVMNotStartedError', 'shutdown a halted domain');
    await b.undefine(spec.name);
    log.stop();
  });

  t.test('calls on a domain the hypervisor does not know', async (t) => {
    const name = uniqueName('bh-none');
    await rejectsWith(t, b.pause(name), 'QubesVMNotRunningError');
    await rejectsWith(t, b.destroy(name), 'QubesVMNotStartedError');
    await rejectsWith(t, b.wakeup(name), 'QubesVMNotSuspendedError');
    await rejectsWith(t, b.undefine(name), 'QubesVMNotFoundError');
  });

  t.test('an invalid spec is refused before anything happens', async (t) => {
    const spec = tinySpec(uniqueName('bh-bad'), { memoryMb: 0 });
    await rejectsWith(t, b.start(spec), DomainSpecError);
    await rejectsWith(t, b.define({ ...spec, memoryMb: 64, uuid: 'not-a-uuid' }), DomainSpecError);
    t.equal(await b.state(spec.name), 'Halted');
  });

  t.test('PM suspend and wakeup', async (t) => {
    const spec = tinySpec(uniqueName('bh-pm'));
    const log = new EventLog(b, spec.name);
    await b.start(spec);
    await log.waitFor((e) => e.event === 'started');
    if (opts.pmSuspend) {
      await b.suspend(spec.name);
      await log.waitFor((e) => e.event === 'suspended', undefined, 'suspended');
      t.equal(await b.state(spec.name), 'Suspended');
      await rejectsWith(t, b.pause(spec.name), 'QubesVMNotRunningError');
      await b.wakeup(spec.name);
      await log.waitFor((e) => e.event === 'started' && e.detail === 'wakeup', undefined, 'started/wakeup');
      t.equal(await b.state(spec.name), 'Running');
    } else {
      const err = await b.suspend(spec.name).then(
        () => null,
        (e: unknown) => e,
      );
      t.equal(errType(err), 'QubesNotImplementedError', 'the driver says it cannot');
      t.equal(await b.state(spec.name), 'Running', 'and nothing changed');
    }
    await b.destroy(spec.name);
    await log.waitFor((e) => e.event === 'stopped');
    await b.undefine(spec.name);
    log.stop();
  });
}

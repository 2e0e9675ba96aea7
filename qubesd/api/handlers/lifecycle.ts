// admin.vm.Start/Shutdown/Kill/Pause/Unpause/Suspend/Resume,
// admin.vm.CreateDisposable and the admin.vm.Stats stream, over the
// Lifecycle controller (qubesd/lifecycle/), which owns every conversation
// with the hypervisor.
import { mkdir } from 'node:fs/promises';
import type { Call, Handlers } from '../call.js';
import { PermissionDenied, ProtocolError, QubesException, QubesVMError, QubesVMNotHaltedError, QubesVMNotRunningError, pyRepr } from '../../errors.js';
import type { Vm } from '../../model/app.js';
import { truthy } from '../../model/values.js';
import { tryGet } from '../../model/properties.js';

const SHUTDOWN_ARGS = ['force', 'wait'];

/**
 * dom0 is Qubes' AdminVM, a "fake domain": start says it is not halted,
 * shutdown, kill and suspend refuse with QubesVMError. (AdminVM has no
 * pause, unpause or resume at all, so Qubes drops those connections; the
 * same refusal in words is the useful answer.)
 */
function refuseOnDom0(call: Call, verb: string): void {
  if (call.dest.klass !== 'AdminVM') return;
  if (verb === 'start') throw QubesVMNotHaltedError(call.dest.name, 'Cannot start Dom0 fake domain!');
  throw QubesVMError(`Cannot ${verb} Dom0 fake domain!`);
}

function shutdown(call: Call): Promise<void> {
  const args = call.arg ? call.arg.split('+') : [];
  if (!args.every((a) => SHUTDOWN_ARGS.includes(a))) throw ProtocolError(`Argument must match: ${SHUTDOWN_ARGS.join(', ')}`);
  refuseOnDom0(call, 'shutdown');
  return call.services.lifecycle.shutdown(call.dest, args.includes('force'), args.includes('wait'));
}

/** A dispid no qube uses (it also names the qube and picks its IP), random as in Qubes. */
function freeDispid(call: Call): number {
  const used = new Set(
    call.app
      .allVms()
      .filter((v) => v.klass === 'DispVM')
      .map((v) => Number(tryGet(v, 'dispid', 0))),
  );
  for (;;) {
    const n = 1 + Math.floor(Math.random() * 9999);
    if (!used.has(n) && !call.app.getVm(`disp${n}`)) return n;
  }
}

/** Qubes' DispVM.from_appvm: a new disposable on a disposable template, removed when it stops. */
async function createDisposable(call: Call): Promise<string> {
  if (!['', 'preload'].includes(call.arg)) throw PermissionDenied(`Argument not in ${pyRepr("'', 'preload'")}`);
  const payload = call.payload.toString('latin1');
  if (payload !== '' && payload !== 'uuid') throw ProtocolError("Invalid payload, expected empty string or 'uuid'");
  const { app } = call;
  const appvm: Vm | null =
    call.dest.name === 'dom0' ? (call.source.has('default_dispvm') ? call.source.vmProp('default_dispvm') : app.globalVm('default_dispvm')) : call.dest;
  // Qubes' DispVM.can_gen_disposable: no template at all gets the same words
  const refuse = () => QubesException('Refusing to create disposable out of app qube which has template_for_dispvms=False');
  if (!appvm) throw refuse();
  if (call.arg === 'preload') {
    app.events.fire(appvm.name, 'domain-preload-dispvm-start', [['reason', 'autostart was requested']]);
    return '';
  }
  if (!appvm.has('template_for_dispvms') || !truthy(appvm.prop('template_for_dispvms'))) throw refuse();
  const dispid = freeDispid(call);
  const label = appvm.label;
  if (!label) throw QubesException(`disposable template ${appvm.name} has no label`);
  const vm = app.addNewVm('DispVM', { name: `disp${dispid}`, label, template: appvm, creator: call.source, dispid });
  vm.values.set('auto_cleanup', true);
  try {
    await mkdir(vm.dirPath!, { recursive: true });
    await call.services.storage.createVolumes(vm, {});
    // a disposable inherits its template's firewall (Qubes clones it too)
    call.services.firewalls.clone(appvm, vm);
    // as DispVM.create_on_disk, before the creator's tags
    app.events.fire(vm.name, 'domain-create-on-disk', []);
  } catch (e) {
    app.removeVm(vm);
    throw e;
  }
  vm.addTag(`created-by-${call.source.name}`);
  vm.addTag(`disp-created-by-${call.source.name}`);
  app.markDirty(vm);
  return payload === 'uuid' ? `uuid:${vm.uuid}` : vm.name;
}

/** vm-stats events every stats_interval seconds until the client goes away. */
async function stats(call: Call): Promise<void> {
  const { app } = call;
  const lc = call.services.lifecycle;
  const only = call.dest.name === 'dom0' ? null : call.dest;
  call.sendEvent('', 'connection-established');
  const prev = new Map<string, { at: number; cpu: number }>();
  while (!call.signal.aborted) {
    // Qubes asks the hypervisor about that one qube, which has no domain id
    // unless it runs (or is paused): the stream ends with the exception
    if (only && (only.runtime.xid < 0 || !only.isRunning())) throw QubesVMNotRunningError(only.name);
    const now = Date.now();
    for (const s of await lc.stats()) {
      const vm = app.getVm(s.name);
      if (!vm || (only && vm !== only) || !call.filter.event(vm.name, 'vm-stats', [])) continue;
      vm.runtime.memKiB = s.memoryKb;
      vm.runtime.cputime = s.cpuTimeNs;
      const p = prev.get(s.name);
      // cpu_usage in percent of one host CPU over the last interval, as Qubes reports it
      const usage = p && now > p.at ? Math.round((((s.cpuTimeNs - p.cpu) / 1e6 / (now - p.at)) * 100) / Math.max(1, s.vcpus)) : 0;
      prev.set(s.name, { at: now, cpu: s.cpuTimeNs });
      // Keys and order as Qubes' _send_stats_single; memory figures beyond
      // memory_kb come from the guest's balloon driver in Qubes: without one,
      // the domain's current allocation is all there is to report.
      call.sendEvent(vm.name, 'vm-stats', [
        ['memory_kb', String(s.memoryKb)],
        ['memory_assigned_total', String(s.memoryKb)],
        ['memory_assigned_usable', String(s.memoryKb)],
        ['memory_with_swap_used', String(s.memoryKb)],
        ['cpu_time', String(Math.floor(s.cpuTimeNs / 1e6))],
        ['cpu_usage', String(Math.max(0, usage))],
        ['online_vcpus', String(s.vcpus)],
      ]);
    }
    const interval = Math.max(1, Number(tryGet(app, 'stats_interval', 3)) || 3) * 1000;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, interval);
      call.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
  }
}

export const handlers: Handlers = {
  'admin.vm.Start': (call) => {
    refuseOnDom0(call, 'start');
    return call.services.lifecycle.start(call.dest);
  },
  'admin.vm.Shutdown': shutdown,
  'admin.vm.Kill': (call) => {
    refuseOnDom0(call, 'kill');
    return call.services.lifecycle.kill(call.dest);
  },
  'admin.vm.Pause': (call) => {
    refuseOnDom0(call, 'pause');
    return call.services.lifecycle.pause(call.dest);
  },
  'admin.vm.Unpause': (call) => {
    refuseOnDom0(call, 'unpause');
    return call.services.lifecycle.unpause(call.dest);
  },
  'admin.vm.Suspend': (call) => {
    refuseOnDom0(call, 'suspend');
    return call.services.lifecycle.suspend(call.dest);
  },
  'admin.vm.Resume': (call) => {
    refuseOnDom0(call, 'resume');
    return call.services.lifecycle.resume(call.dest);
  },
  'admin.vm.Console': (call) => call.services.lifecycle.consoleTty(call.dest),
  'admin.vm.CreateDisposable': createDisposable,
  'admin.vm.Stats': stats,
};

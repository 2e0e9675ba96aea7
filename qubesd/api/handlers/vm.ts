// admin.vmclass.List, admin.vm.List, admin.vm.Create.<class>,
// admin.vm.CreateInPool.<class>, admin.vm.Remove, admin.vm.CurrentState.
import { mkdir } from 'node:fs/promises';
import type { Call, Handler, Handlers } from '../call.js';
import { VM_CLASSES } from '../../../lib/api-methods.js';
import { ProtocolError, QubesException, QubesVMAlreadyExistsError, QubesVMInUseError, QubesVMNotFoundError } from '../../errors.js';
import { validateVmName, type Vm } from '../../model/app.js';
import { TABLES } from '../../model/properties-vm.js';
import { validateLabelName, type Label } from '../../model/labels.js';
import { fire, tryGet } from '../../model/properties.js';
import { truthy } from '../../model/values.js';
import { OkReply } from '../../../lib/protocol/reply.js';

function listLine(vm: Vm): string {
  return `${vm.name} class=${vm.klass} state=${vm.power} uuid=${vm.uuid}\n`;
}

/** The whole list as dom0 sees it, reused while the app's listVersion
 * stays (no qube added or removed, no power state changed): tools poll
 * admin.vm.List, and on 1000 qubes building its 77 KB is most of the call;
 * the version makes a reuse cost the same with any number of qubes. */
interface ListCache {
  version: number;
  reply: OkReply;
}
const LIST_CACHE = new WeakMap<object, ListCache>();

function fullList(app: { allVms(): Vm[]; readonly listVersion: number }): OkReply {
  const c = LIST_CACHE.get(app);
  if (c && c.version === app.listVersion) return c.reply;
  const version = app.listVersion;
  let out = '';
  for (const vm of app.allVms()) out += listLine(vm);
  // the whole frame is kept: sending it again copies nothing
  const reply = new OkReply(out);
  LIST_CACHE.set(app, { version, reply });
  return reply;
}

const VOLUME_NAMES = ['root', 'private', 'volatile', 'kernel'];

/** admin.vm.Create.<class> / CreateInPool.<class>: Qubes' _vm_create. */
async function createVm(call: Call, klass: string, allowPool: boolean): Promise<void> {
  const { app } = call;
  let template: Vm | undefined;
  let invalidTemplate = false;
  if (call.arg) {
    if (!TABLES[klass]!.byName.has('template')) throw ProtocolError(`${klass} cannot be based on template`);
    template = app.getVm(call.arg);
    if (!template) invalidTemplate = true;
  }
  for (const b of call.payload) if (b > 0x7f) throw ProtocolError('Parameters contains non-ASCII characters');
  const given = new Set<string>(template ? ['template'] : []);
  let name: string | undefined;
  let label: Label | undefined;
  let pool: string | undefined;
  let poolSeen = false;
  const pools: Record<string, string> = {};
  let poolError: Error | undefined;
  const checkPool = (p: string): string => {
    if (!app.poolNames().includes(p)) poolError = QubesException('Unknown storage pool ' + p);
    return p;
  };
  for (const param of call.payload.toString('latin1').split(' ')) {
    const eq = param.indexOf('=');
    if (eq < 0) throw QubesException('not enough values to unpack (expected 2, got 1)');
    const key = param.slice(0, eq);
    const value = param.slice(eq + 1);
    if (given.has(key)) throw ProtocolError('Options must be unique');
    if (key === 'name') {
      validateVmName(value);
      name = value;
      given.add(key);
    } else if (key === 'label') {
      validateLabelName(value, true);
      try {
        label = app.labels.get(value);
        given.add(key);
      } catch {
        /* reported after the permission check, as Qubes */
      }
    } else if (key === 'pool' && allowPool) {
      if (poolSeen) throw ProtocolError("Option 'pool' must be unique");
      poolSeen = true;
      pool = checkPool(value);
    } else if (key.startsWith('pool:') && allowPool) {
      const volume = key.slice(5);
      if (!VOLUME_NAMES.includes(volume)) throw ProtocolError('Volume must be one of: ' + VOLUME_NAMES.join(', '));
      if (volume in pools) throw ProtocolError(`Option 'pool:${volume}' must be unique`);
      pools[volume] = checkPool(value);
    } else {
      if (!allowPool && (key === 'pool' || key.startsWith('pool:'))) {
        throw ProtocolError("Pool option specified but 'allow_pool' is False");
      }
      throw ProtocolError('Options does not match: name, label, pool, pool:');
    }
  }
  if (name === undefined) throw ProtocolError('Creation requested without key: name');
  if (label === undefined) throw ProtocolError('Creation requested without key: label');
  if (pool !== undefined && Object.keys(pools).length) {
    throw ProtocolError("Conflicting options specified: 'pool=', 'pool:volume='");
  }
  if (app.getVm(name)) throw QubesVMAlreadyExistsError(`Qube already exists: ${name}`);
  if (invalidTemplate) throw QubesVMNotFoundError(call.arg);
  if (poolError) throw poolError;

  const vm = app.addNewVm(klass, { name, label, ...(template ? { template } : {}), creator: call.source });
  try {
    if (vm.isQubesVM) {
      await mkdir(vm.dirPath!, { recursive: true });
      const placement = pool !== undefined ? { pool } : Object.keys(pools).length ? { pools } : {};
      await call.services.storage.createVolumes(vm, placement);
      // Qubes' DispVM.__init__ clones its template's firewall, whichever call made it
      if (vm.klass === 'DispVM' && vm.template) call.services.firewalls.clone(vm.template, vm);
      fire(vm, 'domain-create-on-disk');
    }
  } catch (e) {
    app.removeVm(vm);
    throw e;
  }
}

/** admin.vm.Remove: refused for dom0, rpm-installed qubes and qubes still in use. */
async function removeVm(call: Call): Promise<void> {
  const vm = call.dest;
  const { app } = call;
  if (vm.name === 'dom0') throw QubesVMInUseError(vm.name, "'dom0' cannot be removed");
  if (vm.isQubesVM && truthy(tryGet(vm, 'installed_by_rpm'))) {
    throw QubesVMInUseError(vm.name, 'VM installed by package manager: ' + vm.name);
  }
  await app.removeVmWithFiles(vm, (v) => call.services.storage.removeVolumes(v));
}

function currentState(vm: Vm): string {
  const running = vm.isRunning() && vm.isQubesVM;
  const maxmem = Number(tryGet(vm, 'maxmem', 0));
  const mem = vm.isAdmin || running ? vm.runtime.memKiB : 0;
  const staticMax = vm.isAdmin || running ? maxmem * 1024 : 0;
  const cputime = vm.isAdmin || running ? vm.runtime.cputime : 0;
  return `mem=${mem} mem_static_max=${staticMax} cputime=${cputime} power_state=${vm.power}`;
}

function build(): Handlers {
  const out: Record<string, Handler> = {
    'admin.vmclass.List': () =>
      [...VM_CLASSES]
        .sort()
        .map((c) => c + '\n')
        .join(''),
    'admin.vm.List': (call) => {
      if (call.dest.name === 'dom0' && call.source.isAdmin) return fullList(call.app);
      const vms = call.dest.name === 'dom0' ? call.app.allVms() : [call.dest];
      let out = '';
      for (const vm of vms) if (call.filter.vm(vm)) out += listLine(vm);
      return out;
    },
    'admin.vm.Remove': removeVm,
    'admin.vm.CurrentState': (call) => currentState(call.dest),
  };
  for (const klass of VM_CLASSES) {
    out[`admin.vm.Create.${klass}`] = (call) => createVm(call, klass, false);
    out[`admin.vm.CreateInPool.${klass}`] = (call) => createVm(call, klass, true);
  }
  return out;
}

export const handlers: Handlers = build();

// The global (system) properties of Qubes' qubes.app.Qubes, with their
// defaults, setters and the handlers that propagate changes to the qubes
// that inherit them.
import * as path from 'node:path';
import { QubesPropertyValueError } from '../errors.js';
import { PropTable, fire, forbidden, isDefault, NoValue, type PropDef } from './properties.js';
import { disposableTemplateSetter, netvmPostReset, netvmPreSet, prop, syncVmTag, validateKernel } from './properties-vm-rules.js';
import type { Value } from './values.js';
import type { QubesApp } from './app.js';
import type { Vm } from './vm.js';

const k = (v: Value) => () => v;

/** Qubes' _default_pool: a pool named 'default', else the file pool at the base directory. */
function defaultPool(app: QubesApp): Value {
  const names = app.poolNames();
  if (names.includes('default')) return 'default';
  for (const p of app.pools) {
    const attrs = new Map(p.attrs);
    if (!['file', 'file-reflink'].includes(attrs.get('driver') ?? '')) continue;
    if (path.resolve(attrs.get('dir_path') ?? '') === path.resolve(app.baseDir)) return attrs.get('name') ?? null;
  }
  throw new NoValue('Cannot determine default storage pool');
}

function poolSetter(app: QubesApp, v: Value): Value {
  if (!app.poolNames().includes(String(v))) throw QubesPropertyValueError('No such storage pool');
  return String(v);
}

function vmsUsingDefault(app: QubesApp, name: string): Vm[] {
  return app.allVms().filter((vm) => vm.has(name) && isDefault(vm, vm.table.byName.get(name)!));
}

function defaultNetvmSetter(app: QubesApp, v: Value): Value {
  if (v === null) return v;
  const net = v as Vm;
  for (const vm of vmsUsingDefault(app, 'netvm')) {
    if (net === vm || downstream(vm).has(net)) throw QubesPropertyValueError(`Network loop on '${vm.name}'`);
  }
  return v;
}

function downstream(vm: Vm): Set<Vm> {
  const out = new Set<Vm>();
  const todo = [vm];
  while (todo.length) {
    const cur = todo.pop()!;
    for (const d of vm.app.allVms()) {
      if (d.has('netvm') && d.netvm === cur && !out.has(d)) {
        out.add(d);
        todo.push(d);
      }
    }
  }
  return out;
}

/** default_guivm/default_audiovm: qubes using the default see a property-set of their own. */
function propagateVmDefault(kind: 'guivm' | 'audiovm') {
  return (app: QubesApp, newv: Value, oldv: Value | undefined): void => {
    for (const vm of vmsUsingDefault(app, kind)) {
      syncVmTag(vm, kind, newv as Vm | null);
      fire(vm, 'property-set:' + kind, [
        ['name', kind],
        ['newvalue', newv],
        ['oldvalue', oldv ?? null],
      ]);
    }
  };
}

function dispvmDefaultChanged(app: QubesApp, _n: Value | undefined, oldv: Value | undefined): void {
  for (const vm of vmsUsingDefault(app, 'default_dispvm')) {
    fire(vm, 'property-reset:default_dispvm', [
      ['name', 'default_dispvm'],
      ['oldvalue', oldv ?? null],
    ]);
  }
}

const GLOBAL: PropDef[] = [
  prop('default_guivm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: (app: QubesApp) => app.getVm('dom0') ?? null,
    postSet: propagateVmDefault('guivm'),
    help: 'Default GuiVM for VMs.',
  }),
  prop('default_audiovm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: (app: QubesApp) => app.getVm('dom0') ?? null,
    postSet: propagateVmDefault('audiovm'),
    help: 'Default AudioVM for VMs.',
  }),
  prop('default_netvm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: k(null),
    setter: defaultNetvmSetter,
    preSet: (app: QubesApp, newv: Value, oldv: Value | undefined) => {
      for (const vm of vmsUsingDefault(app, 'netvm')) {
        fire(vm, 'property-pre-set:netvm', [
          ['name', 'netvm'],
          ['newvalue', newv],
          ['oldvalue', oldv ?? null],
        ]);
        netvmPreSet(vm, newv);
      }
    },
    postSet: (app: QubesApp, _n: Value, oldv: Value | undefined) => {
      for (const vm of vmsUsingDefault(app, 'netvm')) {
        netvmPostReset(vm, oldv);
        fire(vm, 'property-reset:netvm', [
          ['name', 'netvm'],
          ['oldvalue', oldv ?? null],
        ]);
      }
    },
    help: 'Default NetVM for AppVMs. Initial state is None, which means that AppVMs are not connected to the Internet.',
  }),
  prop('default_template', 'vm', { stage: 3, allowNone: true, vmclass: 'TemplateVM', help: 'Default template for new AppVMs' }),
  prop('updatevm', 'vm', { stage: 3, allowNone: true, dflt: k(null), help: 'Which VM to use as yum proxy for updating AdminVM and TemplateVMs' }),
  prop('clockvm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: k(null),
    preSet: (_app: QubesApp, newv: Value) => {
      const vm = newv as Vm | null;
      if (vm && !vm.features.has('service.clocksync')) vm.setFeature('service.clocksync', true);
    },
    postSet: (_app: QubesApp, newv: Value, oldv: Value | undefined) => {
      const old = oldv as Vm | null | undefined;
      if (old === newv || !old) return;
      if (old.features.get('service.clocksync')) old.deleteFeature('service.clocksync');
    },
    help: 'Which VM to use as NTP proxy for updating AdminVM',
  }),
  prop('default_kernel', 'str', {
    stage: 3,
    py: null,
    preSet: (app: QubesApp, v: Value) => validateKernel(app, v),
    help: 'Which kernel to use when not overriden in VM',
  }),
  prop('default_dispvm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: k(null),
    setter: disposableTemplateSetter,
    postSet: dispvmDefaultChanged,
    postReset: (app: QubesApp, oldv: Value | undefined) => dispvmDefaultChanged(app, undefined, oldv),
    help: 'Default disposable template to be used for spawning disposable qubes for service calls in this system.',
  }),
  prop('management_dispvm', 'vm', {
    stage: 3,
    allowNone: true,
    dflt: k(null),
    setter: disposableTemplateSetter,
    help: 'Default disposable template to be used for spawning disposable qubes for managing a qube in this system.',
  }),
  prop('default_pool', 'str', { stage: 3, py: null, dflt: defaultPool, setter: poolSetter, help: 'Default storage pool' }),
  ...(['private', 'root', 'volatile', 'kernel'] as const).map((v) =>
    prop(`default_pool_${v}`, 'str', {
      stage: 3,
      py: null,
      setter: poolSetter,
      help: `Default storage pool for ${v} volumes`,
      dflt: (app: QubesApp) => app.globalValue('default_pool'),
    }),
  ),
  prop('default_qrexec_timeout', 'int', { stage: 3, dflt: k(60), help: 'Default time in seconds after which qrexec connection attempt is deemed failed' }),
  prop('default_shutdown_timeout', 'int', { stage: 3, dflt: k(60), help: 'Default time in seconds for VM shutdown to complete' }),
  prop('stats_interval', 'int', { stage: 3, dflt: k(3), help: 'Interval in seconds for VM stats reporting (memory, CPU usage)' }),
  prop('check_updates_vm', 'bool', { stage: 3, dflt: k(true), help: 'Check for updates inside qubes' }),
  prop('maxmem', 'int', { stage: 3, setter: forbidden, dflt: (app: QubesApp) => app.host.maxmemMiB, help: 'Maximum system memory.' }),
  prop('no_cpus', 'int', { stage: 3, setter: forbidden, dflt: (app: QubesApp) => app.host.noCpus, help: 'Quantity of CPUs' }),
];

export const GLOBAL_TABLE = new PropTable(GLOBAL);

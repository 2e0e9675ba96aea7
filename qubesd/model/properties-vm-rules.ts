// The rules behind the qube property tables (properties-vm.ts) and the
// global ones that share them (properties-global.ts): computed defaults,
// setters (Qubes' validation of a new value) and class handlers (Qubes'
// reactions to a change), as Qubes' qubes.vm.* modules define them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  QubesException,
  QubesPropertyValueError,
  QubesValueError,
  QubesVMInUseError,
  QubesVMNotHaltedError,
  QubesVMNotStartedError,
  pyRepr,
} from '../errors.js';
import { fire, getDefault, getValue, isDefault, NoValue, toInt, type PropDef, type PyType, type WireType } from './properties.js';
import { Label } from './labels.js';
import { truthy, type Value } from './values.js';
import { Vm } from './vm.js';
import { kernelFileText } from './kernel-files.js';

export type Opts = Partial<Omit<PropDef, 'name' | 'wire' | 'py'>> & { py?: PyType };

export function prop(name: string, wire: WireType, opts: Opts = {}): PropDef {
  const py: PyType = opts.py !== undefined ? opts.py : wire === 'vm' ? 'vm' : wire === 'label' ? 'label' : wire;
  return { stage: 2, help: '', ...opts, name, wire, py };
}

/** Qubes' _default_with_template: the template's value, else `dflt`. */
export function withTemplate(name: string, dflt: (vm: Vm) => Value) {
  return (vm: Vm): Value => {
    const t = vm.template;
    const def = t?.table.byName.get(name);
    if (t && def) {
      try {
        return getValue(t, def);
      } catch (e) {
        if (!(e instanceof NoValue)) throw e;
      }
    }
    return dflt(vm);
  };
}

export function vmIdToIPv4(prefix: string, id: number): string {
  if (id < 255) return `${prefix}.${(id >> 8) & 0xff}.${id & 0xff}`;
  const v = id - 1;
  return `${prefix}.${Math.floor(v / 254)}.${(v % 254) + 1}`;
}

export function ipForVm(vm: Vm): string {
  return vm.klass === 'DispVM' ? vmIdToIPv4('10.138', Number(vm.prop('dispid'))) : vmIdToIPv4('10.137', vm.qid);
}

export function ip6ForVm(vm: Vm): string {
  const id = vm.klass === 'DispVM' ? Number(vm.prop('dispid')) : vm.qid;
  return `fd09:24ef:4179::${vm.klass === 'DispVM' ? 'a8a' : 'a89'}:${id.toString(16)}`;
}

export function isNetworked(vm: Vm): boolean {
  return truthy(vm.prop('provides_network')) || vm.netvm !== null;
}

/** Qubes' connected_vms: qubes whose netvm (set or default) is `vm`. */
export function connectedVms(vm: Vm): Vm[] {
  return vm.app.allVms().filter((d) => d.has('netvm') && d.netvm === vm);
}

/** Qubes' get_vms_connected_to: everything downstream of `vm`. */
export function downstreamOf(vm: Vm): Set<Vm> {
  const out = new Set<Vm>();
  const todo = [vm];
  while (todo.length) {
    for (const d of connectedVms(todo.pop()!))
      if (!out.has(d)) {
        out.add(d);
        todo.push(d);
      }
  }
  return out;
}

export function memoryBalancingPossible(vm: Vm): boolean {
  if (vm.hasPciAssigned()) return false;
  if (vm.prop('virt_mode') === 'hvm') {
    const feats = new Set<string>(vm.features.keys());
    for (let t = vm.template; t; t = t.template) for (const f of t.features.keys()) feats.add(f);
    const supportedServices = [...feats].some((f) => f.startsWith('supported-service.'));
    if (
      !truthy(vm.checkFeature('qrexec', 'template', false)) ||
      (supportedServices && !truthy(vm.checkFeature('supported-service.meminfo-writer', 'template', false)))
    )
      return false;
  }
  return true;
}

export function defaultKernelopts(vm: Vm): Value {
  const kernel = vm.prop('kernel');
  if (!truthy(kernel)) return '';
  const kernelsDir = path.join(vm.app.baseDir, 'vm-kernels', String(kernel));
  const pci = vm.hasPciAssigned();
  let file: string;
  let extra = '';
  if (pci) {
    file = path.join(kernelsDir, 'default-kernelopts-pci.txt');
    if (truthy(vm.app.getVm('dom0')?.features.get('suspend-s0ix'))) extra = ' qubes_exp_pm_use_suspend=1';
  } else {
    const t = vm.template;
    if (t && t.has('kernelopts')) return t.prop('kernelopts');
    file = path.join(kernelsDir, 'default-kernelopts-nopci.txt');
  }
  const text = kernelFileText(file);
  return (text ?? (pci ? '' : 'swiotlb=2048')) + extra;
}

export function defaultBootmode(vm: Vm): Value {
  const active = vm.features.get('boot-mode.active');
  if (active !== undefined) {
    if (active === 'default') return 'default';
    if (vm.checkFeature(`boot-mode.kernelopts.${active}`, 'template', false) !== undefined) return active;
  }
  const seen = new Set<Vm>();
  for (let subject: Vm | null = vm; subject && subject.has('template') && !seen.has(subject); subject = subject.template) {
    seen.add(subject);
    const t = subject.template;
    if (t && t.has('appvm_default_bootmode')) {
      const v = String(t.prop('appvm_default_bootmode'));
      if (v === 'default') return 'default';
      if (subject.checkFeature(`boot-mode.kernelopts.${v}`, 'template', false) !== undefined) return v;
    }
  }
  return 'default';
}

/** qubes.app.validate_kernel */
export function validateKernel(holder: { app: { baseDir: string } }, kernel: Value): void {
  if (!truthy(kernel)) return;
  const dir = path.join(holder.app.baseDir, 'vm-kernels', String(kernel));
  // only a directory directly under vm-kernels is a kernel; '..', '.' or a path would name one outside
  const plain = !/[/\0]/.test(String(kernel)) && kernel !== '.' && kernel !== '..';
  if (!plain || !fs.existsSync(dir)) throw QubesPropertyValueError(`Kernel ${pyRepr(String(kernel))} not installed`);
  if (!fs.existsSync(path.join(dir, 'vmlinuz'))) {
    throw QubesPropertyValueError(`Kernel ${pyRepr(String(kernel))} not properly installed: missing 'vmlinuz' file`);
  }
}

/** setter_disposable_template (qube and system properties alike). */
export function disposableTemplateSetter(h: { className: string; name?: string }, v: Value, def: PropDef): Value {
  if (!v) return v;
  const vm = v as Vm;
  if (!truthy(vm.prop('template_for_dispvms'))) {
    const target = h.className === 'Qubes' ? 'system' : `qube ${pyRepr(h.name!)}`;
    throw QubesPropertyValueError(`Cannot set invalid property to ${target}, ${def.name} ${pyRepr(vm.name)} has template_for_dispvms set to False`);
  }
  return v;
}

export function setterLabel(vm: Vm, v: Value): Value {
  if (v instanceof Label) return v;
  let key = String(v);
  if (key.startsWith('label-')) key = key.slice(6);
  return vm.app.labels.get(key);
}

export function setterKernel(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.includes('/')) throw QubesPropertyValueError("Kernel name cannot contain '/'");
  return s;
}

export function setterKernelopts(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.length > 512) throw QubesPropertyValueError('Kernelopts value too long (512 chars max)');
  return s;
}

const USER_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.';
export function setterDefaultUser(_vm: Vm, v: Value): Value {
  const s = String(v);
  if ([...s].some((c) => !USER_CHARS.includes(c))) {
    throw QubesPropertyValueError('Username can contain only those characters: ' + USER_CHARS);
  }
  return s;
}

export function setterDeniedList(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.length % 7 !== 0) {
    throw QubesValueError(`Invalid length of interfaces=${pyRepr(s)} (is ${s.length}, expected multiple of 7)`);
  }
  const chunks = new Set<string>();
  for (let i = 0; i < s.length; i += 7) chunks.add(s.slice(i, i + 7));
  const out = [...chunks].sort().join('');
  if (!/^([bump*][0-9a-f*]{6})*$/.test(out)) {
    throw QubesPropertyValueError(
      'Interface code list should be in the form chhhhhhchhhhhh...,where c is one of ' + '"b", "u", "m", "p", "*" and h is a hexdigit or "*".',
    );
  }
  return out;
}

export function setterVirtMode(vm: Vm, v: Value): Value {
  const s = String(v).toLowerCase();
  if (!['hvm', 'pv', 'pvh'].includes(s)) throw QubesPropertyValueError('Invalid virtualization mode, supported values: hvm, pv, pvh');
  if (s === 'pvh' && vm.hasPciAssigned()) throw QubesPropertyValueError("pvh mode can't be set if pci devices are assigned");
  return s;
}

export function setterKbdLayout(_vm: Vm, v: Value): Value {
  const s = String(v);
  if (!/^[\x00-\x7f]*$/.test(s)) throw QubesPropertyValueError('Keyboard layouts must be ASCII');
  const parts = s.split('+');
  if (parts.length !== 3) throw QubesPropertyValueError('invalid number of keyboard layout parameters');
  if (!/^[a-zA-Z]+$/.test(parts[0]!)) throw QubesPropertyValueError('Invalid keyboard layout provided');
  if (!/^[a-zA-Z0-9_-]*$/.test(parts[1]!)) throw QubesPropertyValueError('Invalid layout variant provided');
  if (!/^[a-zA-Z0-9_:,-]*$/.test(parts[2]!)) throw QubesPropertyValueError('Invalid layout options provided');
  return s;
}

export function setterMac(_vm: Vm, v: Value): Value {
  const s = String(v).toLowerCase();
  if (!/^([0-9a-f][0-9a-f]:){5}[0-9a-f][0-9a-f]$/.test(s)) throw QubesException('Invalid MAC address value');
  return s;
}

export function setterQid(_vm: Vm, v: Value, def: PropDef): Value {
  const n = toInt(v);
  if (n < 0 || n > 10000) throw QubesException(`${def.name} value must be between 0 and qubes.config.max_qid`);
  return n;
}

export function setterNetvm(vm: Vm, v: Value): Value {
  if (v === null) return null;
  const net = v as Vm;
  if (!truthy(net.prop('provides_network'))) throw QubesValueError(`The ${net.name} qube does not provide network`);
  if (net === vm || downstreamOf(vm).has(net)) throw QubesValueError('Loops in network are unsupported');
  return v;
}

export function setterProvidesNetwork(vm: Vm, v: Value): Value {
  const b = typeof v === 'string' ? parseBoolStrict(v) : truthy(v);
  if (!b && connectedVms(vm).length) {
    throw QubesValueError("The qube is still used by other qubes, change theirs 'netvm' first");
  }
  return b;
}

export function parseBoolStrict(s: string): boolean {
  const l = s.toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(l)) return false;
  if (['1', 'yes', 'true', 'on'].includes(l)) return true;
  throw QubesValueError(`Invalid literal for boolean property: ${pyRepr(s)}`);
}

export function setterDispvmTemplate(vm: Vm, v: Value): Value {
  if (!truthy((v as Vm | null)?.prop('template_for_dispvms'))) {
    throw QubesPropertyValueError('template for disposable must have template_for_dispvms=True');
  }
  return v;
}

// ---------------------------------------------------------------- class handlers

export function fireIconReset(vm: Vm): void {
  fire(vm, 'property-reset:icon', [['name', 'icon']]);
}

/** the core_features extension: 'servicevm' follows provides_network */
export function servicevmFeature(vm: Vm): void {
  if (truthy(vm.prop('provides_network'))) {
    vm.setFeature('servicevm', 1);
    fireIconReset(vm);
  } else if (vm.features.has('servicevm')) {
    vm.deleteFeature('servicevm');
    fireIconReset(vm);
  }
}

/** NetVMMixin: an address change changes what the qube and its clients see */
export function ipChanged(vm: Vm, v6: '' | '6', n: Value, o: Value | undefined): void {
  if (n === (o ?? null)) return;
  if (truthy(vm.prop('provides_network'))) fire(vm, `property-reset:gateway${v6}`, [['name', `gateway${v6}`]]);
  fire(vm, `property-reset:visible_ip${v6}`, [['name', `visible_ip${v6}`]]);
  for (const d of connectedVms(vm)) fire(d, `property-reset:visible_gateway${v6}`, [['name', `visible_gateway${v6}`]]);
}

/**
 * the gui, audio and relay extensions: a 'guivm-<name>' / 'audiovm-<name>' /
 * 'relayvm-<name>' tag follows the property
 */
export function syncVmTag(vm: Vm, kind: 'guivm' | 'audiovm' | 'relayvm', value: Vm | null): void {
  const want = value ? `${kind}-${value.name}` : null;
  if (kind === 'guivm') {
    let found = false;
    for (const t of [...vm.tags]) {
      if (!t.startsWith('guivm-')) continue;
      if (t === want) {
        found = true;
        continue;
      }
      vm.removeTag(t);
    }
    if (!found && want) vm.addTag(want);
  } else {
    for (const t of [...vm.tags]) if (t.startsWith(`${kind}-`)) vm.removeTag(t);
    if (want) vm.addTag(want);
  }
}

export function haltedForTemplateChange(vm: Vm, newv: Value, oldv: Value | undefined): void {
  if (!vm.isHalted()) throw QubesVMNotHaltedError(vm.name, 'Cannot change template while qube is running');
  if (truthy(vm.prop('template_for_dispvms')) && newv !== oldv) {
    const running = vm.app.allVms().filter((d) => d.klass === 'DispVM' && d.template === vm && d.isRunning());
    if (running.length) {
      throw QubesVMInUseError(vm.name, "('Cannot change template while there are running disposables based on this disposable template',)");
    }
  }
}

/** dvmtemplate: template_for_dispvms may not become False while in use. */
export function dvmTemplateGuard(vm: Vm, newv: Value | undefined, oldv: Value | undefined): void {
  if (truthy(newv) || (!truthy(newv) && !truthy(oldv))) return;
  const { system, qube } = vm.app.propDependencies(vm, ['default_dispvm', 'management_dispvm'], ['default_dispvm', 'management_dispvm', 'template']);
  if (system.length) {
    throw QubesVMInUseError(
      vm.name,
      'Cannot change template_for_dispvms to False while it is in use by the system by any of ' + 'these properties: default_dispvm, management_dispvm',
    );
  }
  if (qube.length) {
    throw QubesVMInUseError(
      vm.name,
      'Cannot change template_for_dispvms to False while it is the disposable template of a ' +
        'qube by any of these properties: default_dispvm, management_dispvm, template',
    );
  }
}

/** TemplateVM: tell child qubes using the inherited default that it changed. */
export function notifyChildren(name: string) {
  return (vm: Vm, newv: Value, oldv: Value | undefined): void => {
    if (newv === oldv) return;
    for (const child of vm.app.allVms()) {
      if (child.template !== vm || !child.has(name) || !isDefault(child, child.table.byName.get(name)!)) continue;
      fire(child, 'property-reset:' + name, [['name', name]]);
    }
  };
}

/** TemplateVM: qubes whose boot mode follows the template's appvm_default_bootmode */
export function resetChildBootmode(vm: Vm): void {
  for (const child of vm.app.allVms()) {
    if (child.template === vm && isDefault(child, child.table.byName.get('bootmode')!)) {
      fire(child, 'property-reset:bootmode', [['name', 'bootmode']]);
    }
  }
}

export function netvmPreReset(vm: Vm, oldv: Value | undefined): void {
  const def = vm.table.byName.get('netvm')!;
  const newv = getDefault(vm, def);
  setterNetvm(vm, newv);
  if (newv === oldv) return;
  fire(vm, 'property-pre-set:netvm', [
    ['name', 'netvm'],
    ['newvalue', newv],
    ['oldvalue', oldv ?? null],
  ]);
  netvmPreSet(vm, newv);
}

export function netvmPreSet(vm: Vm, newv: Value): void {
  const net = newv as Vm | null;
  if (net && vm.isRunning() && !net.isRunning()) {
    throw QubesVMNotStartedError(net.name, `Cannot dynamically attach to stopped qube ${net.name}`);
  }
}

/** property-reset:netvm as Qubes handles it: a property-set:netvm first when the value changed. */
export function netvmPostReset(vm: Vm, oldv: Value | undefined): void {
  const newv = vm.netvm;
  if (newv === (oldv ?? null)) return;
  fire(vm, 'property-set:netvm', [
    ['name', 'netvm'],
    ['newvalue', newv],
    ['oldvalue', oldv ?? null],
  ]);
}

export function keyboardLayoutPostSet(vm: Vm, newv: Value, oldv: Value | undefined): void {
  if (newv === oldv) return;
  for (const d of vm.app.allVms()) {
    if (d === vm || !d.has('guivm') || d.vmProp('guivm') !== vm) continue;
    if (isDefault(d, d.table.byName.get('keyboard_layout')!)) {
      fire(d, 'property-reset:keyboard_layout', [
        ['name', 'keyboard_layout'],
        ['oldvalue', oldv ?? null],
      ]);
    }
  }
}

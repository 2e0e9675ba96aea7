// The property tables of the qube classes (Qubes' qubes.vm.BaseVM, QubesVM
// with NetVMMixin, AppVM, TemplateVM, StandaloneVM, DispVM, AdminVM,
// RemoteVM): names, types, computed defaults, setters, help texts, and the
// class event handlers that react to changes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QubesException, QubesPropertyValueError, QubesValueError, QubesVMInUseError, QubesVMNotHaltedError, QubesVMNotStartedError, pyRepr } from '../errors.js';
import {
  PropTable, fire, forbidden, getDefault, getValue, isDefault, NoValue, nonNegativeInt, positiveInt, toInt,
  type PropDef, type PyType, type WireType,
} from './properties.js';
import { Label } from './labels.js';
import { truthy, type Value } from './values.js';
import { Vm } from './vm.js';
import { kernelFileText } from './kernel-files.js';

type Opts = Partial<Omit<PropDef, 'name' | 'wire' | 'py'>> & { py?: PyType };

export function prop(name: string, wire: WireType, opts: Opts = {}): PropDef {
  const py: PyType = opts.py !== undefined ? opts.py : (wire === 'vm' ? 'vm' : wire === 'label' ? 'label' : wire);
  return { stage: 2, help: '', ...opts, name, wire, py };
}

/** A constant default. */
const k = (v: Value) => () => v;

/** stateless_property: computed, read-only, never saved. */
function stateless(name: string, wire: WireType, get: (vm: Vm) => Value, help = '', py: PyType = wire === 'str' ? null : wire): PropDef {
  return prop(name, wire, { py, stateless: true, dflt: get, setter: forbidden, help });
}

// ---------------------------------------------------------------- helpers

/** Qubes' _default_with_template: the template's value, else `dflt`. */
function withTemplate(name: string, dflt: (vm: Vm) => Value) {
  return (vm: Vm): Value => {
    const t = vm.template;
    const def = t?.table.byName.get(name);
    if (t && def) {
      try { return getValue(t, def); } catch (e) { if (!(e instanceof NoValue)) throw e; }
    }
    return dflt(vm);
  };
}

function vmIdToIPv4(prefix: string, id: number): string {
  if (id < 255) return `${prefix}.${(id >> 8) & 0xff}.${id & 0xff}`;
  const v = id - 1;
  return `${prefix}.${Math.floor(v / 254)}.${(v % 254) + 1}`;
}

function ipForVm(vm: Vm): string {
  return vm.klass === 'DispVM' ? vmIdToIPv4('10.138', Number(vm.prop('dispid'))) : vmIdToIPv4('10.137', vm.qid);
}

function ip6ForVm(vm: Vm): string {
  const id = vm.klass === 'DispVM' ? Number(vm.prop('dispid')) : vm.qid;
  return `fd09:24ef:4179::${vm.klass === 'DispVM' ? 'a8a' : 'a89'}:${id.toString(16)}`;
}

function isNetworked(vm: Vm): boolean {
  return truthy(vm.prop('provides_network')) || vm.netvm !== null;
}

/** Qubes' connected_vms: qubes whose netvm (set or default) is `vm`. */
function connectedVms(vm: Vm): Vm[] {
  return vm.app.allVms().filter((d) => d.has('netvm') && d.netvm === vm);
}

/** Qubes' get_vms_connected_to: everything downstream of `vm`. */
function downstreamOf(vm: Vm): Set<Vm> {
  const out = new Set<Vm>();
  const todo = [vm];
  while (todo.length) {
    for (const d of connectedVms(todo.pop()!)) if (!out.has(d)) { out.add(d); todo.push(d); }
  }
  return out;
}

function memoryBalancingPossible(vm: Vm): boolean {
  if (vm.hasPciAssigned()) return false;
  if (vm.prop('virt_mode') === 'hvm') {
    const feats = new Set<string>(vm.features.keys());
    for (let t = vm.template; t; t = t.template) for (const f of t.features.keys()) feats.add(f);
    const supportedServices = [...feats].some((f) => f.startsWith('supported-service.'));
    if (!truthy(vm.checkFeature('qrexec', 'template', false))
      || (supportedServices && !truthy(vm.checkFeature('supported-service.meminfo-writer', 'template', false)))) return false;
  }
  return true;
}

function defaultKernelopts(vm: Vm): Value {
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

function defaultBootmode(vm: Vm): Value {
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
    throw QubesPropertyValueError(
      `Cannot set invalid property to ${target}, ${def.name} ${pyRepr(vm.name)} has template_for_dispvms set to False`);
  }
  return v;
}

function setterLabel(vm: Vm, v: Value): Value {
  if (v instanceof Label) return v;
  let key = String(v);
  if (key.startsWith('label-')) key = key.slice(6);
  return vm.app.labels.get(key);
}

function setterKernel(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.includes('/')) throw QubesPropertyValueError("Kernel name cannot contain '/'");
  return s;
}

function setterKernelopts(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.length > 512) throw QubesPropertyValueError('Kernelopts value too long (512 chars max)');
  return s;
}

const USER_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.';
function setterDefaultUser(_vm: Vm, v: Value): Value {
  const s = String(v);
  if ([...s].some((c) => !USER_CHARS.includes(c))) {
    throw QubesPropertyValueError('Username can contain only those characters: ' + USER_CHARS);
  }
  return s;
}

function setterDeniedList(_vm: Vm, v: Value): Value {
  if (!truthy(v)) return '';
  const s = String(v);
  if (s.length % 7 !== 0) {
    throw QubesValueError(`Invalid length of interfaces=${pyRepr(s)} (is ${s.length}, expected multiple of 7)`);
  }
  const chunks = new Set<string>();
  for (let i = 0; i < s.length; i += 7) chunks.add(s.slice(i, i + 7));
  const out = [...chunks].sort().join('');
  if (!/^([bump*][0-9a-f*]{6})*$/.test(out)) {
    throw QubesPropertyValueError('Interface code list should be in the form chhhhhhchhhhhh...,where c is one of '
      + '"b", "u", "m", "p", "*" and h is a hexdigit or "*".');
  }
  return out;
}

function setterVirtMode(vm: Vm, v: Value): Value {
  const s = String(v).toLowerCase();
  if (!['hvm', 'pv', 'pvh'].includes(s)) throw QubesPropertyValueError('Invalid virtualization mode, supported values: hvm, pv, pvh');
  if (s === 'pvh' && vm.hasPciAssigned()) throw QubesPropertyValueError("pvh mode can't be set if pci devices are assigned");
  return s;
}

function setterKbdLayout(_vm: Vm, v: Value): Value {
  const s = String(v);
  if (!/^[\x00-\x7f]*$/.test(s)) throw QubesPropertyValueError('Keyboard layouts must be ASCII');
  const parts = s.split('+');
  if (parts.length !== 3) throw QubesPropertyValueError('invalid number of keyboard layout parameters');
  if (!/^[a-zA-Z]+$/.test(parts[0]!)) throw QubesPropertyValueError('Invalid keyboard layout provided');
  if (!/^[a-zA-Z0-9_-]*$/.test(parts[1]!)) throw QubesPropertyValueError('Invalid layout variant provided');
  if (!/^[a-zA-Z0-9_:,-]*$/.test(parts[2]!)) throw QubesPropertyValueError('Invalid layout options provided');
  return s;
}

function setterMac(_vm: Vm, v: Value): Value {
  const s = String(v).toLowerCase();
  if (!/^([0-9a-f][0-9a-f]:){5}[0-9a-f][0-9a-f]$/.test(s)) throw QubesException('Invalid MAC address value');
  return s;
}

function setterQid(_vm: Vm, v: Value, def: PropDef): Value {
  const n = toInt(v);
  if (n < 0 || n > 10000) throw QubesException(`${def.name} value must be between 0 and qubes.config.max_qid`);
  return n;
}

function setterNetvm(vm: Vm, v: Value): Value {
  if (v === null) return null;
  const net = v as Vm;
  if (!truthy(net.prop('provides_network'))) throw QubesValueError(`The ${net.name} qube does not provide network`);
  if (net === vm || downstreamOf(vm).has(net)) throw QubesValueError('Loops in network are unsupported');
  return v;
}

function setterProvidesNetwork(vm: Vm, v: Value): Value {
  const b = typeof v === 'string' ? parseBoolStrict(v) : truthy(v);
  if (!b && connectedVms(vm).length) {
    throw QubesValueError("The qube is still used by other qubes, change theirs 'netvm' first");
  }
  return b;
}

function parseBoolStrict(s: string): boolean {
  const l = s.toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(l)) return false;
  if (['1', 'yes', 'true', 'on'].includes(l)) return true;
  throw QubesValueError(`Invalid literal for boolean property: ${pyRepr(s)}`);
}

function setterDispvmTemplate(vm: Vm, v: Value): Value {
  if (!truthy((v as Vm | null)?.prop('template_for_dispvms'))) {
    throw QubesPropertyValueError('template for disposable must have template_for_dispvms=True');
  }
  return v;
}

// ---------------------------------------------------------------- class handlers

function fireIconReset(vm: Vm): void { fire(vm, 'property-reset:icon', [['name', 'icon']]); }

/** the core_features extension: 'servicevm' follows provides_network */
function servicevmFeature(vm: Vm): void {
  if (truthy(vm.prop('provides_network'))) {
    vm.setFeature('servicevm', 1);
    fireIconReset(vm);
  } else if (vm.features.has('servicevm')) {
    vm.deleteFeature('servicevm');
    fireIconReset(vm);
  }
}

/** NetVMMixin: an address change changes what the qube and its clients see */
function ipChanged(vm: Vm, v6: '' | '6', n: Value, o: Value | undefined): void {
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
      if (t === want) { found = true; continue; }
      vm.removeTag(t);
    }
    if (!found && want) vm.addTag(want);
  } else {
    for (const t of [...vm.tags]) if (t.startsWith(`${kind}-`)) vm.removeTag(t);
    if (want) vm.addTag(want);
  }
}

function haltedForTemplateChange(vm: Vm, newv: Value, oldv: Value | undefined): void {
  if (!vm.isHalted()) throw QubesVMNotHaltedError(vm.name, 'Cannot change template while qube is running');
  if (truthy(vm.prop('template_for_dispvms')) && newv !== oldv) {
    const running = vm.app.allVms().filter((d) => d.klass === 'DispVM' && d.template === vm && d.isRunning());
    if (running.length) {
      throw QubesVMInUseError(vm.name, "('Cannot change template while there are running disposables based on this disposable template',)");
    }
  }
}

/** dvmtemplate: template_for_dispvms may not become False while in use. */
function dvmTemplateGuard(vm: Vm, newv: Value | undefined, oldv: Value | undefined): void {
  if (truthy(newv) || (!truthy(newv) && !truthy(oldv))) return;
  const { system, qube } = vm.app.propDependencies(vm, ['default_dispvm', 'management_dispvm'], ['default_dispvm', 'management_dispvm', 'template']);
  if (system.length) {
    throw QubesVMInUseError(vm.name, 'Cannot change template_for_dispvms to False while it is in use by the system by any of '
      + 'these properties: default_dispvm, management_dispvm');
  }
  if (qube.length) {
    throw QubesVMInUseError(vm.name, 'Cannot change template_for_dispvms to False while it is the disposable template of a '
      + 'qube by any of these properties: default_dispvm, management_dispvm, template');
  }
}

/** TemplateVM: tell child qubes using the inherited default that it changed. */
function notifyChildren(name: string) {
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

function netvmPreReset(vm: Vm, oldv: Value | undefined): void {
  const def = vm.table.byName.get('netvm')!;
  const newv = getDefault(vm, def);
  setterNetvm(vm, newv);
  if (newv === oldv) return;
  fire(vm, 'property-pre-set:netvm', [['name', 'netvm'], ['newvalue', newv], ['oldvalue', oldv ?? null]]);
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
  fire(vm, 'property-set:netvm', [['name', 'netvm'], ['newvalue', newv], ['oldvalue', oldv ?? null]]);
}

function keyboardLayoutPostSet(vm: Vm, newv: Value, oldv: Value | undefined): void {
  if (newv === oldv) return;
  for (const d of vm.app.allVms()) {
    if (d === vm || !d.has('guivm') || d.vmProp('guivm') !== vm) continue;
    if (isDefault(d, d.table.byName.get('keyboard_layout')!)) {
      fire(d, 'property-reset:keyboard_layout', [['name', 'keyboard_layout'], ['oldvalue', oldv ?? null]]);
    }
  }
}

// ---------------------------------------------------------------- tables

/**
 * Help of BaseVM.icon: Qubes renders its docstring with docutils, which
 * does not know the Sphinx role in it and appends its own messages.
 */
const ICON_HELP = 'freedesktop icon name, suitable for use in :py:meth:`PyQt4.QtGui.QIcon.fromTheme`\n\n'
  + '<string>:1: (INFO/1) No role entry for "py:meth" in module "docutils.parsers.rst.languages.en".\n'
  + 'Trying "py:meth" as canonical role name.\n\n<string>:1: (ERROR/3) Unknown interpreted text role "py:meth".';

const BASE: PropDef[] = [
  prop('uuid', 'str', { py: 'uuid', writeOnce: true, help: 'UUID from libvirt.' }),
  prop('name', 'str', { writeOnce: true, help: 'User-specified name of the domain.' }),
  prop('qid', 'int', { writeOnce: true, setter: setterQid,
    help: 'Internal, persistent identificator of particular domain. Note this is different from Xen domid.' }),
  prop('label', 'label', { py: null, setter: setterLabel,
    help: 'Colourful label assigned to VM. This is where the colour of the padlock is set.' }),
  stateless('klass', 'str', (vm) => vm.klass, 'Domain class name'),
  stateless('icon', 'str', (vm) => {
    if (!vm.label) throw new NoValue('label not set');
    const l = vm.label.name;
    if (vm.klass === 'TemplateVM') return 'templatevm-' + l;
    if (vm.klass === 'AppVM' && truthy(vm.prop('template_for_dispvms'))) return 'templatevm-' + l;
    if (truthy(vm.features.get('servicevm'))) return 'servicevm-' + l;
    if (vm.klass === 'DispVM') return 'dispvm-' + l;
    if (vm.klass === 'StandaloneVM') return 'standalonevm-' + l;
    if (vm.klass === 'RemoteVM') return 'remotevm-' + l;
    return 'appvm-' + l;
  }, ICON_HELP, 'str'),
];

const boolProp = (name: string, dflt: (vm: Vm) => Value, help: string, extra: Opts = {}) =>
  prop(name, 'bool', { dflt, help, ...extra });

const QUBESVM: PropDef[] = [
  ...BASE,
  // NetVMMixin
  prop('mac', 'str', { dflt: k('00:16:3e:5e:6c:00'), setter: setterMac, help: 'MAC address of the NIC emulated inside VM' }),
  prop('ip', 'str', { py: 'ipv4', help: 'IP address of this domain.',
    dflt: (vm) => (!isNetworked(vm) ? null : ipForVm(vm)),
    postSet: (vm: Vm, n: Value, o: Value | undefined) => ipChanged(vm, '', n, o),
    postReset: (vm: Vm, o: Value | undefined) => ipChanged(vm, '', null, o) }),
  prop('ip6', 'str', { py: 'ipv6', help: 'IPv6 address of this domain.',
    dflt: (vm) => (!isNetworked(vm) || !truthy(vm.checkFeature('ipv6', 'netvm', false)) ? null : ip6ForVm(vm)),
    // Qubes listens for 'property-reset:ipv6' (sic), so resetting ip6 announces nothing more
    postSet: (vm: Vm, n: Value, o: Value | undefined) => ipChanged(vm, '6', n, o) }),
  prop('netvm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.app.globalVm('default_netvm'), setter: setterNetvm,
    preSet: netvmPreSet, preReset: netvmPreReset, postReset: netvmPostReset,
    help: 'VM that provides network connection to this domain. When None, machine is disconnected. When absent, domain uses default NetVM.' }),
  boolProp('provides_network', k(false), 'If this domain can act as network provider (formerly known as NetVM or ProxyVM)', {
    setter: setterProvidesNetwork,
    postSet: (vm: Vm, n: Value, o: Value | undefined) => {
      servicevmFeature(vm);
      if (n === o) return;
      fire(vm, 'property-reset:gateway', [['name', 'gateway']]);
      fire(vm, 'property-reset:gateway6', [['name', 'gateway6']]);
    },
    postReset: servicevmFeature }),
  stateless('visible_ip', 'str', (vm) => vm.checkFeature('net.fake-ip', 'template', false) || vm.prop('ip'),
    'IP address of this domain as seen by the domain.'),
  stateless('visible_ip6', 'str', (vm) => vm.prop('ip6'), 'IPv6 address of this domain as seen by the domain.'),
  stateless('visible_gateway', 'str', (vm) => vm.checkFeature('net.fake-gateway', 'template', false)
    || (vm.netvm ? vm.netvm.prop('gateway') : null), 'Default gateway of this domain as seen by the domain.'),
  stateless('visible_gateway6', 'str', (vm) => (truthy(vm.checkFeature('ipv6', 'netvm', false))
    ? (vm.netvm ? vm.netvm.prop('gateway6') : null) : null), 'Default (IPv6) gateway of this domain as seen by the domain.'),
  stateless('visible_netmask', 'str', (vm) => vm.checkFeature('net.fake-netmask', 'template', false)
    || (vm.netvm && isNetworked(vm.netvm) ? '255.255.255.255' : null), 'Netmask as seen by the domain.'),
  stateless('gateway', 'str', (vm) => (truthy(vm.prop('provides_network')) ? vm.prop('visible_ip') : null),
    'Gateway for other domains that use this domain as netvm.'),
  stateless('gateway6', 'str', (vm) => (truthy(vm.checkFeature('ipv6', 'netvm', false)) && truthy(vm.prop('provides_network'))
    ? vm.prop('visible_ip6') : null), 'Gateway (IPv6) for other domains that use this domain as netvm.'),
  stateless('dns', 'str', (vm) => (vm.netvm !== null || truthy(vm.prop('provides_network')) ? '10.139.1.1 10.139.1.2' : null),
    'DNS servers set up for this domain.'),
  // QubesVM
  prop('bootmode', 'str', { stage: 4, dflt: defaultBootmode, help: 'Active boot mode for this domain' }),
  prop('guivm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.app.globalVm('default_guivm'), help: 'VM used for Gui',
    postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'guivm', v as Vm | null),
    postReset: (vm: Vm) => syncVmTag(vm, 'guivm', vm.vmProp('guivm')) }),
  prop('audiovm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.app.globalVm('default_audiovm'), help: 'VM used for Audio',
    postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'audiovm', v as Vm | null),
    postReset: (vm: Vm) => syncVmTag(vm, 'audiovm', vm.vmProp('audiovm')) }),
  prop('virt_mode', 'str', { setter: setterVirtMode,
    dflt: (vm) => (vm.hasPciAssigned() ? 'hvm' : vm.template ? vm.template.prop('virt_mode') : 'pvh'),
    help: 'Virtualisation mode: full virtualisation ("HVM"), or paravirtualisation ("PV"), or hybrid ("PVH"). TemplateBasedVMs use its template\'s value by default.' }),
  boolProp('installed_by_rpm', k(false), "If this domain's image was installed from package tracked by package manager."),
  prop('memory', 'int', { setter: positiveInt, dflt: withTemplate('memory', () => 400),
    help: "Memory currently available for this VM. TemplateBasedVMs use its template's value by default." }),
  prop('maxmem', 'int', { setter: nonNegativeInt,
    preSet: (vm: Vm, n: Value, o: Value | undefined) => {
      if (n !== o && !vm.isHalted()) throw QubesException(`Can't change maxmem of VM ${vm.name}, because it isn't Halted and memory hotplug is forbidden`);
    },
    dflt: (vm) => {
      if (!memoryBalancingPossible(vm)) return 0;
      let m = vm.features.get('os') === 'Linux' ? Number(vm.prop('memory')) * 10 : 4000;
      m = Math.min(m, Math.floor(vm.app.host.memoryTotalKiB / 1024 / 2));
      return withTemplate('maxmem', () => m)(vm);
    },
    help: "Maximum amount of memory available for this VM (for the purpose of the memory balancer). Set to 0 to disable memory balancing for this qube. TemplateBasedVMs use its template's value by default (unless memory balancing not supported for this qube)." }),
  prop('stubdom_mem', 'int', { setter: positiveInt, dflt: k(null), help: 'Memory amount allocated for the stubdom' }),
  prop('vcpus', 'int', { setter: positiveInt, dflt: withTemplate('vcpus', () => 2),
    help: "Number of virtual CPUs for a qube. TemplateBasedVMs use its template's value by default." }),
  prop('kernel', 'str', { setter: setterKernel, dflt: withTemplate('kernel', (vm) => vm.app.globalValue('default_kernel')),
    preSet: (vm: Vm, v: Value) => validateKernel(vm, v),
    help: "Kernel used by this domain. TemplateBasedVMs use its template's value by default." }),
  prop('kernelopts', 'str', { stage: 4, setter: setterKernelopts, dflt: defaultKernelopts,
    help: "Kernel command line passed to domain. TemplateBasedVMs use its template's value by default." }),
  boolProp('debug', k(false), 'Turns on debugging features.'),
  prop('default_user', 'str', { setter: setterDefaultUser, dflt: withTemplate('default_user', () => 'user'),
    help: "Default user to start applications as. TemplateBasedVMs use its template's value by default." }),
  prop('qrexec_timeout', 'int', { setter: positiveInt,
    dflt: withTemplate('qrexec_timeout', (vm) => vm.app.globalValue('default_qrexec_timeout')),
    help: 'Time in seconds after which qrexec connection attempt is deemed failed. Operating system inside VM should be able to boot in this time.' }),
  prop('shutdown_timeout', 'int', { setter: positiveInt,
    dflt: withTemplate('shutdown_timeout', (vm) => vm.app.globalValue('default_shutdown_timeout')),
    help: 'Time in seconds for shutdown of the VM, after which VM may be forcefully powered off. Operating system inside VM should be able to fully shutdown in this time.' }),
  boolProp('autostart', k(false), 'Setting this to True means that VM should be autostarted on dom0 boot.'),
  boolProp('include_in_backups', k(true), 'If this domain is to be included in default backup.'),
  prop('backup_timestamp', 'int', { dflt: k(null), help: 'Time of last backup of the qube, in seconds since unix epoch' }),
  prop('default_dispvm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.app.globalVm('default_dispvm'),
    setter: disposableTemplateSetter,
    help: 'Default disposable template to be used for spawning disposable qubes for service calls.' }),
  prop('management_dispvm', 'vm', { stage: 4, allowNone: true, setter: disposableTemplateSetter,
    dflt: withTemplate('management_dispvm', (vm) => vm.app.globalVm('management_dispvm')),
    help: 'Default disposable template to be used for spawning disposable qubes for managing this qube.' }),
  boolProp('updateable', (vm) => !vm.has('template'), 'True if this machine may be updated on its own.', { setter: forbidden }),
  prop('devices_denied', 'str', { dflt: k(''), setter: setterDeniedList, help: 'List of device interface codes that are denied for this VM.' }),
  prop('keyboard_layout', 'str', { setter: setterKbdLayout, postSet: keyboardLayoutPostSet,
    dflt: (vm) => { const g = vm.vmProp('guivm'); return g && g.has('keyboard_layout') ? g.prop('keyboard_layout') : 'us++'; },
    help: 'Keyboard layout for this VM' }),
  stateless('xid', 'int', (vm) => (vm.isRunning() ? vm.xid : -1), 'Xen ID. Or not Xen, but ID.'),
  stateless('stubdom_uuid', 'str', () => ''),
  stateless('stubdom_xid', 'int', () => -1),
  stateless('start_time', 'str', (vm) => (vm.isRunning() ? vm.startTime : null),
    'Tell when machine was started. :rtype: float or None', null),
  // class handlers of QubesVM on properties defined above
].map((d) => {
  switch (d.name) {
    case 'label': return { ...d, postSet: (vm: Vm) => fireIconReset(vm) };
    default: return d;
  }
});

const DVM_TEMPLATE: PropDef[] = [
  boolProp('template_for_dispvms', k(false), 'Should this VM be allowed to start as Disposable VM', {
    preSet: (vm: Vm, n: Value, o: Value | undefined) => dvmTemplateGuard(vm, n, o),
    preReset: (vm: Vm, o: Value | undefined) => dvmTemplateGuard(vm, undefined, o),
    postSet: (vm: Vm) => fireIconReset(vm),
  }),
];

const TEMPLATE_CHILD_PROPS = ['default_user', 'kernel', 'kernelopts', 'vcpus', 'memory', 'maxmem', 'qrexec_timeout',
  'shutdown_timeout', 'management_dispvm'];

function chainPostSet(d: PropDef, extra: NonNullable<PropDef['postSet']>): PropDef {
  const first = d.postSet;
  return { ...d, postSet: (vm: Vm, n: Value, o: Value | undefined) => { first?.(vm, n, o); extra(vm, n, o); } };
}

export const TABLES: Readonly<Record<string, PropTable>> = (() => {
  const qubesvm = new PropTable(QUBESVM);
  const appvm = qubesvm.extend([
    ...DVM_TEMPLATE,
    { ...qubesvm.byName.get('icon')!, help: '' },
    prop('template', 'vm', { stage: 4, vmclass: 'TemplateVM', help: 'Template, on which this AppVM is based.',
      preSet: haltedForTemplateChange,
      preReset: (vm: Vm) => {
        const dt = vm.app.globalVm('default_template');
        if (dt) throw QubesValueError(`Cannot unset template. You can set it to the current default (${dt.name}) instead`);
        throw QubesValueError('Cannot unset template');
      } }),
  ]);
  const templatevm = qubesvm.extend([
    prop('appvm_default_bootmode', 'str', { stage: 4, help: 'Default active bootmode for AppVMs based on this template',
      dflt: (vm) => vm.features.get('boot-mode.appvm-default') ?? 'default',
      postSet: (vm: Vm, n: Value, o: Value | undefined) => { if (n !== o) resetChildBootmode(vm); },
      postReset: (vm: Vm) => resetChildBootmode(vm) }),
    prop('netvm', 'vm', { stage: 4, allowNone: true, dflt: k(null), setter: setterNetvm,
      preSet: netvmPreSet, preReset: netvmPreReset, postReset: netvmPostReset,
      help: 'VM that provides network connection to this domain. When None, machine is disconnected.' }),
  ]).list.map((d) => (TEMPLATE_CHILD_PROPS.includes(d.name) ? chainPostSet(d, notifyChildren(d.name)) : d));
  const standalone = qubesvm.extend(DVM_TEMPLATE);
  const dispvm = qubesvm.extend([
    prop('template', 'vm', { stage: 4, setter: setterDispvmTemplate, help: 'AppVM, on which this disposable is based.',
      preSet: (vm: Vm) => { if (!vm.isHalted()) throw QubesVMNotHaltedError(vm.name, 'Cannot change template while qube is running'); },
      preReset: () => { throw QubesValueError('Cannot unset template'); } }),
    prop('dispid', 'int', { writeOnce: true, help: 'Internal, persistent identifier of particular disposable.' }),
    boolProp('auto_cleanup', k(false), 'automatically remove this qube upon shutdown'),
    boolProp('include_in_backups', (vm) => !truthy(vm.prop('auto_cleanup')), 'If this domain is to be included in default backup.'),
    prop('default_dispvm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.template, setter: disposableTemplateSetter,
      help: 'Default disposable template to be used for spawning disposable qubes for service calls.' }),
    stateless('is_preload', 'bool', (vm) => (vm.template?.features.get('preload-dispvm') ?? '').split(' ').includes(vm.name),
      'Check if qube is a preloaded disposable. :rtype: bool'),
  ]);
  const adminvm = new PropTable([
    ...BASE.filter((d) => !['name', 'qid', 'uuid', 'icon'].includes(d.name)),
    prop('name', 'str', { py: null, dflt: k('dom0'), setter: forbidden }),
    prop('qid', 'int', { dflt: k(0), setter: forbidden }),
    prop('uuid', 'str', { py: null, dflt: k('00000000-0000-0000-0000-000000000000'), setter: forbidden }),
    stateless('icon', 'str', () => 'adminvm-black', ICON_HELP, null),
    prop('default_dispvm', 'vm', { stage: 4, allowNone: true, dflt: (vm) => vm.app.globalVm('default_dispvm'),
      setter: disposableTemplateSetter,
      help: 'Default disposable template to be used for spawning disposable qubes for service calls.' }),
    boolProp('include_in_backups', k(true), 'If this domain is to be included in default backup.'),
    boolProp('updateable', k(true), 'True if this machine may be updated on its own.', { setter: forbidden }),
    prop('devices_denied', 'str', { dflt: k(''), setter: setterDeniedList, help: 'List of device interface codes that are denied for this VM.' }),
    prop('keyboard_layout', 'str', { setter: setterKbdLayout, postSet: keyboardLayoutPostSet, dflt: k('us++'), help: 'Keyboard layout for this VM' }),
    prop('maxmem', 'int', { setter: forbidden, dflt: (vm) => vm.app.host.dom0MaxmemMiB, help: 'Maximum amount of memory available for this VM' }),
  ]);
  const remotevm = new PropTable([
    ...BASE,
    boolProp('include_in_backups', k(false), 'If this domain is to be included in default backup.'),
    prop('relayvm', 'vm', { stage: 4, allowNone: true, dflt: k(null), help: 'Local qube used as relay.',
      postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'relayvm', v as Vm | null),
      postReset: (vm: Vm) => syncVmTag(vm, 'relayvm', vm.vmProp('relayvm')) }),
    prop('transport_rpc', 'str', { dflt: k(null), help: 'Transport RPC used by the relay.' }),
    prop('remote_name', 'str', { dflt: k(null), help: 'Name on the remote host.' }),
  ]);
  return {
    AdminVM: adminvm, AppVM: appvm, TemplateVM: new PropTable(templatevm), StandaloneVM: standalone,
    DispVM: dispvm, RemoteVM: remotevm,
  };
})();

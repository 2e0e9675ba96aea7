// The property tables of the qube classes (Qubes' qubes.vm.BaseVM, QubesVM
// with NetVMMixin, AppVM, TemplateVM, StandaloneVM, DispVM, AdminVM,
// RemoteVM): names, types, defaults, help texts, and which setter and class
// handlers each property has (those are in properties-vm-rules.ts).
import { QubesException, QubesValueError, QubesVMNotHaltedError } from '../errors.js';
import { PropTable, fire, forbidden, NoValue, nonNegativeInt, positiveInt, type PropDef, type PyType, type WireType } from './properties.js';
import { truthy, type Value } from './values.js';
import { Vm } from './vm.js';
import {
  defaultBootmode,
  defaultKernelopts,
  disposableTemplateSetter,
  dvmTemplateGuard,
  fireIconReset,
  haltedForTemplateChange,
  ip6ForVm,
  ipChanged,
  ipForVm,
  isNetworked,
  keyboardLayoutPostSet,
  memoryBalancingPossible,
  netvmPostReset,
  netvmPreReset,
  netvmPreSet,
  notifyChildren,
  prop,
  resetChildBootmode,
  servicevmFeature,
  setterDefaultUser,
  setterDeniedList,
  setterDispvmTemplate,
  setterKbdLayout,
  setterKernel,
  setterKernelopts,
  setterLabel,
  setterMac,
  setterNetvm,
  setterProvidesNetwork,
  setterQid,
  setterVirtMode,
  syncVmTag,
  validateKernel,
  withTemplate,
  type Opts,
} from './properties-vm-rules.js';

/** A constant default. */
const k = (v: Value) => () => v;

/** stateless_property: computed, read-only, never saved. */
function stateless(name: string, wire: WireType, get: (vm: Vm) => Value, help = '', py: PyType = wire === 'str' ? null : wire): PropDef {
  return prop(name, wire, { py, stateless: true, dflt: get, setter: forbidden, help });
}

// ---------------------------------------------------------------- tables

/**
 * Help of BaseVM.icon: Qubes renders its docstring with docutils, which
 * does not know the Sphinx role in it and appends its own messages.
 */
const ICON_HELP =
  'freedesktop icon name, suitable for use in :py:meth:`PyQt4.QtGui.QIcon.fromTheme`\n\n' +
  '<string>:1: (INFO/1) No role entry for "py:meth" in module "docutils.parsers.rst.languages.en".\n' +
  'Trying "py:meth" as canonical role name.\n\n<string>:1: (ERROR/3) Unknown interpreted text role "py:meth".';

/** default_dispvm has the same rules on every class; only where its default
 * comes from differs (a disposable's is its own disposable template). */
const defaultDispvm = (dflt: NonNullable<PropDef['dflt']>): PropDef =>
  prop('default_dispvm', 'vm', {
    stage: 4,
    allowNone: true,
    dflt,
    setter: disposableTemplateSetter,
    help: 'Default disposable template to be used for spawning disposable qubes for service calls.',
  });

const BASE: PropDef[] = [
  prop('uuid', 'str', { py: 'uuid', writeOnce: true, help: 'UUID from libvirt.' }),
  prop('name', 'str', { writeOnce: true, help: 'User-specified name of the domain.' }),
  prop('qid', 'int', {
    writeOnce: true,
    setter: setterQid,
    help: 'Internal, persistent identificator of particular domain. Note this is different from Xen domid.',
  }),
  prop('label', 'label', { py: null, setter: setterLabel, help: 'Colourful label assigned to VM. This is where the colour of the padlock is set.' }),
  stateless('klass', 'str', (vm) => vm.klass, 'Domain class name'),
  stateless(
    'icon',
    'str',
    (vm) => {
      if (!vm.label) throw new NoValue('label not set');
      const l = vm.label.name;
      if (vm.klass === 'TemplateVM') return 'templatevm-' + l;
      if (vm.klass === 'AppVM' && truthy(vm.prop('template_for_dispvms'))) return 'templatevm-' + l;
      if (truthy(vm.features.get('servicevm'))) return 'servicevm-' + l;
      if (vm.klass === 'DispVM') return 'dispvm-' + l;
      if (vm.klass === 'StandaloneVM') return 'standalonevm-' + l;
      if (vm.klass === 'RemoteVM') return 'remotevm-' + l;
      return 'appvm-' + l;
    },
    ICON_HELP,
    'str',
  ),
];

const boolProp = (name: string, dflt: (vm: Vm) => Value, help: string, extra: Opts = {}) => prop(name, 'bool', { dflt, help, ...extra });

const QUBESVM: PropDef[] = [
  ...BASE,
  // NetVMMixin
  prop('mac', 'str', { dflt: k('00:16:3e:5e:6c:00'), setter: setterMac, help: 'MAC address of the NIC emulated inside VM' }),
  prop('ip', 'str', {
    py: 'ipv4',
    help: 'IP address of this domain.',
    dflt: (vm) => (!isNetworked(vm) ? null : ipForVm(vm)),
    postSet: (vm: Vm, n: Value, o: Value | undefined) => ipChanged(vm, '', n, o),
    postReset: (vm: Vm, o: Value | undefined) => ipChanged(vm, '', null, o),
  }),
  prop('ip6', 'str', {
    py: 'ipv6',
    help: 'IPv6 address of this domain.',
    dflt: (vm) => (!isNetworked(vm) || !truthy(vm.checkFeature('ipv6', 'netvm', false)) ? null : ip6ForVm(vm)),
    // Qubes listens for 'property-reset:ipv6' (sic), so resetting ip6 announces nothing more
    postSet: (vm: Vm, n: Value, o: Value | undefined) => ipChanged(vm, '6', n, o),
  }),
  prop('netvm', 'vm', {
    stage: 4,
    allowNone: true,
    dflt: (vm) => vm.app.globalVm('default_netvm'),
    setter: setterNetvm,
    preSet: netvmPreSet,
    preReset: netvmPreReset,
    postReset: netvmPostReset,
    help: 'VM that provides network connection to this domain. When None, machine is disconnected. When absent, domain uses default NetVM.',
  }),
  boolProp('provides_network', k(false), 'If this domain can act as network provider (formerly known as NetVM or ProxyVM)', {
    setter: setterProvidesNetwork,
    postSet: (vm: Vm, n: Value, o: Value | undefined) => {
      servicevmFeature(vm);
      if (n === o) return;
      fire(vm, 'property-reset:gateway', [['name', 'gateway']]);
      fire(vm, 'property-reset:gateway6', [['name', 'gateway6']]);
    },
    postReset: servicevmFeature,
  }),
  stateless(
    'visible_ip',
    'str',
    (vm) => vm.checkFeature('net.fake-ip', 'template', false) || vm.prop('ip'),
    'IP address of this domain as seen by the domain.',
  ),
  stateless('visible_ip6', 'str', (vm) => vm.prop('ip6'), 'IPv6 address of this domain as seen by the domain.'),
  stateless(
    'visible_gateway',
    'str',
    (vm) => vm.checkFeature('net.fake-gateway', 'template', false) || (vm.netvm ? vm.netvm.prop('gateway') : null),
    'Default gateway of this domain as seen by the domain.',
  ),
  stateless(
    'visible_gateway6',
    'str',
    (vm) => (truthy(vm.checkFeature('ipv6', 'netvm', false)) ? (vm.netvm ? vm.netvm.prop('gateway6') : null) : null),
    'Default (IPv6) gateway of this domain as seen by the domain.',
  ),
  stateless(
    'visible_netmask',
    'str',
    (vm) => vm.checkFeature('net.fake-netmask', 'template', false) || (vm.netvm && isNetworked(vm.netvm) ? '255.255.255.255' : null),
    'Netmask as seen by the domain.',
  ),
  stateless(
    'gateway',
    'str',
    (vm) => (truthy(vm.prop('provides_network')) ? vm.prop('visible_ip') : null),
    'Gateway for other domains that use this domain as netvm.',
  ),
  stateless(
    'gateway6',
    'str',
    (vm) => (truthy(vm.checkFeature('ipv6', 'netvm', false)) && truthy(vm.prop('provides_network')) ? vm.prop('visible_ip6') : null),
    'Gateway (IPv6) for other domains that use this domain as netvm.',
  ),
  stateless(
    'dns',
    'str',
    (vm) => (vm.netvm !== null || truthy(vm.prop('provides_network')) ? '10.139.1.1 10.139.1.2' : null),
    'DNS servers set up for this domain.',
  ),
  // QubesVM
  prop('bootmode', 'str', { stage: 4, dflt: defaultBootmode, help: 'Active boot mode for this domain' }),
  prop('guivm', 'vm', {
    stage: 4,
    allowNone: true,
    dflt: (vm) => vm.app.globalVm('default_guivm'),
    help: 'VM used for Gui',
    postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'guivm', v as Vm | null),
    postReset: (vm: Vm) => syncVmTag(vm, 'guivm', vm.vmProp('guivm')),
  }),
  prop('audiovm', 'vm', {
    stage: 4,
    allowNone: true,
    dflt: (vm) => vm.app.globalVm('default_audiovm'),
    help: 'VM used for Audio',
    postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'audiovm', v as Vm | null),
    postReset: (vm: Vm) => syncVmTag(vm, 'audiovm', vm.vmProp('audiovm')),
  }),
  prop('virt_mode', 'str', {
    setter: setterVirtMode,
    dflt: (vm) => (vm.hasPciAssigned() ? 'hvm' : vm.template ? vm.template.prop('virt_mode') : 'pvh'),
    help: 'Virtualisation mode: full virtualisation ("HVM"), or paravirtualisation ("PV"), or hybrid ("PVH"). TemplateBasedVMs use its template\'s value by default.',
  }),
  boolProp('installed_by_rpm', k(false), "If this domain's image was installed from package tracked by package manager."),
  prop('memory', 'int', {
    setter: positiveInt,
    dflt: withTemplate('memory', () => 400),
    help: "Memory currently available for this VM. TemplateBasedVMs use its template's value by default.",
  }),
  prop('maxmem', 'int', {
    setter: nonNegativeInt,
    preSet: (vm: Vm, n: Value, o: Value | undefined) => {
      if (n !== o && !vm.isHalted()) throw QubesException(`Can't change maxmem of VM ${vm.name}, because it isn't Halted and memory hotplug is forbidden`);
    },
    dflt: (vm) => {
      if (!memoryBalancingPossible(vm)) return 0;
      let m = vm.features.get('os') === 'Linux' ? Number(vm.prop('memory')) * 10 : 4000;
      m = Math.min(m, Math.floor(vm.app.host.memoryTotalKiB / 1024 / 2));
      return withTemplate('maxmem', () => m)(vm);
    },
    help: "Maximum amount of memory available for this VM (for the purpose of the memory balancer). Set to 0 to disable memory balancing for this qube. TemplateBasedVMs use its template's value by default (unless memory balancing not supported for this qube).",
  }),
  prop('stubdom_mem', 'int', { setter: positiveInt, dflt: k(null), help: 'Memory amount allocated for the stubdom' }),
  prop('vcpus', 'int', {
    setter: positiveInt,
    dflt: withTemplate('vcpus', () => 2),
    help: "Number of virtual CPUs for a qube. TemplateBasedVMs use its template's value by default.",
  }),
  prop('kernel', 'str', {
    setter: setterKernel,
    dflt: withTemplate('kernel', (vm) => vm.app.globalValue('default_kernel')),
    preSet: (vm: Vm, v: Value) => validateKernel(vm, v),
    help: "Kernel used by this domain. TemplateBasedVMs use its template's value by default.",
  }),
  prop('kernelopts', 'str', {
    stage: 4,
    setter: setterKernelopts,
    dflt: defaultKernelopts,
    help: "Kernel command line passed to domain. TemplateBasedVMs use its template's value by default.",
  }),
  boolProp('debug', k(false), 'Turns on debugging features.'),
  prop('default_user', 'str', {
    setter: setterDefaultUser,
    dflt: withTemplate('default_user', () => 'user'),
    help: "Default user to start applications as. TemplateBasedVMs use its template's value by default.",
  }),
  prop('qrexec_timeout', 'int', {
    setter: positiveInt,
    dflt: withTemplate('qrexec_timeout', (vm) => vm.app.globalValue('default_qrexec_timeout')),
    help: 'Time in seconds after which qrexec connection attempt is deemed failed. Operating system inside VM should be able to boot in this time.',
  }),
  prop('shutdown_timeout', 'int', {
    setter: positiveInt,
    dflt: withTemplate('shutdown_timeout', (vm) => vm.app.globalValue('default_shutdown_timeout')),
    help: 'Time in seconds for shutdown of the VM, after which VM may be forcefully powered off. Operating system inside VM should be able to fully shutdown in this time.',
  }),
  boolProp('autostart', k(false), 'Setting this to True means that VM should be autostarted on dom0 boot.'),
  boolProp('include_in_backups', k(true), 'If this domain is to be included in default backup.'),
  prop('backup_timestamp', 'int', { dflt: k(null), help: 'Time of last backup of the qube, in seconds since unix epoch' }),
  defaultDispvm((vm) => vm.app.globalVm('default_dispvm')),
  prop('management_dispvm', 'vm', {
    stage: 4,
    allowNone: true,
    setter: disposableTemplateSetter,
    dflt: withTemplate('management_dispvm', (vm) => vm.app.globalVm('management_dispvm')),
    help: 'Default disposable template to be used for spawning disposable qubes for managing this qube.',
  }),
  boolProp('updateable', (vm) => !vm.has('template'), 'True if this machine may be updated on its own.', { setter: forbidden }),
  prop('devices_denied', 'str', { dflt: k(''), setter: setterDeniedList, help: 'List of device interface codes that are denied for this VM.' }),
  prop('keyboard_layout', 'str', {
    setter: setterKbdLayout,
    postSet: keyboardLayoutPostSet,
    // Qubes: the guivm's layout, whose own default is its guivm's, and so
    // on; a chain that loops is getDefault's error
    dflt: (vm) => {
      const g = vm.vmProp('guivm');
      return g && g.has('keyboard_layout') ? g.prop('keyboard_layout') : 'us++';
    },
    help: 'Keyboard layout for this VM',
  }),
  stateless('xid', 'int', (vm) => (vm.isRunning() ? vm.runtime.xid : -1), 'Xen ID. Or not Xen, but ID.'),
  stateless('stubdom_uuid', 'str', () => ''),
  stateless('stubdom_xid', 'int', () => -1),
  stateless('start_time', 'str', (vm) => (vm.isRunning() ? vm.runtime.startTime : null), 'Tell when machine was started. :rtype: float or None', null),
  // class handlers of QubesVM on properties defined above
].map((d) => {
  switch (d.name) {
    case 'label':
      return { ...d, postSet: (vm: Vm) => fireIconReset(vm) };
    default:
      return d;
  }
});

const DVM_TEMPLATE: PropDef[] = [
  boolProp('template_for_dispvms', k(false), 'Should this VM be allowed to start as Disposable VM', {
    preSet: (vm: Vm, n: Value, o: Value | undefined) => dvmTemplateGuard(vm, n, o),
    preReset: (vm: Vm, o: Value | undefined) => dvmTemplateGuard(vm, undefined, o),
    postSet: (vm: Vm) => fireIconReset(vm),
  }),
];

const TEMPLATE_CHILD_PROPS = ['default_user', 'kernel', 'kernelopts', 'vcpus', 'memory', 'maxmem', 'qrexec_timeout', 'shutdown_timeout', 'management_dispvm'];

function chainPostSet(d: PropDef, extra: NonNullable<PropDef['postSet']>): PropDef {
  const first = d.postSet;
  return {
    ...d,
    postSet: (vm: Vm, n: Value, o: Value | undefined) => {
      first?.(vm, n, o);
      extra(vm, n, o);
    },
  };
}

export const TABLES: Readonly<Record<string, PropTable>> = (() => {
  const qubesvm = new PropTable(QUBESVM);
  const appvm = qubesvm.extend([
    ...DVM_TEMPLATE,
    { ...qubesvm.byName.get('icon')!, help: '' },
    prop('template', 'vm', {
      stage: 4,
      vmclass: 'TemplateVM',
      help: 'Template, on which this AppVM is based.',
      preSet: haltedForTemplateChange,
      preReset: (vm: Vm) => {
        const dt = vm.app.globalVm('default_template');
        if (dt) throw QubesValueError(`Cannot unset template. You can set it to the current default (${dt.name}) instead`);
        throw QubesValueError('Cannot unset template');
      },
    }),
  ]);
  const templatevm = qubesvm
    .extend([
      prop('appvm_default_bootmode', 'str', {
        stage: 4,
        help: 'Default active bootmode for AppVMs based on this template',
        dflt: (vm) => vm.features.get('boot-mode.appvm-default') ?? 'default',
        postSet: (vm: Vm, n: Value, o: Value | undefined) => {
          if (n !== o) resetChildBootmode(vm);
        },
        postReset: (vm: Vm) => resetChildBootmode(vm),
      }),
      prop('netvm', 'vm', {
        stage: 4,
        allowNone: true,
        dflt: k(null),
        setter: setterNetvm,
        preSet: netvmPreSet,
        preReset: netvmPreReset,
        postReset: netvmPostReset,
        help: 'VM that provides network connection to this domain. When None, machine is disconnected.',
      }),
    ])
    .list.map((d) => (TEMPLATE_CHILD_PROPS.includes(d.name) ? chainPostSet(d, notifyChildren(d.name)) : d));
  const standalone = qubesvm.extend(DVM_TEMPLATE);
  const dispvm = qubesvm.extend([
    prop('template', 'vm', {
      stage: 4,
      setter: setterDispvmTemplate,
      help: 'AppVM, on which this disposable is based.',
      preSet: (vm: Vm) => {
        if (!vm.isHalted()) throw QubesVMNotHaltedError(vm.name, 'Cannot change template while qube is running');
      },
      preReset: () => {
        throw QubesValueError('Cannot unset template');
      },
    }),
    prop('dispid', 'int', { writeOnce: true, help: 'Internal, persistent identifier of particular disposable.' }),
    boolProp('auto_cleanup', k(false), 'automatically remove this qube upon shutdown'),
    boolProp('include_in_backups', (vm) => !truthy(vm.prop('auto_cleanup')), 'If this domain is to be included in default backup.'),
    defaultDispvm((vm) => vm.template),
    stateless(
      'is_preload',
      'bool',
      (vm) => (vm.template?.features.get('preload-dispvm') ?? '').split(' ').includes(vm.name),
      'Check if qube is a preloaded disposable. :rtype: bool',
    ),
  ]);
  const adminvm = new PropTable([
    ...BASE.filter((d) => !['name', 'qid', 'uuid', 'icon'].includes(d.name)),
    prop('name', 'str', { py: null, dflt: k('dom0'), setter: forbidden }),
    prop('qid', 'int', { dflt: k(0), setter: forbidden }),
    prop('uuid', 'str', { py: null, dflt: k('00000000-0000-0000-0000-000000000000'), setter: forbidden }),
    stateless('icon', 'str', () => 'adminvm-black', ICON_HELP, null),
    defaultDispvm((vm) => vm.app.globalVm('default_dispvm')),
    boolProp('include_in_backups', k(true), 'If this domain is to be included in default backup.'),
    boolProp('updateable', k(true), 'True if this machine may be updated on its own.', { setter: forbidden }),
    prop('devices_denied', 'str', { dflt: k(''), setter: setterDeniedList, help: 'List of device interface codes that are denied for this VM.' }),
    prop('keyboard_layout', 'str', { setter: setterKbdLayout, postSet: keyboardLayoutPostSet, dflt: k('us++'), help: 'Keyboard layout for this VM' }),
    prop('maxmem', 'int', { setter: forbidden, dflt: (vm) => vm.app.host.dom0MaxmemMiB, help: 'Maximum amount of memory available for this VM' }),
  ]);
  const remotevm = new PropTable([
    ...BASE,
    boolProp('include_in_backups', k(false), 'If this domain is to be included in default backup.'),
    prop('relayvm', 'vm', {
      stage: 4,
      allowNone: true,
      dflt: k(null),
      help: 'Local qube used as relay.',
      postSet: (vm: Vm, v: Value) => syncVmTag(vm, 'relayvm', v as Vm | null),
      postReset: (vm: Vm) => syncVmTag(vm, 'relayvm', vm.vmProp('relayvm')),
    }),
    prop('transport_rpc', 'str', { dflt: k(null), help: 'Transport RPC used by the relay.' }),
    prop('remote_name', 'str', { dflt: k(null), help: 'Name on the remote host.' }),
  ]);
  return {
    AdminVM: adminvm,
    AppVM: appvm,
    TemplateVM: new PropTable(templatevm),
    StandaloneVM: standalone,
    DispVM: dispvm,
    RemoteVM: remotevm,
  };
})();

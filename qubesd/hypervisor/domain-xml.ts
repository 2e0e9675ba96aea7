// The one place where a qube becomes libvirt domain XML.
//
// Input is a plain DomainSpec (qubesd fills it from the qube's properties);
// output is the XML for one of these flavours:
//   'xen'  - what Qubes OS defines on Xen (libxl): xenfv/xenpvh/xenpv guests,
//            phy block disks with the qubes-block script, the routed vif of
//            the network qube, a stubdomain device model for HVMs;
//   'kvm'  - QEMU with KVM acceleration;
//   'qemu' - QEMU under TCG emulation (no usable /dev/kvm).
// QEMU guests keep QEMU's default CPU model: passing the host CPU through
// breaks under nested virtualisation (KVM refuses MSRs the outer hypervisor
// hides), which is where CI runs.
//   'test' - libvirt's test driver, which only keeps state.
// On QEMU every virt_mode runs as a full-virtualised guest: with a kernel it
// is booted directly, without one it starts in the firmware.
import { isValidQubeName } from '../../lib/qube-names.js';

export type VirtMode = 'hvm' | 'pvh' | 'pv';
export type XmlFlavour = 'xen' | 'kvm' | 'qemu' | 'test';

export interface DiskSpec {
  /** Host path of the block device or image file. */
  path: string;
  /** Guest device name, Qubes-style: xvda (root), xvdb (private), xvdc (volatile), xvdd (kernel). */
  target: string;
  readonly?: boolean;
  /** Qube serving the disk (Xen driver domains); null/absent for dom0. */
  backendDomain?: string | null;
}

export interface NetworkSpec {
  ip: string;
  ip6?: string | null;
  mac: string;
  /** The netvm: the qube whose vif the interface plugs into. */
  backendDomain: string;
}

export interface DomainSpec {
  name: string;
  uuid: string;
  /** Initial memory (MiB). */
  memoryMb: number;
  /** Ballooning ceiling (MiB); 0 or absent: fixed memory. */
  maxmemMb?: number;
  vcpus: number;
  virtMode: VirtMode;
  /** Path of the kernel image to boot directly; null/absent: boot from the disks/firmware. */
  kernel?: string | null;
  initramfs?: string | null;
  kernelopts?: string;
  disks?: DiskSpec[];
  network?: NetworkSpec | null;
}

export class DomainSpecError extends Error {
  override name = 'DomainSpecError';
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TARGET_RE = /^xvd[a-z]{1,2}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Throws DomainSpecError naming the first bad field. */
export function validateSpec(spec: DomainSpec, flavour: XmlFlavour): void {
  const bad = (m: string) => {
    throw new DomainSpecError(`domain ${JSON.stringify(spec.name)}: ${m}`);
  };
  if (typeof spec.name !== 'string' || !isValidQubeName(spec.name)) bad('invalid name');
  if (typeof spec.uuid !== 'string' || !UUID_RE.test(spec.uuid)) bad(`invalid uuid ${JSON.stringify(spec.uuid)}`);
  if (!Number.isInteger(spec.memoryMb) || spec.memoryMb <= 0) bad(`memory must be a positive number of MiB, got ${spec.memoryMb}`);
  const maxmem = spec.maxmemMb ?? 0;
  if (!Number.isInteger(maxmem) || maxmem < 0) bad(`maxmem must be a non-negative number of MiB, got ${spec.maxmemMb}`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) bad(`vcpus must be at least 1, got ${spec.vcpus}`);
  if (!['hvm', 'pvh', 'pv'].includes(spec.virtMode)) bad(`invalid virt_mode ${JSON.stringify(spec.virtMode)}`);
  if (flavour === 'xen' && spec.virtMode !== 'hvm' && !spec.kernel) bad(`virt_mode ${spec.virtMode} needs a kernel`);
  if (spec.initramfs && !spec.kernel) bad('an initramfs needs a kernel');
  const targets = new Set<string>();
  for (const d of spec.disks ?? []) {
    if (!d.path || !d.path.startsWith('/')) bad(`disk path must be absolute, got ${JSON.stringify(d.path)}`);
    if (!TARGET_RE.test(d.target)) bad(`invalid disk target ${JSON.stringify(d.target)}`);
    if (targets.has(d.target)) bad(`disk target ${d.target} used twice`);
    targets.add(d.target);
  }
  if (spec.network && !MAC_RE.test(spec.network.mac)) bad(`invalid MAC address ${JSON.stringify(spec.network.mac)}`);
}

export function domainXml(spec: DomainSpec, flavour: XmlFlavour, opts: { emulator?: string } = {}): string {
  validateSpec(spec, flavour);
  const root = flavour === 'xen' ? xenDomain(spec) : qemuDomain(spec, flavour, opts.emulator ?? '/usr/bin/qemu-system-x86_64');
  return render(root, 0);
}

// --- Xen ----------------------------------------------------------------------

function memoryElements(spec: DomainSpec): XNode[] {
  const maxmem = spec.maxmemMb ?? 0;
  return [
    el('memory', { unit: 'MiB' }, String(maxmem > 0 ? maxmem : spec.memoryMb)),
    el('currentMemory', { unit: 'MiB' }, String(spec.memoryMb)),
    el('vcpu', { placement: 'static' }, String(spec.vcpus)),
  ];
}

function xenDomain(spec: DomainSpec): XNode {
  const hvm = spec.virtMode === 'hvm';
  const os: XNode[] = [];
  if (hvm) {
    os.push(
      el('type', { arch: 'x86_64', machine: 'xenfv' }, 'hvm'),
      el('loader', { type: 'rom' }, 'hvmloader'),
      el('boot', { dev: 'cdrom' }),
      el('boot', { dev: 'hd' }),
    );
  } else {
    os.push(spec.virtMode === 'pvh' ? el('type', { arch: 'x86_64', machine: 'xenpvh' }, 'xenpvh') : el('type', { arch: 'x86_64', machine: 'xenpv' }, 'linux'));
    os.push(el('kernel', {}, spec.kernel!));
    if (spec.initramfs) os.push(el('initrd', {}, spec.initramfs));
  }
  if (spec.kernel) os.push(el('cmdline', {}, spec.kernelopts ?? ''));

  const devices: XNode[] = (spec.disks ?? []).map((d) =>
    el('disk', { type: 'block', device: 'disk' }, [
      el('driver', { name: 'phy' }),
      el('source', { dev: d.path }),
      el('target', { dev: d.target }),
      ...(d.readonly ? [el('readonly')] : []),
      ...(d.backendDomain ? [el('backenddomain', { name: d.backendDomain })] : []),
      el('script', { path: '/etc/xen/scripts/qubes-block' }),
    ]),
  );
  if (spec.network) {
    const n = spec.network;
    devices.push(
      el('interface', { type: 'ethernet' }, [
        el('mac', { address: n.mac }),
        el('ip', { address: n.ip }),
        ...(n.ip6 ? [el('ip', { address: n.ip6, family: 'ipv6' })] : []),
        el('backenddomain', { name: n.backendDomain }),
        el('script', { path: 'vif-route-qubes' }),
      ]),
    );
  }
  if (hvm) {
    devices.push(el('emulator', { type: 'stubdom-linux' }), el('input', { type: 'tablet', bus: 'usb' }), el('video', {}, [el('model', { type: 'vga' })]));
  }
  devices.push(el('console', { type: 'pty' }, [el('target', { type: 'xen', port: '0' })]));

  return el('domain', { type: 'xen' }, [
    el('name', {}, spec.name),
    el('uuid', {}, spec.uuid),
    ...memoryElements(spec),
    ...(spec.virtMode !== 'pv'
      ? [
          el('cpu', { mode: 'host-passthrough' }, [
            el('feature', { name: 'vmx', policy: 'disable' }),
            el('feature', { name: 'svm', policy: 'disable' }),
            el('feature', { name: 'invtsc', policy: 'require' }),
          ]),
        ]
      : []),
    el('os', {}, os),
    el('features', {}, spec.virtMode !== 'pv' ? [el('pae'), el('acpi'), el('apic'), el('viridian')] : []),
    hvm
      ? el('clock', { offset: 'variable', adjustment: '0', basis: 'utc' })
      : el('clock', { offset: 'utc', adjustment: 'reset' }, [el('timer', { name: 'tsc', mode: 'native' })]),
    ...lifecycleActions(),
    el('devices', {}, devices),
  ]);
}

// --- QEMU/KVM and the test driver ------------------------------------------------

function qemuDomain(spec: DomainSpec, flavour: 'kvm' | 'qemu' | 'test', emulator: string): XNode {
  const os: XNode[] = [el('type', { arch: 'x86_64', machine: 'pc' }, 'hvm')];
  if (spec.kernel) {
    os.push(el('kernel', {}, spec.kernel));
    if (spec.initramfs) os.push(el('initrd', {}, spec.initramfs));
    os.push(el('cmdline', {}, spec.kernelopts ?? ''));
  } else {
    os.push(el('boot', { dev: 'hd' }));
  }
  const devices: XNode[] = [];
  if (flavour !== 'test') devices.push(el('emulator', {}, emulator));
  for (const d of spec.disks ?? []) {
    const block = d.path.startsWith('/dev/');
    devices.push(
      el('disk', { type: block ? 'block' : 'file', device: 'disk' }, [
        el('driver', { name: 'qemu', type: 'raw' }),
        el('source', block ? { dev: d.path } : { file: d.path }),
        el('target', { dev: d.target.replace(/^xvd/, 'vd'), bus: 'virtio' }),
        ...(d.readonly ? [el('readonly')] : []),
      ]),
    );
  }
  if (spec.network) devices.push(el('interface', { type: 'ethernet' }, [el('mac', { address: spec.network.mac }), el('model', { type: 'virtio' })]));
  if (flavour !== 'test') devices.push(el('console', { type: 'pty' }));

  return el('domain', { type: flavour }, [
    el('name', {}, spec.name),
    el('uuid', {}, spec.uuid),
    // libvirt has no element for the guest-side address on QEMU: keep what
    // the network qube needs in Qubes' own metadata namespace.
    ...(spec.network
      ? [
          el('metadata', {}, [
            el('qubes:network', {
              'xmlns:qubes': 'https://www.qubes-os.org/libvirt/1',
              ip: spec.network.ip,
              ...(spec.network.ip6 ? { ip6: spec.network.ip6 } : {}),
              backend: spec.network.backendDomain,
            }),
          ]),
        ]
      : []),
    ...memoryElements(spec),
    el('os', {}, os),
    el('features', {}, [el('acpi'), el('apic')]),
    el('clock', { offset: 'utc' }),
    ...lifecycleActions(),
    el('devices', {}, devices),
  ]);
}

/** Qubes never lets libvirt restart a qube behind its back. */
function lifecycleActions(): XNode[] {
  return [el('on_poweroff', {}, 'destroy'), el('on_reboot', {}, 'destroy'), el('on_crash', {}, 'destroy')];
}

// --- a minimal XML writer -----------------------------------------------------

interface XNode {
  name: string;
  attrs: Record<string, string>;
  content: XNode[] | string | null;
}

function el(name: string, attrs: Record<string, string> = {}, content: XNode[] | string | null = null): XNode {
  return { name, attrs, content };
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function render(n: XNode, depth: number): string {
  const pad = '  '.repeat(depth);
  const attrs = Object.entries(n.attrs)
    .map(([k, v]) => ` ${k}="${escapeXml(v)}"`)
    .join('');
  if (n.content === null || (Array.isArray(n.content) && n.content.length === 0)) return `${pad}<${n.name}${attrs}/>\n`;
  if (typeof n.content === 'string') return `${pad}<${n.name}${attrs}>${escapeXml(n.content)}</${n.name}>\n`;
  return `${pad}<${n.name}${attrs}>\n${n.content.map((c) => render(c, depth + 1)).join('')}${pad}</${n.name}>\n`;
}

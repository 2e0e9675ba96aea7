// Golden-file tests of the domain XML generator: each case's output must equal
// test/hypervisor/golden/<case>.xml. After an intended change, regenerate with
//   QUBES_UPDATE_GOLDEN=1 node scripts/run-tests.mjs dist/test/hypervisor/domain-xml.test.js
// and review the diff. The QEMU and test-driver forms are also fed to the real
// libvirtd, which must accept them and keep what we said.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { domainXml, DomainSpecError, type DomainSpec, type XmlFlavour } from '../../qubesd/hypervisor/domain-xml.js';
import { LibvirtClient } from '../../qubesd/hypervisor/libvirt/client.js';
import { libvirtSocket, skipLoudly, uniqueName } from './helpers.js';

const goldenDir = join(dirname(fileURLToPath(import.meta.url)), '../../../test/hypervisor/golden');

const tiny: DomainSpec = {
  name: 'tiny',
  uuid: '3f1c9a52-8d0e-4b7a-9c61-2e5f0d4b8a17',
  memoryMb: 64,
  maxmemMb: 0,
  vcpus: 1,
  virtMode: 'hvm',
  kernel: null,
};
const appvm: DomainSpec = {
  name: 'work',
  uuid: 'a0f5e1c2-6b3d-4e8f-9a71-0c2d3e4f5a6b',
  memoryMb: 400,
  maxmemMb: 4000,
  vcpus: 2,
  virtMode: 'pvh',
  kernel: '/var/lib/qubes/vm-kernels/6.6.48-1/vmlinuz',
  initramfs: '/var/lib/qubes/vm-kernels/6.6.48-1/initramfs',
  kernelopts: 'swiotlb=2048 console=hvc0',
  disks: [
    { path: '/dev/qubes_dom0/vm-fedora-40-root-snap', target: 'xvda', readonly: true },
    { path: '/dev/qubes_dom0/vm-work-private-snap', target: 'xvdb' },
    { path: '/dev/qubes_dom0/vm-work-volatile', target: 'xvdc' },
    { path: '/var/lib/qubes/vm-kernels/6.6.48-1/modules.img', target: 'xvdd', readonly: true },
  ],
  network: { ip: '10.137.0.12', ip6: null, mac: '00:16:3e:5e:6c:00', backendDomain: 'sys-firewall' },
};
const pvNetvm: DomainSpec = {
  name: 'sys-net',
  uuid: '0b6d3f2e-1a4c-4d5e-8f9a-7b6c5d4e3f21',
  memoryMb: 400,
  vcpus: 2,
  virtMode: 'pv',
  kernel: '/var/lib/qubes/vm-kernels/6.6.48-1/vmlinuz',
  kernelopts: 'nopat iommu=soft swiotlb=8192',
  disks: [{ path: '/dev/qubes_dom0/vm-sys-net-private', target: 'xvdb', backendDomain: 'sys-storage' }],
};
const hvmWithNet: DomainSpec = {
  ...tiny,
  name: 'win10',
  uuid: 'c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f',
  memoryMb: 4096,
  disks: [{ path: '/var/lib/qubes/appvms/win10/root.img', target: 'xvda' }],
  network: { ip: '10.137.0.30', ip6: 'fd09:24ef:4179::a89:1e', mac: '00:16:3e:5e:6c:1e', backendDomain: 'sys-firewall' },
};

const cases: Array<[string, DomainSpec, XmlFlavour]> = [
  ['hvm-tiny-qemu', tiny, 'qemu'],
  ['hvm-tiny-kvm', tiny, 'kvm'],
  ['hvm-tiny-xen', tiny, 'xen'],
  ['hvm-tiny-test', tiny, 'test'],
  ['pvh-appvm-xen', appvm, 'xen'],
  ['pvh-appvm-kvm', appvm, 'kvm'],
  ['pv-netvm-xen', pvNetvm, 'xen'],
  ['hvm-net-xen', hvmWithNet, 'xen'],
  ['hvm-net-qemu', hvmWithNet, 'qemu'],
];

t.test('golden files', async (t) => {
  for (const [name, spec, flavour] of cases) {
    const file = join(goldenDir, `${name}.xml`);
    const xml = domainXml(spec, flavour);
    if (process.env.QUBES_UPDATE_GOLDEN === '1' || !existsSync(file)) {
      writeFileSync(file, xml);
      t.comment(`wrote ${file}`);
    }
    t.equal(xml, readFileSync(file, 'utf8'), `${name} matches its golden file`);
  }
});

t.test('Qubes rules the generator follows', async (t) => {
  const xen = domainXml(appvm, 'xen');
  t.match(xen, '<memory unit="MiB">4000</memory>', 'with ballooning, memory is maxmem');
  t.match(xen, '<currentMemory unit="MiB">400</currentMemory>');
  t.match(domainXml(tiny, 'xen'), '<memory unit="MiB">64</memory>', 'without maxmem, memory is memory');
  t.notMatch(domainXml(pvNetvm, 'xen'), '<cpu', 'no CPU element for PV');
  t.notMatch(domainXml(tiny, 'kvm'), '<cpu', 'QEMU guests keep the default CPU model');
  t.match(domainXml(tiny, 'kvm'), '<domain type="kvm">');
  t.match(domainXml(tiny, 'qemu'), '<domain type="qemu">', 'TCG');
  t.match(domainXml(appvm, 'kvm'), '<target dev="vda" bus="virtio"/>', 'xvdX becomes a virtio vdX on QEMU');
  const nasty = domainXml({ ...appvm, kernelopts: 'a&b <c> "d"' }, 'xen');
  t.match(nasty, '<cmdline>a&amp;b &lt;c&gt; &quot;d&quot;</cmdline>', 'text is escaped');
});

t.test('invalid specs are refused with the field named', async (t) => {
  const bad: Array<[Partial<DomainSpec>, RegExp]> = [
    [{ name: '1abc' }, /invalid name/],
    [{ name: 'a'.repeat(32) }, /invalid name/],
    [{ uuid: 'x' }, /invalid uuid/],
    [{ memoryMb: -1 }, /memory must be/],
    [{ maxmemMb: 1.5 }, /maxmem must be/],
    [{ vcpus: 0 }, /vcpus must be/],
    [{ virtMode: 'hvx' as never }, /invalid virt_mode/],
    [{ disks: [{ path: 'relative', target: 'xvda' }] }, /absolute/],
    [{ disks: [{ path: '/a', target: 'sda' }] }, /invalid disk target/],
    [
      {
        disks: [
          { path: '/a', target: 'xvda' },
          { path: '/b', target: 'xvda' },
        ],
      },
      /used twice/,
    ],
    [{ network: { ip: '10.0.0.1', mac: 'zz', backendDomain: 'n' } }, /invalid MAC/],
    [{ initramfs: '/i' }, /needs a kernel/],
  ];
  for (const [over, re] of bad) t.throws(() => domainXml({ ...tiny, ...over }, 'qemu'), { name: 'DomainSpecError', message: re }, re.source);
  t.throws(() => domainXml({ ...tiny, virtMode: 'pvh' }, 'xen'), DomainSpecError, 'PVH on Xen needs a kernel');
});

t.test('libvirtd accepts the generated XML', async (t) => {
  const sock = await libvirtSocket();
  if (!sock) {
    t.plan(0, skipLoudly('domain XML against libvirtd'));
    return;
  }
  for (const [uri, flavour, spec] of [
    ['qemu:///system', 'qemu', hvmWithNet],
    ['qemu:///system', 'kvm', appvm],
    ['test:///default', 'test', appvm],
  ] as const) {
    // libvirt refuses domain type 'kvm' where the machine has no /dev/kvm (VIR_ERR_CONFIG_UNSUPPORTED)
    if (flavour === 'kvm' && !existsSync('/dev/kvm')) {
      t.comment('NOTE: no /dev/kvm here: the kvm flavour is not tried against libvirtd');
      continue;
    }
    const c = new LibvirtClient({ socketPath: sock, uri, reconnect: false });
    await c.connect();
    const s = { ...spec, name: uniqueName('xml'), uuid: crypto.randomUUID() };
    const d = await c.defineXml(domainXml(s, flavour));
    try {
      t.same([d.name, d.uuid], [s.name, s.uuid], `${flavour}: defined with our name and uuid`);
      const back = await c.getXmlDesc(d);
      t.match(back, `<currentMemory unit='KiB'>${s.memoryMb * 1024}</currentMemory>`, `${flavour}: memory kept`);
      t.match(back, `<vcpu placement='static'>${s.vcpus}</vcpu>`, `${flavour}: vcpus kept`);
    } finally {
      await c.undefine(d);
      await c.close();
    }
  }
});

import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseQubesXml, serializeQubesXml, QubesXmlError } from '../../qubesd/store/qubes-xml.js';
import { XmlError, XmlWriteError } from '../../qubesd/store/xml.js';
import { syntheticStore } from './helpers/synthetic.js';

const FIXTURE = '/work/shared/conformance/qubesd/fixtures/default/qubes.xml';

t.test('the conformance fixture (written by the real qubesd) round-trips byte for byte', async (t) => {
  const src = readFileSync(FIXTURE);
  const doc = parseQubesXml(src);
  t.equal(serializeQubesXml(doc), src.toString('utf8'));
  const dom0 = doc.domains[0]!;
  t.same([dom0.id, dom0.klass, dom0.properties], ['domain-0', 'AdminVM', [['label', 'black']]]);
  t.same(doc.labels[0], { id: 'label-1', color: '0xcc0000', name: 'red' });
  const work = doc.domains.find((d) => d.properties.some(([k, v]) => k === 'name' && v === 'fedora-41'))!;
  t.same(work.tags, ['guivm-dom0', 'audiovm-dom0', 'created-by-dom0']);
  t.same(work.devices, ['<devices class="pci"/>']);
  t.same(
    work.volumeConfig[0]!.attrs.map(([k]) => k),
    ['name', 'pool', 'vid', 'revisions_to_keep', 'rw', 'save_on_stop', 'snap_on_start', 'size'],
  );
});

// What Qubes writes beyond the fixture: devices with options, None-valued
// properties, values needing escapes, unknown elements (kept verbatim).
const GENERAL = `<qubes>
  <labels>
    <label id="label-1" color="0xcc0000">red</label>
  </labels>
  <pools>
    <pool name="lvm" driver="lvm_thin" volume_group="qubes_dom0" thin_pool="vm-pool" revisions_to_keep="2"/>
  </pools>
  <properties>
    <property name="default_netvm"></property>
    <property name="default_kernel">6.6</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">black</property>
      </properties>
      <features>
        <feature name="gui-default-secure-copy-sequence">Ctrl-Shift-c &amp; "x" &lt;y&gt;</feature>
        <feature name="empty"></feature>
      </features>
      <tags/>
      <devices class="block"/>
    </domain>
    <domain id="domain-3" class="AppVM">
      <properties>
        <property name="label">red</property>
        <property name="name">sys-usb</property>
        <property name="netvm"></property>
        <property name="kernelopts">a="1" b</property>
      </properties>
      <features/>
      <tags>
        <tag name="audiovm-dom0"/>
      </tags>
      <devices class="pci">
        <device backend-domain="dom0" id="0000:00:14.0" mode="required" identity="0x0c0330">
          <option name="no-strict-reset">True</option>
          <option name="permissive">False</option>
        </device>
      </devices>
      <devices class="usb"/>
      <volume-config>
        <volume name="root" pool="lvm" vid="qubes_dom0/vm-sys-usb-root" revisions_to_keep="0" rw="True" save_on_stop="False" snap_on_start="True" size="21474836480" source="qubes_dom0/vm-fedora-41-root"/>
      </volume-config>
      <future-thing version="2">
        <x a="b&#10;c">1</x>
      </future-thing>
    </domain>
    <domain id="domain-9" class="RemoteVM">
      <properties>
        <property name="name">remote</property>
      </properties>
      <features/>
      <tags/>
    </domain>
  </domains>
  <other-global/>
</qubes>
`;

t.test('documents Qubes writes in general round-trip byte for byte', async (t) => {
  const doc = parseQubesXml(GENERAL);
  t.equal(serializeQubesXml(doc), GENERAL);
  t.same(
    doc.properties,
    [
      ['default_netvm', ''],
      ['default_kernel', '6.6'],
    ],
    'an empty property reads as an explicit None',
  );
  const usb = doc.domains[1]!;
  t.same(usb.properties[3], ['kernelopts', 'a="1" b']);
  t.equal(usb.devices.length, 2);
  t.match(usb.devices[0], /^<devices class="pci">\n  <device /, 'devices are kept as XML, indented from depth 0');
  t.same(usb.extra, ['<future-thing version="2">\n  <x a="b&#10;c">1</x>\n</future-thing>']);
  t.same(doc.extra, ['<other-global/>']);
  t.same(doc.domains[0]!.features[0], ['gui-default-secure-copy-sequence', 'Ctrl-Shift-c & "x" <y>']);
});

t.test('verbatim elements given in any indentation are re-indented', async (t) => {
  const doc = parseQubesXml(GENERAL);
  doc.domains[1]!.devices = [
    '<devices class="usb"><device backend-domain="sys-usb" id="2-1" mode="auto-attach" identity="*"><option name="x">y</option></device></devices>',
  ];
  const again = parseQubesXml(serializeQubesXml(doc));
  t.same(again.domains[1]!.devices, [
    '<devices class="usb">\n  <device backend-domain="sys-usb" id="2-1" mode="auto-attach" identity="*">\n    <option name="x">y</option>\n  </device>\n</devices>',
  ]);
});

t.test('Qubes layout rules: empty sections, volume-config, an XML declaration on input', async (t) => {
  const doc = parseQubesXml('<?xml version=\'1.0\' encoding=\'UTF-8\'?>\n<qubes><domains><domain id="domain-4" class="DispVM"/></domains></qubes>');
  t.equal(
    serializeQubesXml(doc),
    [
      '<qubes>',
      '  <labels/>',
      '  <pools/>',
      '  <properties/>',
      '  <domains>',
      '    <domain id="domain-4" class="DispVM">',
      '      <properties/>',
      '      <features/>',
      '      <tags/>',
      '      <volume-config/>',
      '    </domain>',
      '  </domains>',
      '</qubes>',
      '',
    ].join('\n'),
    'no declaration (lxml omits it for UTF-8); qubes with storage always get <volume-config>',
  );
});

t.test('a property saved by reference reads as its reference, as Qubes reads it', async (t) => {
  const doc = parseQubesXml('<qubes><properties><property name="x" ref="label-1"/></properties></qubes>');
  t.same(doc.properties, [['x', 'label-1']]);
});

t.test('a synthetic 1000-domain store round-trips', async (t) => {
  const doc = syntheticStore(1000);
  const xml = serializeQubesXml(doc);
  t.same(parseQubesXml(xml), doc);
  t.equal(serializeQubesXml(parseQubesXml(xml)), xml);
});

const broken: Array<[string, string, RegExp, unknown]> = [
  ['a different root', '<domains/>', /root element is <domains>, expected <qubes>/, QubesXmlError],
  ['a label without id', '<qubes><labels><label color="0x1">red</label></labels></qubes>', /no id attribute/, QubesXmlError],
  ['a bad label id', '<qubes><labels><label id="red" color="0x1">red</label></labels></qubes>', /invalid label id/, QubesXmlError],
  ['a domain without class', '<qubes><domains><domain id="domain-1"/></domains></qubes>', /domain #1 \(domain-1\): <domain> has no class/, QubesXmlError],
  ['junk in <domains>', '<qubes><domains><vm/></domains></qubes>', /unexpected <vm> in <domains>/, QubesXmlError],
  ['text in <qubes>', '<qubes>hello</qubes>', /unexpected text "hello"/, QubesXmlError],
  [
    'an element inside a property',
    '<qubes><properties><property name="a"><b/></property></properties></qubes>',
    /unexpected <b> inside <property>/,
    QubesXmlError,
  ],
  ['truncated XML', '<qubes>\n  <labels>\n', /line 3, column 1: unexpected end of input/, XmlError],
];
for (const [name, xml, msg, cls] of broken) {
  t.test(`rejects ${name}`, async (t) => {
    t.throws(() => parseQubesXml(xml), msg as RegExp);
    try {
      parseQubesXml(xml);
    } catch (e) {
      t.ok(e instanceof (cls as typeof Error));
    }
  });
}

t.test('refuses to write values XML cannot hold', async (t) => {
  const doc = syntheticStore(3);
  doc.domains[2]!.features.push(['bad', 'a\u0000b']);
  t.throws(() => serializeQubesXml(doc), XmlWriteError);
  const doc2 = syntheticStore(3);
  doc2.domains[2]!.devices.push('<devices class="pci">');
  t.throws(() => serializeQubesXml(doc2), /not well-formed/);
});

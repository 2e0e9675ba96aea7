// Our writer against lxml itself: the same document built the way Qubes'
// __xml__ methods build it (lxml Elements, text set to the value) and written
// as Qubes.save() writes it. Needs python3 with lxml (Debian: python3-lxml);
// skipped without it.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import type { QubesDoc } from '../../qubesd/store/document.js';
import { parseQubesXml, serializeQubesXml } from '../../qubesd/store/qubes-xml.js';
import { syntheticStore } from './helpers/synthetic.js';

const PY = `
import json, sys
import lxml.etree as E
doc = json.load(sys.stdin)
def el(name, attrs=(), text=None):
    e = E.Element(name)
    for k, v in attrs: e.set(k, v)
    if text is not None: e.text = text
    return e
def props(pairs):
    p = el('properties')
    for k, v in pairs: p.append(el('property', [('name', k)], v))
    return p
root = el('qubes')
labels = el('labels')
for l in doc['labels']: labels.append(el('label', [('id', l['id']), ('color', l['color'])], l['name']))
root.append(labels)
pools = el('pools')
for p in doc['pools']: pools.append(el('pool', p['attrs']))
root.append(pools)
root.append(props(doc['properties']))
domains = el('domains')
for d in doc['domains']:
    x = el('domain', [('id', d['id']), ('class', d['klass'])])
    x.append(props(d['properties']))
    f = el('features')
    for k, v in d['features']: f.append(el('feature', [('name', k)], v))
    x.append(f)
    tg = el('tags')
    for k in d['tags']: tg.append(el('tag', [('name', k)]))
    x.append(tg)
    for dev in d['devices']: x.append(E.fromstring(dev, E.XMLParser(remove_blank_text=True)))
    if d['klass'] not in ('AdminVM', 'RemoteVM'):
        vc = el('volume-config')
        for v in d['volumeConfig']: vc.append(el('volume', v['attrs']))
        x.append(vc)
    domains.append(x)
root.append(domains)
sys.stdout.buffer.write(E.tostring(E.ElementTree(root), encoding='utf-8', pretty_print=True))
`;

const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import lxml.etree'], { stdio: 'ignore' }).status === 0);

function lxmlWrites(doc: QubesDoc): string {
  const r = spawnSync(python!, ['-c', PY], { input: JSON.stringify(doc), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

t.test('qubes.xml as lxml writes it', { skip: python ? false : 'python3 with lxml is not installed' }, async (t) => {
  const doc = syntheticStore(12);
  const vm = doc.domains[3]!;
  vm.features.push(['tricky', `a & b < c > d "e" 'f'\ttab\nnewline\rcr é €`], ['empty', ''], ['spaces', '  ']);
  vm.properties.push(['netvm', ''], ['kernelopts', 'x="1" & y']);
  vm.tags.push('created-by-sys-usb');
  vm.devices = [
    '<devices class="usb"><device backend-domain="sys-usb" id="2-1" mode="required" identity="0951:1666 Kingston &quot;DT&quot;"><option name="a&amp;b">x\ty</option><option name="e"/></device></devices>',
    '<devices class="pci"/>',
  ];
  vm.volumeConfig[0]!.attrs.push(['odd', 'tab\there "q" <&> \n nl']);
  doc.pools[0]!.attrs.push(['note', "it's <fine>"]);
  doc.labels[0]!.name = 'red & "crimson"';
  const ours = serializeQubesXml(doc);
  t.equal(ours, lxmlWrites(doc), 'byte for byte');
  t.same(parseQubesXml(ours).domains[3]!.features, vm.features, 'and reads back the same values');
});

// qubes.xml <-> QubesDoc, in the layout Qubes R4.x writes (qubes/app.py
// Qubes.__xml__, qubes/vm/__init__.py and qubesvm.py __xml__, relaxng/qubes.rng):
//
//   <qubes>
//     <labels><label id="label-N" color="0x...">name</label>...</labels>
//     <pools><pool name=... driver=... .../>...</pools>
//     <properties><property name="...">value</property>...</properties>
//     <domains>
//       <domain id="domain-QID" class="AppVM">
//         <properties/> <features/> <tags/> <devices class="..."/>... <volume-config/>
//       </domain>...
//     </domains>
//   </qubes>
//
// Reading follows what Qubes' loader accepts; writing produces exactly what
// lxml writes for the same objects, so a file we write loads in Qubes and a
// file Qubes wrote survives load -> save byte for byte. Elements Qubes does
// not know are kept verbatim (as serialized XML) where the document allows.

import type { DomainDoc, LabelDoc, PoolDoc, QubesDoc, VolumeConfigDoc } from './document.js';
import { type XmlElement, type XmlNode, escapeAttr, escapeText, indent, isElement, openTag, parseXml, serializeElement } from './xml.js';

/** A well-formed XML file that is not a usable Qubes store. */
export class QubesXmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QubesXmlError';
  }
}

/** Domain classes that Qubes writes without <volume-config> (they have no storage). */
const NO_VOLUME_CONFIG = new Set(['AdminVM', 'RemoteVM']);

// ---------------------------------------------------------------------------
// Reading

/** Parses qubes.xml; throws XmlError (syntax) or QubesXmlError (structure). */
export function parseQubesXml(input: string | Uint8Array): QubesDoc {
  const root = parseXml(input);
  if (root.name !== 'qubes') throw new QubesXmlError(`root element is <${root.name}>, expected <qubes>`);
  const doc: QubesDoc = { labels: [], pools: [], properties: [], domains: [], extra: [] };
  for (const el of elements(root, 'qubes')) {
    switch (el.name) {
      case 'labels':
        for (const l of children(el, 'label', 'labels')) doc.labels.push(readLabel(l));
        break;
      case 'pools':
        for (const p of children(el, 'pool', 'pools')) doc.pools.push(readPool(p));
        break;
      case 'properties':
        readProperties(el, doc.properties, 'global properties');
        break;
      case 'domains':
        for (const d of children(el, 'domain', 'domains')) doc.domains.push(readDomain(d, doc.domains.length + 1));
        break;
      default:
        doc.extra.push(serializeElement(el));
    }
  }
  return doc;
}

/** Child elements (comments and blank text dropped); other text between them is an error. */
function elements(el: XmlElement, where: string): XmlElement[] {
  const out: XmlElement[] = [];
  for (const n of el.children) {
    if (typeof n === 'string' && n.trim() === '') continue; // e.g. an empty <volume-config> written on two lines
    if (typeof n === 'string') throw new QubesXmlError(`unexpected text ${JSON.stringify(n.trim().slice(0, 40))} in <${where}>`);
    if (isElement(n)) out.push(n);
  }
  return out;
}

function children(el: XmlElement, name: string, where: string): XmlElement[] {
  const out = elements(el, where);
  for (const c of out) if (c.name !== name) throw new QubesXmlError(`unexpected <${c.name}> in <${where}>, expected <${name}>`);
  return out;
}

function attr(el: XmlElement, name: string): string | undefined {
  for (const [k, v] of el.attrs) if (k === name) return v;
  return undefined;
}

function requireAttr(el: XmlElement, name: string, where: string): string {
  const v = attr(el, name);
  if (v === undefined) throw new QubesXmlError(`${where}: <${el.name}> has no ${name} attribute`);
  return v;
}

/** The text of a leaf element ('' when empty); child elements are an error. */
function leafText(el: XmlElement, where: string): string {
  let t = '';
  for (const n of el.children as XmlNode[]) {
    if (typeof n === 'string') t += n;
    else if (isElement(n)) throw new QubesXmlError(`${where}: unexpected <${n.name}> inside <${el.name}>`);
  }
  return t;
}

function readLabel(el: XmlElement): LabelDoc {
  const id = requireAttr(el, 'id', 'labels');
  if (!/^label-[0-9]+$/.test(id)) throw new QubesXmlError(`labels: invalid label id ${JSON.stringify(id)}`);
  const color = requireAttr(el, 'color', `label ${id}`);
  const name = leafText(el, `label ${id}`);
  if (name === '') throw new QubesXmlError(`label ${id} has no name`);
  return { id, color, name };
}

function readPool(el: XmlElement): PoolDoc {
  const name = requireAttr(el, 'name', 'pools');
  if (name === '') throw new QubesXmlError('pools: a pool has an empty name');
  for (const n of el.children) {
    if (isElement(n) || (typeof n === 'string' && n.trim() !== '')) throw new QubesXmlError(`pool ${name}: unexpected content`);
  }
  return { attrs: el.attrs.map(([k, v]) => [k, v]) };
}

function readProperties(el: XmlElement, into: Array<[string, string]>, where: string): void {
  for (const p of children(el, 'property', where)) {
    const name = requireAttr(p, 'name', where);
    // Qubes reads `ref` first (properties saved by reference), then the text.
    const ref = attr(p, 'ref');
    const text = leafText(p, `${where}, property ${name}`);
    into.push([name, ref ? ref : text]);
  }
}

function readDomain(el: XmlElement, nth: number): DomainDoc {
  const where = `domain #${nth}`;
  const id = requireAttr(el, 'id', where);
  const klass = requireAttr(el, 'class', `${where} (${id})`);
  const d: DomainDoc = { id, klass, properties: [], features: [], tags: [], devices: [], volumeConfig: [], extra: [] };
  const at = `domain ${id}`;
  for (const c of elements(el, 'domain')) {
    switch (c.name) {
      case 'properties':
        readProperties(c, d.properties, at);
        break;
      case 'features':
        for (const f of children(c, 'feature', `${at} features`)) {
          const name = requireAttr(f, 'name', `${at} features`);
          d.features.push([name, leafText(f, `${at}, feature ${name}`)]);
        }
        break;
      case 'tags':
        for (const t of children(c, 'tag', `${at} tags`)) d.tags.push(requireAttr(t, 'name', `${at} tags`));
        break;
      case 'devices':
        requireAttr(c, 'class', at);
        d.devices.push(serializeElement(c));
        break;
      case 'volume-config':
        for (const v of children(c, 'volume', `${at} volume-config`)) {
          requireAttr(v, 'name', `${at} volume-config`);
          d.volumeConfig.push({ attrs: v.attrs.map(([k, val]) => [k, val]) });
        }
        break;
      default:
        d.extra.push(serializeElement(c));
    }
  }
  return d;
}

// ---------------------------------------------------------------------------
// Writing

/** The whole file, exactly as Qubes (lxml, pretty_print) writes it. */
export function serializeQubesXml(doc: QubesDoc): string {
  const out: string[] = ['<qubes>\n'];
  out.push(serializeGlobals(doc));
  if (doc.domains.length === 0) out.push('  <domains/>\n');
  else {
    out.push('  <domains>\n');
    for (const d of doc.domains) out.push(serializeDomain(d));
    out.push('  </domains>\n');
  }
  for (const x of doc.extra) out.push(indent(1), verbatim(x, 1), '\n');
  out.push('</qubes>\n');
  return out.join('');
}

/** <labels>, <pools> and <properties> at depth 1, each line newline-terminated. */
export function serializeGlobals(g: Pick<QubesDoc, 'labels' | 'pools' | 'properties'>): string {
  let s = '';
  if (g.labels.length === 0) s += '  <labels/>\n';
  else {
    s += '  <labels>\n';
    for (const l of g.labels)
      s +=
        '    ' +
        openTag('label', [
          ['id', l.id],
          ['color', l.color],
        ]) +
        '>' +
        escapeText(l.name) +
        '</label>\n';
    s += '  </labels>\n';
  }
  if (g.pools.length === 0) s += '  <pools/>\n';
  else {
    s += '  <pools>\n';
    for (const p of g.pools) s += '    ' + openTag('pool', p.attrs) + '/>\n';
    s += '  </pools>\n';
  }
  return s + properties(g.properties, 1);
}

function properties(props: ReadonlyArray<readonly [string, string]>, depth: number): string {
  const ind = indent(depth);
  if (props.length === 0) return ind + '<properties/>\n';
  let s = ind + '<properties>\n';
  // An empty value is an explicit None: Qubes sets the text to '', which
  // lxml writes as an open/close pair rather than an empty element.
  for (const [k, v] of props) s += ind + '  <property name="' + escapeAttr(k) + '">' + escapeText(v) + '</property>\n';
  return s + ind + '</properties>\n';
}

/** One <domain> at depth 2, newline-terminated. Throws XmlWriteError on data XML cannot hold. */
export function serializeDomain(d: DomainDoc): string {
  let s =
    '    ' +
    openTag('domain', [
      ['id', d.id],
      ['class', d.klass],
    ]) +
    '>\n';
  s += properties(d.properties, 3);
  if (d.features.length === 0) s += '      <features/>\n';
  else {
    s += '      <features>\n';
    for (const [k, v] of d.features) s += '        <feature name="' + escapeAttr(k) + '">' + escapeText(v) + '</feature>\n';
    s += '      </features>\n';
  }
  if (d.tags.length === 0) s += '      <tags/>\n';
  else {
    s += '      <tags>\n';
    for (const t of d.tags) s += '        <tag name="' + escapeAttr(t) + '"/>\n';
    s += '      </tags>\n';
  }
  for (const x of d.devices) s += '      ' + verbatim(x, 3, 'devices') + '\n';
  if (d.volumeConfig.length > 0 || !NO_VOLUME_CONFIG.has(d.klass)) s += volumeConfig(d.volumeConfig);
  for (const x of d.extra) s += '      ' + verbatim(x, 3) + '\n';
  return s + '    </domain>\n';
}

function volumeConfig(vols: VolumeConfigDoc[]): string {
  if (vols.length === 0) return '      <volume-config/>\n';
  let s = '      <volume-config>\n';
  for (const v of vols) s += '        ' + openTag('volume', v.attrs) + '/>\n';
  return s + '      </volume-config>\n';
}

// Verbatim elements are re-parsed to be re-indented for where they sit; the
// same few strings (`<devices class="pci"/>` ...) recur on every domain, so
// their output is remembered.
const verbatimCache = new Map<string, string>();
const VERBATIM_CACHE_MAX = 4096;

function verbatim(xml: string, depth: number, expect?: string): string {
  const key = depth + '\0' + xml;
  const hit = verbatimCache.get(key);
  if (hit !== undefined) return hit;
  let el: XmlElement;
  try {
    el = parseXml(xml);
  } catch (e) {
    throw new QubesXmlError(`verbatim element ${JSON.stringify(xml.slice(0, 60))} is not well-formed XML: ${(e as Error).message}`);
  }
  if (expect !== undefined && el.name !== expect) throw new QubesXmlError(`expected a <${expect}> element, got <${el.name}>`);
  const out = serializeElement(el, depth);
  if (verbatimCache.size >= VERBATIM_CACHE_MAX) verbatimCache.clear();
  verbatimCache.set(key, out);
  return out;
}

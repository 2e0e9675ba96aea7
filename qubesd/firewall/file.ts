// firewall.xml, the per-qube rule file in the qube's directory, in the
// format Qubes reads and writes (qubes/firewall.py Firewall.load/save):
// version 2 (<firewall version="2"><rules><rule><properties><property
// name="...">) and the old version 1 (R3.x) on reading. Writing is atomic
// (lib/atomic-write.ts: temporary file, fsync, rename, directory fsync), as Qubes'
// replace_file does, with the same 0664 mode.
import { atomicWriteFile } from '../../lib/atomic-write.js';
import { isElement, parseXml, serializeXml, type XmlElement } from '../store/xml.js';
import { isExpired, optionText, parseDstHost, ruleFromOptions, RuleError, XML_ORDER, type Rule, type RuleKey } from './rule.js';

/** A firewall.xml that Qubes would not load either. */
export class FirewallFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FirewallFileError';
  }
}

/** The rules of a qube without firewall.xml: allow everything. */
export function defaultRules(): Rule[] {
  return [ruleFromOptions([['action', 'accept']])];
}

const children = (el: XmlElement, name?: string): XmlElement[] =>
  el.children.filter((c): c is XmlElement => isElement(c) && (name === undefined || c.name === name));
const text = (el: XmlElement): string => el.children.filter((c): c is string => typeof c === 'string').join('');
const attr = (el: XmlElement, name: string): string | undefined => el.attrs.find(([k]) => k === name)?.[1];

/** Parses the content of a firewall.xml file. */
export function parseFirewallXml(content: string | Uint8Array): Rule[] {
  let root: XmlElement;
  try {
    root = parseXml(content);
  } catch (e) {
    throw new FirewallFileError(`not well-formed XML: ${(e as Error).message}`);
  }
  const version = attr(root, 'version') ?? '1';
  try {
    if (version === '1') return loadV1(root);
    if (version === '2') return loadV2(root);
  } catch (e) {
    if (e instanceof RuleError) throw new FirewallFileError(`invalid rule: ${e.message}`);
    throw e;
  }
  throw new FirewallFileError(`Unsupported firewall.xml version: ${version}`);
}

function loadV2(root: XmlElement): Rule[] {
  const rules = children(root, 'rules')[0];
  if (!rules) throw new FirewallFileError('no <rules> element');
  return children(rules).map((r) => {
    const options: Array<[RuleKey, string]> = [];
    for (const props of children(r, 'properties')) {
      for (const p of children(props, 'property')) {
        const name = attr(p, 'name') ?? '';
        if (!(XML_ORDER as readonly string[]).includes(name)) throw new FirewallFileError(`property '${name}' not applicable to 'Rule'`);
        options.push([name as RuleKey, attr(p, 'ref') || text(p)]);
      }
    }
    return ruleFromOptions(options);
  });
}

/**
 * The R3 format: a default policy with allow/deny exceptions for DNS and
 * ICMP, and <rule address= netmask= proto= port= toport= expire=> elements
 * that are the exceptions to the policy.
 */
function loadV1(root: XmlElement): Rule[] {
  const policy = attr(root, 'policy');
  if (policy !== 'allow' && policy !== 'deny') throw new FirewallFileError(`invalid version 1 policy: ${policy ?? '(none)'}`);
  const actionOf = (key: string) => ((attr(root, key) ?? policy) === 'allow' ? 'accept' : 'drop');
  const out: Rule[] = [
    ruleFromOptions([
      ['action', actionOf('dns')],
      ['specialtarget', 'dns'],
    ]),
    ruleFromOptions([
      ['action', actionOf('icmp')],
      ['proto', 'icmp'],
    ]),
  ];
  const exception = policy === 'allow' ? 'drop' : 'accept';
  for (const el of children(root)) {
    const netmaskText = attr(el, 'netmask');
    const netmask = netmaskText === undefined ? 32 : Number(netmaskText);
    if (!Number.isInteger(netmask)) throw new FirewallFileError(`invalid netmask: ${netmaskText}`);
    const address = attr(el, 'address');
    const port = attr(el, 'port'),
      toport = attr(el, 'toport');
    const dstports = port && toport ? `${port}-${toport}` : port || undefined;
    let proto = attr(el, 'proto');
    if (dstports && !proto) proto = 'tcp';
    if (proto === 'any') proto = undefined;
    const expire = attr(el, 'expire');
    const preset: { -readonly [K in keyof Rule]?: Rule[K] } = {};
    if (address) preset.dsthost = parseDstHost(address, netmask);
    const options: Array<[RuleKey, string]> = [['action', exception]];
    if (dstports) options.push(['dstports', dstports]);
    if (proto) options.push(['proto', proto]);
    if (expire) options.push(['expire', expire]);
    out.push(ruleFromOptions(options, preset));
  }
  if (policy === 'allow') out.push(ruleFromOptions([['action', 'accept']]));
  return out;
}

/** The file content Qubes writes for these rules (expired ones left out). */
export function serializeFirewallXml(rules: readonly Rule[], nowMs = Date.now()): string {
  const rulesEl: XmlElement = { name: 'rules', attrs: [], children: [] };
  for (const r of rules) {
    if (isExpired(r, nowMs)) continue;
    const props: XmlElement = { name: 'properties', attrs: [], children: [] };
    for (const k of XML_ORDER) {
      const v = optionText(r, k);
      if (v !== undefined) props.children.push({ name: 'property', attrs: [['name', k]], children: [v] });
    }
    rulesEl.children.push({ name: 'rule', attrs: [], children: [props] });
  }
  return serializeXml({ name: 'firewall', attrs: [['version', '2']], children: [rulesEl] });
}

/** Write `content` to `path` atomically and durably, mode 0664. */
export async function replaceFile(path: string, content: string): Promise<void> {
  await atomicWriteFile(path, content, { mode: 0o664, exactMode: true });
}

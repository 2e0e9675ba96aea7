// One firewall rule in Qubes' model (qubes/firewall.py): its options, their
// validation, and the two ways a rule is written: the API line
// (`action=accept dsthost=qubes-os.org proto=tcp dstports=443-443`) and the
// <property> values of firewall.xml. Errors carry Qubes' messages; Qubes
// raises them as plain ValueError.
import { isInet4, isInet6, pyInt, pyIsDigit, pyStrip } from './pytext.js';

/** A rule Qubes would refuse (Python ValueError in Qubes). */
export class RuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuleError';
  }
}

export type Action = 'accept' | 'drop';
export type Proto = 'tcp' | 'udp' | 'icmp';

export interface DstHost {
  /** the key the API line uses for it */
  readonly type: 'dst4' | 'dst6' | 'dsthost';
  /** as stored: a bare address gets its prefix length appended */
  readonly value: string;
}

export interface Rule {
  readonly action: Action;
  readonly proto?: Proto;
  readonly dsthost?: DstHost;
  readonly dstports?: readonly [number, number];
  readonly icmptype?: number;
  readonly specialtarget?: 'dns';
  /** UNIX time as given (digits) */
  readonly expire?: string;
  readonly comment?: string;
}

export type RuleKey = keyof Rule;

/**
 * Qubes' property order for a rule (sorted by (order, name)): the order of
 * <property> elements in firewall.xml. The API line puts comment last.
 */
export const XML_ORDER: readonly RuleKey[] = ['action', 'comment', 'expire', 'dsthost', 'proto', 'specialtarget', 'dstports', 'icmptype'];
const API_ORDER: readonly RuleKey[] = [...XML_ORDER.filter((k) => k !== 'comment'), 'comment'];

const SAFE = /^[A-Za-z0-9:;,./\-_[\]]*$/;
const SAFE_COMMENT = /^[A-Za-z0-9:;,./\-_[\] ]*$/;

function safe(v: string): string {
  if (!SAFE.test(v)) throw new RuleError('strange characters in rule');
  return v;
}

function choice<T extends string>(allowed: readonly T[]) {
  return (v: string): T => {
    safe(v);
    if (!(allowed as readonly string[]).includes(v)) throw new RuleError(v);
    return v as T;
  };
}

const parseAction = choice<Action>(['accept', 'drop']);
const parseProto = choice<Proto>(['tcp', 'udp', 'icmp']);
const parseSpecialTarget = choice<'dns'>(['dns']);

/** A host or network; `prefixlen` only comes from the old (v1) file format. */
export function parseDstHost(v: string, prefixlen?: number): DstHost {
  const slashes = v.split('/').length - 1;
  if (slashes > 1) throw new RuleError('Too many /: ' + v);
  let out: DstHost;
  if (slashes === 0) {
    if (isInet6(v)) {
      const p = prefixlen || 128;
      if (p < 0 || p > 128) throw new RuleError('netmask for IPv6 must be between 0 and 128');
      out = { type: 'dst6', value: `${v}/${p}` };
    } else if (isInet4(v)) {
      const p = prefixlen || 32;
      if (p < 0 || p > 32) throw new RuleError('netmask for IPv4 must be between 0 and 32');
      out = { type: 'dst4', value: `${v}/${p}` };
    } else {
      if (!/^[a-z0-9\-._]*$/.test(v)) throw new RuleError('Invalid hostname');
      out = { type: 'dsthost', value: v };
    }
  } else {
    const [host, plen] = [v.slice(0, v.indexOf('/')), v.slice(v.indexOf('/') + 1)];
    if (!pyIsDigit(plen)) throw new RuleError('bad prefix length');
    const p = Number(plen);
    if (isInet6(host)) {
      if (p > 128) throw new RuleError('netmask for IPv6 must be <= 128');
      out = { type: 'dst6', value: v };
    } else if (isInet4(host)) {
      if (p > 32) throw new RuleError('netmask for IPv4 must be <= 32');
      out = { type: 'dst4', value: v };
    } else throw new RuleError('Invalid IP address: ' + host);
  }
  safe(out.value);
  return out;
}

function toInt(s: string): number {
  try {
    return pyInt(s);
  } catch (e) {
    throw new RuleError((e as Error).message);
  }
}

export function parseDstPorts(v: string): [number, number] {
  const dashes = v.split('-').length - 1;
  let range: [number, number];
  if (dashes === 1) {
    const i = v.indexOf('-');
    range = [toInt(v.slice(0, i)), toInt(v.slice(i + 1))];
  } else if (dashes === 0) {
    const n = toInt(v);
    range = [n, n];
  } else throw new RuleError(v);
  if (range.some((p) => p < 0 || p >= 65536)) throw new RuleError('Ports out of range');
  if (range[0] > range[1]) throw new RuleError('Invalid port range');
  return range;
}

function parseIcmpType(v: string): number {
  if (v.length > 3 || !pyIsDigit(v)) throw new RuleError('bad ICMP type');
  const n = Number(v);
  if (n > 255) throw new RuleError('ICMP type out of range');
  return n;
}

/** Python's datetime can hold years up to 9999. */
const MAX_TIMESTAMP = 253402300799;

function parseExpire(v: string): string {
  safe(v);
  if (!pyIsDigit(v)) throw new RuleError('bad expiration time');
  if (Number(v) > MAX_TIMESTAMP) throw new RuleError(`year ${yearOf(Number(v))} is out of range`);
  return v;
}

/** The (proleptic Gregorian, UTC) year of a UNIX time, for Python's message. */
function yearOf(seconds: number): number {
  const days = Math.floor(seconds / 86400) + 719468;
  const era = Math.floor(days / 146097);
  const doe = days - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  return yoe + era * 400 + (mp >= 10 ? 1 : 0);
}

function parseComment(v: string): string {
  if (!SAFE_COMMENT.test(v)) throw new RuleError('strange characters comment');
  return v;
}

type Parsed = { -readonly [K in RuleKey]?: Rule[K] };

function parseOption(key: RuleKey, v: string, into: Parsed): void {
  switch (key) {
    case 'action':
      into.action = parseAction(v);
      break;
    case 'proto':
      into.proto = parseProto(v);
      break;
    case 'dsthost':
      into.dsthost = parseDstHost(v);
      break;
    case 'dstports':
      into.dstports = parseDstPorts(v);
      break;
    case 'icmptype':
      into.icmptype = parseIcmpType(v);
      break;
    case 'specialtarget':
      into.specialtarget = parseSpecialTarget(v);
      break;
    case 'expire':
      into.expire = parseExpire(v);
      break;
    case 'comment':
      into.comment = parseComment(v);
      break;
  }
}

function isRuleKey(k: string): k is RuleKey {
  return (XML_ORDER as readonly string[]).includes(k);
}

/** The checks Qubes makes once all options of a rule are set. */
function finish(p: Parsed): Rule {
  if (p.dstports !== undefined && p.proto !== 'tcp' && p.proto !== 'udp') {
    throw new RuleError("dstports valid only for 'tcp' and 'udp' protocols");
  }
  if (p.icmptype !== undefined && p.proto !== 'icmp') throw new RuleError("icmptype valid only for 'icmp' protocol");
  if (p.action === undefined) throw new RuleError("Required property 'action' not set on firewall rule");
  return p as Rule;
}

/**
 * Build a rule from option values given as text (firewall.xml, defaults),
 * on top of already parsed ones (`preset`).
 */
export function ruleFromOptions(options: ReadonlyArray<readonly [RuleKey, string]>, preset: Partial<Rule> = {}): Rule {
  const p: Parsed = { ...preset };
  for (const [k, v] of options) parseOption(k, v, p);
  return finish(p);
}

/**
 * One line of admin.vm.firewall.Set. Everything after the first "comment="
 * is the comment (it may hold spaces); the rest is space-separated key=value.
 */
export function parseApiRule(line: string): Rule {
  const at = line.indexOf('comment=');
  const options = at < 0 ? line : line.slice(0, at);
  const comment = at < 0 ? '' : line.slice(at + 'comment='.length);
  const p: Parsed = {};
  const seen = new Set<string>();
  if (comment) {
    p.comment = parseComment(comment);
    seen.add('comment');
  }
  for (const opt of pyStrip(options).split(' ')) {
    const eq = opt.indexOf('=');
    if (eq < 0) throw new RuleError('not enough values to unpack (expected 2, got 1)');
    const key = opt.slice(0, eq),
      value = opt.slice(eq + 1);
    if (seen.has(key)) throw new RuleError(`Option '${key}' already set`);
    if (isRuleKey(key)) {
      parseOption(key, value, p);
      seen.add(key);
    } else if (key === 'dst4' || key === 'dst6' || key === 'dstname') {
      if (seen.has('dsthost')) throw new RuleError("Option 'dsthost' already set");
      p.dsthost = parseDstHost(value);
      seen.add('dsthost');
    } else throw new RuleError('Unknown firewall option');
  }
  return finish(p);
}

/** <property> text of one option in firewall.xml (Python str() of it). */
export function optionText(r: Rule, key: RuleKey): string | undefined {
  switch (key) {
    case 'dsthost':
      return r.dsthost?.value;
    case 'dstports':
      return r.dstports && (r.dstports[0] === r.dstports[1] ? String(r.dstports[0]) : r.dstports.join('-'));
    case 'icmptype':
      return r.icmptype === undefined ? undefined : String(r.icmptype);
    default:
      return r[key];
  }
}

function apiOption(r: Rule, key: RuleKey): string | undefined {
  if (key === 'dsthost') return r.dsthost && `${r.dsthost.type}=${r.dsthost.value}`;
  if (key === 'dstports') return r.dstports && `dstports=${r.dstports[0]}-${r.dstports[1]}`;
  const text = optionText(r, key);
  return text === undefined ? undefined : `${key}=${text}`;
}

export function isExpired(r: Rule, nowMs = Date.now()): boolean {
  return r.expire !== undefined && Number(r.expire) * 1000 < nowMs;
}

/** The API line of a rule; null once it has expired (Qubes hides those). */
export function apiRule(r: Rule, nowMs = Date.now()): string | null {
  if (isExpired(r, nowMs)) return null;
  const parts: string[] = [];
  for (const k of API_ORDER) {
    const s = apiOption(r, k);
    if (s !== undefined) parts.push(s);
  }
  return parts.join(' ');
}

// The one generic implementation of Qubes properties (qubes.property and
// qubes.vm.VMProperty) over declarative tables: reading with computed
// defaults, sanitising untrusted input, and setting/resetting with Qubes'
// events in Qubes' order. The Admin API's reply text for them is
// api/format/property.ts's. Both qubes (Vm) and
// the system (QubesApp) hold properties through the Holder interface.
import { QubesException, QubesNoSuchPropertyError, QubesPropertyValueError, QubesValueError, pyRepr } from '../errors.js';
import { normInt, parsePyInt, pyStr, truthy, type Value } from './values.js';
import { validateVmName } from './names.js';
import type { QubesApp } from './app.js';
import type { Vm } from './vm.js';

/** The type word of the Admin API (admin.vm.property.Get "type=..."). */
export type WireType = 'str' | 'int' | 'bool' | 'vm' | 'label';
/** What Qubes coerces a new value to (the property's Python type). */
export type PyType = 'str' | 'int' | 'bool' | 'uuid' | 'ipv4' | 'ipv6' | 'vm' | 'label' | null;

/** Raised where Qubes raises AttributeError: no value and no default. It is
 * control flow (GetAll and defaults walk past every unset property), so it
 * skips the stack trace. */
export class NoValue extends Error {
  constructor(message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

export interface Holder {
  readonly app: QubesApp;
  readonly table: PropTable;
  /** explicitly set values (what qubes.xml stores) */
  readonly values: Map<string, Value>;
  /** event subject: the qube's name, '' for the system */
  readonly subject: string;
  /** Python class name: 'AppVM', ..., 'Qubes' */
  readonly className: string;
  /** str(holder), as in "Invalid property 'x' of <str>" */
  str(): string;
  /** repr(holder), as in Qubes' default property value error message */
  repr(): string;
  /** record that the holder changed (for the store) */
  touched(): void;
}

type H = any; // eslint-disable-line @typescript-eslint/no-explicit-any -- hooks get the concrete holder

export interface PropDef {
  readonly name: string;
  readonly wire: WireType;
  readonly py: PyType;
  readonly stage: number;
  readonly help: string;
  /** undefined: no default (reading an unset value raises NoValue) */
  readonly dflt?: (h: H) => Value;
  /** validates and converts a new value (after the qube lookup of VM properties) */
  readonly setter?: (h: H, v: Value, def: PropDef) => Value;
  /** computed, never stored (Qubes' stateless_property) */
  readonly stateless?: boolean;
  readonly writeOnce?: boolean;
  /** VM properties: class the qube must be ('LocalVM' = any but RemoteVM), None allowed */
  readonly vmclass?: 'LocalVM' | 'TemplateVM';
  readonly allowNone?: boolean;
  /** class event handlers (Qubes' @handler on the holder's class and extensions) */
  readonly preSet?: (h: H, newv: Value, oldv: Value | undefined) => void;
  readonly postSet?: (h: H, newv: Value, oldv: Value | undefined) => void;
  readonly preReset?: (h: H, oldv: Value | undefined) => void;
  readonly postReset?: (h: H, oldv: Value | undefined) => void;
}

export class PropTable {
  readonly list: readonly PropDef[];
  readonly byName: ReadonlyMap<string, PropDef>;
  constructor(defs: PropDef[]) {
    const m = new Map<string, PropDef>();
    for (const d of defs) m.set(d.name, d); // later definitions override (subclasses)
    this.byName = m;
    this.list = [...m.values()].sort((a, b) => a.stage - b.stage || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  extend(defs: PropDef[]): PropTable {
    return new PropTable([...this.list, ...defs]);
  }
  without(names: string[]): PropTable {
    return new PropTable(this.list.filter((d) => !names.includes(d.name)));
  }
}

// ---------------------------------------------------------------- reading

export function lookup(h: Holder, name: string): PropDef {
  const def = h.table.byName.get(name);
  if (!def) throw QubesNoSuchPropertyError(name, h.str());
  return def;
}

/** getattr(holder, prop): the set value, else the default; NoValue if neither. */
export function getValue(h: Holder, def: PropDef): Value {
  const v = h.values.get(def.name);
  if (v !== undefined) return v;
  return getDefault(h, def);
}

/**
 * The defaults being worked out now, outermost first (two arrays: nothing is
 * allocated on the read path). Qubes' chains (template, netvm, guivm) are a
 * few levels; a default that comes back to itself (a keyboard layout whose
 * guivm chain loops) makes Qubes recurse until Python gives up and drop the
 * call; here the call gets an error that says which default loops.
 */
const computingHolders: Holder[] = [];
const computingDefs: PropDef[] = [];

export function getDefault(h: Holder, def: PropDef): Value {
  if (!def.dflt) throw new NoValue(`property ${pyRepr(def.name)} have no default`);
  for (let i = 0; i < computingDefs.length; i++) {
    if (computingDefs[i] === def && computingHolders[i] === h) {
      throw QubesException(
        `the default value of property ${pyRepr(computingDefs[0]!.name)} of ${computingHolders[0]!.str()} cannot be worked out: ` +
          `the default of ${pyRepr(def.name)} of ${h.str()} depends on itself`,
      );
    }
  }
  computingHolders.push(h);
  computingDefs.push(def);
  try {
    return def.dflt(h);
  } finally {
    computingHolders.pop();
    computingDefs.pop();
  }
}

/** getattr(holder, name, fallback) for use inside defaults and handlers. */
export function tryGet(h: Holder, name: string, fallback: Value = null): Value {
  const def = h.table.byName.get(name);
  if (!def) return fallback;
  try {
    return getValue(h, def);
  } catch (e) {
    if (e instanceof NoValue) return fallback;
    throw e;
  }
}

export function isDefault(h: Holder, def: PropDef): boolean {
  return !h.values.has(def.name);
}

// ---------------------------------------------------------------- input

const PRINTABLE = /^[\x20-\x7e\t\n\r\x0b\x0c]*$/;

/** qubes.property.sanitize / VMProperty.sanitize of an untrusted payload. */
export function sanitize(def: PropDef, payload: Buffer): Value {
  for (const b of payload) {
    if (b > 0x7f) throw QubesValueError(def.py === 'vm' ? '' : 'Non-ASCII bytes in property value');
  }
  const s = payload.toString('latin1');
  switch (def.py) {
    case 'vm':
      if (s !== '') validateVmName(s);
      return s;
    case 'bool':
      return parseBool(s);
    case 'int': {
      const n = parsePyInt(s);
      if (n === null) throw QubesValueError('Failed to parse property value as int');
      return n;
    }
    case 'uuid':
      if (!parseUuid(s)) throw QubesValueError('Failed to parse property value as UUID');
      return parseUuid(s)!;
    case 'ipv4':
      if (!isIPv4(s)) throw QubesValueError('Failed to parse property value as IPv4Address');
      return s;
    case 'ipv6': {
      const v6 = normalizeIPv6(s);
      if (v6 === null) throw QubesValueError('Failed to parse property value as IPv6Address');
      return v6;
    }
    default:
      if (!PRINTABLE.test(s)) throw QubesValueError('Invalid characters in property value');
      return s;
  }
}

/** qubes.property.bool for text. */
export function parseBool(s: string): boolean {
  const l = s.toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(l)) return false;
  if (['1', 'yes', 'true', 'on'].includes(l)) return true;
  throw QubesValueError(`Invalid literal for boolean property: ${pyRepr(s)}`);
}

function parseUuid(s: string): string | null {
  let t = s
    .trim()
    .replace(/^urn:/, '')
    .replace(/^uuid:/, '')
    .replace(/[{}]/g, '')
    .replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(t)) return null;
  t = t.toLowerCase();
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-${t.slice(12, 16)}-${t.slice(16, 20)}-${t.slice(20)}`;
}

function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255 && !(p.length > 1 && p[0] === '0'));
}

/** Python's str(IPv6Address(s)): the compressed form; null when not an address. */
export function normalizeIPv6(s: string): string | null {
  let text = s;
  const groups: number[] = [];
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    if (!isIPv4(v4[2]!)) return null;
    const b = v4[2]!.split('.').map(Number);
    tail = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    text = v4[1]!.endsWith('::') ? v4[1]! : v4[1]!.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !rest) return null;
  const total = head.length + rest.length + tail.length;
  if (halves.length === 2) {
    if (total > 7) return null;
    groups.push(...head, ...new Array<number>(8 - total).fill(0), ...rest, ...tail);
  } else {
    if (total !== 8) return null;
    groups.push(...head, ...tail);
  }
  // the longest run of two or more zero groups becomes '::' (the first one on a tie)
  let best = -1,
    bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

/** Converting a value to the property's Python type after its setter. */
function coerce(def: PropDef, v: Value): Value {
  switch (def.py) {
    case 'int':
      if (typeof v === 'number' || typeof v === 'bigint') return v;
      if (typeof v === 'boolean') return v ? 1 : 0;
      if (typeof v === 'string') {
        const n = parsePyInt(v);
        if (n !== null) return n;
      }
      throw QubesException(`invalid literal for int() with base 10: ${pyRepr(pyStr(v))}`);
    case 'bool':
      return typeof v === 'boolean' ? v : truthy(v);
    case 'str':
      return typeof v === 'string' ? v : pyStr(v);
    default:
      return v;
  }
}

// ---------------------------------------------------------------- events

/** Fire one event of a holder on the app's bus (values as Python str()). */
export function fire(h: Holder, event: string, kwargs: ReadonlyArray<readonly [string, Value]> = []): void {
  h.app.events.fire(
    h.subject,
    event,
    kwargs.map(([k, v]) => [k, pyStr(v)] as const),
  );
}

function oldValue(h: Holder, def: PropDef): { has: boolean; v: Value | undefined } {
  try {
    return { has: true, v: getValue(h, def) };
  } catch (e) {
    if (e instanceof NoValue) return { has: false, v: undefined };
    throw e;
  }
}

function enforceWriteOnce(h: Holder, def: PropDef): void {
  if (def.writeOnce && !isDefault(h, def)) {
    throw QubesException(`property ${pyRepr(def.name)} is write-once and already set`);
  }
}

/** Resolve a VM property's new value (name, qube or None) as VMProperty.__set__. */
function resolveVm(h: Holder, def: PropDef, value: Value): Vm | null {
  if (value === '' || value === null) {
    if (def.allowNone) return null;
    throw QubesPropertyValueError(`Invalid value None for property ${pyRepr(def.name)} of ${h.repr()}`);
  }
  const key = typeof value === 'string' ? value : (value as Vm).name;
  const vm = h.app.getVm(key);
  if (!vm) throw QubesPropertyValueError(`Can't set ${def.name} to non-existing qube ${key}`);
  const wanted = def.vmclass ?? 'LocalVM';
  const ok = wanted === 'TemplateVM' ? vm.klass === 'TemplateVM' : vm.klass !== 'RemoteVM';
  if (!ok) {
    const shown = typeof value === 'string' ? pyRepr(value) : (value as Vm).repr();
    throw QubesPropertyValueError(`wrong VM class: domains[${shown}] is of type ${vm.klass} and not ${wanted}`);
  }
  return vm;
}

/** setattr(holder, prop, value) with Qubes' validation and events. */
export function setProperty(h: Holder, def: PropDef, value: Value): void {
  let v: Value = value;
  if (def.py === 'vm') v = resolveVm(h, def, value);
  enforceWriteOnce(h, def);
  const old = oldValue(h, def);
  if (def.setter) v = def.setter(h, v, def);
  else if (def.py === 'bool' && typeof v === 'string') v = parseBool(v);
  v = coerce(def, v);
  const kw = (n: Value): Array<[string, Value]> =>
    old.has
      ? [
          ['name', def.name],
          ['newvalue', n],
          ['oldvalue', old.v!],
        ]
      : [
          ['name', def.name],
          ['newvalue', n],
        ];
  fire(h, 'property-pre-set:' + def.name, kw(v));
  def.preSet?.(h, v, old.v);
  h.values.set(def.name, v);
  h.touched();
  def.postSet?.(h, v, old.v);
  fire(h, 'property-set:' + def.name, kw(v));
}

/** delattr(holder, prop): back to the (possibly computed) default, with events. */
export function resetProperty(h: Holder, def: PropDef): void {
  enforceWriteOnce(h, def);
  const old = oldValue(h, def);
  const kw: Array<[string, Value]> = old.has
    ? [
        ['name', def.name],
        ['oldvalue', old.v!],
      ]
    : [['name', def.name]];
  fire(h, 'property-pre-reset:' + def.name, kw);
  def.preReset?.(h, old.v);
  fire(h, 'property-pre-del:' + def.name, kw);
  if (h.values.delete(def.name)) h.touched();
  def.postReset?.(h, old.v);
  fire(h, 'property-reset:' + def.name, kw);
  fire(h, 'property-del:' + def.name, kw);
}

/** The API entry for Set: lookup, sanitise, set. */
export function setFromApi(h: Holder, name: string, payload: Buffer): void {
  const def = lookup(h, name);
  setProperty(h, def, sanitize(def, payload));
}

// ---------------------------------------------------------------- helpers for tables

/** qubes.property.forbidden */
export function forbidden(h: Holder, _v: Value, def: PropDef): never {
  throw QubesPropertyValueError(`property ${pyRepr(def.name)} on ${h.className} instance cannot be set`);
}

export function positiveInt(_h: Holder, v: Value, def: PropDef): Value {
  const n = toInt(v);
  if (n <= 0) throw QubesPropertyValueError(`${def.name} must be positive`);
  return n;
}

export function nonNegativeInt(_h: Holder, v: Value, def: PropDef): Value {
  const n = toInt(v);
  if (n < 0) throw QubesPropertyValueError(`${def.name} must be positive or zero`);
  return n;
}

export function toInt(v: Value): number | bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  const n = typeof v === 'string' ? parsePyInt(v) : null;
  if (n === null) throw QubesException(`invalid literal for int() with base 10: ${pyRepr(pyStr(v))}`);
  return normInt(BigInt(n));
}

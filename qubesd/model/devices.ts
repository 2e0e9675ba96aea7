// A qube's persistent device assignments, kept where Qubes keeps them: in
// the qube's <devices class="..."> elements of qubes.xml, which the model
// holds verbatim in Vm.devices. Reading follows Qubes' loader
// (qubes/vm/__init__.py load_extras): entries it would skip are skipped
// here; writing one class regenerates that class's element exactly as
// Qubes' __xml__ does (<device backend-domain id mode identity> with
// <option name> children) and leaves the other classes untouched.
import { isElement, parseXml, serializeElement, type XmlElement } from '../store/xml.js';
import type { Vm } from './vm.js';

export const ASSIGNMENT_MODES = ['manual', 'ask-to-attach', 'auto-attach', 'required'] as const;
export type AssignmentMode = (typeof ASSIGNMENT_MODES)[number];

export interface StoredAssignment {
  /** backend qube name; '*' for any (Qubes writes it, but cannot load it back) */
  readonly backend: string;
  /** port id ('*' for any port) */
  readonly port: string;
  /** device identity ('*' for any device) */
  readonly deviceId: string;
  readonly mode: AssignmentMode;
  readonly options: ReadonlyArray<readonly [string, string]>;
  /**
   * The frontend_domain Qubes holds for it: the qube itself for assignments
   * read from qubes.xml (undefined here), what the Assign payload named
   * (possibly none) for ones made since the daemon started.
   */
  readonly frontend?: string | null;
}

const attr = (el: XmlElement, name: string): string | undefined => el.attrs.find(([k]) => k === name)?.[1];
const elements = (el: XmlElement, name: string): XmlElement[] => el.children.filter((c): c is XmlElement => isElement(c) && c.name === name);

function parseDevices(raw: string): XmlElement | null {
  try {
    const el = parseXml(raw);
    return el.name === 'devices' ? el : null;
  } catch {
    return null;
  }
}

/** qubes.property.bool for the legacy `required` attribute; null when invalid. */
function legacyBool(v: string): boolean | null {
  const l = v.toLowerCase();
  if (['0', 'no', 'false', 'off'].includes(l)) return false;
  if (['1', 'yes', 'true', 'on'].includes(l)) return true;
  return null;
}

function readDevice(vm: Vm, node: XmlElement): StoredAssignment | null {
  const options: Array<[string, string]> = [];
  for (const o of elements(node, 'option')) {
    const name = attr(o, 'name');
    if (name === undefined) return null;
    const text = o.children.filter((c): c is string => typeof c === 'string').join('');
    // Qubes stores str(option.text): an empty element reads back as 'None'
    const value = text === '' ? 'None' : text;
    const at = options.findIndex(([k]) => k === name);
    if (at >= 0) options[at] = [name, value];
    else options.push([name, value]);
  }
  let mode: AssignmentMode;
  const legacy = attr(node, 'required');
  if (legacy === undefined) {
    const m = attr(node, 'mode') ?? 'required';
    if (!(ASSIGNMENT_MODES as readonly string[]).includes(m)) return null;
    mode = m as AssignmentMode;
  } else {
    const required = legacyBool(legacy);
    if (required === null) return null;
    mode = required ? 'required' : 'auto-attach';
  }
  let deviceId = attr(node, 'identity') ?? '*';
  const idOption = options.findIndex(([k]) => k === 'identity');
  if (idOption >= 0) {
    deviceId = options[idOption]![1];
    options.splice(idOption, 1);
  }
  const backend = attr(node, 'backend-domain');
  // an unknown backend is skipped (and logged) by Qubes; so is '*'
  if (backend && !vm.app.getVm(backend)) return null;
  // only auto-attachable assignments can be held by Qubes' collection
  if (mode === 'manual') return null;
  return { backend: backend || '*', port: attr(node, 'id') ?? '*', deviceId: deviceId || '*', mode, options };
}

// Qubes reads the assignments once and then holds them in memory (also ones
// it could not read back, such as an "any backend" one); so do we, for as
// long as nobody replaces the qube's raw <devices> elements.
const loaded = new WeakMap<Vm, { source: string[]; byClass: Map<string, StoredAssignment[]> }>();

function held(vm: Vm): Map<string, StoredAssignment[]> {
  let c = loaded.get(vm);
  if (!c || c.source !== vm.devices) loaded.set(vm, (c = { source: vm.devices, byClass: new Map() }));
  return c.byClass;
}

/** The assignments of one device class, in stored order. */
export function assignmentsOf(vm: Vm, devclass: string): StoredAssignment[] {
  const byClass = held(vm);
  let list = byClass.get(devclass);
  if (!list) byClass.set(devclass, (list = readClass(vm, devclass)));
  return [...list];
}

function readClass(vm: Vm, devclass: string): StoredAssignment[] {
  const out: StoredAssignment[] = [];
  for (const raw of vm.devices) {
    const el = parseDevices(raw);
    if (!el || attr(el, 'class') !== devclass) continue;
    for (const node of elements(el, 'device')) {
      const a = readDevice(vm, node);
      if (a && !out.some((b) => sameDevice(a, b))) out.push(a);
    }
  }
  return out;
}

/** Qubes' assignment identity: the same backend, port and device id. */
export function sameDevice(a: Pick<StoredAssignment, 'backend' | 'port' | 'deviceId'>, b: Pick<StoredAssignment, 'backend' | 'port' | 'deviceId'>): boolean {
  return a.backend === b.backend && a.port === b.port && a.deviceId === b.deviceId;
}

function devicesElement(devclass: string, list: readonly StoredAssignment[]): XmlElement {
  return {
    name: 'devices',
    attrs: [['class', devclass]],
    children: list.map((a) => ({
      name: 'device',
      attrs: [
        ['backend-domain', a.backend],
        ['id', a.port],
        ['mode', a.mode],
        ['identity', a.deviceId],
      ],
      children: a.options.map(([k, v]) => ({ name: 'option', attrs: [['name', k]], children: [v] })),
    })),
  };
}

/**
 * Replace the assignments of one device class and mark the qube for saving.
 * The class's element keeps its place (a new class goes last, as Qubes adds
 * device classes in the order they are first used).
 */
export function setAssignments(vm: Vm, devclass: string, list: readonly StoredAssignment[]): void {
  const xml = serializeElement(devicesElement(devclass, list));
  const next: string[] = [];
  let placed = false;
  for (const raw of vm.devices) {
    const el = parseDevices(raw);
    if (el && attr(el, 'class') === devclass) {
      if (!placed) next.push(xml);
      placed = true;
    } else next.push(raw);
  }
  if (!placed) next.push(xml);
  const byClass = held(vm);
  vm.devices = next;
  loaded.set(vm, { source: next, byClass: byClass.set(devclass, [...list]) });
  vm.app.markDirty(vm);
}

/**
 * Why Qubes would refuse to start this qube for its devices: a `required`
 * assignment whose device is not available, which here (no device backends)
 * is every one. The message is Qubes' (a QubesException raised during start,
 * after domain-pre-start, reported with domain-start-failed); null if none.
 */
export function unavailableRequiredDevice(vm: Vm): string | null {
  const classes = new Set<string>();
  for (const raw of vm.devices) {
    const cls = parseDevices(raw)?.attrs.find(([k]) => k === 'class')?.[1];
    if (cls !== undefined) classes.add(cls);
  }
  for (const cls of classes) {
    const a = assignmentsOf(vm, cls).find((x) => x.mode === 'required');
    if (a) return `${cls.charAt(0).toUpperCase()}${cls.slice(1).toLowerCase()} device ${a.backend}:${a.port}:${a.deviceId} not available`;
  }
  return null;
}

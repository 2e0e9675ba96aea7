// admin.deviceclass.List, admin.vm.device.<class>.* and
// admin.vm.device.denied.* (qubes/api/admin.py, qubes/devices.py,
// qubes/device_protocol.py). This stack has no device backends: no qube
// exposes or has attached any device, so Available and Attached list
// nothing and Attach/Detach fail as Qubes fails for a device it cannot
// find. Persistent assignments (Assign, Unassign, Set.assignment) work and
// are stored in qubes.xml in Qubes' format (qubesd/model/devices.ts).
//
// Where Qubes lets a Python error escape (the connection drops without a
// reply) we answer with an exception of the nearest Qubes type instead.
import type { Call, Handler, Handlers } from '../call.js';
import { DEVICE_CLASSES } from '../../../lib/api-methods.js';
import { ProtocolError, pyRepr, QubesError, QubesException, QubesValueError, QubesVMNotFoundError, QubesVMNotRunningError } from '../../errors.js';
import type { Vm } from '../../model/app.js';
import { getValue, lookup, setProperty } from '../../model/properties.js';
import { pyStrip } from '../../firewall/pytext.js';
import { assignmentsOf, ASSIGNMENT_MODES, sameDevice, setAssignments, type AssignmentMode, type StoredAssignment } from '../../model/devices.js';

// Qubes raises these as KeyError subclasses, whose str() is the repr of the message.
const keyErr = (type: string) => (msg: string) => new QubesError(type, pyRepr(msg));
const DeviceNotAssigned = keyErr('DeviceNotAssigned');
const DeviceAlreadyAssigned = keyErr('DeviceAlreadyAssigned');

// ------------------------------------------------------------------ wire format

const KEY_CHARS = new Set('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#$%&()*+,-./:;<>?@[\\]^_{|}~');
const PARAM_CHARS = new Set([...KEY_CHARS, ...'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ ']);

/** DeviceSerializer.sanitize_str: refuse any character outside the set. */
function sanitize(s: string, allowed: Set<string>, what: string): string {
  const bad = [...new Set([...s].filter((c) => !allowed.has(c)))].sort();
  if (bad.length) throw ProtocolError(`Invalid chars in property ${what}{${bad.map(pyRepr).join(', ')}}`);
  return s;
}

/** key='value' with ' escaped, as Qubes serialises device properties. */
function pack(key: string, value: string): string {
  const quoted = `'${value.replaceAll("'", "\\'")}'`;
  return `${sanitize(key, KEY_CHARS, 'name: ')}=${sanitize(quoted, PARAM_CHARS, 'value: ')}`;
}

/** DeviceSerializer.unpack_properties: key='value' pairs; '_key' ones are options. */
function unpack(text: string): { props: Map<string, string>; options: Map<string, string> } {
  const props = new Map<string, string>(),
    options = new Map<string, string>();
  const s = pyStrip(text);
  if (!s) return { props, options };
  const partition = (x: string, sep: string): [string, string] => {
    const i = x.indexOf(sep);
    return i < 0 ? [x, ''] : [x.slice(0, i), x.slice(i + sep.length)];
  };
  const unescape = (v: string) => v.replaceAll("\\'", "'");
  const keys: string[] = [],
    values: string[] = [];
  const [key, first] = partition(s, "='");
  let rest = first;
  keys.push(sanitize(pyStrip(key), KEY_CHARS, 'name: '));
  while (rest.includes("='")) {
    let valueKey: string;
    [valueKey, rest] = partition(rest, "='");
    const cut = valueKey.lastIndexOf("' ");
    const [value, nextKey] = cut < 0 ? ['', valueKey] : [valueKey.slice(0, cut), valueKey.slice(cut + 2)];
    values.push(sanitize(unescape(value), PARAM_CHARS, 'value: '));
    keys.push(sanitize(pyStrip(nextKey), KEY_CHARS, 'name: '));
  }
  values.push(sanitize(unescape(rest.slice(0, -1)), PARAM_CHARS, 'value: '));
  keys.forEach((k, i) => (k.startsWith('_') ? options.set(k.slice(1), values[i]!) : props.set(k, values[i]!)));
  return { props, options };
}

// ------------------------------------------------------------------ devices

/** Qubes' VirtualDevice: a port of a backend qube (or any), and a device identity. */
interface VirtualDevice {
  readonly devclass: string;
  /** null: any backend */
  readonly backendVm: Vm | null;
  readonly backend: string;
  readonly port: string;
  readonly deviceId: string;
}

const deviceText = (d: Pick<VirtualDevice, 'backend' | 'port' | 'deviceId'>) => `${d.backend}:${d.port}:${d.deviceId}`;
const UNKNOWN_INTERFACE = '?******';

/** VirtualDevice.from_qarg: <backend>+<port>[+<device id, ':' as '+'>], '_' for '*'. */
function deviceFromArg(call: Call, devclass: string): VirtualDevice {
  const plus = call.arg.indexOf('+');
  if (plus < 0) throw ProtocolError(`Invalid device argument ${pyRepr(call.arg)}: expected <backend>+<port>`);
  let backend = call.arg.slice(0, plus);
  if (backend === '_') backend = '*';
  let backendVm: Vm | null = null;
  if (backend !== '*') {
    backendVm = call.app.getVm(backend) ?? null;
    if (!backendVm) throw QubesVMNotFoundError(backend);
  }
  const identity = call.arg.slice(plus + 1).replaceAll('+', ':');
  const colon = identity.indexOf(':');
  let port = colon < 0 ? identity : identity.slice(0, colon);
  let deviceId = colon < 0 ? '' : identity.slice(colon + 1);
  if (port === '_') port = '*';
  if (deviceId === '_') deviceId = '*';
  deviceId = deviceId.replaceAll('_'.repeat(UNKNOWN_INTERFACE.length), UNKNOWN_INTERFACE);
  return { devclass, backendVm, backend, port, deviceId: deviceId || '*' };
}

interface RequestedAssignment {
  device: VirtualDevice;
  mode: AssignmentMode;
  options: Array<[string, string]>;
  /** frontend_domain of the payload, if any */
  frontend: Vm | null;
}

/**
 * DeviceAssignment.deserialize: the payload's properties must agree with
 * the device named by the argument; any problem is a ProtocolError with the
 * message of the underlying Python error, as Qubes wraps it.
 */
function parseAssignment(payload: Buffer, expected: VirtualDevice, app: Call['app']): RequestedAssignment {
  const bad = payload.findIndex((b) => b > 0x7f);
  if (bad >= 0) {
    throw ProtocolError(`'ascii' codec can't decode byte 0x${payload[bad]!.toString(16)} in position ${bad}: ordinal not in range(128)`);
  }
  const { props, options } = unpack(payload.toString('latin1'));
  const got = (k: string) => props.get(k);
  if ((got('backend_domain') ?? expected.backend) !== expected.backend) {
    throw ProtocolError(`Got device exposed by ${got('backend_domain')}when expected devices from ${expected.backend}.`);
  }
  if ((got('port_id') ?? expected.port) !== expected.port) {
    throw ProtocolError(`Got device from port: ${got('port_id')} when expected port: ${expected.port}.`);
  }
  if ((got('devclass') ?? expected.devclass) !== expected.devclass) {
    throw ProtocolError(`Got ${got('devclass')} device when expected ${expected.devclass}.`);
  }
  if (expected.deviceId !== '*' && (got('device_id') ?? expected.deviceId) !== expected.deviceId) {
    throw ProtocolError(`Unrecognized device identity '${got('device_id')}' expected '${expected.deviceId}'`);
  }
  const device = { ...expected, deviceId: got('device_id') ?? expected.deviceId };
  // what is left goes to DeviceAssignment(**properties)
  const ignored = new Set(['backend_domain', 'port_id', 'devclass', 'device_id', 'port', 'device', 'options']);
  for (const k of props.keys()) {
    if (!ignored.has(k) && k !== 'mode' && k !== 'frontend_domain') {
      throw ProtocolError(`DeviceAssignment.__init__() got an unexpected keyword argument ${pyRepr(k)}`);
    }
  }
  const mode = got('mode') ?? 'manual';
  if (!(ASSIGNMENT_MODES as readonly string[]).includes(mode)) throw ProtocolError(`${pyRepr(mode)} is not a valid AssignmentMode`);
  let frontend: Vm | null = null;
  const frontendName = got('frontend_domain');
  if (frontendName !== undefined) {
    if (!device.backendVm) throw ProtocolError('Cannot determine backend domain');
    frontend = app.getVm(frontendName) ?? null;
    if (!frontend) throw ProtocolError(pyRepr(frontendName));
  }
  return { device, mode: mode as AssignmentMode, options: [...options], frontend };
}

/** DeviceAssignment.serialize */
function serializeAssignment(vm: Vm, devclass: string, a: StoredAssignment): string {
  const frontend = a.frontend === undefined ? vm.name : a.frontend;
  const parts = [pack('device_id', a.deviceId), pack('port_id', a.port), pack('devclass', devclass), pack('backend_domain', a.backend), pack('mode', a.mode)];
  if (frontend !== null) parts.push(pack('frontend_domain', frontend));
  for (const [k, v] of a.options) parts.push(pack('_' + k, v));
  return parts.join(' ');
}

/** Python's repr of the options dict, as event kwargs carry it. */
const optionsRepr = (options: ReadonlyArray<readonly [string, string]>) => `{${options.map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(', ')}}`;

const fire = (vm: Vm, event: string, kwargs: Array<[string, string]>) => vm.app.events.fire(vm.name, event, kwargs);

/** The backend/port selector of Assigned and Attached: <backend>+<port>. */
function selector(call: Call): [string, string] | null {
  if (!call.arg) return null;
  const plus = call.arg.indexOf('+');
  if (plus < 0) throw ProtocolError(`Invalid device selector ${pyRepr(call.arg)}: expected <backend>+<port>`);
  return [call.arg.slice(0, plus), call.arg.slice(plus + 1)];
}

/**
 * A RemoteVM (a qube of another host) has no devices: Qubes refuses to
 * change its assignments once the request itself has been read and allowed
 * (and drops Set.assignment, which does not check); its lists are empty.
 */
function supportsDevices(call: Call): void {
  if (call.dest.klass === 'RemoteVM') throw QubesException("This qube doesn't support devices");
}

function classHandlers(devclass: string): Record<string, Handler> {
  const m = (action: string) => `admin.vm.device.${devclass}.${action}`;
  return {
    // no qube exposes devices here; the argument (a port) only narrows nothing
    [m('Available')]: () => '',

    [m('Assigned')]: (call) => {
      const list = call.dest.klass === 'RemoteVM' ? [] : assignmentsOf(call.dest, devclass);
      const sel = selector(call);
      // Qubes prints the backend qube object here: None for "any backend"
      const backendStr = (a: StoredAssignment) => (a.backend === '*' ? 'None' : a.backend);
      const lines = list
        .filter((a) => !sel || (backendStr(a) === sel[0] && a.port === sel[1]))
        .map((a) => [`${backendStr(a)}+${a.port}:${a.deviceId}`, serializeAssignment(call.dest, devclass, a)] as const)
        .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
      return lines.map(([k, v]) => `${k} ${v}\n`).join('');
    },

    [m('Attached')]: (call) => {
      selector(call);
      return '';
    },

    [m('Assign')]: (call) => {
      const req = parseAssignment(call.payload, deviceFromArg(call, devclass), call.app);
      supportsDevices(call);
      const list = assignmentsOf(call.dest, devclass);
      const d = req.device;
      if (list.some((a) => sameDevice(a, d))) {
        throw DeviceAlreadyAssigned(`${devclass} device ${deviceText(d)} already assigned to ${call.dest.name}`);
      }
      if (req.mode === 'manual') throw QubesValueError('Only auto-attachable devices can be assigned.');
      const added: StoredAssignment = {
        backend: d.backend,
        port: d.port,
        deviceId: d.deviceId,
        mode: req.mode,
        options: req.options,
        frontend: req.frontend?.name ?? null,
      };
      setAssignments(call.dest, devclass, [...list, added]);
      const kw: Array<[string, string]> = [
        ['device', deviceText(d)],
        ['options', optionsRepr(req.options)],
      ];
      fire(call.dest, `device-pre-assign:${devclass}`, kw);
      fire(call.dest, `device-assign:${devclass}`, kw);
    },

    [m('Unassign')]: (call) => {
      const d = deviceFromArg(call, devclass);
      supportsDevices(call);
      const list = assignmentsOf(call.dest, devclass);
      const found = list.find((a) => sameDevice(a, d));
      if (!found) throw DeviceNotAssigned(`${devclass} device ${deviceText(d)} not assigned to ${call.dest.name}`);
      setAssignments(
        call.dest,
        devclass,
        list.filter((a) => a !== found),
      );
      fire(call.dest, `device-unassign:${devclass}`, [['device', deviceText(found)]]);
    },

    [m('Attach')]: (call) => {
      parseAssignment(call.payload, deviceFromArg(call, devclass), call.app);
      supportsDevices(call);
      if (call.dest.isHalted()) {
        throw QubesVMNotRunningError(call.dest.name, 'VM not running, cannot attach device, do you mean `assign`?');
      }
      throw ProtocolError(`Cannot attach ambiguous ${devclass} device.`);
    },

    [m('Detach')]: (call) => {
      const d = deviceFromArg(call, devclass);
      supportsDevices(call);
      throw DeviceNotAssigned(`${devclass} device ${d.port} not attached to ${call.dest.name}`);
    },

    [m('Set.assignment')]: (call) => {
      const mode = call.payload.toString('latin1');
      if (!['required', 'ask-to-attach', 'auto-attach'].includes(mode)) {
        throw new QubesError('QubesUnrecognizedDeviceAssignmentMode', 'Invalid assignment mode');
      }
      const d = deviceFromArg(call, devclass);
      supportsDevices(call);
      const list = assignmentsOf(call.dest, devclass);
      const found = list.find((a) => sameDevice(a, d));
      if (!found) throw QubesValueError(`Device ${deviceText(d)} not assigned to ${call.dest.name}`);
      if (found.mode === mode) return;
      fire(call.dest, `device-pre-assign:${devclass}`, [
        ['device', deviceText(d)],
        ['options', optionsRepr(found.options)],
      ]);
      // Qubes re-adds the changed assignment, which moves it last
      setAssignments(call.dest, devclass, [...list.filter((a) => a !== found), { ...found, mode: mode as AssignmentMode }]);
      fire(call.dest, `device-assignment-changed:${devclass}`, [['device', deviceText(d)]]);
    },
  };
}

// ------------------------------------------------------------------ denied interfaces

/** DeviceInterface.from_str_bulk: 7-character interface codes, back to back. */
function interfaces(s: string): string[] {
  if (s.length % 7 !== 0) {
    throw QubesValueError(`Invalid length of interfaces=${pyRepr(s)} (is ${s.length}, expected multiple of 7)`);
  }
  const out: string[] = [];
  for (let i = 0; i < s.length; i += 7) out.push(s.slice(i, i + 7));
  return out;
}

function asciiPayload(call: Call): string {
  if (call.payload.some((b) => b > 0x7f)) throw ProtocolError('Device interface contains non-ASCII characters');
  return call.payload.toString('latin1');
}

function noDuplicates(list: string[]): void {
  if (new Set(list).size !== list.length) throw ProtocolError('Duplicated device interfaces in payload.');
}

// a qube class without the property (RemoteVM) has no list: Qubes fails
// reading the attribute and drops the call; here it is the property's error
const denied = (vm: Vm): string => String(getValue(vm, lookup(vm, 'devices_denied')) ?? '');
const setDenied = (vm: Vm, value: string): void => setProperty(vm, lookup(vm, 'devices_denied'), value);

const deniedHandlers: Handlers = {
  'admin.vm.device.denied.List': (call) => interfaces(denied(call.dest)).join('\n'),

  'admin.vm.device.denied.Add': (call) => {
    const toAdd = interfaces(asciiPayload(call));
    noDuplicates(toAdd);
    // Qubes assigns even when nothing is new; the setter sorts and dedupes
    setDenied(call.dest, denied(call.dest) + toAdd.join(''));
  },

  'admin.vm.device.denied.Remove': (call) => {
    const current = interfaces(denied(call.dest));
    const payload = asciiPayload(call);
    const toRemove = payload === 'all' ? [...current] : interfaces(payload);
    noDuplicates(toRemove);
    const next = current.filter((i) => !toRemove.includes(i)).join('');
    if (next !== denied(call.dest)) setDenied(call.dest, next);
  },
};

export const handlers: Handlers = Object.freeze({
  'admin.deviceclass.List': () => DEVICE_CLASSES.map((c) => c + '\n').join(''),
  ...(Object.assign({}, ...DEVICE_CLASSES.map(classHandlers)) as Handlers),
  ...deniedHandlers,
});

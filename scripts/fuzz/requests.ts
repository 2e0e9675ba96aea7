// Random and mutated Admin API requests for the soak: every method of the
// method table, with plausible arguments and payloads most of the time and
// hostile ones (odd names, NULs, invalid UTF-8, up to 64 KiB) the rest;
// then byte-level mutations and malformed headers. What could touch the host
// outside the soak's directories (a pool's dir_path) is kept inside it.
import { METHODS, type MethodSpec } from '../../lib/api-methods.js';
import { FramingError, MAX_REQUEST, parseRequest } from '../../lib/protocol/request.js';
import { hostileName, ODD_BYTES, randomPayload, type Rng } from './random.js';

export interface World {
  /** qubes the soak keeps (never removed by it) */
  stable: string[];
  /** names the soak creates and removes, so that the store stays bounded */
  scratch: string[];
  properties: string[];
  labels: string[];
  pools: string[];
  profiles: string[];
  /** where pools added by the soak live */
  poolRoot: string;
}

export interface Generated {
  socket: 'admin' | 'internal';
  bytes: Buffer;
  method: string;
  /** qubesd must drop it unanswered (framing error or too big) */
  expectDrop: boolean;
}

const FEATURES = ['f0', 'f1', 'f2', 'f3', 'gui', 'service.x', 'qrexec', 'supported-service.y', 'preload-dispvm', 'os'];
const TAGS = ['t0', 't1', 't2', 'created-by-dom0', 'created-by-x', 'audiovm-dom0'];
const VOLUMES = ['root', 'private', 'volatile', 'kernel'];
const VALUES = [
  '',
  '1',
  '0',
  'True',
  'False',
  'red',
  'fz-tpl',
  'fz-work',
  'default',
  '-1',
  '4096',
  '0x123456',
  'name=x',
  '*default*',
  'uuid:00000000-0000-0000-0000-000000000000',
];
const DRIVERS = ['file', 'file-reflink', 'linux-kernel', 'lvm_thin', 'zfs'];

/** Plausible argument for a method. */
function argFor(rng: Rng, spec: MethodSpec, w: World): string {
  const n = spec.name;
  if (spec.arg === false) return '';
  if (n.includes('.property.')) return rng.pick(w.properties);
  if (n.includes('.feature.')) return rng.pick(FEATURES);
  if (n.includes('.tag.')) return rng.pick(TAGS);
  if (n.includes('.volume.') || n.startsWith('internal.vm.volume')) return rng.pick(VOLUMES);
  if (n.startsWith('admin.label.')) return rng.pick([...w.labels, 'fzl0', 'fzl1']);
  if (n === 'admin.pool.Add') return rng.pick(DRIVERS);
  if (n.startsWith('admin.pool.')) return rng.pick(w.pools);
  if (n.startsWith('admin.backup.')) return rng.pick(w.profiles);
  if (n.startsWith('admin.vm.Create')) return rng.pick(['', 'fz-tpl', 'fz-work']);
  if (n.startsWith('admin.vm.device.')) return rng.pick(['dom0+sda', 'dom0+00_1f.2', 'fz-work+xvdi', 'dom0:sda']);
  if (n === 'admin.vm.Shutdown') return rng.pick(['', 'force', 'wait', 'force+wait']);
  return '';
}

/** Plausible payload for a method. */
function payloadFor(rng: Rng, spec: MethodSpec, w: World, arg: string): string | Buffer {
  const n = spec.name;
  if (spec.payload === false) return '';
  if (n.startsWith('admin.vm.Create')) {
    const name = rng.pick(w.scratch);
    // values with a NUL inside: anything echoed into an error message must not break the frame
    const extra = rng.pick([
      '',
      ' pool=varlibqubes',
      ' pool:private=varlibqubes',
      ' pool=nope',
      ' label=nope',
      ' pool=x\0y',
      ' pool:root=a\0b',
      ' label=re\0d',
      ' x\0=1',
    ]);
    return `name=${name} label=${rng.pick(w.labels)}${extra}`;
  }
  if (n === 'admin.vm.CreateDisposable') return '';
  if (n === 'admin.pool.Add') {
    const name = rng.pick(['fzp0', 'fzp1', 'fzp2']);
    const dir = `${w.poolRoot}/${rng.pick(['a', 'b', 'c'])}`;
    return arg === 'linux-kernel' ? `name=${name}\ndir_path=${dir}\n` : `name=${name}\ndir_path=${dir}\nrevisions_to_keep=${rng.pick(['1', '-1', 'x'])}\n`;
  }
  if (n === 'admin.label.Create') return rng.pick(['0x123456', '0xzzzzzz', '123456', '0x1234567', '0x12\x00456']);
  if (n.includes('.property.Set')) return rng.chance(0.2) ? `${rng.pick(VALUES)}\0${rng.pick(VALUES)}` : rng.pick(VALUES);
  if (n === 'admin.vm.feature.Set') return rng.chance(0.2) ? 'v'.repeat(4096) : rng.pick(VALUES);
  if (n === 'admin.vm.notes.Set') return rng.chance(0.1) ? 'n'.repeat(rng.int(60000)) : 'some notes\n';
  if (n === 'admin.vm.firewall.Set')
    return rng.pick(['action=accept\n', 'action=drop proto=tcp dstports=80-80\n', 'action=accept dsthost=example.com\n', 'bogus\n']);
  if (n.includes('.Set.revisions_to_keep')) return rng.pick(['1', '-1', '0', '99999999999999999999', 'x']);
  if (n.includes('.Set.')) return rng.pick(['True', 'False', '1', 'maybe']);
  if (n === 'admin.vm.volume.Resize' || n.startsWith('internal.vm.volume.Import')) return rng.pick(['1073741824', '0', '-1', '99999999999999999999', 'x']);
  if (n === 'admin.vm.volume.Revert') return rng.pick(['1@2020-01-01T00:00:00Z', '../x', 'latest']);
  if (n === 'admin.vm.volume.CloneTo') return rng.pick(['token', '']);
  if (n.startsWith('admin.vm.device.')) return rng.pick(['required=True attach_automatically=True ident=x', 'mode=auto', 'x']);
  return rng.pick(VALUES);
}

function destFor(rng: Rng, spec: MethodSpec, w: World): string {
  if (spec.dest === 'adminvm') return rng.chance(0.9) ? 'dom0' : rng.pick(w.stable);
  if (spec.name === 'admin.vm.Remove') return rng.pick(w.scratch);
  if (spec.dest === 'not-adminvm') return rng.pick([...w.stable, ...w.scratch]);
  return rng.pick(['dom0', ...w.stable, ...w.scratch]);
}

/** Byte-level damage to a well-formed request. */
function mutate(rng: Rng, b: Buffer): Buffer {
  let out = Buffer.from(b);
  for (let k = 1 + rng.int(3); k > 0; k--) {
    const at = rng.int(out.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (out.length) out[Math.min(at, out.length - 1)] = rng.int(256);
        break;
      case 1:
        out = Buffer.concat([out.subarray(0, at), rng.pick(ODD_BYTES), out.subarray(at)]);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + 1 + rng.int(8)))]);
        break;
      case 3:
        out = out.subarray(0, at);
        break;
      case 4: {
        const sp = out.indexOf(0x20, at);
        if (sp >= 0) out[sp] = rng.pick([0x00, 0x2b, 0x20]);
        break;
      }
      case 5:
        out = Buffer.concat([out.subarray(0, at), Buffer.from(rng.pick(['  ', ' name ', '+', '+../', 'keyword adminvm', '\0\0'])), out.subarray(at)]);
        break;
      default:
        out = Buffer.concat([out, rng.bytes(rng.length(64))]);
    }
  }
  return out;
}

const MALFORMED = [
  '',
  '\0',
  'admin.vm.List',
  'admin.vm.List dom0 name dom0',
  'admin.vm.List+ dom0 dom0\0',
  'admin.vm.List+ dom0 keyword default\0',
  'admin.vm.List+ dom0 uuid dom0\0',
  'admin.vm.List+ dom0 name\0',
  ' \0',
  '   \0',
  '\xff\xfe dom0 name dom0\0',
];

function expectDropFor(bytes: Buffer): boolean {
  if (bytes.length > MAX_REQUEST) return true;
  try {
    parseRequest(bytes);
    return false;
  } catch (e) {
    if (e instanceof FramingError) return true;
    throw e;
  }
}

const ADMIN = METHODS.filter((m) => m.socket === 'admin');
const INTERNAL = METHODS.filter((m) => m.socket === 'internal');
const ALL_NAMES = METHODS.map((m) => m.name);

export function generate(rng: Rng, w: World): Generated {
  const r = rng.next();
  const socket: 'admin' | 'internal' = rng.chance(0.05) ? 'internal' : 'admin';
  if (r < 0.05) {
    const bytes = rng.chance(0.3)
      ? Buffer.concat([Buffer.from('admin.vm.List+ dom0 name dom0'), rng.bytes(rng.int(MAX_REQUEST + 100))])
      : Buffer.from(rng.pick(MALFORMED), 'latin1');
    return { socket, bytes, method: '(malformed)', expectDrop: expectDropFor(bytes) };
  }
  const spec = socket === 'internal' && rng.chance(0.8) ? rng.pick(INTERNAL) : rng.pick(ADMIN);
  let method = spec.name;
  let arg = argFor(rng, spec, w);
  let src = 'dom0';
  let dest = destFor(rng, spec, w);
  let payload: string | Buffer = payloadFor(rng, spec, w, arg);
  const names = [...w.stable, ...w.scratch, ...FEATURES, ...TAGS, ...VOLUMES, ...w.labels, ...w.profiles, ...w.pools];
  // one hostile part in about a third of the calls
  if (rng.chance(0.35)) {
    switch (rng.int(6)) {
      case 0:
        arg = hostileName(rng, names);
        break;
      case 1:
        dest = hostileName(rng, w.stable);
        break;
      case 2:
        src = rng.chance(0.5) ? hostileName(rng, w.stable) : rng.pick(w.stable);
        break;
      case 3:
        payload = randomPayload(rng, [
          typeof payload === 'string' ? payload : 'x',
          `name=${rng.pick(w.scratch)} label=red pool=x`,
          'name=a label=red pool=x\0y',
        ]);
        break;
      case 4:
        method = rng.chance(0.5) ? hostileName(rng, ALL_NAMES) : rng.pick(ALL_NAMES) + rng.pick(['.', 'x', '.List', '\0', '+']);
        break;
      default:
        if (spec.name.startsWith('admin.vm.Create')) payload = `name=${hostileName(rng, w.scratch)} label=${rng.pick(w.labels)}`;
        else arg = hostileName(rng, names);
    }
  }
  // strings are sent as they are (latin1 keeps every byte of a random name)
  const enc = (s: string) => Buffer.from(s, 'latin1');
  let bytes: Buffer = Buffer.concat([
    enc(method),
    enc('+'),
    enc(arg),
    enc(' '),
    enc(src),
    enc(' name '),
    enc(dest),
    Buffer.from([0]),
    typeof payload === 'string' ? Buffer.from(payload) : payload,
  ]);
  if (rng.chance(0.15)) bytes = mutate(rng, bytes);
  // qubesd creates a pool's directory: after hostile parts and mutations, a
  // dir_path must still be one of the soak's own, or the call is made safe
  if (!poolPathsSafe(bytes, w.poolRoot)) {
    bytes = Buffer.from(`admin.pool.Add+file dom0 name dom0\0name=fzp0\ndir_path=${w.poolRoot}/a\n`);
  }
  return { socket, bytes, method, expectDrop: expectDropFor(bytes) };
}

/** Every `dir_path=` value in the bytes is <poolRoot>/a, /b or /c exactly. */
export function poolPathsSafe(bytes: Buffer, poolRoot: string): boolean {
  const text = bytes.toString('latin1');
  const re = /dir_path=([^\n\r\v\f\x1c\x1d\x1e]*)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (!/^[abc]$/.test(m[1]!.startsWith(poolRoot + '/') ? m[1]!.slice(poolRoot.length + 1) : '')) return false;
  }
  return true;
}

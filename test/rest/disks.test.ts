// Disks over real HTTP against the real stack: GET and PUT /vdis/{id}.raw
// and .vhd through admin.vm.volume.Export and the import protocol, sizes
// that must match exactly (a mismatch changes nothing), VHDs that qemu-img
// reads and writes, a task per transfer, and the policy deciding per call.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { call } from '../helpers/qubesd.js';
import { createToken, http, startRestStack } from './helpers.js';

let qemu = true;
try {
  execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
} catch {
  qemu = false;
}
if (!qemu) console.error('\n*** qemu-img not installed (apt-get install qemu-utils): VHD parts SKIPPED ***\n');

const grant = (service: string, target: string) => `${service.padEnd(28)} * mgmt ${target.padEnd(8)} allow target=dom0`;
const policy = [grant('admin.vm.volume.Info', 'work'), grant('admin.vm.volume.Export', 'work'), ''].join('\n');
const s = await startRestStack({ '30-disks.policy': policy }, 'socket');
t.teardown(() => s.stop());
await s.dom0('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=work label=red');
await s.dom0('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=mgmt label=red');
// a 4 MiB private volume (ImportWithSize's protocol, as dom0)
for (const [m, p] of [
  ['internal.vm.volume.ImportBegin', '4194304'],
  ['internal.vm.volume.ImportEnd', 'ok'],
]) {
  const r = await call(s.config.qubesd.internalSocket, m!, 'work', 'private', p!);
  if (!r.ok) throw new Error(`${m}: ${r.type} ${r.message}`);
}
const MiB = 1 << 20;
const VDI = `${s.url}/vdis/work:private`;
const auth = { authorization: `Bearer ${s.token}` };
const tmp = s.prefix;

async function put(url: string, body: Buffer, token = s.token): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}
async function get(url: string, token = s.token): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

const image = Buffer.alloc(4 * MiB);
image.fill('q', 0, 5000);
image.fill('r', 3 * MiB, 3 * MiB + 4096);

t.test('raw in and out', async (t) => {
  const up = await put(`${VDI}.raw`, image);
  t.equal(up.status, 200);
  t.same(up.json.bytes, 4 * MiB);
  t.equal(up.json.href, '/rest/v0/vdis/work%3Aprivate');
  const task = await http(`${s.url.replace('/rest/v0', '')}${up.headers.get('x-task')}`, 'GET', s.token);
  t.match(task.json, { name: 'vdi.import.raw', status: 'success', progress: 100 });

  const down = await get(`${VDI}.raw`);
  t.equal(down.status, 200);
  // HEAD: the same headers, no body
  const head = await fetch(`${VDI}.raw`, { method: 'HEAD', headers: auth });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-length'), '4194304');
  t.equal((await head.arrayBuffer()).byteLength, 0);
  t.equal(down.headers.get('content-length'), '4194304');
  t.ok(down.body.equals(image), 'the same bytes come back');
  t.match(down.headers.get('x-task'), /^\/rest\/v0\/tasks\/[0-9a-f]+$/);

  // one sector short, one sector long: refused before anything changes
  for (const wrong of [image.subarray(512), Buffer.concat([image, Buffer.alloc(512)])]) {
    const r = await put(`${VDI}.raw`, wrong);
    t.equal(r.status, 400);
    t.same(r.json, { error: 'bad request', message: `the upload is ${wrong.length} bytes, the volume 4194304 bytes: sizes must match exactly` });
  }
  t.ok((await get(`${VDI}.raw`)).body.equals(image), 'unchanged');
  const missing = await get(`${s.url}/vdis/work:nope.raw`);
  t.equal(missing.status, 403);
  t.match(JSON.parse(missing.body.toString()), { error: 'PermissionDenied', message: "Argument not in 'work volumes'" });
});

t.test('VHD out, read by qemu-img; VHD from qemu-img in', { skip: !qemu }, async (t) => {
  const down = await get(`${VDI}.vhd`);
  t.equal(down.status, 200);
  t.equal(down.body.length, 512 + 1024 + 512 + 2 * (512 + 2 * MiB) + 512, 'blocks 0 and 1 hold data, nothing else is stored');
  const vhd = join(tmp, 'out.vhd'),
    raw = join(tmp, 'out.raw');
  writeFileSync(vhd, down.body);
  t.equal(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', vhd]).toString()).format, 'vpc');
  execFileSync('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', vhd, raw]);
  t.ok(readFileSync(raw).equals(image), 'qemu-img reads our VHD as the volume');

  const other = Buffer.alloc(4 * MiB);
  other.fill('s', MiB + 100, 2 * MiB + 100);
  const src = join(tmp, 'in.raw'),
    qvhd = join(tmp, 'in.vhd');
  writeFileSync(src, other);
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on', src, qvhd]);
  const up = await put(`${VDI}.vhd`, readFileSync(qvhd));
  t.equal(up.status, 200);
  t.ok((await get(`${VDI}.raw`)).body.equals(other), "qemu-img's VHD imported");

  // a VHD of another size, a damaged one: refused, nothing changes
  execFileSync('qemu-img', ['create', '-f', 'vpc', '-o', 'subformat=dynamic,force_size=on', join(tmp, 'big.vhd'), '8M'], { stdio: 'ignore' });
  const big = await put(`${VDI}.vhd`, readFileSync(join(tmp, 'big.vhd')));
  t.same([big.status, big.json.message], [400, "the VHD's disk is 8388608 bytes, the volume 4194304 bytes: sizes must match exactly"]);
  const damaged = Buffer.from(readFileSync(qvhd));
  damaged[70] ^= 0xff;
  const bad = await put(`${VDI}.vhd`, damaged);
  t.same([bad.status, bad.json.message], [400, 'VHD footer checksum mismatch']);
  const cut = readFileSync(qvhd).subarray(0, 4096);
  const short = await put(`${VDI}.vhd`, cut);
  t.equal(short.status, 400);
  t.match(short.json.message, /^import failed, the volume is unchanged: VHD ends/);
  t.ok((await get(`${VDI}.raw`)).body.equals(other), 'unchanged');
});

t.test('the policy decides each call', async (t) => {
  const mgmt = createToken(s.prefix, 'mgmt');
  const ok = await get(`${VDI}.raw`, mgmt);
  t.equal(ok.status, 200, 'Export of work is granted to mgmt');
  // what the volume holds now (the VHD test, skipped without qemu-img, writes other bytes)
  const before = ok.body;
  t.equal(before.length, 4 * MiB);
  // bytes the volume does not hold, so that an import that went through would show
  const noImport = await put(`${VDI}.raw`, Buffer.alloc(4 * MiB, 'x'), mgmt);
  t.same([noImport.status, noImport.json.call], [403, { service: 'admin.vm.volume.Import+private', target: 'work' }]);
  const noExport = await get(`${s.url}/vdis/mgmt:private.raw`, mgmt);
  t.equal(noExport.status, 403);
  t.same(JSON.parse(noExport.body.toString()).call, { service: 'admin.vm.volume.Export+private', target: 'mgmt' });
  t.ok((await get(`${VDI}.raw`)).body.equals(before), 'nothing changed');
  void auth;
});

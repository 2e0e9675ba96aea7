// Dynamic VHD against qemu-img (Debian's qemu-utils): what we write is
// identical to the original for `qemu-img compare`, is `vpc` to `qemu-img info` and converts back to the
// original bytes; what qemu-img writes we read byte for byte as qemu itself
// converts it; blocks without data are not stored; damage is refused.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeVhd, planVhd } from '../../rest/vhd/writer.js';
import { readVhd, VhdFormatError } from '../../rest/vhd/reader.js';
import { chsGeometry, vhdTimestamp } from '../../rest/vhd/geometry.js';
import type { ExtentMap } from '../../lib/volume-export.js';

let qemu = true;
try {
  execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
} catch {
  qemu = false;
}
if (!qemu) console.error('\n*** qemu-img not installed (apt-get install qemu-utils): VHD interop tests SKIPPED ***\n');

const dir = mkdtempSync(join(tmpdir(), 'vhd-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(Buffer.from(b));
  return Buffer.concat(parts);
}

async function* piecesOf(raw: Buffer, extents: ExtentMap): AsyncGenerator<[number, Buffer]> {
  for (const [o, l] of extents) {
    // in two parts, so that pieces do not line up with extents or blocks
    const h = Math.floor(l / 2);
    if (h) yield [o, raw.subarray(o, o + h)];
    yield [o + h, raw.subarray(o + h, o + l)];
  }
}

async function rawFromVhd(input: Buffer, chunk = 65536): Promise<Buffer> {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < input.length; i += chunk) yield input.subarray(i, i + chunk);
  }
  const v = await readVhd(chunks());
  const out = Buffer.alloc(v.size);
  for await (const [o, b] of v.pieces) b.copy(out, o);
  return out;
}

t.test('fixed numbers', async (t) => {
  t.same(chsGeometry(10 * 2 ** 30), { cylinders: 20805, heads: 16, sectorsPerTrack: 63 });
  t.same(chsGeometry(16 << 20), { cylinders: 481, heads: 4, sectorsPerTrack: 17 });
  t.equal(vhdTimestamp(new Date('2000-01-01T00:00:10Z')), 10);
  t.equal(vhdTimestamp(new Date('2024-01-01T00:00:00Z')), 757382400);
});

t.test('blocks built in two reused buffers give the same VHD as fresh ones', async (t) => {
  // data in blocks 0, 2 and 4: the third block is built in the first one's buffer
  const size = 9 * (1 << 20) + 1536;
  const raw = Buffer.alloc(size);
  raw.fill('A', 0, (2 << 20) - 100);
  raw.fill('B', (4 << 20) + 512, (4 << 20) + 1512);
  raw.fill('C', size - 700, size);
  const extents: ExtentMap = [
    [0, (2 << 20) - 100],
    [(4 << 20) + 512, 1000],
    [size - 700, 700],
  ];
  const opts = { date: new Date('2024-01-01T00:00:00Z'), uniqueId: Buffer.alloc(16, 7) };
  const fresh = await collect(writeVhd(size, extents, piecesOf(raw, extents), opts));
  const reused = await collect(writeVhd(size, extents, piecesOf(raw, extents), { ...opts, reuseBlocks: true }));
  t.equal(reused.length, 512 + 1024 + 512 + 3 * (512 + (2 << 20)) + 512);
  t.ok(reused.equals(fresh), 'byte for byte');
  t.ok((await rawFromVhd(reused)).equals(raw), 'reads back as the volume');
});

t.test('our VHD, read by qemu-img', { skip: !qemu }, async (t) => {
  const size = 9 * (1 << 20) + 1536; // 5 blocks, the last one partial
  const raw = Buffer.alloc(size);
  raw.fill('A', 0, 4096);
  raw.fill('B', (5 << 20) + 512, (5 << 20) + 1512);
  raw.fill('C', size - 700, size);
  const extents: ExtentMap = [
    [0, 4096],
    [(5 << 20) + 512, 1000],
    [size - 700, 700],
  ];
  const vhd = await collect(writeVhd(size, extents, piecesOf(raw, extents), { date: new Date('2024-01-01T00:00:00Z'), uniqueId: Buffer.alloc(16, 7) }));
  // footer copy, header, table (one sector), blocks 0, 2, 4 with bitmaps, footer
  t.equal(vhd.length, 512 + 1024 + 512 + 3 * (512 + (2 << 20)) + 512, 'only the three blocks with data are stored');
  t.equal(planVhd(size, extents).length, vhd.length);
  t.equal(vhd.toString('latin1', 0, 8), 'conectix');
  t.equal(vhd.toString('latin1', 512, 520), 'cxsparse');
  t.equal(vhd.readUInt32BE(24), 757382400);
  t.ok(vhd.subarray(0, 512).equals(vhd.subarray(vhd.length - 512)), 'footer and its copy agree');
  const file = join(dir, 'ours.vhd');
  writeFileSync(file, vhd);
  const orig = join(dir, 'orig.raw');
  writeFileSync(orig, raw);
  // qemu-img check does not check vpc; compare reads every block through qemu's driver
  t.match(execFileSync('qemu-img', ['compare', '-f', 'vpc', '-F', 'raw', file, orig]).toString(), /Images are identical/);
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', file]).toString());
  t.equal(info.format, 'vpc');
  t.equal(info['virtual-size'], size);
  const back = join(dir, 'ours.raw');
  execFileSync('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', file, back]);
  t.equal(statSync(back).size, size);
  t.ok(readFileSync(back).equals(raw), 'qemu-img converts it back to the original bytes');
  t.ok((await rawFromVhd(vhd, 1000)).equals(raw), 'and so do we');

  // an empty 10 GiB disk: headers and the table only
  const empty = await collect(writeVhd(10 * 2 ** 30, [], piecesOf(Buffer.alloc(0), [])));
  t.equal(empty.length, 512 + 1024 + 5120 * 4 + 512);
  writeFileSync(join(dir, 'empty.vhd'), empty);
  t.equal(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', join(dir, 'empty.vhd')]).toString())['virtual-size'], 10 * 2 ** 30);
});

t.test("qemu-img's VHD, read by us", { skip: !qemu }, async (t) => {
  const src = join(dir, 'src.raw');
  const size = 20 << 20;
  const fd = openSync(src, 'w');
  ftruncateSync(fd, size);
  writeSync(fd, Buffer.alloc(3000, 'x'), 0, 3000, 1 << 20);
  writeSync(fd, Buffer.alloc(512, 'y'), 0, 512, (13 << 20) + 4096);
  closeSync(fd);
  for (const opts of ['subformat=dynamic', 'subformat=dynamic,force_size=on']) {
    const vhdFile = join(dir, 'qemu.vhd');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', opts, src, vhdFile]);
    const qemuRaw = join(dir, 'qemu-back.raw');
    execFileSync('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', vhdFile, qemuRaw]);
    const ours = await rawFromVhd(readFileSync(vhdFile), 7777);
    t.ok(ours.equals(readFileSync(qemuRaw)), `${opts}: our reading equals qemu-img's (${ours.length} bytes)`);
    t.ok(ours.subarray(0, size).equals(readFileSync(src)), `${opts}: the original data`);
  }
});

t.test('damaged VHDs are refused', async (t) => {
  const size = 4 << 20;
  const raw = Buffer.alloc(size, 'z');
  const good = await collect(writeVhd(size, [[0, size]], piecesOf(raw, [[0, size]])));
  const bad = Buffer.from(good);
  bad[100] ^= 1;
  await t.rejects(rawFromVhd(bad), new VhdFormatError('VHD footer checksum mismatch'));
  const badHeader = Buffer.from(good);
  badHeader[512 + 40] ^= 1;
  await t.rejects(rawFromVhd(badHeader), new VhdFormatError('VHD header checksum mismatch'));
  await t.rejects(rawFromVhd(good.subarray(0, good.length - 600)), new VhdFormatError('VHD ends inside block 1'));
  await t.rejects(rawFromVhd(good.subarray(0, good.length - 512)), new VhdFormatError('VHD ends without its footer'));
  await t.rejects(rawFromVhd(Buffer.alloc(2048)), new VhdFormatError("not a VHD: no 'conectix' footer"));
});

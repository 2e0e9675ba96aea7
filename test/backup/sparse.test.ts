// Finding the data regions of an image (directly, or through the page cache
// where O_DIRECT is refused, as on tmpfs) and writing restored images sparse.
import t, { type Test } from 'tap';
import { closeSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { scanDataRegions, writeSparseFile, encodeSparseMap } from '../../lib/sparse-scan.js';
import { mountTmpfs } from '../storage/mounts.js';
import { tempDir } from './util.js';

function image(path: string, size: number, writes: Array<[number, Buffer]>): void {
  const fd = openSync(path, 'w');
  for (const [at, data] of writes) writeSync(fd, data, 0, data.length, at);
  closeSync(fd);
  if (statSync(path).size !== size) throw new Error('test image size');
}

const SIZE = 64 * 1024 * 1024 + 1000; // not a multiple of the block size
const WRITES: Array<[number, Buffer]> = [
  [5000, Buffer.from('x'.repeat(10))],
  [8192, Buffer.alloc(8192, 1)],
  [40 << 20, Buffer.alloc(1, 7)],
  [SIZE - 3, Buffer.from('end')],
];
const EXPECTED = [
  [4096, 12288],
  [40 << 20, 4096],
  [SIZE - 1000, 1000],
];

async function check(t: Test, dir: string, label: string): Promise<void> {
  const path = join(dir, 'img');
  image(path, SIZE, WRITES);
  const fh = await open(path, 'r');
  try {
    t.same(await scanDataRegions(fh, SIZE), EXPECTED, `${label}: regions at 4 KiB granularity, the last one short`);
    // The map describes the file that is open, even after a rename over it.
    writeFileSync(join(dir, 'other'), Buffer.alloc(SIZE, 9));
    renameSync(join(dir, 'other'), path);
    t.same(await scanDataRegions(fh, SIZE), EXPECTED, `${label}: the open file, not the path`);
  } finally {
    await fh.close();
  }
}

t.test('data regions of a sparse image', async (t) => {
  await check(t, tempDir(t), 'disk');
  const mnt = mountTmpfs(tempDir(t), 'tmpfs', '200M');
  if (typeof mnt === 'string') {
    t.comment(`tmpfs case skipped: ${mnt}`);
    return;
  }
  t.teardown(mnt.unmount);
  await check(t, mnt.dir, 'tmpfs (no O_DIRECT)');
});

t.test('the sparse map as GNU tar writes it', async (t) => {
  const m = encodeSparseMap(
    [
      [0, 512],
      [4096, 10],
    ],
    8192,
  );
  t.equal(m.length, 512);
  t.equal(m.toString('ascii').replace(/\0+$/, ''), '3\n0\n512\n4096\n10\n8192\n0\n');
});

t.test('restored images keep their holes', async (t) => {
  const dir = tempDir(t);
  const data = Buffer.alloc(20 << 20);
  data.fill(3, 10 << 20, (10 << 20) + 5000);
  data.write('tail', data.length - 4);
  const pieces = [];
  for (let at = 0; at < data.length; at += 65536 + 7) pieces.push(data.subarray(at, at + 65536 + 7));
  const path = join(dir, 'restored.img');
  t.equal(await writeSparseFile(Readable.from(pieces), path), data.length);
  t.ok(readFileSync(path).equals(data), 'same bytes');
  t.ok(statSync(path).blocks * 512 <= 64 * 1024, `only the data takes space (${statSync(path).blocks * 512} bytes)`);
  await t.rejects(writeSparseFile(Readable.from([data]), path), { code: 'EEXIST' }, 'never replaces a file');
});

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ByteSource, TAR_END, TarError, paddingFor, tarEntries, tarEntrySize, tarFileHeader } from '../../qubesd/backup/tar.js';
import { have, sampleData, tempDir } from './util.js';

async function readTar(data: Buffer | Buffer[], opts = {}): Promise<Array<{ name: string; type: string; size: number; data: Buffer }>> {
  const out = [];
  for await (const e of tarEntries(ByteSource.from(Readable.from(Array.isArray(data) ? data : [data])), opts)) {
    const parts: Buffer[] = [];
    for await (const p of e.body()) parts.push(Buffer.from(p));
    out.push({ name: e.name, type: e.type, size: e.size, data: Buffer.concat(parts) });
  }
  return out;
}

function archive(files: Array<[string, Buffer]>): Buffer {
  const entries = files.flatMap(([name, data]) => [tarFileHeader({ name, size: data.length, mtime: 1700000000 }), data, Buffer.alloc(paddingFor(data.length))]);
  return Buffer.concat([...entries, TAR_END]);
}

t.test('GNU tar reads what we write, including long names', { skip: have('tar') ? false : 'no tar' }, async (t) => {
  const dir = tempDir(t);
  const long = 'd/' + 'x'.repeat(150);
  const files: Array<[string, Buffer]> = [
    ['vm1/private.img', sampleData(70_000)],
    [long, Buffer.from('long name')],
    ['empty', Buffer.alloc(0)],
  ];
  const a = archive(files);
  t.equal(a.length, files.reduce((n, [name, d]) => n + tarEntrySize(name, d.length), 0) + TAR_END.length, 'tarEntrySize predicts the layout');
  writeFileSync(join(dir, 'a.tar'), a);
  mkdirSync(join(dir, 'x'));
  const r = spawnSync('tar', ['-xf', join(dir, 'a.tar'), '-C', join(dir, 'x')]);
  t.equal(r.status, 0, String(r.stderr));
  for (const [name, data] of files) t.ok(readFileSync(join(dir, 'x', name)).equals(data), `${name} identical`);
});

t.test('we read what we write, split at awkward places', async (t) => {
  const files: Array<[string, Buffer]> = [
    ['a', sampleData(1000)],
    ['b/' + 'y'.repeat(120), sampleData(513)],
  ];
  const a = archive(files);
  const pieces: Buffer[] = [];
  for (let i = 0; i < a.length; i += 77) pieces.push(a.subarray(i, i + 77));
  const got = await readTar(pieces);
  t.same(
    got.map((e) => e.name),
    files.map((f) => f[0]),
  );
  files.forEach(([, d], i) => t.ok(got[i]!.data.equals(d)));
});

t.test('sizes beyond the octal field go through pax', async (t) => {
  const h = tarFileHeader({ name: 'big.img', size: 2 ** 34 + 5 });
  const it = tarEntries(ByteSource.from(Readable.from([h])));
  const first = await it.next();
  t.equal(first.value?.size, 2 ** 34 + 5);
  t.equal(first.value?.name, 'big.img');
});

t.test('we read GNU tar archives: pax, sparse 1.0, long names, concatenated', { skip: have('tar') ? false : 'no tar' }, async (t) => {
  const dir = tempDir(t);
  const sparse = join(dir, 'disk.img');
  const fd = openSync(sparse, 'w');
  ftruncateSync(fd, 5 * 1024 * 1024);
  writeSync(fd, Buffer.from('hello at 1M'), 0, 11, 1024 * 1024);
  writeSync(fd, sampleData(10_000), 0, 10_000, 3 * 1024 * 1024 + 7);
  closeSync(fd);
  writeFileSync(join(dir, 'z'.repeat(130)), 'long');
  const one = spawnSync('tar', ['-c', '--posix', '--sparse', '--sparse-version=1.0', '-C', dir, 'disk.img', 'z'.repeat(130)]);
  t.equal(one.status, 0, String(one.stderr));
  const two = spawnSync('tar', ['-c', '--posix', '-C', dir, 'z'.repeat(130)]);
  const got = await readTar([one.stdout, two.stdout], { ignoreZeros: true });
  t.same(
    got.map((e) => e.name),
    ['disk.img', 'z'.repeat(130), 'z'.repeat(130)],
  );
  t.ok(got[0]!.data.equals(readFileSync(sparse)), 'sparse file expands to identical bytes');
  t.equal(got[1]!.data.toString(), 'long');
});

t.test('damage is detected', async (t) => {
  const a = archive([['f', sampleData(2000)]]);
  await t.rejects(readTar(a.subarray(0, 1500)), TarError, 'truncated data');
  await t.rejects(readTar(a.subarray(0, a.length - 1024)), { code: 'truncated' }, 'missing end marker');
  const bad = Buffer.from(a);
  bad[10]! ^= 1;
  await t.rejects(readTar(bad), { code: 'corrupt' }, 'header checksum');
});

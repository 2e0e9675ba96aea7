// Streaming import: exact size commits; short, long, failing or aborted
// input leaves the old data exactly as it was; a multi-gigabyte import runs
// in bounded memory; a running qube cannot be imported into.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, openSync, readSync, closeSync, statSync, writeSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { importFromStream } from '../../qubesd/storage/index.js';
import { copyStreamInto } from '../../lib/sparse-copy.js';
import { makeEnv, attrsOf } from './fake.js';

const MiB = 1024 * 1024;

function head(file: string, len: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, 0);
    return b;
  } finally {
    closeSync(fd);
  }
}

function sha(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

/** `total` bytes: a pattern every `every` bytes, zeros elsewhere; generated lazily. */
function* pattern(total: number, chunk: number, every = 0): Generator<Buffer> {
  for (let pos = 0; pos < total; pos += chunk) {
    const n = Math.min(chunk, total - pos);
    const b = Buffer.alloc(n);
    if (every && pos % every === 0) b.write(`block@${pos}`);
    yield b;
  }
}

async function setup(t: Test) {
  const env = makeEnv();
  t.teardown(env.cleanup);
  const vm = await env.app.addVm('sa', 'StandaloneVM');
  const img = join(env.base, 'appvms/sa/private.img');
  await env.m.resize(vm, 'private', 4 * MiB); // small, so that whole-file checksums are quick
  const fd = openSync(img, 'r+');
  writeSync(fd, Buffer.from('ORIGINAL'), 0, 8, 0);
  closeSync(fd);
  return { ...env, vm, img };
}

t.test('ImportWithSize commits exactly the declared bytes', async (t) => {
  const { m, vm, img, app } = await setup(t);
  const r = await importFromStream(m, vm, 'private', Readable.from(pattern(3 * MiB, 64 * 1024, MiB)), 3 * MiB);
  t.equal(r.bytes, 3 * MiB);
  t.equal(statSync(img).size, 3 * MiB);
  t.equal(head(img, 9).toString(), 'block@0\0\0');
  t.equal(attrsOf(vm, 'private').get('size'), String(3 * MiB), 'the new size is in the config');
  t.notOk(existsSync(join(app.baseDir, 'appvms/sa/private-import.img')));
  t.same(
    app.events.fired.filter(([, e]) => e.startsWith('domain-volume-import')).map(([, e, kw]) => [e, Object.fromEntries(kw)]),
    [
      ['domain-volume-import-begin', { volume: 'private', size: String(3 * MiB) }],
      ['domain-volume-import-end', { volume: 'private', success: 'True' }],
    ],
  );
  t.same(await m.listSnapshots(vm, 'private'), [], 'the file driver keeps no revision of imported-over data (as Qubes)');
});

t.test('Import without a size uses the volume size', async (t) => {
  const { m, vm, img } = await setup(t);
  const size = statSync(img).size;
  await t.rejects(importFromStream(m, vm, 'private', Readable.from(pattern(MiB, 64 * 1024))), {
    type: 'QubesException',
    message: `Data import failed: not enough data (copied ${MiB} bytes, expected ${size} bytes)`,
  });
  t.equal(head(img, 8).toString(), 'ORIGINAL');
});

t.test('failed imports leave the old volume exactly as it was', async (t) => {
  const { m, vm, img, app } = await setup(t);
  const before = await sha(img);
  const size0 = statSync(img).size;
  await t.rejects(importFromStream(m, vm, 'private', Readable.from(pattern(2 * MiB, 65536)), MiB), {
    type: 'QubesException',
    message: `Data import failed: too much data (expected ${MiB} bytes)`,
  });
  await t.rejects(importFromStream(m, vm, 'private', Readable.from(pattern(MiB - 1, 65536)), MiB), {
    type: 'QubesException',
    message: `Data import failed: not enough data (copied ${MiB - 1} bytes, expected ${MiB} bytes)`,
  });
  async function* broken() {
    yield Buffer.alloc(65536, 7);
    throw new Error('connection reset');
  }
  await t.rejects(importFromStream(m, vm, 'private', broken(), MiB), { type: 'QubesException', message: 'Data import failed: error copying data' });
  // the handler program aborts: ImportEnd with a failure
  const { path } = await m.importBegin(vm, 'private', MiB);
  await copyStreamInto(Readable.from(pattern(MiB / 2, 65536, 65536)), path, MiB);
  await t.rejects(m.importEnd(vm, 'private', false, 'cancelled by the caller'), {
    type: 'QubesException',
    message: 'Data import failed: cancelled by the caller',
  });
  // a writer that says ok but wrote past the declared size
  const b = await m.importBegin(vm, 'private', MiB);
  const fd = openSync(b.path, 'r+');
  writeSync(fd, Buffer.from('x'), 0, 1, MiB + 10);
  closeSync(fd);
  await t.rejects(m.importEnd(vm, 'private', true), { type: 'QubesException', message: /size of imported data is/ });
  t.equal(await sha(img), before, 'data unchanged');
  t.equal(statSync(img).size, size0, 'size unchanged');
  t.equal(attrsOf(vm, 'private').get('size'), String(size0));
  t.notOk(existsSync(join(app.baseDir, 'appvms/sa/private-import.img')), 'no import file left');
});

t.test('imports are refused into a running qube, a second concurrent import, or a kept-less volume', async (t) => {
  const { m, vm } = await setup(t);
  vm.power = 'Running';
  await t.rejects(m.importBegin(vm, 'private', 10), { type: 'QubesVMNotHaltedError', message: "Domain is not powered off: 'sa'" });
  vm.power = 'Halted';
  await m.importBegin(vm, 'private', 10);
  await t.rejects(m.importBegin(vm, 'private', 10), { type: 'StoragePoolException', message: /in progress/ });
  await t.rejects(m.startVolumes(vm), { type: 'StoragePoolException', message: /in progress/ }, 'no start during an import');
  await t.rejects(m.importEnd(vm, 'root', true), { type: 'StoragePoolException', message: /No import in progress/ });
  await t.rejects(m.importEnd(vm, 'private', false), { type: 'QubesException', message: 'Data import failed: ' });
  await t.rejects(m.importBegin(vm, 'volatile', 10), {
    type: 'StoragePoolException',
    message: 'Can not import into save_on_stop=False volume appvms/sa/volatile',
  });
});

t.test('a multi-gigabyte sparse import streams in bounded memory', async (t) => {
  const { m, vm, img } = await setup(t);
  const total = 4 * 1024 * MiB; // 4 GiB, a marker every 256 MiB
  let peak = 0;
  const sample = () => {
    const r = process.memoryUsage().rss;
    if (r > peak) peak = r;
  };
  const timer = setInterval(sample, 20);
  const rss0 = process.memoryUsage().rss;
  try {
    const gen = Readable.from(pattern(total, 256 * 1024, 256 * MiB), { objectMode: false, highWaterMark: 4 });
    await importFromStream(m, vm, 'private', gen, total);
  } finally {
    clearInterval(timer);
    sample();
  }
  t.equal(statSync(img).size, total);
  t.ok(statSync(img).blocks * 512 < 64 * MiB, `stays sparse (${statSync(img).blocks * 512} bytes allocated)`);
  const fd = openSync(img, 'r');
  const b = Buffer.alloc(16);
  readSync(fd, b, 0, 16, 3 * 256 * MiB);
  closeSync(fd);
  t.equal(b.toString().replace(/\0+$/, ''), `block@${3 * 256 * MiB}`);
  const grew = peak - rss0;
  t.comment(`peak RSS ${(peak / MiB).toFixed(1)} MiB (grew ${(grew / MiB).toFixed(1)} MiB) for a ${total / MiB} MiB import`);
  t.ok(grew < 256 * MiB, 'memory does not grow with the data');
});

// Storage benchmarks:
//  - import throughput (MB/s) of importFromStream against `dd` writing the
//    same data into the same kind of file on the same disk, the way Qubes'
//    admin.vm.volume.Import script does;
//  - time to clone a 1 GiB volume (admin.vm.volume.CloneFrom/CloneTo) by
//    plain copy (this disk) and by reflink (an XFS loop image, when one can be
//    mounted here).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeSync, ftruncateSync, fsyncSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PoolDoc, VolumeConfigDoc } from '../qubesd/store/document.js';
import { StorageManager, importFromStream, type StorageApp, type StorageVm } from '../qubesd/storage/index.js';
import { copyStreamInto } from '../lib/sparse-copy.js';
import { cloneFile } from '../qubesd/storage/fileops.js';
import { report } from './common.js';

const MiB = 1024 * 1024;
const DATA_MIB = Number(process.env.STORAGE_BENCH_MIB ?? 1024);

class Qube implements StorageVm {
  power = 'Halted';
  volumeConfig: VolumeConfigDoc[] = [];
  constructor(
    readonly name: string,
    readonly klass: string,
  ) {}
}

class BenchApp implements StorageApp {
  pools: PoolDoc[];
  vms = new Map<string, Qube>();
  storage: StorageManager | null = null;
  constructor(base: string) {
    this.pools = [
      {
        attrs: [
          ['name', 'varlibqubes'],
          ['dir_path', base],
          ['driver', 'file'],
          ['revisions_to_keep', '1'],
          ['ephemeral_volatile', 'False'],
        ],
      },
    ];
  }
  markDirty(): void {
    /* no store here */
  }
  markGlobalsDirty(): void {
    /* no store here */
  }
  getVm(name: string): Qube | undefined {
    return this.vms.get(name);
  }
  allVms(): Qube[] {
    return [...this.vms.values()];
  }
  vmsByArrival(): IterableIterator<Qube> {
    return this.vms.values();
  }
  async add(name: string, placement: { pool?: string } = {}): Promise<Qube> {
    const vm = new Qube(name, 'StandaloneVM');
    this.vms.set(name, vm);
    await this.storage!.createVolumes(vm, placement);
    return vm;
  }
}

/** A file of `mib` MiB of incompressible, non-zero data (nothing for sparse copies to skip). */
function makeData(file: string, mib: number): void {
  const fd = openSync(file, 'w');
  const block = randomBytes(4 * MiB);
  for (let i = 0; i < mib; i += 4) {
    block.writeUInt32LE(i, 0);
    writeSync(fd, block, 0, Math.min(4, mib - i) * MiB);
  }
  fsyncSync(fd);
  closeSync(fd);
}

function sparse(file: string, size: number): void {
  const fd = openSync(file, 'w');
  ftruncateSync(fd, size);
  closeSync(fd);
}

const ms = (secs: number): number => Number((secs * 1000).toFixed(1));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function benchImport(dir: string): Promise<void> {
  const base = join(dir, 'base');
  mkdirSync(base, { recursive: true });
  const app = new BenchApp(base);
  const m = new StorageManager(app, { baseDir: base });
  app.storage = m;
  const vm = await app.add('target');
  const data = join(dir, 'data.bin');
  makeData(data, DATA_MIB);
  const size = DATA_MIB * MiB;
  const ddTarget = join(dir, 'dd-target.img');
  const ours: number[] = [];
  const dd: number[] = [];
  let peakRss = 0;
  const runDd = () => {
    sparse(ddTarget, size);
    const t0 = process.hrtime.bigint();
    execFileSync('dd', [
      `if=${data}`,
      `of=${ddTarget}`,
      'bs=128K',
      `count=${size}`,
      'iflag=count_bytes,fullblock',
      'conv=sparse,notrunc,nocreat,fdatasync',
      'status=none',
    ]);
    dd.push(Number(process.hrtime.bigint() - t0) / 1e9);
    rmSync(ddTarget);
  };
  const runOurs = async () => {
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 10);
    const t0 = process.hrtime.bigint();
    await importFromStream(m, vm, 'private', createReadStream(data, { highWaterMark: 128 * 1024 }), size);
    ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
    clearInterval(sampler);
  };
  // the streaming copy alone, into a fresh sparse file exactly as dd gets one
  const copyOnly: number[] = [];
  const runCopy = async () => {
    const target = join(dir, 'copy-target.img');
    sparse(target, size);
    const t0 = process.hrtime.bigint();
    const r = await copyStreamInto(createReadStream(data, { highWaterMark: 128 * 1024 }), target, size);
    copyOnly.push(Number(process.hrtime.bigint() - t0) / 1e9);
    if (!r.ok) throw new Error(r.error);
    rmSync(target);
  };
  // alternate the order so that no side always follows another's writeback
  for (let round = 0; round < 4; round++) {
    if (round % 2 === 0) {
      runDd();
      await runCopy();
      await runOurs();
    } else {
      await runOurs();
      await runCopy();
      runDd();
    }
  }
  const oursMBs = size / 1e6 / median(ours);
  const ddMBs = size / 1e6 / median(dd);
  report({
    bench: 'storage',
    name: 'import-throughput',
    value: Math.round(oursMBs),
    unit: 'MB/s',
    data_mib: DATA_MIB,
    note: 'importFromStream: ImportBegin, streaming copy, ImportEnd (fsync, atomic replace of the old image)',
    baseline_dd_mb_s: Math.round(ddMBs),
    ratio_vs_dd: Number((oursMBs / ddMBs).toFixed(2)),
    runs: ours.length,
    ours_s: ours.map((x) => Number(x.toFixed(2))),
    dd_s: dd.map((x) => Number(x.toFixed(2))),
  });
  const copyMBs = size / 1e6 / median(copyOnly);
  report({
    bench: 'storage',
    name: 'import-copy-throughput',
    value: Math.round(copyMBs),
    unit: 'MB/s',
    data_mib: DATA_MIB,
    baseline_dd_mb_s: Math.round(ddMBs),
    ratio_vs_dd: Number((copyMBs / ddMBs).toFixed(2)),
    runs: copyOnly.length,
    note: 'streaming copy only (copyStreamInto), without ImportBegin/ImportEnd and the atomic replace of the old image',
  });
  report({ bench: 'storage', name: 'import-peak-rss', value: Math.round(peakRss / MiB), unit: 'MiB', data_mib: DATA_MIB });
  rmSync(data);
}

/** Clone a 1 GiB volume of real data inside one pool; returns seconds and how it was copied. */
async function timeClone(poolDir: string, base: string, tag: string): Promise<{ secs: number; method: string }> {
  const app = new BenchApp(base);
  app.pools.push({
    attrs: [
      ['name', 'bench'],
      ['dir_path', poolDir],
      ['driver', 'file-reflink'],
      ['revisions_to_keep', '0'],
      ['setup_check', 'False'],
    ],
  });
  const m = new StorageManager(app, { baseDir: base });
  app.storage = m;
  const src = await app.add(`src-${tag}`, { pool: 'bench' });
  const dst = await app.add(`dst-${tag}`, { pool: 'bench' });
  makeData(join(poolDir, `appvms/src-${tag}/private.img`), 1024);
  const token = m.cloneFrom(src, 'private');
  const t0 = process.hrtime.bigint();
  const method = await m.cloneTo(dst, 'private', token);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { secs, method: method ?? 'none' };
}

function mountXfs(dir: string): (() => void) | string {
  const image = join(dir, 'reflink.xfs');
  const mnt = join(dir, 'xfs');
  mkdirSync(mnt, { recursive: true });
  try {
    execFileSync('truncate', ['-s', '3G', image]);
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', image], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', image, mnt], { stdio: 'pipe' });
  } catch (e) {
    return String((e as { stderr?: Buffer }).stderr ?? e).trim();
  }
  return () => {
    try {
      execFileSync('umount', [mnt]);
    } catch {
      /* best effort */
    }
  };
}

async function benchClone(dir: string): Promise<void> {
  const base = join(dir, 'base2');
  mkdirSync(base, { recursive: true });
  const copy = await timeClone(join(dir, 'plain'), base, 'plain');
  const unmount = mountXfs(dir);
  if (typeof unmount === 'string') {
    report({ bench: 'storage', name: 'clone-1GiB-copy', value: ms(copy.secs), unit: 'ms', method: copy.method, reflink: `unavailable: ${unmount}` });
    return;
  }
  try {
    const rl = await timeClone(join(dir, 'xfs', 'pool'), base, 'xfs');
    // a plain copy on the same XFS, for a same-disk comparison
    const t0 = process.hrtime.bigint();
    await cloneFile(join(dir, 'xfs/pool/appvms/src-xfs/private.img'), join(dir, 'xfs/pool/plain-copy.img'), { mode: 'never' });
    const xfsCopy = Number(process.hrtime.bigint() - t0) / 1e9;
    report({ bench: 'storage', name: 'clone-1GiB-copy', value: ms(copy.secs), unit: 'ms', method: copy.method, fs: 'ext4 (this disk)' });
    report({ bench: 'storage', name: 'clone-1GiB-copy-xfs', value: ms(xfsCopy), unit: 'ms', method: 'copy', fs: 'xfs on loop (same as reflink run)' });
    report({
      bench: 'storage',
      name: 'clone-1GiB-reflink',
      value: ms(rl.secs),
      unit: 'ms',
      method: rl.method,
      fs: 'xfs reflink=1 on loop',
      speedup_vs_copy_same_fs: Number((xfsCopy / rl.secs).toFixed(1)),
    });
  } finally {
    unmount();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'storage-bench-'));
try {
  await benchImport(dir);
  await benchClone(dir);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

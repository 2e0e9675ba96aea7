// Backup and restore throughput for one qube with a large volume, with and
// without compression, beside `tar | gzip` on the same file, and the peak
// resident memory of each. Each measurement runs in its own child process
// so its peak RSS is its own.
// Size: BACKUP_BENCH_MIB (default 1024).
import { spawnSync } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { report } from './common.js';
import { dom0PathDestination, runBackup } from '../qubesd/backup/destination.js';
import { restoreToDirectory } from '../qubesd/backup/restore.js';

const MIB = 1024 * 1024;
const PASS = 'benchmark passphrase';

interface PhaseResult {
  seconds: number;
  maxRssMiB: number;
  archiveBytes?: number;
}

/** A disk-image-like file: a third random, the rest runs of repeated bytes. */
function makeVolume(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(MIB);
  for (let off = 0, i = 0; off < size; off += MIB, i++) {
    if (i % 3 === 0) randomBytes(MIB).copy(block);
    else block.fill(i % 251);
    writeSync(fd, block, 0, Math.min(MIB, size - off));
  }
  closeSync(fd);
}

function qubesXml(size: number): Buffer {
  return Buffer.from(`<?xml version='1.0' encoding='UTF-8'?>\n<qubes version="3.0"><labels><label id="label-1" color="0xcc0000">red</label></labels><properties/><domains>
<domain id="domain-1" class="AppVM"><properties><property name="name">bench</property><property name="label">label-1</property></properties><features><feature name="backup-content">1</feature><feature name="backup-path">vm1/</feature><feature name="backup-size">${size}</feature></features></domain>
</domains></qubes>\n`);
}

async function phase(kind: string, dir: string): Promise<PhaseResult> {
  const volume = join(dir, 'private.img');
  const size = statSync(volume).size;
  const start = process.hrtime.bigint();
  let archiveBytes: number | undefined;
  if (kind.startsWith('backup-')) {
    const out = join(dir, kind);
    const r = await runBackup(
      {
        qubesXml: qubesXml(size),
        vms: [{ name: 'bench', subdir: 'vm1/', files: [{ name: 'private.img', size, open: () => createReadStream(volume, { highWaterMark: MIB }) }] }],
      },
      await dom0PathDestination(out),
      { passphrase: PASS, compression: kind === 'backup-gzip' },
    );
    archiveBytes = r.archiveBytes;
  } else if (kind.startsWith('restore-')) {
    const archive = join(dir, kind.replace('restore-', 'backup-'));
    await restoreToDirectory(archive, join(dir, `${kind}-out`), { passphrase: PASS });
  } else if (kind === 'tar-gzip') {
    const r = spawnSync('/bin/sh', ['-c', `tar -cf - -C "${dir}" private.img | gzip -c > "${dir}/baseline.tar.gz"`]);
    if (r.status !== 0) throw new Error(`tar | gzip failed: ${r.stderr}`);
    archiveBytes = statSync(join(dir, 'baseline.tar.gz')).size;
  } else if (kind === 'gunzip-tar') {
    const r = spawnSync('/bin/sh', ['-c', `mkdir -p "${dir}/baseline-out" && gzip -dc "${dir}/baseline.tar.gz" | tar -xf - -C "${dir}/baseline-out"`]);
    if (r.status !== 0) throw new Error(`gunzip | tar failed: ${r.stderr}`);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  // maxRSS is in KiB (meaningless for the shell baselines, not reported).
  return { seconds, maxRssMiB: process.resourceUsage().maxRSS / 1024, ...(archiveBytes !== undefined ? { archiveBytes } : {}) };
}

async function main(): Promise<void> {
  const [, , mode, kind, dir] = process.argv;
  if (mode === '--phase') {
    process.stdout.write(JSON.stringify(await phase(kind!, dir!)) + '\n');
    return;
  }
  const sizeMiB = Number(process.env.BACKUP_BENCH_MIB ?? 1024);
  const work = mkdtempSync(join(tmpdir(), 'backup-bench-'));
  try {
    makeVolume(join(work, 'private.img'), sizeMiB * MIB);
    const self = fileURLToPath(import.meta.url);
    const run = (k: string): PhaseResult => {
      const r = spawnSync(process.execPath, [self, '--phase', k, work], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`phase ${k} failed: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as PhaseResult;
    };
    const bytes = sizeMiB * MIB;
    const results = new Map<string, PhaseResult>();
    for (const k of ['backup-plain', 'restore-plain', 'backup-gzip', 'restore-gzip', 'tar-gzip', 'gunzip-tar']) {
      const r = run(k);
      results.set(k, r);
      if (k.startsWith('restore-')) rmSync(join(work, `${k}-out`), { recursive: true, force: true });
      if (k === 'restore-plain') rmSync(join(work, 'backup-plain'), { recursive: true, force: true });
      const mbps = bytes / 1e6 / r.seconds;
      report({
        bench: 'backup',
        name: k,
        value: Math.round(mbps * 10) / 10,
        unit: 'MB/s',
        sizeMiB,
        seconds: Math.round(r.seconds * 100) / 100,
        ...(r.archiveBytes !== undefined ? { archiveMiB: Math.round(r.archiveBytes / MIB) } : {}),
        ...(k === 'tar-gzip' || k === 'gunzip-tar' ? {} : { peakRssMiB: Math.round(r.maxRssMiB) }),
      });
    }
    const ratio = (a: string, b: string): number => Math.round((results.get(b)!.seconds / results.get(a)!.seconds) * 100) / 100;
    report({
      bench: 'backup',
      name: 'backup-gzip-vs-tar-gzip',
      value: ratio('backup-gzip', 'tar-gzip'),
      unit: 'x',
      note: 'throughput ratio, >1 means faster than tar | gzip',
    });
    report({
      bench: 'backup',
      name: 'restore-gzip-vs-gunzip-tar',
      value: ratio('restore-gzip', 'gunzip-tar'),
      unit: 'x',
      note: 'throughput ratio, >1 means faster than gzip -d | tar -x',
    });
    report({
      bench: 'backup',
      name: 'peak-rss',
      value: Math.round(Math.max(...[...results].filter(([k]) => !k.includes('tar')).map(([, r]) => r.maxRssMiB))),
      unit: 'MiB',
      sizeMiB,
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();

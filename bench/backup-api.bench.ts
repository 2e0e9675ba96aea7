// Backups end to end through qubesd: admin.backup.Execute of a qube whose
// 2 GiB private volume holds BACKUP_BENCH_MIB (default 1024) MiB of data,
// with and without compression, beside `tar -S | gzip` of the same image;
// then the restore of that archive into a second qubesd through the Admin
// API (bin/qubes-backup-restore --qubesd-socket's library). Reports MB/s of
// qube data, qubesd's peak memory (VmHWM) and the restorer's.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { report } from './common.js';
import { call, cleanup, startDaemon, type Daemon } from '../test/helpers/qubesd.js';
import { restoreThroughAdminApi } from '../qubesd/backup/admin-restore.js';

const MIB = 1024 * 1024;
const sizeMiB = Number(process.env.BACKUP_BENCH_MIB ?? 1024);

function peakMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function must(d: Daemon, method: string, dest: string, arg = '', payload = ''): Promise<void> {
  const r = await call(d.socket, method, dest, arg, payload);
  if (!r.ok) throw new Error(`${method} ${dest}: ${r.type}: ${r.message}`);
}

async function main(): Promise<void> {
  const first = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  await must(first, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await must(first, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
  await first.stop();
  // Disk-image-like data: a third random, the rest runs of repeated bytes.
  const image = join(first.base, 'appvms', 'work', 'private.img');
  const fd = openSync(image, 'r+');
  const block = Buffer.alloc(MIB);
  for (let i = 0; i < sizeMiB; i++) {
    if (i % 3 === 0) randomBytes(MIB).copy(block);
    else block.fill(i % 251);
    writeSync(fd, block, 0, MIB, i * MIB);
  }
  closeSync(fd);
  const profiles = join(first.dir, 'profiles');
  mkdirSync(profiles);
  const outs: Record<string, string> = {};
  for (const [name, compression] of [
    ['plain', 'False'],
    ['gzip', 'True'],
    ['template', 'True'],
  ] as const) {
    outs[name] = join(first.dir, `out-${name}`);
    mkdirSync(outs[name]!);
    writeFileSync(
      join(profiles, `${name}.conf`),
      `include: [${name === 'template' ? 'tpl' : 'work'}]\ndestination_vm: dom0\ndestination_path: ${outs[name]}\npassphrase_text: bench\ncompression: ${compression}\n`,
    );
  }
  const a = await startDaemon({ dir: first.dir, args: ['--log', 'none', '--backup-profile-dir', profiles] });
  const dataBytes = sizeMiB * MIB;
  const seconds: Record<string, number> = {};
  try {
    for (const name of ['plain', 'gzip', 'template']) {
      const t0 = process.hrtime.bigint();
      await must(a, 'admin.backup.Execute', 'dom0', name);
      seconds[name] = Number(process.hrtime.bigint() - t0) / 1e9;
      const archive = join(outs[name]!, readdirSync(outs[name]!)[0]!);
      if (name === 'template') {
        report({
          bench: 'backup-api',
          name: 'execute-empty-template',
          value: Math.round(seconds[name]! * 100) / 100,
          unit: 's',
          note: '12 GiB of sparse volumes (root+private), no data',
          archiveKiB: Math.round(statSync(archive).size / 1024),
        });
      } else {
        report({
          bench: 'backup-api',
          name: `execute-${name}`,
          value: Math.round((dataBytes / 1e6 / seconds[name]!) * 10) / 10,
          unit: 'MB/s',
          sizeMiB,
          seconds: Math.round(seconds[name]! * 100) / 100,
          archiveMiB: Math.round(statSync(archive).size / MIB),
        });
      }
    }
    report({ bench: 'backup-api', name: 'qubesd-peak-rss', value: peakMiB(a.proc.pid!), unit: 'MiB', sizeMiB });

    const t1 = process.hrtime.bigint();
    const base = spawnSync('/bin/sh', [
      '-c',
      `tar -cSf - -C "${join(first.base, 'appvms', 'work')}" private.img | gzip -c > "${join(first.dir, 'baseline.tar.gz')}"`,
    ]);
    if (base.status !== 0) throw new Error(`tar | gzip failed: ${base.stderr}`);
    const tarSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    report({ bench: 'backup-api', name: 'tar-S-gzip', value: Math.round((dataBytes / 1e6 / tarSeconds) * 10) / 10, unit: 'MB/s', sizeMiB });
    report({
      bench: 'backup-api',
      name: 'execute-gzip-vs-tar-gzip',
      value: Math.round((tarSeconds / seconds.gzip!) * 100) / 100,
      unit: 'x',
      note: 'throughput ratio, >1 means faster than tar -S | gzip',
    });

    const b = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
    try {
      await must(b, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
      const archive = join(outs.gzip!, readdirSync(outs.gzip!)[0]!);
      const t2 = process.hrtime.bigint();
      await restoreThroughAdminApi(archive, { passphrase: 'bench', socket: b.socket, internalSocket: b.internalSocket });
      const rs = Number(process.hrtime.bigint() - t2) / 1e9;
      report({
        bench: 'backup-api',
        name: 'restore-admin-api-gzip',
        value: Math.round((dataBytes / 1e6 / rs) * 10) / 10,
        unit: 'MB/s',
        sizeMiB,
        seconds: Math.round(rs * 100) / 100,
        note: 'verify pass + restore pass',
        restorerPeakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      });
    } finally {
      await b.stop();
      cleanup(b);
    }
  } finally {
    await a.stop();
    cleanup(a);
    rmSync(first.dir, { recursive: true, force: true });
  }
}

await main();

// Shared fixtures for the backup tests: temporary directories, small
// synthetic qubes, and an in-memory destination.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { BackupSource } from '../../qubesd/backup/writer.js';

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'backup-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function have(cmd: string): boolean {
  return spawnSync('/bin/sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Fast scrypt cost for tests (the format allows any cost). */
export const FAST = { logN: 8, r: 8, p: 1 };

/** Data with both compressible runs and random bytes. */
export function sampleData(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += 8192) {
    if ((off / 8192) % 3 === 0) randomBytes(Math.min(8192, size - off)).copy(b, off);
    else b.fill(off % 251, off, Math.min(size, off + 8192));
  }
  return b;
}

/** A qubes.xml shaped like the one Qubes writes into backups (labels,
 * global properties, domains with backup-* features), so that the real
 * client's parser accepts it too. */
export function qubesXmlFor(qubes: Array<{ name: string; klass: string; path: string; size: number }>): Buffer {
  const doms = qubes
    .map(
      (q, i) => `    <domain id="domain-${i + 1}" class="${q.klass}">
      <properties><property name="qid">${i + 1}</property><property name="name">${q.name}</property><property name="label">label-1</property></properties>
      <features><feature name="backup-content">1</feature><feature name="backup-path">${q.path}</feature><feature name="backup-size">${q.size}</feature></features>
      <tags/>
    </domain>`,
    )
    .join('\n');
  return Buffer.from(`<?xml version='1.0' encoding='UTF-8'?>
<qubes version="3.0">
  <labels><label id="label-1" color="0xcc0000">red</label></labels>
  <properties><property name="default_kernel">6.1</property></properties>
  <domains>
    <domain id="domain-0" class="AdminVM"><properties><property name="label">label-1</property></properties><features><feature name="backup-content"></feature></features><tags/></domain>
${doms}
  </domains>
</qubes>
`);
}

export interface SampleQube {
  name: string;
  klass: string;
  subdir: string;
  files: Record<string, Buffer>;
}

export function sourceOf(qubes: SampleQube[]): BackupSource {
  return {
    qubesXml: qubesXmlFor(qubes.map((q) => ({ name: q.name, klass: q.klass, path: q.subdir, size: Object.values(q.files).reduce((a, b) => a + b.length, 0) }))),
    vms: qubes.map((q) => ({
      name: q.name,
      subdir: q.subdir,
      files: Object.entries(q.files).map(([name, data]) => ({ name, size: data.length, open: () => Readable.from(pieces(data)) })),
    })),
  };
}

function* pieces(data: Buffer): Generator<Buffer> {
  for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
}

/** A destination collecting everything in memory, optionally failing with
 * `error` once more than `failAfter` bytes have been written. */
export function memorySink(failAfter = Infinity, error?: NodeJS.ErrnoException): Writable & { data(): Buffer } {
  const parts: Buffer[] = [];
  let n = 0;
  const w = new Writable({
    write(chunk: Buffer, _e, cb) {
      n += chunk.length;
      if (n > failAfter) {
        cb(error ?? new Error('destination failed'));
        return;
      }
      parts.push(chunk);
      cb();
    },
  });
  return Object.assign(w, { data: () => Buffer.concat(parts) });
}

export function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

// The project's one way to replace a file so that a reader (or a crash) sees
// either the old content or the new one, whole: write a temporary file with a
// unique name in the same directory, fsync it, rename it over the target and
// fsync the directory so that the rename itself survives a power loss.
// Concurrent writers of the same file each use their own temporary file, so
// they never race on one name; the last rename wins, whole.
// (npm's write-file-atomic does not fsync the directory, hence this module.)
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** permission bits of a newly created file (default 0o644, before umask) */
  mode?: number;
  /** create the directory (and its parents) with these bits when it is missing */
  dirMode?: number;
}

export interface AtomicWriteSyncOptions extends AtomicWriteOptions {
  /** runs on the written temporary file before its fsync (ownership, exact mode bits) */
  prepare?: (fd: number) => void;
}

/**
 * A name no other writer (in this or another process) uses at the same time.
 * It starts with a dot and ends in .tmp, which no loader of ours reads; a
 * long target name is left out, so that the temporary name fits wherever the
 * target's does.
 */
function tempPathFor(path: string): string {
  const base = basename(path);
  const shown = Buffer.byteLength(base) <= 200 ? base : 'long-name';
  return join(dirname(path), `.${shown}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Replace `path` with `data` atomically and durably. */
export async function atomicWriteFile(path: string, data: string | Uint8Array, o: AtomicWriteOptions = {}): Promise<void> {
  if (o.dirMode !== undefined) await mkdir(dirname(path), { recursive: true, mode: o.dirMode });
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'wx', o.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dirname(path));
}

/** The same, for the few callers that cannot wait (start-up, exit paths). */
export function atomicWriteFileSync(path: string, data: string | Uint8Array, o: AtomicWriteSyncOptions = {}): void {
  if (o.dirMode !== undefined) mkdirSync(dirname(path), { recursive: true, mode: o.dirMode });
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, 'wx', o.mode ?? 0o644);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
      o.prepare?.(fd);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    throw e;
  }
  fsyncDirSync(dirname(path));
}

/** fsyncDir, for callers that cannot wait. */
export function fsyncDirSync(dir: string): void {
  const dfd = openSync(dir, 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

/** fsync a directory, so that a rename or a new entry in it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try { await dh.sync(); } finally { await dh.close(); }
}

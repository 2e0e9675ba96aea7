// The project's one way to replace a file so that a reader (or a crash) sees
// either the old content or the new one, whole: write a temporary file with a
// unique name in the same directory, fsync it, rename it over the target and
// fsync the directory so that the rename itself survives a power loss.
// Concurrent writers of the same file each use their own temporary file, so
// they never race on one name; the last rename wins, whole.
// (npm's write-file-atomic does not fsync the directory, hence this module.)
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { chown, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** permission bits of a newly created file (default 0o644, before umask) */
  mode?: number;
  /** give the file exactly `mode`, whatever the umask */
  exactMode?: boolean;
  /** the new file keeps the owner and group of the file it replaces (where the process may give files away) */
  keepOwner?: boolean;
  /** create the directory (and its parents) with these bits when it is missing */
  dirMode?: number;
  /** the temporary file's name; callers that recognise crash leftovers by name
   * choose it (it must be unique per write and in the target's directory) */
  tempPath?: (path: string) => string;
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

/**
 * Replace `path` with a file that `fill` creates at the temporary path it is
 * given (by writing, copying, linking...): the file is then fsynced, renamed
 * over `path` and the directory fsynced. On failure the temporary file goes.
 */
export async function atomicReplace(path: string, fill: (tmp: string) => Promise<void>, o: AtomicWriteOptions = {}): Promise<void> {
  if (o.dirMode !== undefined) await mkdir(dirname(path), { recursive: true, mode: o.dirMode });
  const tmp = (o.tempPath ?? tempPathFor)(path);
  try {
    const old = o.keepOwner ? await stat(path).catch(() => null) : null;
    await fill(tmp);
    if (old) await chown(tmp, old.uid, old.gid).catch(() => undefined); // only root may give a file away
    const fh = await open(tmp, 'r');
    try {
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

/** Replace `path` with `data` atomically and durably. */
export async function atomicWriteFile(path: string, data: string | Uint8Array, o: AtomicWriteOptions = {}): Promise<void> {
  await atomicReplace(
    path,
    async (tmp) => {
      const fh = await open(tmp, 'wx', o.mode ?? 0o644);
      try {
        await fh.writeFile(data);
        if (o.exactMode) await fh.chmod(o.mode ?? 0o644);
      } finally {
        await fh.close();
      }
    },
    o,
  );
}

/** The same, for the few callers that cannot wait (start-up, exit paths). */
export function atomicWriteFileSync(path: string, data: string | Uint8Array, o: AtomicWriteSyncOptions = {}): void {
  if (o.keepOwner) throw new Error('atomicWriteFileSync: keepOwner is not supported');
  if (o.dirMode !== undefined) mkdirSync(dirname(path), { recursive: true, mode: o.dirMode });
  const tmp = (o.tempPath ?? tempPathFor)(path);
  try {
    const fd = openSync(tmp, 'wx', o.mode ?? 0o644);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
      if (o.exactMode) fchmodSync(fd, o.mode ?? 0o644);
      o.prepare?.(fd);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created, or already renamed */
    }
    throw e;
  }
  fsyncDirSync(dirname(path));
}

/** fsyncDir, for callers that cannot wait. */
export function fsyncDirSync(dir: string): void {
  const dfd = openSync(dir, 'r');
  try {
    fsyncDirFd(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** fsync a directory, so that a rename or a new entry in it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } catch (e) {
    if (!refusesDirSync(e)) throw e;
  } finally {
    await dh.close();
  }
}

function fsyncDirFd(fd: number): void {
  try {
    fsyncSync(fd);
  } catch (e) {
    if (!refusesDirSync(e)) throw e;
  }
}

/** Some filesystems do not implement fsync on a directory: there is nothing more to make durable there. */
function refusesDirSync(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EINVAL' || code === 'ENOTSUP' || code === 'EOPNOTSUPP';
}

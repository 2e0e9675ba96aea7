// File operations for image-file pools. Every operation that produces a
// file builds it under a temporary name next to its destination and lets
// lib/atomic-write.ts make it durable and rename it into place, so that an
// image is either the old one or the complete new one, never a mix.
// Temporary names contain '~' so that leftovers of a crash are recognised
// and removed.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { atomicReplace } from '../../lib/atomic-write.js';
import { QubesError, StoragePoolException } from '../errors.js';
import { systemErrorWords } from '../../lib/system-error.js';

export type CopyMethod = 'reflink' | 'copy';
/** auto: reflink where the filesystem can, else a sparse copy; always: reflink or fail; never: sparse copy */
export type ReflinkMode = 'auto' | 'always' | 'never';

/** A failed system call in words (no errno code, no path). */
export function errnoText(e: unknown): string {
  return systemErrorWords(e);
}

/** Turn an I/O failure into the clean error a client gets. */
export function ioError(what: string, file: string, e: unknown): Error {
  // the qube's directory and the file name say which volume; dom0's layout above them is no caller's business
  return StoragePoolException(`${what} ${path.basename(path.dirname(file))}/${path.basename(file)}: ${errnoText(e)}`);
}

export function tempNameFor(dst: string): string {
  return `${dst}~${randomBytes(6).toString('hex')}`;
}

export async function removeFile(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('Cannot remove', file, e);
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fsp.lstat(file);
    return true;
  } catch {
    return false;
  }
}

export async function fsyncPath(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Make a rename or unlink in this directory durable. */
export async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch {
    /* some filesystems refuse fsync on directories */
  }
}

export async function renameFile(src: string, dst: string): Promise<void> {
  try {
    await fsp.rename(src, dst);
  } catch (e) {
    throw ioError('Cannot rename to', dst, e);
  }
  await fsyncDir(path.dirname(dst));
}

/** Create the directory and any missing parents. */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o775 });
  } catch (e) {
    throw ioError('Cannot create directory', dir, e);
  }
}

/** Remove a directory if it is empty; anything else is left alone. */
export async function removeEmptyDir(dir: string): Promise<boolean> {
  try {
    await fsp.rmdir(dir);
    await fsyncDir(path.dirname(dir));
    return true;
  } catch {
    return false;
  }
}

/** Logical size, or null when missing. */
export async function fileSize(file: string): Promise<number | null> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return null;
  }
}

/** Bytes allocated on disk (sparse files count only their data). */
export async function diskUsage(file: string): Promise<number> {
  try {
    return (await fsp.lstat(file)).blocks * 512;
  } catch {
    return 0;
  }
}

/** A new empty sparse file of `size` bytes at `dst` (replacing it atomically). */
export async function createSparseFile(dst: string, size: number, mode = 0o664): Promise<void> {
  await ensureDir(path.dirname(dst));
  try {
    await atomicReplace(
      dst,
      async (tmp) => {
        const fh = await fsp.open(tmp, 'wx', mode);
        try {
          await fh.chmod(mode);
          await fh.truncate(size);
        } finally {
          await fh.close();
        }
      },
      { tempPath: tempNameFor },
    );
  } catch (e) {
    throw ioError('Cannot create image', dst, e);
  }
}

/** Change a file's size in place (growing adds zeros, as a hole). */
export async function truncateFile(file: string, size: number): Promise<void> {
  try {
    const fh = await fsp.open(file, 'r+');
    try {
      await fh.truncate(size);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw ioError('Cannot resize', file, e);
  }
}

function runCp(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  return new Promise((resolve) => {
    execFile('cp', args, { maxBuffer: 1 << 20 }, (err, _stdout, stderr) => resolve({ ok: !err, stderr: String(stderr) }));
  });
}

/** cp's wording when a reflink is impossible here (as opposed to a real failure). */
const NO_REFLINK = /Operation not supported|Invalid cross-device link|Inappropriate ioctl|Invalid argument|Function not implemented/;

/**
 * Copy `src` to a new inode at `dst` (replacing dst atomically), by reflink
 * where possible per `mode`, else by a copy that keeps holes. `size` resizes
 * the copy. Returns how the data got there.
 */
export async function cloneFile(src: string, dst: string, opts: { mode?: ReflinkMode; size?: number } = {}): Promise<CopyMethod> {
  const mode = opts.mode ?? 'auto';
  await ensureDir(path.dirname(dst));
  let method: CopyMethod = 'copy';
  try {
    await atomicReplace(
      dst,
      async (tmp) => {
        let done = false;
        if (mode !== 'never') {
          const r = await runCp(['--reflink=always', '--', src, tmp]);
          if (r.ok) {
            done = true;
            method = 'reflink';
          } else {
            await fsp.unlink(tmp).catch(() => undefined);
            if (mode === 'always' || !NO_REFLINK.test(r.stderr)) throw StoragePoolException(`Error while copying ${src} to ${dst}: ${cleanCpError(r.stderr)}`);
          }
        }
        if (!done) {
          // after a refused reflink the filesystem cannot share extents, so cp's
          // in-kernel copy is a real copy; 'never' must say so explicitly, or
          // cp's copy_file_range could still share extents on XFS/btrfs
          const r = await runCp([...(mode === 'never' ? ['--reflink=never'] : []), '--sparse=always', '--', src, tmp]);
          if (!r.ok) throw StoragePoolException(`Error while copying ${src} to ${dst}: ${cleanCpError(r.stderr)}`);
        }
        const fh = await fsp.open(tmp, 'r+');
        try {
          await fh.chmod(0o664);
          if (opts.size !== undefined) await fh.truncate(opts.size);
        } finally {
          await fh.close();
        }
      },
      { tempPath: tempNameFor },
    );
  } catch (e) {
    if (e instanceof QubesError) throw e;
    throw ioError('Cannot copy to', dst, e);
  }
  return method;
}

function cleanCpError(stderr: string): string {
  const line = stderr.trim().split('\n').pop() ?? '';
  const m = /: ([^:]+)$/.exec(line);
  return m ? m[1]! : line || 'cp failed';
}

/** A second name for `src` at `dst`, replacing dst atomically (same inode: cheap, shares data). */
export async function linkFile(src: string, dst: string): Promise<void> {
  try {
    await atomicReplace(dst, (tmp) => fsp.link(src, tmp), { tempPath: tempNameFor });
  } catch (e) {
    throw ioError('Cannot link', dst, e);
  }
}

/** Does this directory's filesystem make reflink copies? (probes with two temp files) */
export async function supportsReflink(dir: string): Promise<boolean> {
  const a = path.join(dir, `.reflink-probe~${randomBytes(6).toString('hex')}`);
  const b = `${a}-copy`;
  try {
    await fsp.writeFile(a, 'foo');
    return (await runCp(['--reflink=always', '--', a, b])).ok;
  } finally {
    await fsp.unlink(a).catch(() => undefined);
    await fsp.unlink(b).catch(() => undefined);
  }
}

/** Filesystem size and used bytes of the filesystem holding `dir`, or null if it does not exist. */
export async function fsUsage(dir: string): Promise<{ size: number; used: number } | null> {
  try {
    const s = await fsp.statfs(dir);
    return { size: s.bsize * s.blocks, used: s.bsize * (s.blocks - s.bfree) };
  } catch {
    return null;
  }
}

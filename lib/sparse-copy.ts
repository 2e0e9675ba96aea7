// Copying a stream into a prepared image file, sparse (all-zero blocks become
// holes) and with an exact byte count, as Qubes' import script's
// `dd conv=sparse,notrunc,nocreat,fdatasync` does. qubesd's in-process import,
// the handler program's volume import, the Admin-API restore and the backup
// reader all copy this way, so it lives below all of them.
import type * as fsp from 'node:fs/promises';
import { open } from 'node:fs/promises';

const ZERO = Buffer.alloc(4096);

export type CopyResult = { ok: true; bytes: number } | { ok: false; bytes: number; error: string };

/**
 * Copy exactly `size` bytes of `input` into the existing file `file` (as the
 * Qubes script's `dd conv=sparse,notrunc,nocreat,fdatasync` does): all-zero
 * chunks are skipped to keep the image sparse, the file is never truncated
 * nor created, and the data is on disk when this resolves. Memory use is one
 * chunk at a time, whatever the size.
 */
export async function copyStreamInto(
  input: AsyncIterable<Buffer | string>,
  file: string,
  size: number,
  opts: {
    open?: (file: string, flags: string) => Promise<fsp.FileHandle>;
    /**
     * Read the next chunk while the last one is being written (the write runs
     * on libuv's thread pool, the read on the event loop: on two cores both
     * go at once). Only for an input that leaves a chunk's memory alone until
     * the chunk after the next is asked for.
     */
    overlap?: boolean;
  } = {},
): Promise<CopyResult> {
  let fh: fsp.FileHandle;
  try {
    fh = await (opts.open ?? open)(file, 'r+');
  } catch {
    return { ok: false, bytes: 0, error: 'error copying data' };
  }
  let pos = 0;
  let writing: Promise<void> = Promise.resolve();
  try {
    for await (const raw of input) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      await writing;
      if (pos + chunk.length > size) {
        const room = size - pos;
        if (room > 0) await writeSparse(fh, chunk.subarray(0, room), pos);
        return { ok: false, bytes: size, error: `too much data (expected ${size} bytes)` };
      }
      writing = writeSparse(fh, chunk, pos);
      // its failure is seen at the next await; not an unhandled rejection meanwhile
      writing.catch(() => undefined);
      if (!opts.overlap) await writing;
      pos += chunk.length;
    }
    await writing;
    if (pos < size) return { ok: false, bytes: pos, error: `not enough data (copied ${pos} bytes, expected ${size} bytes)` };
    await fh.datasync();
    return { ok: true, bytes: pos };
  } catch {
    return { ok: false, bytes: pos, error: 'error copying data' };
  } finally {
    // the input may fail while a write is still running: it ends before the close
    await writing.catch(() => undefined);
    await fh.close().catch(() => undefined);
  }
}

/** Holes are made at the filesystem's block size, aligned in the file. */
const BLOCK = 4096;

/** Writes `chunk` at `pos` of a file that reads as zeros there (a fresh
 * image), leaving out every aligned block that is all zeros: runs of
 * non-zero blocks go out in one write each. */
export async function writeSparse(fh: fsp.FileHandle, chunk: Buffer, pos: number): Promise<void> {
  const isZero = (from: number, to: number): boolean => chunk.compare(ZERO, 0, to - from, from, to) === 0;
  let at = 0;
  while (at < chunk.length) {
    // one block: up to the next block boundary of the file
    const end = (from: number): number => Math.min(chunk.length, from + BLOCK - ((pos + from) % BLOCK));
    if (isZero(at, end(at))) {
      at = end(at);
      continue;
    }
    let runEnd = end(at);
    while (runEnd < chunk.length && !isZero(runEnd, end(runEnd))) runEnd = end(runEnd);
    let done = at;
    while (done < runEnd) {
      const { bytesWritten } = await fh.write(chunk, done, runEnd - done, pos + done);
      done += bytesWritten;
    }
    at = runEnd;
  }
}

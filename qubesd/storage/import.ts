// Streaming volume import (admin.vm.volume.Import / ImportWithSize). The data
// never passes through qubesd: ImportBegin hands out a file, the writer copies
// its input there in bounded chunks, and ImportEnd commits or discards. The
// byte count must match the declared size exactly, or nothing is committed.
import * as fsp from 'node:fs/promises';
import type { StorageManager } from './manager.js';
import type { StorageVm } from './model-view.js';
import { replyError } from '../api/errors.js';

const ZERO = Buffer.alloc(4096);

export type CopyResult = { ok: true; bytes: number } | { ok: false; bytes: number; error: string };

/**
 * Copy exactly `size` bytes of `input` into the existing file `file` (as the
 * Qubes script's `dd conv=sparse,notrunc,nocreat,fdatasync` does): all-zero
 * chunks are skipped to keep the image sparse, the file is never truncated
 * nor created, and the data is on disk when this resolves. Memory use is one
 * chunk at a time, whatever the size.
 */
export async function copyStreamInto(input: AsyncIterable<Buffer | string>, file: string, size: number,
  opts: { open?: (file: string, flags: string) => Promise<fsp.FileHandle> } = {}): Promise<CopyResult> {
  let fh: fsp.FileHandle;
  try { fh = await (opts.open ?? fsp.open)(file, 'r+'); } catch { return { ok: false, bytes: 0, error: 'error copying data' }; }
  let pos = 0;
  try {
    for await (const raw of input) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      if (pos + chunk.length > size) {
        const room = size - pos;
        if (room > 0) await writeSparse(fh, chunk.subarray(0, room), pos);
        return { ok: false, bytes: size, error: `too much data (expected ${size} bytes)` };
      }
      await writeSparse(fh, chunk, pos);
      pos += chunk.length;
    }
    if (pos < size) return { ok: false, bytes: pos, error: `not enough data (copied ${pos} bytes, expected ${size} bytes)` };
    await fh.datasync();
    return { ok: true, bytes: pos };
  } catch {
    return { ok: false, bytes: pos, error: 'error copying data' };
  } finally {
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
    if (isZero(at, end(at))) { at = end(at); continue; }
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

/**
 * The whole import in-process: begin, stream, end. `size` undefined keeps the
 * volume's current size (admin.vm.volume.Import), otherwise the volume gets
 * that size (ImportWithSize). Resolves when the new data is committed; on any
 * failure the old data is untouched and the error says why.
 */
export async function importFromStream(manager: StorageManager, vm: StorageVm, volume: string,
  input: AsyncIterable<Buffer | string>, size?: number,
  opts: { open?: (file: string, flags: string) => Promise<fsp.FileHandle> } = {}): Promise<{ bytes: number }> {
  const target = await manager.importBegin(vm, volume, size ?? null);
  let result: CopyResult;
  try {
    result = await copyStreamInto(input, target.path, target.size, opts);
  } catch (e) {
    result = { ok: false, bytes: 0, error: replyError(e)[1] };
  }
  await manager.importEnd(vm, volume, result.ok, result.ok ? '' : result.error);
  return { bytes: result.bytes };
}

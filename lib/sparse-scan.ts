// Sparse volumes: a qube's 10 GiB root image may hold 2 GiB of data. Qubes
// stores volumes as GNU sparse 1.0 tar entries (a map of the data regions,
// then only those regions), and so do we: holes are neither compressed nor
// encrypted nor sent. Node has no SEEK_DATA, so the map comes from reading
// the file once and finding all-zero blocks; a block of zeros written by
// the qube is indistinguishable from a hole and restores the same.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { writeSparse } from './sparse-copy.js';

/** Granularity of holes: the usual filesystem block. */
const BLOCK = 4096;
const READ_SIZE = 4 << 20;
const ZEROS = Buffer.alloc(READ_SIZE);

export type SparseMap = Array<[offset: number, length: number]>;

function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.compare(ZEROS, 0, end - start, start, end) === 0;
}

/** The same open file again, bypassing the page cache (O_DIRECT), or null
 * where that is impossible (tmpfs...). Reading a hole through the page cache
 * fills it with zero pages, which on a busy machine costs seconds per GiB;
 * read directly, a hole costs next to nothing. Reopening through /proc
 * gives the very file `fh` has open, even if its path was renamed over. */
async function openDirect(fh: FileHandle): Promise<FileHandle | null> {
  if (!constants.O_DIRECT) return null;
  try {
    return await open(`/proc/self/fd/${fh.fd}`, constants.O_RDONLY | constants.O_DIRECT);
  } catch {
    return null;
  }
}

const ALIGN = 4096;

/** O_DIRECT wants the memory aligned too, and Node cannot say where a
 * buffer lies (a large allocation usually starts 16 bytes past a page):
 * the first offset in an over-sized buffer that a direct read accepts is
 * aligned. Returns the whole buffer when no offset works. */
async function alignedBuffer(direct: FileHandle): Promise<Buffer> {
  const big = Buffer.allocUnsafeSlow(READ_SIZE + ALIGN);
  for (let k = 0; k < ALIGN; k += 16) {
    try {
      await direct.read(big, k, BLOCK, 0);
      return big.subarray(k, k + READ_SIZE);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') break;
    }
  }
  return big;
}

/** The data regions of the first `size` bytes of a file, in order. */
export async function scanDataRegions(fh: FileHandle, size: number, signal?: AbortSignal): Promise<SparseMap> {
  const map: SparseMap = [];
  let direct = await openDirect(fh);
  const buf = direct ? await alignedBuffer(direct) : Buffer.allocUnsafeSlow(READ_SIZE);
  if (direct && buf.byteOffset === 0 && buf.length === READ_SIZE + ALIGN) {
    await direct.close().catch(() => undefined);
    direct = null;
  }
  let regionStart = -1;
  const close = (end: number): void => {
    if (regionStart >= 0) {
      map.push([regionStart, end - regionStart]);
      regionStart = -1;
    }
  };
  const read = async (pos: number, want: number): Promise<number> => {
    if (direct) {
      try {
        // O_DIRECT wants whole blocks; a short count says where the file ends.
        const { bytesRead } = await direct.read(buf, 0, Math.ceil(want / BLOCK) * BLOCK, pos);
        return Math.min(bytesRead, want);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
        await direct.close().catch(() => undefined);
        direct = null; // not for this filesystem or buffer: read normally
      }
    }
    return (await fh.read(buf, 0, want, pos)).bytesRead;
  };
  try {
    for (let pos = 0; pos < size;) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
      const bytesRead = await read(pos, Math.min(READ_SIZE, size - pos));
      if (bytesRead === 0) throw new Error(`file ended after ${pos} of ${size} bytes`);
      if (isZero(buf, 0, bytesRead)) {
        close(pos);
      } else {
        for (let off = 0; off < bytesRead; off += BLOCK) {
          const end = Math.min(off + BLOCK, bytesRead);
          if (isZero(buf, off, end)) close(pos + off);
          else if (regionStart < 0) regionStart = pos + off;
        }
      }
      pos += bytesRead;
    }
  } finally {
    await direct?.close().catch(() => undefined);
  }
  close(size);
  return map;
}

/** The map as GNU sparse 1.0 stores it at the start of the entry's data:
 * decimal numbers one per line (count, then offset/length pairs), padded
 * with zeros to a 512-byte block. GNU tar ends the map with the file's size
 * and a zero length; so do we, so that any tar sees the file's full size. */
export function encodeSparseMap(map: SparseMap, realSize: number): Buffer {
  const entries = [...map, [realSize, 0] as [number, number]];
  const text = `${entries.length}\n` + entries.map(([o, l]) => `${o}\n${l}\n`).join('');
  const body = Buffer.from(text, 'ascii');
  const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  body.copy(padded);
  return padded;
}

/** Writes a stream into a new file, leaving holes where whole blocks are
 * zero (a restored 10 GiB root image with 2 GiB of data takes 2 GiB), and
 * makes it durable. */
export async function writeSparseFile(input: AsyncIterable<Buffer>, path: string, mode = 0o600): Promise<number> {
  const fh = await open(path, 'wx', mode);
  let pos = 0;
  try {
    for await (const piece of input) {
      await writeSparse(fh, piece, pos);
      pos += piece.length;
    }
    await fh.truncate(pos);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return pos;
}

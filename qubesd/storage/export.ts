// admin.vm.volume.Export: qubesd reads the committed image itself and streams
// it (lib/volume-export.ts: a map of the data extents, then their bytes), so
// no other process ever reads qubesd's files, and holes cost neither reading
// nor sending. The file is opened before anything is sent: a qube starting,
// a revert or an import replace images by rename, and the open file keeps
// the image exactly as it was when the call came.
import type { FileHandle } from 'node:fs/promises';
import { scanDataRegions } from '../../lib/sparse-scan.js';
import { encodeExportHeader, type ExtentMap } from '../../lib/volume-export.js';

/** Holes shorter than this are sent as zeros: a map entry costs more than a few KiB of zeros, and maps stay short. */
const MIN_HOLE = 64 << 10;
const READ_CHUNK = 4 << 20;

export function coalesce(map: ExtentMap, minHole = MIN_HOLE): ExtentMap {
  const out: ExtentMap = [];
  for (const [o, l] of map) {
    const last = out[out.length - 1];
    if (last && o - (last[0] + last[1]) < minHole) last[1] = o + l - last[0];
    else out.push([o, l]);
  }
  return out;
}

/**
 * The export content of an open image of `size` bytes. The handle is closed
 * when the iteration ends, however it ends. Errors before the first chunk
 * (the scan) reach the caller before any byte was sent.
 */
export async function* exportContent(fh: FileHandle, size: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  try {
    const extents = coalesce(await scanDataRegions(fh, size, signal));
    yield encodeExportHeader({ size, extents });
    // one buffer for the whole export, reused: the dispatcher has written and
    // drained a chunk before it asks for the next (StreamedContent). A new
    // 4 MiB buffer per read is page-faulted in, and that cost more than the read.
    const buf = Buffer.allocUnsafeSlow(
      Math.min(
        READ_CHUNK,
        extents.reduce((m, [, l]) => Math.max(m, l), 1),
      ),
    );
    for (const [start, length] of extents) {
      for (let pos = start, end = start + length; pos < end;) {
        if (signal?.aborted) throw new Error('export aborted');
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
        if (bytesRead === 0) throw new Error('image shorter than its size');
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}

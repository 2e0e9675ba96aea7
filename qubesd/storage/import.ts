// Streaming volume import (admin.vm.volume.Import / ImportWithSize). The data
// never passes through qubesd: ImportBegin hands out a file, the writer copies
// its input there in bounded chunks, and ImportEnd commits or discards. The
// byte count must match the declared size exactly, or nothing is committed.
import type * as fsp from 'node:fs/promises';
import { copyStreamInto, type CopyResult } from '../../lib/sparse-copy.js';
import type { StorageManager } from './manager.js';
import type { StorageVm } from './model-view.js';
import { replyError } from '../errors.js';

/**
 * The whole import in-process: begin, stream, end. `size` undefined keeps the
 * volume's current size (admin.vm.volume.Import), otherwise the volume gets
 * that size (ImportWithSize). Resolves when the new data is committed; on any
 * failure the old data is untouched and the error says why.
 */
export async function importFromStream(
  manager: StorageManager,
  vm: StorageVm,
  volume: string,
  input: AsyncIterable<Buffer | string>,
  size?: number,
  opts: { open?: (file: string, flags: string) => Promise<fsp.FileHandle> } = {},
): Promise<{ bytes: number }> {
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

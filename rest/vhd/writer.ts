// A dynamic VHD, written as one stream from a volume's data extents (what
// admin.vm.volume.Export gives): footer copy, dynamic header, block
// allocation table, then only the 2 MiB blocks that hold data (each with its
// sector bitmap), then the footer. Blocks without data are not stored, so a
// 10 GiB volume holding 100 MiB makes a VHD of about 100 MiB. The length is
// known before the first byte (Content-Length), and memory use is one block.
import { randomBytes } from 'node:crypto';
import { SECTOR, vhdTimestamp } from './geometry.js';
import { DISK_DYNAMIC, encodeFooter } from './footer.js';
import { BLOCK_SIZE, HEADER_SIZE, bitmapBytes, encodeHeader } from './header.js';
import type { ExtentMap } from '../../lib/volume-export.js';

export interface VhdPlan {
  /** the whole file's length in bytes */
  length: number;
  /** indexes of the blocks stored, ascending */
  blocks: number[];
}

const BITMAP = bitmapBytes(BLOCK_SIZE);
const TABLE_OFFSET = SECTOR + HEADER_SIZE;

function tableBytes(entries: number): number {
  return Math.ceil((entries * 4) / SECTOR) * SECTOR;
}

/** Which blocks hold data, and how long the file will be. */
export function planVhd(size: number, extents: ExtentMap): VhdPlan {
  const blocks: number[] = [];
  for (const [o, l] of extents) {
    for (let b = Math.floor(o / BLOCK_SIZE), last = Math.floor((o + l - 1) / BLOCK_SIZE); b <= last; b++) {
      if (blocks[blocks.length - 1] !== b) blocks.push(b);
    }
  }
  const entries = Math.ceil(size / BLOCK_SIZE);
  return { blocks, length: TABLE_OFFSET + tableBytes(entries) + blocks.length * (BITMAP + BLOCK_SIZE) + SECTOR };
}

export interface VhdWriteOptions {
  date?: Date;
  uniqueId?: Buffer;
  /**
   * The consumer is done with a yielded buffer once it asks for the next
   * (rest/disk-io.ts sendInTurn): data blocks are then built in two buffers
   * used in turn instead of a new 2 MiB buffer each.
   */
  reuseBlocks?: boolean;
}

/**
 * The VHD's bytes. `pieces` are the volume's data as [offset, bytes], in
 * ascending order, inside `extents` (lib/volume-export.ts extentPieces).
 */
export async function* writeVhd(size: number, extents: ExtentMap, pieces: AsyncIterable<[number, Buffer]>, opts: VhdWriteOptions = {}): AsyncGenerator<Buffer> {
  if (size % SECTOR !== 0) throw new RangeError('a VHD holds whole 512-byte sectors');
  const plan = planVhd(size, extents);
  const entries = Math.ceil(size / BLOCK_SIZE);
  const footer = encodeFooter({
    size,
    timestamp: vhdTimestamp(opts.date ?? new Date()),
    uniqueId: opts.uniqueId ?? randomBytes(16),
    dataOffset: BigInt(SECTOR),
    diskType: DISK_DYNAMIC,
  });
  yield footer;
  yield encodeHeader({ tableOffset: TABLE_OFFSET, maxTableEntries: entries, blockSize: BLOCK_SIZE });
  const bat = Buffer.alloc(tableBytes(entries), 0xff);
  const firstBlock = TABLE_OFFSET + bat.length;
  plan.blocks.forEach((b, i) => bat.writeUInt32BE((firstBlock + i * (BITMAP + BLOCK_SIZE)) / SECTOR, b * 4));
  yield bat;

  // every sector of a stored block is marked present: zeros inside a block
  // with data are data (as Xen Orchestra writes them)
  const bitmap = Buffer.alloc(BITMAP, 0xff);
  let current = -1;
  let block: Buffer | null = null;
  const flush = function* (): Generator<Buffer> {
    if (block) {
      yield bitmap;
      yield block;
      block = null;
    }
  };
  const spare = opts.reuseBlocks ? [Buffer.allocUnsafeSlow(BLOCK_SIZE), Buffer.allocUnsafeSlow(BLOCK_SIZE)] : null;
  let turn = 0;
  const newBlock = (): Buffer => {
    if (!spare) return Buffer.alloc(BLOCK_SIZE);
    turn ^= 1;
    return spare[turn]!.fill(0);
  };
  let next = 0; // index into plan.blocks
  for await (const [offset, data] of pieces) {
    let at = 0;
    while (at < data.length) {
      const pos = offset + at;
      const b = Math.floor(pos / BLOCK_SIZE);
      if (b !== current) {
        yield* flush();
        if (plan.blocks[next] !== b) throw new Error(`data at ${pos} outside the announced extents`);
        next++;
        current = b;
        block = newBlock();
      }
      const inBlock = pos - b * BLOCK_SIZE;
      const n = Math.min(data.length - at, BLOCK_SIZE - inBlock);
      data.copy(block!, inBlock, at, at + n);
      at += n;
    }
  }
  yield* flush();
  if (next !== plan.blocks.length) throw new Error('fewer data than the extents announced');
  yield footer;
}

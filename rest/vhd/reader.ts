// Reads a dynamic VHD as a stream (an HTTP upload), validating as it goes:
// cookies, checksums, sizes, the block table (entries inside the disk, blocks
// after the table, none overlapping), and the trailing footer. Yields the
// data of each stored block as [offset, bytes] in file order (ascending for
// qemu's, XCP-ng's and our files); sectors the bitmap marks absent are
// zeros. Memory: the block table and one block.
import { SECTOR } from './geometry.js';
import { DISK_DYNAMIC, DISK_FIXED, VhdFormatError, decodeFooter } from './footer.js';
import { HEADER_SIZE, UNUSED, bitmapBytes, decodeHeader } from './header.js';

export { VhdFormatError };

/** Exact reads and forward skips over a chunked stream. */
class StreamReader {
  private buf: Buffer = Buffer.alloc(0);
  pos = 0; // bytes consumed so far
  private readonly it: AsyncIterator<Buffer>;
  constructor(input: AsyncIterable<Buffer>) {
    this.it = input[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n) {
      const r = await this.it.next();
      if (r.done) return false;
      this.buf = this.buf.length ? Buffer.concat([this.buf, r.value]) : r.value;
    }
    return true;
  }

  async read(n: number, what: string): Promise<Buffer> {
    if (!(await this.fill(n))) throw new VhdFormatError(`VHD ends inside ${what}`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.pos += n;
    return out;
  }

  async skipTo(target: number, what: string): Promise<void> {
    while (this.pos < target) {
      if (!this.buf.length && !(await this.fill(1))) throw new VhdFormatError(`VHD ends before ${what}`);
      const n = Math.min(this.buf.length, target - this.pos);
      this.buf = this.buf.subarray(n);
      this.pos += n;
    }
  }

  /** Everything left; returns its last `keep` bytes and the total count. */
  async rest(keep: number): Promise<{ tail: Buffer; bytes: number }> {
    let tail = this.buf;
    let bytes = this.buf.length;
    this.buf = Buffer.alloc(0);
    for (let r = await this.it.next(); !r.done; r = await this.it.next()) {
      bytes += r.value.length;
      tail = Buffer.concat([tail, r.value]);
      if (tail.length > keep) tail = tail.subarray(tail.length - keep);
    }
    return { tail: Buffer.from(tail), bytes };
  }
}

export interface VhdStream {
  /** the disk's size in bytes */
  size: number;
  /** the stored blocks' data; throws VhdFormatError on a bad or truncated file */
  pieces: AsyncGenerator<[number, Buffer]>;
}

export async function readVhd(input: AsyncIterable<Buffer>): Promise<VhdStream> {
  const r = new StreamReader(input);
  const first = await r.read(SECTOR, 'its footer copy');
  const footer = decodeFooter(first);
  if (footer.diskType === DISK_FIXED) throw new VhdFormatError('fixed VHDs are not accepted here: upload a dynamic VHD or the raw image');
  if (footer.diskType !== DISK_DYNAMIC)
    throw new VhdFormatError(
      footer.diskType === 4 ? 'differencing VHDs are not accepted: the disk needs its parent' : `unknown VHD disk type ${footer.diskType}`,
    );
  if (footer.dataOffset < BigInt(SECTOR) || footer.dataOffset > 1n << 40n) throw new VhdFormatError('bad VHD header offset');
  await r.skipTo(Number(footer.dataOffset), 'its dynamic header');
  const header = decodeHeader(await r.read(HEADER_SIZE, 'its dynamic header'));
  if (header.hasParent) throw new VhdFormatError('differencing VHDs are not accepted: the disk needs its parent');
  const size = footer.currentSize;
  if (size % SECTOR !== 0) throw new VhdFormatError('VHD size is not a whole number of sectors');
  const { blockSize } = header;
  const needed = Math.ceil(size / blockSize);
  if (header.maxTableEntries < needed || header.maxTableEntries > needed + (1 << 20)) throw new VhdFormatError('VHD block table does not fit the disk size');
  if (header.tableOffset < r.pos) throw new VhdFormatError('VHD block table overlaps its header');
  await r.skipTo(header.tableOffset, 'its block table');
  const bat = await r.read(header.maxTableEntries * 4, 'its block table');
  const bitmapLen = bitmapBytes(blockSize);
  const tableEnd = r.pos;
  const stored: Array<[block: number, fileOffset: number]> = [];
  for (let i = 0; i < header.maxTableEntries; i++) {
    const sector = bat.readUInt32BE(i * 4);
    if (sector === UNUSED) continue;
    if (i >= needed) throw new VhdFormatError(`VHD block ${i} lies beyond the disk's end`);
    stored.push([i, sector * SECTOR]);
  }
  stored.sort((a, b) => a[1] - b[1]);
  for (let k = 0; k < stored.length; k++) {
    if (stored[k]![1] < tableEnd) throw new VhdFormatError('a VHD block overlaps the block table');
    if (k > 0 && stored[k]![1] < stored[k - 1]![1] + bitmapLen + blockSize) throw new VhdFormatError('VHD blocks overlap');
  }

  async function* pieces(): AsyncGenerator<[number, Buffer]> {
    for (const [block, at] of stored) {
      await r.skipTo(at, `block ${block}`);
      const bitmap = await r.read(bitmapLen, `block ${block}'s bitmap`);
      const data = Buffer.from(await r.read(blockSize, `block ${block}`));
      const start = block * blockSize;
      const len = Math.min(blockSize, size - start);
      // absent sectors read as zeros, whatever the file holds there
      for (let s = 0; s < len / SECTOR; s++) {
        if (!(bitmap[s >> 3]! & (0x80 >> (s & 7)))) data.fill(0, s * SECTOR, (s + 1) * SECTOR);
      }
      yield [start, data.subarray(0, len)];
    }
    const { tail } = await r.rest(SECTOR);
    if (tail.length < SECTOR) throw new VhdFormatError('VHD ends without its footer');
    const last = decodeFooter(tail);
    if (last.currentSize !== size || !last.uniqueId.equals(footer.uniqueId)) throw new VhdFormatError('VHD footer differs from its copy');
  }
  return { size, pieces: pieces() };
}

// The dynamic disk header: 1024 bytes, big-endian, pointed at by the
// footer's data offset; it says where the block allocation table (BAT) is,
// how many entries it has and how large a block is.
import { SECTOR, vhdChecksum } from './geometry.js';
import { VhdFormatError } from './footer.js';

export const HEADER_COOKIE = 'cxsparse';
export const HEADER_SIZE = 1024;
/** The block size Xen Orchestra, XCP-ng and qemu use. */
export const BLOCK_SIZE = 2 << 20;
const CHECKSUM_AT = 36;
export const UNUSED = 0xffffffff;

export interface DynamicHeader {
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
}

export function encodeHeader(h: DynamicHeader): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.write(HEADER_COOKIE, 0, 'latin1');
  b.writeBigUInt64BE(0xffffffffffffffffn, 8); // data offset: unused
  b.writeBigUInt64BE(BigInt(h.tableOffset), 16);
  b.writeUInt32BE(0x00010000, 24);
  b.writeUInt32BE(h.maxTableEntries, 28);
  b.writeUInt32BE(h.blockSize, 32);
  // no parent: parent id, time stamp, name and locators stay zero
  b.writeUInt32BE(vhdChecksum(b, CHECKSUM_AT), CHECKSUM_AT);
  return b;
}

export function decodeHeader(b: Buffer): DynamicHeader & { hasParent: boolean } {
  if (b.toString('latin1', 0, 8) !== HEADER_COOKIE) throw new VhdFormatError("VHD dynamic header has no 'cxsparse' cookie");
  if (b.readUInt32BE(CHECKSUM_AT) !== vhdChecksum(b, CHECKSUM_AT)) throw new VhdFormatError('VHD header checksum mismatch');
  const blockSize = b.readUInt32BE(32);
  if (blockSize < SECTOR || blockSize % SECTOR !== 0 || blockSize > 256 << 20 || (blockSize & (blockSize - 1)) !== 0) {
    throw new VhdFormatError(`unsupported VHD block size ${blockSize}`);
  }
  const parentId = b.subarray(40, 56);
  return {
    tableOffset: Number(b.readBigUInt64BE(16)),
    maxTableEntries: b.readUInt32BE(28),
    blockSize,
    hasParent: parentId.some((x) => x !== 0),
  };
}

/** Bytes of a block's sector bitmap, rounded up to whole sectors. */
export function bitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

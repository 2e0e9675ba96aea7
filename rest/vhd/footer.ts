// The VHD footer: 512 bytes, big-endian, at the end of every VHD file (and
// copied at its start in dynamic ones). Field offsets are the VHD
// specification's.
import { SECTOR, chsGeometry, vhdChecksum, type Geometry } from './geometry.js';

export const FOOTER_COOKIE = 'conectix';
export const DISK_FIXED = 2;
export const DISK_DYNAMIC = 3;
const CHECKSUM_AT = 64;
/** 'tap\0' is XenServer's (XCP-ng's) creator tag; qemu then takes the
 * footer's size as exact instead of rounding to the CHS geometry. */
const CREATOR_APP = Buffer.from('tap\0', 'latin1');

export interface Footer {
  dataOffset: bigint;
  timestamp: number;
  currentSize: number;
  originalSize: number;
  geometry: Geometry;
  diskType: number;
  uniqueId: Buffer;
  creatorApp: string;
}

export function encodeFooter(f: { size: number; timestamp: number; uniqueId: Buffer; dataOffset: bigint; diskType: number }): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write(FOOTER_COOKIE, 0, 'latin1');
  b.writeUInt32BE(0x00000002, 8); // features: reserved bit, always set
  b.writeUInt32BE(0x00010000, 12); // file format version 1.0
  b.writeBigUInt64BE(f.dataOffset, 16);
  b.writeUInt32BE(f.timestamp, 24);
  CREATOR_APP.copy(b, 28);
  b.writeUInt32BE(0x00010000, 32); // creator version
  b.write('Wi2k', 36, 'latin1'); // creator host OS, as XAPI and qemu write it
  b.writeBigUInt64BE(BigInt(f.size), 40); // original size
  b.writeBigUInt64BE(BigInt(f.size), 48); // current size
  const g = chsGeometry(f.size);
  b.writeUInt16BE(g.cylinders, 56);
  b.writeUInt8(g.heads, 58);
  b.writeUInt8(g.sectorsPerTrack, 59);
  b.writeUInt32BE(f.diskType, 60);
  f.uniqueId.copy(b, 68, 0, 16);
  b.writeUInt32BE(vhdChecksum(b, CHECKSUM_AT), CHECKSUM_AT);
  return b;
}

export class VhdFormatError extends Error {}

export function decodeFooter(b: Buffer): Footer {
  if (b.length !== SECTOR) throw new VhdFormatError('footer is not 512 bytes');
  if (b.toString('latin1', 0, 8) !== FOOTER_COOKIE) throw new VhdFormatError("not a VHD: no 'conectix' footer");
  if (b.readUInt32BE(CHECKSUM_AT) !== vhdChecksum(b, CHECKSUM_AT)) throw new VhdFormatError('VHD footer checksum mismatch');
  const version = b.readUInt32BE(12);
  if (version >>> 16 !== 1) throw new VhdFormatError(`unsupported VHD version ${version.toString(16)}`);
  const current = b.readBigUInt64BE(48);
  if (current > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhdFormatError('VHD size out of range');
  return {
    dataOffset: b.readBigUInt64BE(16),
    timestamp: b.readUInt32BE(24),
    creatorApp: b.toString('latin1', 28, 32),
    originalSize: Number(b.readBigUInt64BE(40)),
    currentSize: Number(current),
    geometry: { cylinders: b.readUInt16BE(56), heads: b.readUInt8(58), sectorsPerTrack: b.readUInt8(59) },
    diskType: b.readUInt32BE(60),
    uniqueId: Buffer.from(b.subarray(68, 84)),
  };
}

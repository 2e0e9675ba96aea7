// Journal framing. A journal file is a sequence of records, one per commit
// batch, each written with a single write() and made durable before the
// batch is acknowledged:
//
//   "QJR1" | payload length (u32 LE) | CRC-32 of length+payload (u32 LE) | payload
//
// On replay, a record that does not check out is either the torn tail of a
// write that was never acknowledged (nothing valid follows it: ignored) or
// damage in the middle of the file (a valid record follows it: refused, since
// acknowledged data after it would otherwise be silently dropped). The length
// field always contains NUL bytes for records under 16 MiB, and JSON never
// contains raw NUL, so a payload cannot fake a record boundary.

import zlib from 'node:zlib';

const MAGIC = Buffer.from('QJR1', 'latin1');
export const HEADER_SIZE = 12;
/** Refuse to frame absurdly large batches (a bug, not a workload). */
const MAX_PAYLOAD = 256 * 1024 * 1024;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Js(buf: Uint8Array, crc: number): number {
  let c = ~crc;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// zlib's CRC-32 is the same function, in C and many times faster than the
// table loop; Node has it from 20.15 on.
const zlibCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** CRC-32 (IEEE 802.3), continuing from `crc` (0 to start). */
export function crc32(buf: Uint8Array, crc = 0): number {
  return zlibCrc32 ? zlibCrc32(buf, crc) : crc32Js(buf, crc);
}

/** A record holding `payload` (a string is written as UTF-8 straight into the record). */
export function encodeRecord(payload: Buffer | string): Buffer {
  const len = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  if (len > MAX_PAYLOAD) throw new Error(`journal record of ${len} bytes is too large`);
  const rec = Buffer.allocUnsafe(HEADER_SIZE + len);
  MAGIC.copy(rec, 0);
  rec.writeUInt32LE(len, 4);
  if (typeof payload === 'string') rec.write(payload, HEADER_SIZE, 'utf8');
  else payload.copy(rec, HEADER_SIZE);
  const crc = crc32(rec.subarray(HEADER_SIZE), crc32(rec.subarray(4, 8)));
  rec.writeUInt32LE(crc, 8);
  return rec;
}

/** End offset of a valid record starting at `off`, or -1. */
function validRecordEnd(buf: Buffer, off: number): number {
  if (off + HEADER_SIZE > buf.length) return -1;
  if (buf.compare(MAGIC, 0, 4, off, off + 4) !== 0) return -1;
  const len = buf.readUInt32LE(off + 4);
  const end = off + HEADER_SIZE + len;
  if (len > MAX_PAYLOAD || end > buf.length) return -1;
  const crc = crc32(buf.subarray(off + HEADER_SIZE, end), crc32(buf.subarray(off + 4, off + 8)));
  return crc === buf.readUInt32LE(off + 8) ? end : -1;
}

export class JournalCorruption extends Error {
  constructor(
    readonly offset: number,
    readonly record: number,
  ) {
    super(`record ${record} at byte ${offset} is damaged and valid records follow it`);
    this.name = 'JournalCorruption';
  }
}

export interface JournalContents {
  payloads: Buffer[];
  /** bytes after the last valid record (a torn write), 0 when the file ends cleanly */
  tornBytes: number;
}

/** Splits a journal file into record payloads; throws JournalCorruption. */
export function readRecords(buf: Buffer): JournalContents {
  const payloads: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    const end = validRecordEnd(buf, off);
    if (end !== -1) {
      payloads.push(buf.subarray(off + HEADER_SIZE, end));
      off = end;
      continue;
    }
    for (let m = buf.indexOf(MAGIC, off + 1); m !== -1; m = buf.indexOf(MAGIC, m + 1)) {
      if (validRecordEnd(buf, m) !== -1) throw new JournalCorruption(off, payloads.length + 1);
    }
    return { payloads, tornBytes: buf.length - off };
  }
  return { payloads, tornBytes: 0 };
}

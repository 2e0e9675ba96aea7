// The content of admin.vm.volume.Export (our extension of the Admin API): a
// volume's bytes with a map of where its data is, so that a 10 GiB volume
// holding 1 GiB costs 1 GiB to read and send, and the reader learns the
// layout before the data (a VHD writer must put its block table first).
//
//   <size> SP <count> LF
//   <offset> SP <length> LF          (count lines, ascending, disjoint)
//   <the bytes of each extent, in map order>
//
// Everything outside the extents reads as zeros. The total length is known
// from the header, so a truncated stream (qubesd drops the connection when it
// cannot go on after the OK frame started) is always detected.
// Both sides use this module: qubesd writes the header, clients parse it.

export type ExtentMap = Array<[offset: number, length: number]>;

export interface ExportHeader {
  /** the volume's size in bytes */
  size: number;
  /** the data extents; everything else is zeros */
  extents: ExtentMap;
}

/** Largest header a client accepts: 4 KiB granularity over 16 TiB would be more, but no real map comes near. */
const MAX_HEADER_BYTES = 64 << 20;

export function encodeExportHeader(h: ExportHeader): Buffer {
  let s = `${h.size} ${h.extents.length}\n`;
  for (const [o, l] of h.extents) s += `${o} ${l}\n`;
  return Buffer.from(s, 'latin1');
}

/** Total bytes of data that follow the header. */
export function dataLength(extents: ExtentMap): number {
  return extents.reduce((a, [, l]) => a + l, 0);
}

export class ExportFormatError extends Error {}

function parseNumber(s: string, what: string): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(s)) throw new ExportFormatError(`bad ${what} in export header: ${JSON.stringify(s.slice(0, 40))}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new ExportFormatError(`${what} out of range in export header`);
  return n;
}

/** Checks the map: ascending, disjoint, non-empty extents inside the volume. */
export function validateExtents(size: number, extents: ExtentMap): void {
  let end = 0;
  for (const [o, l] of extents) {
    if (l <= 0 || o < end || o + l > size) throw new ExportFormatError(`bad extent ${o}+${l} in an export of ${size} bytes`);
    end = o + l;
  }
}

export interface ParsedExport extends ExportHeader {
  /** exactly dataLength(extents) bytes; throws if the stream ends early or runs on */
  data: AsyncGenerator<Buffer>;
}

/**
 * Reads the header from `input` and returns it with an iterator over the
 * data that follows. Only the header is buffered.
 */
export async function parseExport(input: AsyncIterable<Buffer>): Promise<ParsedExport> {
  const it = input[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  let pos = 0;
  const line = async (): Promise<string> => {
    for (;;) {
      const nl = buf.indexOf(0x0a, pos);
      if (nl >= 0) {
        const s = buf.subarray(pos, nl).toString('latin1');
        pos = nl + 1;
        return s;
      }
      if (buf.length > MAX_HEADER_BYTES) throw new ExportFormatError('export header too long');
      const r = await it.next();
      if (r.done) throw new ExportFormatError('export ended inside its header');
      buf = Buffer.concat([buf.subarray(pos), r.value]);
      pos = 0;
    }
  };
  const first = (await line()).split(' ');
  if (first.length !== 2) throw new ExportFormatError('bad first line in export header');
  const size = parseNumber(first[0]!, 'size');
  const count = parseNumber(first[1]!, 'extent count');
  if (count > size / 512 + 1) throw new ExportFormatError('more extents than the volume can hold');
  const extents: ExtentMap = [];
  for (let i = 0; i < count; i++) {
    const f = (await line()).split(' ');
    if (f.length !== 2) throw new ExportFormatError('bad extent line in export header');
    extents.push([parseNumber(f[0]!, 'offset'), parseNumber(f[1]!, 'length')]);
  }
  validateExtents(size, extents);
  const rest = buf.subarray(pos);
  const want = dataLength(extents);
  async function* data(): AsyncGenerator<Buffer> {
    let got = 0;
    const take = (b: Buffer): Buffer => {
      if (got + b.length > want) throw new ExportFormatError(`export runs on past its ${want} bytes of data`);
      got += b.length;
      return b;
    };
    if (rest.length) yield take(rest);
    for (let r = await it.next(); !r.done; r = await it.next()) yield take(r.value);
    if (got < want) throw new ExportFormatError(`export ended after ${got} of ${want} bytes of data`);
  }
  return { size, extents, data: data() };
}

const ZERO_CHUNK = Buffer.alloc(1 << 20);

function* zeros(n: number): Generator<Buffer> {
  for (let left = n; left > 0; left -= ZERO_CHUNK.length) yield left >= ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, left);
}

/**
 * Splits the export's data back into its extents: yields [offset, bytes]
 * pieces in ascending order (pieces never straddle two extents).
 */
export async function* extentPieces(p: ParsedExport): AsyncGenerator<[number, Buffer]> {
  let i = 0;
  let inExtent = 0;
  for await (let chunk of p.data) {
    while (chunk.length) {
      const [o, l] = p.extents[i]!;
      const n = Math.min(l - inExtent, chunk.length);
      yield [o + inExtent, chunk.subarray(0, n)];
      chunk = chunk.subarray(n);
      inExtent += n;
      if (inExtent === l) {
        i++;
        inExtent = 0;
      }
    }
  }
}

/** The volume as plain bytes (holes as zeros), `size` bytes in all. */
export async function* rawBytes(p: ParsedExport): AsyncGenerator<Buffer> {
  let at = 0;
  for await (const [o, piece] of extentPieces(p)) {
    if (o > at) yield* zeros(o - at);
    yield piece;
    at = o + piece.length;
  }
  if (p.size > at) yield* zeros(p.size - at);
}

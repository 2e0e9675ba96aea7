// Minimal streaming tar, enough for the two tar layers of a Qubes backup:
// writing ustar headers (with a pax extended header when a name or size
// does not fit), and reading ustar, GNU and pax archives, including the
// GNU sparse 1.0 encoding that Qubes' own tar writer uses for volumes.
export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);
const MAX_OCTAL_SIZE = 0o77777777777;

export class TarError extends Error {
  constructor(
    readonly code: 'truncated' | 'corrupt' | 'unsupported',
    message: string,
  ) {
    super(message);
    this.name = 'TarError';
  }
}

export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Size on the wire of one regular-file entry written by tarFileHeader. */
export function tarEntrySize(name: string, size: number): number {
  return tarFileHeader({ name, size }).length + size + paddingFor(size);
}

export interface HeaderFields {
  name: string;
  size: number;
  mode?: number;
  mtime?: number;
  type?: string;
}

function octal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, '0') + '\0', offset, width, 'ascii');
}

function rawHeader(f: Required<HeaderFields>): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(f.name, 0, 100, 'utf8');
  octal(h, 100, 8, f.mode);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, f.size);
  octal(h, 136, 12, f.mtime);
  h.write(f.type, 156, 1, 'ascii');
  h.write('ustar\0' + '00', 257, 8, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** Header block(s) for a regular file; the data and paddingFor(size) zero
 * bytes must follow. */
export function tarFileHeader(fields: HeaderFields): Buffer {
  const f: Required<HeaderFields> = { mode: 0o644, mtime: Math.floor(Date.now() / 1000), type: '0', ...fields };
  const nameFits = Buffer.byteLength(f.name) <= 100;
  if (nameFits && f.size <= MAX_OCTAL_SIZE) return rawHeader(f);
  let pax = '';
  if (!nameFits) pax += paxRecord('path', f.name);
  if (f.size > MAX_OCTAL_SIZE) pax += paxRecord('size', String(f.size));
  const paxData = Buffer.from(pax, 'utf8');
  const short = Buffer.from(f.name, 'utf8')
    .subarray(0, 100)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  return Buffer.concat([
    rawHeader({ ...f, name: `PaxHeaders/${short}`.slice(0, 100), size: paxData.length, type: 'x' }),
    paxData,
    Buffer.alloc(paddingFor(paxData.length)),
    rawHeader({ ...f, name: short, size: Math.min(f.size, MAX_OCTAL_SIZE) }),
  ]);
}

/** Header blocks of a GNU sparse 1.0 entry (what `tar --posix -S` and
 * Qubes' volume writer produce): a pax header naming the real file and its
 * size, then a ustar header whose size counts the sparse map and the data
 * regions that follow it. */
export function tarSparseHeader(f: { name: string; storedSize: number; realSize: number; mtime?: number }): Buffer {
  const mtime = f.mtime ?? Math.floor(Date.now() / 1000);
  const slash = f.name.lastIndexOf('/');
  const dir = slash >= 0 ? f.name.slice(0, slash + 1) : '';
  const base = f.name.slice(slash + 1);
  const pax = Buffer.from(
    paxRecord('GNU.sparse.major', '1') +
      paxRecord('GNU.sparse.minor', '0') +
      paxRecord('GNU.sparse.name', f.name) +
      paxRecord('GNU.sparse.realsize', String(f.realSize)) +
      (f.storedSize > MAX_OCTAL_SIZE ? paxRecord('size', String(f.storedSize)) : ''),
    'utf8',
  );
  const shortName = `${dir}GNUSparseFile.0/${base}`;
  const fit = (n: string): string =>
    Buffer.from(n, 'utf8')
      .subarray(0, 100)
      .toString('utf8')
      .replace(/\uFFFD+$/, '');
  return Buffer.concat([
    rawHeader({ name: fit(`${dir}PaxHeaders.0/${base}`), size: pax.length, mode: 0o644, mtime, type: 'x' }),
    pax,
    Buffer.alloc(paddingFor(pax.length)),
    rawHeader({ name: fit(shortName), size: Math.min(f.storedSize, MAX_OCTAL_SIZE), mode: 0o644, mtime, type: '0' }),
  ]);
}

/** Pulls exact byte counts out of an async sequence of buffers. */
export class ByteSource {
  private parts: Buffer[] = [];
  private length = 0;
  private ended = false;
  /** Bytes handed out so far. */
  consumed = 0;
  constructor(private readonly input: AsyncIterator<Buffer>) {}

  static from(input: AsyncIterable<Buffer | string>): ByteSource {
    const it = input[Symbol.asyncIterator]();
    return new ByteSource({
      next: async () => {
        const r = await it.next();
        return r.done ? r : { done: false, value: typeof r.value === 'string' ? Buffer.from(r.value) : r.value };
      },
      return: async () => {
        await it.return?.();
        return { done: true, value: undefined };
      },
    });
  }

  private async fill(n: number): Promise<void> {
    while (this.length < n && !this.ended) {
      const r = await this.input.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length) {
        this.parts.push(r.value);
        this.length += r.value.length;
      }
    }
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.parts[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.parts);
      out = all.subarray(0, n);
      this.parts = all.length > n ? [all.subarray(n)] : [];
    }
    this.length -= n;
    this.consumed += n;
    return out;
  }

  /** Exactly n bytes, or null at a clean end of input. */
  async read(n: number): Promise<Buffer | null> {
    await this.fill(n);
    if (this.length === 0 && n > 0) return null;
    if (this.length < n) throw new TarError('truncated', `unexpected end of data (wanted ${n} bytes, got ${this.length})`);
    return this.take(n);
  }

  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.length === 0;
  }

  /** Up to n bytes as a sequence of pieces; fails if the input ends first. */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.length === 0) await this.fill(1);
      if (this.length === 0) throw new TarError('truncated', `unexpected end of data (${left} bytes missing)`);
      const piece = this.take(Math.min(left, this.parts[0]!.length));
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n)) {
      /* discard */
    }
  }

  /** Reads and discards everything left. */
  async drain(): Promise<void> {
    this.parts = [];
    this.length = 0;
    while (!this.ended) {
      const r = await this.input.next();
      if (r.done) this.ended = true;
    }
  }

  async close(): Promise<void> {
    await this.input.return?.();
  }
}

export interface TarEntry {
  name: string;
  /** '0' regular file, '5' directory, '2' symlink, ... */
  type: string;
  /** Size of the file's contents (after expanding a sparse file). */
  size: number;
  mode: number;
  mtime: number;
  /** The contents; must be consumed (or left alone) before the next entry. */
  body(): AsyncGenerator<Buffer>;
}

function parseNumber(field: Buffer, what: string): number {
  if (field[0]! & 0x80) {
    // GNU base-256: big-endian with the top bit of the first byte as a flag.
    if (field[0] === 0xff) throw new TarError('corrupt', `negative ${what} in tar header`);
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    if (!Number.isSafeInteger(v)) throw new TarError('unsupported', `${what} too large in tar header`);
    return v;
  }
  const text = field
    .toString('ascii')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError('corrupt', `invalid ${what} in tar header: ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString('utf8');
}

function checksumOk(h: Buffer): boolean {
  const stored = parseNumber(h.subarray(148, 156), 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === stored;
}

function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw new TarError('corrupt', 'malformed pax header');
    const len = Number(data.subarray(pos, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > data.length) throw new TarError('corrupt', 'malformed pax record length');
    const rec = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq < 0) throw new TarError('corrupt', 'malformed pax record');
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

function paxInt(value: string, key: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new TarError('corrupt', `invalid pax ${key}: ${JSON.stringify(value)}`);
  return Number(value);
}

async function readSparseMap(src: ByteSource, stored: number): Promise<{ map: Array<[number, number]>; mapBytes: number }> {
  const numbers: number[] = [];
  let text = '';
  let mapBytes = 0;
  let want = -1;
  while (want < 0 || numbers.length < want) {
    if (mapBytes + BLOCK > stored) throw new TarError('corrupt', 'sparse map larger than the entry');
    const block = await src.read(BLOCK);
    if (!block) throw new TarError('truncated', 'unexpected end of data in sparse map');
    mapBytes += BLOCK;
    text += block.toString('ascii');
    let nl: number;
    while ((want < 0 || numbers.length < want) && (nl = text.indexOf('\n')) >= 0) {
      numbers.push(paxInt(text.slice(0, nl), 'sparse map entry'));
      text = text.slice(nl + 1);
      if (want < 0) {
        want = 1 + 2 * numbers[0]!;
      }
    }
  }
  const map: Array<[number, number]> = [];
  for (let i = 1; i < numbers.length; i += 2) map.push([numbers[i]!, numbers[i + 1]!]);
  return { map, mapBytes };
}

export interface ReadOptions {
  /** Keep reading after zero blocks (what `tar -i` does): needed for the
   * outer layer of Qubes-made backups, a concatenation of tar archives. */
  ignoreZeros?: boolean;
  /** Set to whether the last thing read was an end-of-archive block, so a
   * caller can tell a cleanly ended stream from one cut between entries. */
  state?: { endMarkerSeen: boolean };
}

/** Iterates over the entries of a tar stream. */
export async function* tarEntries(src: ByteSource, opts: ReadOptions = {}): AsyncGenerator<TarEntry> {
  let longName: string | undefined;
  let pax = new Map<string, string>();
  for (;;) {
    const h = await src.read(BLOCK);
    if (!h) {
      if (opts.ignoreZeros) return;
      throw new TarError('truncated', 'tar archive ends without an end-of-archive marker');
    }
    if (opts.state) opts.state.endMarkerSeen = false;
    if (h.every((b) => b === 0)) {
      if (opts.state) opts.state.endMarkerSeen = true;
      if (opts.ignoreZeros) continue;
      return;
    }
    if (!checksumOk(h)) throw new TarError('corrupt', 'tar header checksum mismatch');
    const type = h[156] === 0 ? '0' : String.fromCharCode(h[156]!);
    let size = parseNumber(h.subarray(124, 136), 'size');
    const magic = h.subarray(257, 265).toString('latin1');
    let name = cString(h.subarray(0, 100));
    if (magic === 'ustar\x0000') {
      const prefix = cString(h.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      const data = await src.read(size + paddingFor(size));
      if (!data && size > 0) throw new TarError('truncated', 'unexpected end of data in extended header');
      const payload = (data ?? Buffer.alloc(0)).subarray(0, size);
      if (type === 'x') pax = new Map([...pax, ...parsePax(payload)]);
      else if (type === 'L') longName = cString(payload);
      continue;
    }
    if (type === 'S') throw new TarError('unsupported', `old GNU sparse entries are not supported (${name})`);
    if (longName !== undefined) name = longName;
    if (pax.has('path')) name = pax.get('path')!;
    if (pax.has('size')) size = paxInt(pax.get('size')!, 'size');
    const mode = parseNumber(h.subarray(100, 108), 'mode');
    const mtime = pax.has('mtime') ? Math.floor(Number(pax.get('mtime'))) : parseNumber(h.subarray(136, 148), 'mtime');
    const hasData = type === '0' || type === '7';
    const stored = hasData ? size : 0;
    let sparse: { realSize: number } | undefined;
    if (pax.has('GNU.sparse.major') || pax.has('GNU.sparse.map')) {
      if (pax.get('GNU.sparse.major') !== '1' || pax.get('GNU.sparse.minor') !== '0') {
        throw new TarError(
          'unsupported',
          `GNU sparse format ${pax.get('GNU.sparse.major') ?? '0'}.${pax.get('GNU.sparse.minor') ?? '?'} is not supported (${name})`,
        );
      }
      name = pax.get('GNU.sparse.name') ?? name;
      sparse = { realSize: paxInt(pax.get('GNU.sparse.realsize') ?? '', 'GNU.sparse.realsize') };
    }
    longName = undefined;
    pax = new Map();

    let used = 0;
    const entry: TarEntry = {
      name,
      type,
      mode,
      mtime,
      size: sparse ? sparse.realSize : stored,
      body: sparse
        ? async function* () {
            const { map, mapBytes } = await readSparseMap(src, stored);
            used = mapBytes;
            let pos = 0;
            for (const [offset, length] of map) {
              if (offset < pos || offset + length > sparse.realSize) throw new TarError('corrupt', `invalid sparse map in ${name}`);
              if (used + length > stored) throw new TarError('corrupt', `sparse data larger than the entry ${name}`);
              yield* zeros(offset - pos);
              for await (const piece of src.pieces(length)) {
                used += piece.length;
                yield piece;
              }
              pos = offset + length;
            }
            yield* zeros(sparse.realSize - pos);
          }
        : async function* () {
            for await (const piece of src.pieces(stored - used)) {
              used += piece.length;
              yield piece;
            }
          },
    };
    yield entry;
    await src.skip(stored - used + paddingFor(stored));
  }
}

async function* zeros(n: number): AsyncGenerator<Buffer> {
  const block = Buffer.alloc(Math.min(n, 1 << 20));
  while (n > 0) {
    const len = Math.min(n, block.length);
    yield block.subarray(0, len);
    n -= len;
  }
}

// XDR (RFC 4506) as libvirt's RPC uses it: big-endian 4-byte units, strings
// and variable opaques length-prefixed and zero-padded to a multiple of 4,
// optional values ("pointers") as a boolean followed by the value.
// 64-bit integers are exchanged as bigint on the wire side; the readers offer
// a number variant because every quantity we decode (memory in KiB, CPU time
// in ns) stays far below 2^53.

export class XdrError extends Error {
  override name = 'XdrError';
}

export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.alloc(initial);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new XdrError(`not a 32-bit signed integer: ${v}`);
    this.reserve(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  uint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new XdrError(`not a 32-bit unsigned integer: ${v}`);
    this.reserve(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  hyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  uhyper(v: bigint | number): this {
    this.reserve(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  /** Fixed-length opaque: exactly `len` bytes, padded. */
  fixedOpaque(data: Uint8Array, len: number): this {
    if (data.length !== len) throw new XdrError(`fixed opaque needs ${len} bytes, got ${data.length}`);
    return this.raw(data);
  }

  /** Variable-length opaque: length, bytes, padding. */
  opaque(data: Uint8Array): this {
    this.uint(data.length);
    return this.raw(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** An optional value (XDR pointer): present flag, then the value. */
  optional<T>(v: T | null | undefined, write: (w: this, v: T) => void): this {
    if (v === null || v === undefined) return this.bool(false);
    this.bool(true);
    write(this, v);
    return this;
  }

  /** A variable-length array: count, then each element. */
  array<T>(items: readonly T[], write: (w: this, v: T) => void): this {
    this.uint(items.length);
    for (const it of items) write(this, it);
    return this;
  }

  private raw(data: Uint8Array): this {
    const pad = (4 - (data.length % 4)) % 4;
    this.reserve(data.length + pad);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + data.length + pad);
    this.pos += data.length + pad;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

export class XdrReader {
  private pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly limit = 16 * 1024 * 1024,
  ) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new XdrError(`XDR data truncated: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
  }

  int(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  uint(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  hyper(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  uhyper(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  hyperNumber(): number {
    return Number(this.hyper());
  }
  uhyperNumber(): number {
    return Number(this.uhyper());
  }
  double(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    return v;
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`invalid XDR boolean ${v}`);
    return v === 1;
  }

  fixedOpaque(len: number): Buffer {
    const pad = (4 - (len % 4)) % 4;
    this.need(len + pad);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len + pad;
    return out;
  }

  opaque(max = this.limit): Buffer {
    const len = this.uint();
    if (len > max) throw new XdrError(`XDR opaque/string of ${len} bytes exceeds the limit of ${max}`);
    return this.fixedOpaque(len);
  }

  string(max = this.limit): string {
    return this.opaque(max).toString('utf8');
  }

  optional<T>(read: (r: this) => T): T | null {
    return this.bool() ? read(this) : null;
  }

  array<T>(read: (r: this) => T, max = 1 << 20): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`XDR array of ${n} elements exceeds the limit of ${max}`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }

  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Fails when a decoder did not consume the whole body: a layout mismatch. */
  end(): void {
    if (this.pos !== this.buf.length) throw new XdrError(`${this.buf.length - this.pos} unexpected trailing bytes in XDR body`);
  }
}

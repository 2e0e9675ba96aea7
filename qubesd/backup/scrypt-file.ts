// The file format of Colin Percival's `scrypt enc` tool, which Qubes backup
// format 4 uses both to encrypt and to authenticate every file it stores.
//
//   offset  size  field
//        0     6  "scrypt"
//        6     1  format version (0)
//        7     1  log2(N)
//        8     4  r, big-endian
//       12     4  p, big-endian
//       16    32  salt
//       48    16  first half of SHA-256 over bytes 0..47 (header checksum)
//       64    32  HMAC-SHA256 over bytes 0..63, keyed with dk[32..64]
//       96     n  AES-256-CTR ciphertext, key dk[0..32], counter starting at 0
//     96+n    32  HMAC-SHA256 over bytes 0..96+n, keyed with dk[32..64]
//
// where dk = scrypt(passphrase, salt, N, r, p, 64 bytes).
import { createCipheriv, createHash, createHmac, randomBytes, scrypt, timingSafeEqual, type Hmac } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

export const SCRYPT_HEADER_SIZE = 96;
export const SCRYPT_TRAILER_SIZE = 32;
/** Bytes a plaintext grows by when wrapped in the scrypt file format. */
export const SCRYPT_OVERHEAD = SCRYPT_HEADER_SIZE + SCRYPT_TRAILER_SIZE;
const MAGIC = Buffer.from('scrypt', 'ascii');

export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

/** Cost used when the caller does not choose one: 64 MiB and about half a
 * second of one core per key. Every chunk has its own key, so this cost is
 * paid per 100 MiB; the `scrypt` tool (which Qubes runs) picks far more
 * (N=2^21, 2 GiB, seconds per chunk), and decrypting accepts that. */
export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { logN: 16, r: 8, p: 1 };

/** Upper bound on the cost a file may ask for when decrypting, so a forged
 * header cannot make us allocate gigabytes or spin for hours. */
export interface ScryptLimits {
  maxMemory: number;
  maxWork: number;
}
export const DEFAULT_SCRYPT_LIMITS: ScryptLimits = { maxMemory: 2 ** 31, maxWork: 2 ** 26 };

export type ScryptErrorCode = 'not-scrypt' | 'unsupported' | 'too-costly' | 'bad-passphrase' | 'corrupt' | 'truncated';

export class ScryptFileError extends Error {
  constructor(
    readonly code: ScryptErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ScryptFileError';
  }
}

function memoryFor(p: ScryptParams): number {
  return 128 * p.r * 2 ** p.logN;
}

function checkParams(p: ScryptParams): void {
  if (!Number.isInteger(p.logN) || p.logN < 1 || p.logN > 63) throw new RangeError(`scrypt logN out of range: ${p.logN}`);
  if (!Number.isInteger(p.r) || p.r < 1 || p.r >= 2 ** 32) throw new RangeError(`scrypt r out of range: ${p.r}`);
  if (!Number.isInteger(p.p) || p.p < 1 || p.p >= 2 ** 32) throw new RangeError(`scrypt p out of range: ${p.p}`);
}

export function deriveKey(passphrase: Buffer, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  checkParams(params);
  const N = 2 ** params.logN;
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, 64, { N, r: params.r, p: params.p, maxmem: 2 * memoryFor(params) + 2 ** 24 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A derived key together with the header it belongs to; lets a caller
 * derive keys ahead of time (the KDF runs on the thread pool). */
export interface PreparedKey {
  header: Buffer;
  hmacKey: Buffer;
  aesKey: Buffer;
}

export async function prepareEncryption(passphrase: Buffer, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<PreparedKey> {
  const salt = randomBytes(32);
  const dk = await deriveKey(passphrase, salt, params);
  const header = Buffer.alloc(SCRYPT_HEADER_SIZE);
  MAGIC.copy(header, 0);
  header[6] = 0;
  header[7] = params.logN;
  header.writeUInt32BE(params.r, 8);
  header.writeUInt32BE(params.p, 12);
  salt.copy(header, 16);
  createHash('sha256').update(header.subarray(0, 48)).digest().copy(header, 48, 0, 16);
  const hmacKey = dk.subarray(32, 64);
  createHmac('sha256', hmacKey).update(header.subarray(0, 64)).digest().copy(header, 64);
  return { header, hmacKey, aesKey: dk.subarray(0, 32) };
}

/** Streaming encryption: plaintext in, a complete scrypt file out. */
export class ScryptEncrypt extends Transform {
  private readonly cipher;
  private readonly mac: Hmac;
  private started = false;
  constructor(private readonly key: PreparedKey) {
    super();
    this.cipher = createCipheriv('aes-256-ctr', key.aesKey, Buffer.alloc(16));
    this.mac = createHmac('sha256', key.hmacKey);
  }
  private start(): void {
    if (this.started) return;
    this.started = true;
    this.mac.update(this.key.header);
    this.push(this.key.header);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.start();
    const out = this.cipher.update(chunk);
    this.mac.update(out);
    cb(null, out);
  }
  override _flush(cb: TransformCallback): void {
    this.start();
    const tail = this.cipher.final();
    if (tail.length) {
      this.mac.update(tail);
      this.push(tail);
    }
    cb(null, this.mac.digest());
  }
}

/** Encrypts a plaintext given as pieces; yields the scrypt file piecewise.
 * Lets a caller that knows the total size stream the result out. */
export function* encryptPieces(key: PreparedKey, pieces: Iterable<Buffer>): Generator<Buffer> {
  const cipher = createCipheriv('aes-256-ctr', key.aesKey, Buffer.alloc(16));
  const mac = createHmac('sha256', key.hmacKey).update(key.header);
  yield key.header;
  for (const piece of pieces) {
    const out = cipher.update(piece);
    mac.update(out);
    yield out;
  }
  const tail = cipher.final();
  if (tail.length) {
    mac.update(tail);
    yield tail;
  }
  yield mac.digest();
}

export async function encryptBuffer(passphrase: Buffer, plaintext: Buffer, params?: ScryptParams): Promise<Buffer> {
  const key = await prepareEncryption(passphrase, params);
  const enc = new ScryptEncrypt(key);
  const parts: Buffer[] = [];
  enc.on('data', (d: Buffer) => parts.push(d));
  await new Promise<void>((resolve, reject) => {
    enc.on('end', resolve);
    enc.on('error', reject);
    enc.end(plaintext);
  });
  return Buffer.concat(parts);
}

/** Parses and checks the fixed header; returns the cost parameters. */
export function parseHeader(file: Buffer, limits: ScryptLimits = DEFAULT_SCRYPT_LIMITS): ScryptParams & { salt: Buffer } {
  if (file.length < SCRYPT_OVERHEAD) {
    if (file.length >= 6 && !file.subarray(0, 6).equals(MAGIC)) throw new ScryptFileError('not-scrypt', 'not an scrypt-encrypted file');
    throw new ScryptFileError('truncated', `scrypt file too short (${file.length} bytes)`);
  }
  if (!file.subarray(0, 6).equals(MAGIC)) throw new ScryptFileError('not-scrypt', 'not an scrypt-encrypted file');
  if (file[6] !== 0) throw new ScryptFileError('unsupported', `unsupported scrypt file version ${file[6]}`);
  const checksum = createHash('sha256').update(file.subarray(0, 48)).digest().subarray(0, 16);
  if (!checksum.equals(file.subarray(48, 64))) throw new ScryptFileError('corrupt', 'scrypt header checksum mismatch');
  const params = { logN: file[7]!, r: file.readUInt32BE(8), p: file.readUInt32BE(12) };
  if (params.logN < 1 || params.logN > 63 || params.r === 0 || params.p === 0) throw new ScryptFileError('corrupt', 'invalid scrypt parameters');
  if (memoryFor(params) > limits.maxMemory || 2 ** params.logN * params.r * params.p > limits.maxWork) {
    throw new ScryptFileError('too-costly', `scrypt parameters too costly (logN=${params.logN} r=${params.r} p=${params.p})`);
  }
  return { ...params, salt: Buffer.from(file.subarray(16, 48)) };
}

/** Starts the key derivation for a file from its first SCRYPT_HEADER_SIZE
 * bytes, so the (slow) KDF can run while the rest is still being read. */
export function startDecryption(passphrase: Buffer, header: Buffer, limits?: ScryptLimits): Promise<Buffer> {
  const params = parseHeader(Buffer.concat([header.subarray(0, SCRYPT_HEADER_SIZE), Buffer.alloc(SCRYPT_TRAILER_SIZE)]), limits);
  return deriveKey(passphrase, params.salt, params);
}

/** Checks both HMACs of a whole scrypt file with a key from
 * startDecryption; throws unless the file is authentic. A wrong passphrase
 * shows up as a bad header HMAC. */
export function verifyWithKey(dk: Buffer, file: Buffer): void {
  if (file.length < SCRYPT_OVERHEAD) throw new ScryptFileError('truncated', `scrypt file too short (${file.length} bytes)`);
  const hmacKey = dk.subarray(32, 64);
  const headerMac = createHmac('sha256', hmacKey).update(file.subarray(0, 64)).digest();
  if (!timingSafeEqual(headerMac, file.subarray(64, 96))) {
    throw new ScryptFileError('bad-passphrase', 'wrong passphrase (or corrupted scrypt header)');
  }
  const end = file.length - SCRYPT_TRAILER_SIZE;
  const mac = createHmac('sha256', hmacKey).update(file.subarray(0, end)).digest();
  if (!timingSafeEqual(mac, file.subarray(end))) {
    throw new ScryptFileError('corrupt', 'scrypt file authentication failed (tampered or truncated)');
  }
}

/** Verifies, then decrypts in slices of `slice` bytes (fresh buffers, so
 * the caller may reuse `file` once the slices are consumed). */
export function* decryptSlices(dk: Buffer, file: Buffer, slice = 1 << 20): Generator<Buffer> {
  verifyWithKey(dk, file);
  const decipher = createCipheriv('aes-256-ctr', dk.subarray(0, 32), Buffer.alloc(16));
  const end = file.length - SCRYPT_TRAILER_SIZE;
  for (let off = SCRYPT_HEADER_SIZE; off < end; off += slice) yield decipher.update(file.subarray(off, Math.min(end, off + slice)));
  decipher.final(); // CTR mode: never any output here
}

export function decryptWithKey(dk: Buffer, file: Buffer): Buffer {
  verifyWithKey(dk, file);
  const decipher = createCipheriv('aes-256-ctr', dk.subarray(0, 32), Buffer.alloc(16));
  const plain = decipher.update(file.subarray(SCRYPT_HEADER_SIZE, file.length - SCRYPT_TRAILER_SIZE));
  decipher.final();
  return plain;
}

/** Decrypts a whole scrypt file held in memory; the plaintext is returned
 * only after both HMACs have been checked, so nothing unauthenticated ever
 * leaves this function. */
export async function decryptBuffer(passphrase: Buffer, file: Buffer, limits?: ScryptLimits): Promise<Buffer> {
  parseHeader(file, limits);
  return decryptWithKey(await startDecryption(passphrase, file, limits), file);
}

/** Stream form of decryptBuffer. Authentication covers the whole file and
 * comes last, so the plaintext is held back until the trailer has been
 * checked; `maxSize` bounds what an input may make us hold. */
export class ScryptDecrypt extends Transform {
  private parts: Buffer[] = [];
  private size = 0;
  constructor(
    private readonly passphrase: Buffer,
    private readonly maxSize: number,
    private readonly limits?: ScryptLimits,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.maxSize) {
      cb(new ScryptFileError('too-costly', `scrypt file larger than ${this.maxSize} bytes`));
      return;
    }
    this.parts.push(chunk);
    cb();
  }
  override _flush(cb: TransformCallback): void {
    const file = Buffer.concat(this.parts);
    this.parts = [];
    decryptBuffer(this.passphrase, file, this.limits).then(
      (plain) => cb(null, plain),
      (err: Error) => cb(err),
    );
  }
}

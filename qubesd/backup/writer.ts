// Writes a Qubes backup (format 4) as one stream:
//
//   outer tar:  backup-header, backup-header.hmac,
//               qubes.xml.000.enc, vmN/<file>.000.enc, .001.enc, ...
//
// Each stored file is first wrapped in its own tar archive (the "inner"
// tar, member name `vmN/<file>`), compressed as a whole when asked, cut
// into chunks of CHUNK_SIZE bytes, and each chunk becomes an scrypt file
// whose passphrase binds the backup id and the chunk's name.
//
// Memory: the outer tar header of a chunk needs its size, which for a
// compressed stream is only known once the chunk is full, so one chunk at
// a time is held in memory; nothing else is buffered or written to disk.
import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import { compressor } from './compress.js';
import {
  CHUNK_SIZE,
  DEFAULT_COMPRESSION,
  FORMAT_VERSION,
  HEADER_HMAC_NAME,
  HEADER_NAME,
  QUBES_XML_NAME,
  chunkName,
  chunkPassphrase,
  headerPassphrase,
  newBackupId,
  serializeHeader,
} from './format.js';
import { DEFAULT_SCRYPT_PARAMS, SCRYPT_OVERHEAD, encryptBuffer, encryptPieces, prepareEncryption, type PreparedKey, type ScryptParams } from './scrypt-file.js';
import { TAR_END, paddingFor, tarEntrySize, tarFileHeader, tarSparseHeader } from './tar.js';
import { encodeSparseMap, type SparseMap } from '../../lib/sparse-scan.js';

export interface BackupFile {
  name: string;
  size: number;
  open(): NodeJS.ReadableStream;
  /** Given for volumes: the file is stored as a GNU sparse entry holding
   * only its data regions (as Qubes stores volumes). */
  sparse?: {
    map(signal?: AbortSignal): Promise<SparseMap>;
    read(offset: number, length: number): NodeJS.ReadableStream;
  };
}
export interface BackupVm {
  name: string;
  /** e.g. 'vm3/' */ subdir: string;
  files: BackupFile[];
}
export interface BackupSource {
  /** qubes.xml as it should be restored: the caller marks the backed-up
   * qubes with the backup-content, backup-path and backup-size features. */
  qubesXml: Buffer;
  vms: BackupVm[];
}

export interface BackupProgress {
  bytesDone: number;
  bytesTotal: number;
}

export interface WriteOptions {
  passphrase: Buffer | string;
  /** false: store as is; true: gzip; a string: that filter program. */
  compression?: boolean | string;
  backupId?: string;
  scrypt?: ScryptParams;
  chunkSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /** Modification time put in tar headers (seconds); defaults to now. */
  mtime?: number;
}

export interface BackupSummary {
  backupId: string;
  compressed: boolean;
  compressionFilter: string;
  /** Bytes of qube data stored (sum of the files' sizes). */
  dataBytes: number;
  /** Bytes written to the destination. */
  archiveBytes: number;
  /** Names of the outer tar entries, in order. */
  entries: string[];
}

export class BackupAbortedError extends Error {
  constructor() {
    super('backup cancelled');
    this.name = 'BackupAbortedError';
  }
}

/** Writes to a destination with backpressure; fails as soon as it does. */
class Sink {
  private failure: Error | undefined;
  bytes = 0;
  constructor(
    private readonly out: Writable,
    private readonly signal?: AbortSignal,
  ) {
    out.on('error', (err: Error) => {
      this.failure ??= err;
    });
    out.on('close', () => {
      if (!out.writableFinished) this.failure ??= new Error('backup destination closed before the backup was complete');
    });
  }
  check(): void {
    if (this.signal?.aborted) throw new BackupAbortedError();
    if (this.failure) throw this.failure;
  }
  async write(buf: Buffer): Promise<void> {
    this.check();
    if (buf.length === 0) return;
    this.bytes += buf.length;
    if (!this.out.write(buf)) {
      const ac = new AbortController();
      const waits = [once(this.out, 'drain', { signal: ac.signal }), once(this.out, 'close', { signal: ac.signal })];
      if (this.signal) waits.push(once(this.signal, 'abort', { signal: ac.signal }));
      try {
        await Promise.race(waits);
      } catch {
        /* rejected by ac.abort() or an 'error' event: check() reports */
      } finally {
        ac.abort();
      }
      this.check();
    }
  }
  async finish(): Promise<void> {
    this.check();
    const done = once(this.out, 'finish');
    this.out.end();
    await Promise.race([
      done,
      once(this.out, 'close').then(() => {
        if (!this.out.writableFinished) this.check();
      }),
    ]);
    this.check();
  }
}

function passphraseBuffer(p: Buffer | string): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

/** The inner tar of one stored file, checking that the source delivers
 * exactly the announced number of bytes. */
async function* innerTar(
  path: string,
  file: Pick<BackupFile, 'size' | 'open' | 'sparse'>,
  mtime: number,
  onData: (n: number) => void,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  if (file.sparse) {
    yield* sparseInnerTar(path, file as Required<Pick<BackupFile, 'size' | 'sparse'>>, mtime, onData, signal);
    return;
  }
  yield tarFileHeader({ name: path, size: file.size, mtime });
  let seen = 0;
  const stream = file.open();
  try {
    for await (const piece of stream as AsyncIterable<Buffer | string>) {
      if (signal?.aborted) throw new BackupAbortedError();
      const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
      seen += buf.length;
      if (seen > file.size) throw new Error(`${path}: source is larger than its announced size ${file.size}`);
      onData(buf.length);
      yield buf;
    }
  } finally {
    (stream as Partial<Readable>).destroy?.();
  }
  if (seen !== file.size) throw new Error(`${path}: source ended after ${seen} of ${file.size} bytes`);
  yield Buffer.alloc(paddingFor(file.size));
  yield TAR_END;
}

/** Reads exactly `length` bytes from a stream, as buffers. */
async function* exactly(stream: NodeJS.ReadableStream, length: number, what: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let seen = 0;
  try {
    for await (const piece of stream as AsyncIterable<Buffer | string>) {
      if (signal?.aborted) throw new BackupAbortedError();
      const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
      seen += buf.length;
      if (seen > length) throw new Error(`${what}: source is larger than its announced size ${length}`);
      yield buf;
    }
  } finally {
    (stream as Partial<Readable>).destroy?.();
  }
  if (seen !== length) throw new Error(`${what}: source ended after ${seen} of ${length} bytes`);
}

async function* sparseInnerTar(
  path: string,
  file: Required<Pick<BackupFile, 'size' | 'sparse'>>,
  mtime: number,
  onData: (n: number) => void,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  const map = await file.sparse.map(signal);
  let pos = 0;
  for (const [offset, length] of map) {
    if (offset < pos || length <= 0 || offset + length > file.size) throw new Error(`${path}: invalid sparse map`);
    pos = offset + length;
  }
  const mapBlock = encodeSparseMap(map, file.size);
  const stored = mapBlock.length + map.reduce((a, [, l]) => a + l, 0);
  yield tarSparseHeader({ name: path, storedSize: stored, realSize: file.size, mtime });
  yield mapBlock;
  let done = 0;
  for (const [offset, length] of map) {
    onData(offset - done); // the hole before this region counts as handled
    for await (const buf of exactly(file.sparse.read(offset, length), length, path, signal)) {
      onData(buf.length);
      yield buf;
    }
    done = offset + length;
  }
  onData(file.size - done);
  yield Buffer.alloc(paddingFor(stored));
  yield TAR_END;
}

function* takeEach(pieces: Array<Buffer | undefined>): Generator<Buffer> {
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i]!;
    pieces[i] = undefined;
    yield p;
  }
}

/** How many chunk keys to derive in advance. */
const KEYS_AHEAD = 1;

/** Bytes of the inner tar written by innerTar() for a file. */
function innerTarSize(path: string, size: number): number {
  return tarEntrySize(path, size) + TAR_END.length;
}

const EMPTY_FILE: BackupFile = { name: 'empty', size: 0, open: () => Readable.from([]) };

function validateSource(source: BackupSource): void {
  const subdirs = new Set<string>();
  for (const vm of source.vms) {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*\/$/.test(vm.subdir)) throw new Error(`invalid backup subdir ${JSON.stringify(vm.subdir)} for ${vm.name}`);
    if (subdirs.has(vm.subdir)) throw new Error(`backup subdir ${vm.subdir} used twice`);
    subdirs.add(vm.subdir);
    const names = new Set<string>();
    for (const file of vm.files) {
      if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(file.name)) throw new Error(`invalid file name ${JSON.stringify(file.name)} in ${vm.name}`);
      if (names.has(file.name)) throw new Error(`file ${file.name} listed twice for ${vm.name}`);
      if (!Number.isSafeInteger(file.size) || file.size < 0) throw new Error(`invalid size for ${vm.name}/${file.name}`);
      names.add(file.name);
    }
  }
}

export async function writeBackup(source: BackupSource, out: Writable, opts: WriteOptions): Promise<BackupSummary> {
  validateSource(source);
  const passphrase = passphraseBuffer(opts.passphrase);
  if (passphrase.length === 0) throw new Error('empty backup passphrase');
  const backupId = opts.backupId ?? newBackupId();
  const compressed = opts.compression !== undefined && opts.compression !== false;
  const compressionFilter = typeof opts.compression === 'string' ? opts.compression : DEFAULT_COMPRESSION;
  const params = opts.scrypt ?? DEFAULT_SCRYPT_PARAMS;
  const chunkSize = opts.chunkSize ?? CHUNK_SIZE;
  const mtime = opts.mtime ?? Math.floor(Date.now() / 1000);
  const sink = new Sink(out, opts.signal);
  const entries: string[] = [];

  const bytesTotal = source.vms.reduce((a, vm) => a + vm.files.reduce((b, f) => b + f.size, 0), 0);
  let bytesDone = 0;
  let lastReport = 0;
  const progress = (n: number): void => {
    bytesDone += n;
    const now = Date.now();
    if (opts.onProgress && (now - lastReport >= 200 || bytesDone === bytesTotal)) {
      lastReport = now;
      opts.onProgress({ bytesDone, bytesTotal });
    }
  };

  const writeEntry = async (name: string, pieces: Iterable<Buffer>, size: number): Promise<void> => {
    entries.push(name);
    await sink.write(tarFileHeader({ name, size, mtime }));
    for (const p of pieces) await sink.write(p);
    await sink.write(Buffer.alloc(paddingFor(size)));
  };

  const storeFile = async (path: string, file: Pick<BackupFile, 'size' | 'open' | 'sparse'>, count: boolean): Promise<void> => {
    const plain = Readable.from(innerTar(path, file, mtime, count ? progress : () => undefined, opts.signal), { objectMode: false });
    let data: AsyncIterable<Buffer> = plain;
    let filterDone: Promise<void> = Promise.resolve();
    let kill = (): void => undefined;
    if (compressed) {
      const f = compressor(compressionFilter);
      plain.on('error', (err) => f.stream.destroy(err));
      plain.pipe(f.stream);
      data = f.stream;
      filterDone = f.done;
      kill = f.kill;
    }
    // Keys are derived a few chunks ahead on the thread pool, so the KDF
    // overlaps with reading and encrypting, but not beyond the chunks the
    // uncompressed stream would need (so small files waste no KDF runs);
    // a key past that is derived when needed.
    const maxChunks = Math.max(1, Math.ceil(innerTarSize(path, file.size) / chunkSize));
    const keys = new Map<number, Promise<PreparedKey>>();
    const keyFor = (i: number): Promise<PreparedKey> => {
      let k = keys.get(i);
      if (!k) {
        k = prepareEncryption(chunkPassphrase(backupId, chunkName(path, i), passphrase), params);
        k.catch(() => undefined);
        keys.set(i, k);
      }
      return k;
    };
    let index = 0;
    let parts: Buffer[] = [];
    let length = 0;
    const flush = async (): Promise<void> => {
      for (let ahead = 1; ahead <= KEYS_AHEAD && index + ahead < maxChunks; ahead++) keyFor(index + ahead);
      const k = await keyFor(index);
      keys.delete(index);
      // Hand the pieces over one at a time and forget each once encrypted,
      // so the chunk's plaintext is freed as its ciphertext goes out.
      const pieces = parts;
      parts = [];
      await writeEntry(`${chunkName(path, index)}.enc`, encryptPieces(k, takeEach(pieces)), length + SCRYPT_OVERHEAD);
      index++;
      parts = [];
      length = 0;
    };
    for (let i = 0; i <= KEYS_AHEAD && i < maxChunks; i++) keyFor(i);
    try {
      for await (const piece of data) {
        let rest = piece;
        while (rest.length > 0) {
          const take = Math.min(rest.length, chunkSize - length);
          parts.push(rest.subarray(0, take));
          length += take;
          rest = rest.subarray(take);
          if (length === chunkSize) await flush();
        }
      }
      if (length > 0 || index === 0) await flush();
      await filterDone;
    } catch (err) {
      kill();
      plain.destroy();
      // A filter that dies shows up first as EPIPE on its input; its own
      // exit status says more.
      const code = (err as NodeJS.ErrnoException).code;
      if (compressed && (code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE')) {
        const filterError = await filterDone.then(
          () => undefined,
          (e: unknown) => e,
        );
        if (filterError) throw filterError;
      }
      throw err;
    }
  };

  const header = serializeHeader({
    version: FORMAT_VERSION,
    encrypted: true,
    compressed,
    compressionFilter,
    hmacAlgorithm: 'scrypt',
    backupId,
  });
  await writeEntry(HEADER_NAME, [header], header.length);
  const hmac = await encryptBuffer(headerPassphrase(passphrase), header, params);
  await writeEntry(HEADER_HMAC_NAME, [hmac], hmac.length);
  const xml = source.qubesXml;
  await storeFile(QUBES_XML_NAME, { size: xml.length, open: () => Readable.from([xml]) }, false);
  for (const vm of source.vms) {
    // Qubes' restore needs the qube's directory in the archive even when
    // nothing else is stored for it, hence an empty placeholder file.
    const files = vm.files.length ? vm.files : [EMPTY_FILE];
    for (const file of files) await storeFile(vm.subdir + file.name, file, true);
  }
  await sink.write(TAR_END);
  await sink.finish();
  opts.onProgress?.({ bytesDone, bytesTotal });
  return { backupId, compressed, compressionFilter, dataBytes: bytesDone, archiveBytes: sink.bytes, entries };
}

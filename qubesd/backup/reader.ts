// Reads a Qubes backup (format 4) in one pass over the archive stream.
// Every chunk is authenticated (scrypt HMAC, with its name and the backup
// id bound into the key) before any of its bytes are decompressed or
// handed on, chunks must come in order, and each stored file must arrive
// complete; any deviation is a typed BackupError.
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { decompressor, isFilterName } from './compress.js';
import {
  CHUNK_SIZE,
  HEADER_HMAC_NAME,
  HEADER_MAX_SIZE,
  HEADER_NAME,
  KNOWN_COMPRESSION_FILTERS,
  OPTIONAL_COMPRESSION_FILTERS,
  QUBES_XML_NAME,
  BackupFormatError,
  chunkPassphrase,
  headerPassphrase,
  parseHeader,
  type BackupHeader,
} from './format.js';
import {
  DEFAULT_SCRYPT_LIMITS,
  SCRYPT_HEADER_SIZE,
  SCRYPT_OVERHEAD,
  ScryptFileError,
  decryptBuffer,
  decryptSlices,
  startDecryption,
  type ScryptLimits,
} from './scrypt-file.js';
import { ByteSource, TarError, tarEntries, type TarEntry } from './tar.js';

export type BackupErrorCode = 'bad-passphrase' | 'tampered' | 'truncated' | 'format' | 'unsupported' | 'aborted';

export class BackupError extends Error {
  constructor(
    readonly code: BackupErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BackupError';
  }
}

export interface ReadOptions {
  passphrase: Buffer | string;
  signal?: AbortSignal;
  scryptLimits?: ScryptLimits;
  /** Largest chunk (plaintext) accepted; the whole chunk is held in memory
   * while it is authenticated. */
  maxChunkSize?: number;
  /** Compression filters a backup header may name (Qubes' list by default);
   * bare program names only (anything else is ignored), run from PATH. */
  allowedFilters?: readonly string[];
  /** Names accepted on top of those (e.g. what `qvm-backup --compress-filter` users chose). */
  extraFilters?: readonly string[];
  /** Archive bytes consumed so far. */
  onProgress?: (bytesRead: number) => void;
}

export interface StoredFile {
  /** e.g. 'vm3/' */
  dir: string;
  /** e.g. 'private.img' */
  name: string;
  size: number;
  /** The file's contents; consume it (or destroy it) before returning. */
  stream: Readable;
}

export interface ReadHandlers {
  /** Given the authenticated qubes.xml, names the directories (e.g.
   * 'vm3/') whose files are wanted; the others are skipped unread. */
  select?(qubesXml: string, header: BackupHeader): Iterable<string> | Promise<Iterable<string>>;
  onFile?(file: StoredFile): Promise<void>;
}

export interface ReadResult {
  header: BackupHeader;
  qubesXml: string;
  /** Files delivered to onFile, as 'vm3/private.img' with their sizes. */
  files: Array<{ path: string; size: number }>;
}

const QUBES_XML_MAX = 64 * 1024 * 1024;

function passphraseBuffer(p: Buffer | string): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

function asBackupError(err: unknown, context: string): BackupError {
  if (err instanceof BackupError) return err;
  if (err instanceof ScryptFileError) {
    if (err.code === 'bad-passphrase') return new BackupError('tampered', `${context}: authentication failed (tampered, or not from this backup)`);
    if (err.code === 'truncated') return new BackupError('truncated', `${context}: ${err.message}`);
    return new BackupError(err.code === 'unsupported' || err.code === 'too-costly' ? 'unsupported' : 'tampered', `${context}: ${err.message}`);
  }
  if (err instanceof TarError)
    return new BackupError(err.code === 'truncated' ? 'truncated' : err.code === 'unsupported' ? 'unsupported' : 'format', `${context}: ${err.message}`);
  if (err instanceof BackupFormatError) return new BackupError('format', `${context}: ${err.message}`);
  if ((err as { name?: string })?.name === 'AbortError') return new BackupError('aborted', 'restore cancelled');
  return new BackupError('format', `${context}: ${(err as Error)?.message ?? String(err)}`);
}

/** Reads a whole entry, into `scratch` when it is large enough. */
async function readAll(entry: TarEntry, max: number, what: string, onHeader?: (head: Buffer) => void, scratch?: Buffer): Promise<Buffer> {
  if (entry.size > max) throw new BackupError('format', `${what} too large (${entry.size} bytes)`);
  const out = scratch && scratch.length >= entry.size ? scratch.subarray(0, entry.size) : Buffer.allocUnsafe(entry.size);
  let off = 0;
  for await (const p of entry.body()) {
    p.copy(out, off);
    const before = off;
    off += p.length;
    if (onHeader && before < SCRYPT_HEADER_SIZE && off >= SCRYPT_HEADER_SIZE) onHeader(out.subarray(0, SCRYPT_HEADER_SIZE));
  }
  return out;
}

/** Path of a stored file must be `qubes.xml` or `<dir>/<name>` with plain
 * components: nothing that could escape a restore directory. */
const STORED_PATH = /^(?:qubes\.xml|[A-Za-z0-9_-][A-Za-z0-9_.-]*\/[A-Za-z0-9_-][A-Za-z0-9_.-]*)$/;
const CHUNK_ENTRY = /^(.+)\.(\d{3,})\.enc$/;

/** One stored file being reassembled: authenticated chunks go in, the
 * inner tar comes out through a decompressor to the handler. */
class StoredFileSink {
  private readonly input = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly task: Promise<void>;
  private readonly filterDone: Promise<void>;
  private readonly kill: () => void;
  nextIndex = 0;
  constructor(
    readonly path: string,
    header: BackupHeader,
    deliver: (entry: TarEntry) => Promise<void>,
  ) {
    let data: AsyncIterable<Buffer> = this.input;
    this.filterDone = Promise.resolve();
    this.kill = () => undefined;
    if (header.compressed) {
      const f = decompressor(header.compressionFilter);
      this.input.pipe(f.stream);
      data = f.stream;
      this.filterDone = f.done;
      this.kill = f.kill;
    }
    this.task = (async () => {
      const src = ByteSource.from(data);
      let count = 0;
      let directory = false;
      for await (const entry of tarEntries(src)) {
        // A stored directory tree is read through but not delivered: like
        // Qubes' restore, only files someone asked for are handed out.
        if (directory || (count === 0 && entry.type === '5')) {
          directory = true;
          continue;
        }
        if (++count > 1 || entry.name !== path) throw new BackupError('format', `unexpected member ${JSON.stringify(entry.name)} in the archive of ${path}`);
        if (entry.type !== '0') throw new BackupError('unsupported', `${path} is not a regular file in the backup`);
        await deliver(entry);
      }
      if (count === 0 && !directory) throw new BackupError('format', `no file in the archive of ${path}`);
      // Tar pads its output to whole records; anything after the end marker is ignored.
      await src.drain();
    })();
    this.task.catch(() => undefined);
    this.filterDone.catch(() => undefined);
  }

  /** Feeds an authenticated chunk slice by slice, with backpressure. */
  async write(slices: Iterable<Buffer>): Promise<void> {
    for (const slice of slices) {
      if (this.input.write(slice)) continue;
      await Promise.race([
        once(this.input, 'drain'),
        this.task.then(() => {
          throw new BackupError('format', `${this.path}: data after the end of its archive`);
        }),
      ]);
    }
  }

  async end(): Promise<void> {
    this.input.end();
    try {
      await Promise.all([this.task, this.filterDone]);
    } catch (err) {
      this.kill();
      throw err instanceof BackupError ? err : asBackupError(err, `${this.path}: incomplete or corrupt data (missing chunks?)`);
    }
  }

  destroy(): void {
    this.kill();
    this.input.destroy();
  }
}

/** Reads the whole archive; see ReadHandlers. Throws BackupError. */
export async function readBackup(input: AsyncIterable<Buffer>, opts: ReadOptions, handlers: ReadHandlers = {}): Promise<ReadResult> {
  const passphrase = passphraseBuffer(opts.passphrase);
  const limits = opts.scryptLimits ?? DEFAULT_SCRYPT_LIMITS;
  const maxChunk = (opts.maxChunkSize ?? CHUNK_SIZE) + SCRYPT_OVERHEAD;
  const allowed = [...(opts.allowedFilters ?? [...KNOWN_COMPRESSION_FILTERS, ...OPTIONAL_COMPRESSION_FILTERS]), ...(opts.extraFilters ?? [])].filter(
    isFilterName,
  );
  const src = ByteSource.from(input);
  const state = { endMarkerSeen: false };
  const entries = tarEntries(src, { ignoreZeros: true, state });
  const next = async (): Promise<TarEntry | undefined> => {
    if (opts.signal?.aborted) throw new BackupError('aborted', 'restore cancelled');
    const r = await entries.next();
    opts.onProgress?.(src.consumed);
    return r.done ? undefined : r.value;
  };
  let current: StoredFileSink | undefined;
  try {
    // 1. The header and its authenticated copy, before anything else.
    // (An entry's body must be read before asking for the next entry.)
    const first = await next();
    if (first?.name !== HEADER_NAME) throw new BackupError(first ? 'format' : 'truncated', 'not a Qubes backup (no backup-header at its start)');
    const headerText = await readAll(first, HEADER_MAX_SIZE, HEADER_NAME);
    const second = await next();
    if (second?.name !== HEADER_HMAC_NAME) throw new BackupError(second ? 'format' : 'truncated', 'no backup-header.hmac after backup-header');
    const hmac = await readAll(second, HEADER_MAX_SIZE + SCRYPT_OVERHEAD, HEADER_HMAC_NAME);
    let verified: Buffer;
    try {
      verified = await decryptBuffer(headerPassphrase(passphrase), hmac, limits);
    } catch (err) {
      if (err instanceof ScryptFileError && err.code === 'bad-passphrase')
        throw new BackupError('bad-passphrase', 'wrong passphrase (or a tampered backup header)');
      if (err instanceof ScryptFileError && err.code === 'not-scrypt')
        throw new BackupError('unsupported', 'backup header is not scrypt-protected (backup format older than 4?)');
      throw asBackupError(err, HEADER_HMAC_NAME);
    }
    if (!verified.equals(headerText)) throw new BackupError('tampered', 'backup-header does not match its authenticated copy');
    const header = parseHeader(headerText);
    if (header.compressed && !allowed.includes(header.compressionFilter)) {
      throw new BackupError('unsupported', `compression filter ${JSON.stringify(header.compressionFilter)} is not allowed`);
    }

    const files: Array<{ path: string; size: number }> = [];
    let qubesXml: string | undefined;
    let selected = new Set<string>();
    const seenDirs = new Set<string>();
    const xmlParts: Buffer[] = [];
    let skipping: string | undefined;
    let scratch: Buffer | undefined;

    const startFile = (path: string): StoredFileSink => {
      if (path === QUBES_XML_NAME) {
        return new StoredFileSink(path, header, async (entry) => {
          if (entry.size > QUBES_XML_MAX) throw new BackupError('format', 'qubes.xml too large');
          for await (const p of entry.body()) xmlParts.push(p);
        });
      }
      const slash = path.indexOf('/');
      const dir = path.slice(0, slash + 1);
      const name = path.slice(slash + 1);
      return new StoredFileSink(path, header, async (entry) => {
        const stream = Readable.from(entry.body(), { objectMode: false });
        files.push({ path, size: entry.size });
        try {
          if (handlers.onFile) await handlers.onFile({ dir, name, size: entry.size, stream });
          else stream.resume();
          if (!stream.readableEnded) await once(stream, 'end').catch(() => undefined);
        } finally {
          stream.destroy();
        }
      });
    };

    const finishCurrent = async (): Promise<void> => {
      if (!current) return;
      const done = current;
      current = undefined;
      await done.end();
      if (done.path === QUBES_XML_NAME) {
        qubesXml = Buffer.concat(xmlParts).toString('utf8');
        selected = new Set(handlers.select ? await handlers.select(qubesXml, header) : []);
      }
    };

    // 2. Chunks of stored files; qubes.xml first.
    for (let entry = await next(); entry; entry = await next()) {
      const m = CHUNK_ENTRY.exec(entry.name);
      if (!m || !STORED_PATH.test(m[1]!)) throw new BackupError('format', `unexpected file in archive: ${JSON.stringify(entry.name)}`);
      const path = m[1]!;
      const index = Number(m[2]);
      if (entry.type !== '0') throw new BackupError('format', `${entry.name} is not a regular file`);
      if (current && current.path !== path) await finishCurrent();
      if (qubesXml === undefined && path !== QUBES_XML_NAME) throw new BackupError('format', 'qubes.xml is not the first stored file');
      if (path === skipping) continue; // body skipped unread
      if (!current) {
        if (index !== 0) throw new BackupError('truncated', `${entry.name}: earlier chunks of ${path} are missing`);
        if (path === QUBES_XML_NAME && qubesXml !== undefined) throw new BackupError('format', 'qubes.xml stored twice');
        const dir = path.slice(0, path.indexOf('/') + 1);
        if (path !== QUBES_XML_NAME && !selected.has(dir)) {
          skipping = path;
          continue;
        }
        if (path !== QUBES_XML_NAME && files.some((f) => f.path === path)) throw new BackupError('format', `${path} stored twice`);
        if (dir) seenDirs.add(dir);
        current = startFile(path);
      } else if (index !== current.nextIndex) {
        throw new BackupError('format', `${entry.name}: expected chunk ${current.nextIndex} of ${path}`);
      }
      if (entry.size > maxChunk) throw new BackupError('unsupported', `${entry.name}: chunk larger than ${maxChunk} bytes`);
      // The key derivation starts as soon as the chunk's scrypt header is
      // in, and runs while the rest of the chunk is read.
      const name = entry.name.slice(0, -'.enc'.length);
      const keyPassphrase = chunkPassphrase(header.backupId, name, passphrase);
      let key: Promise<Buffer> | undefined;
      const begin = (head: Buffer): void => {
        key = startDecryption(keyPassphrase, head, limits);
        key.catch(() => undefined);
      };
      let slices: Iterable<Buffer>;
      try {
        // One buffer serves every chunk: decryption copies out of it, and
        // the next chunk is read only after this one has been consumed.
        const encrypted = await readAll(entry, maxChunk, entry.name, begin, (scratch ??= Buffer.allocUnsafe(maxChunk)));
        if (!key) begin(encrypted);
        const decrypted = decryptSlices(await key!, encrypted);
        // Authentication happens on the first step, before any output.
        const first = decrypted.next();
        slices = first.done
          ? []
          : (function* () {
              yield first.value;
              yield* decrypted;
            })();
      } catch (err) {
        throw asBackupError(err, entry.name);
      }
      current.nextIndex = index + 1;
      await current.write(slices);
    }
    await finishCurrent();
    if (!state.endMarkerSeen) throw new BackupError('truncated', 'archive ends in the middle (no end-of-archive marker)');
    if (qubesXml === undefined) throw new BackupError('truncated', 'archive holds no qubes.xml');
    for (const dir of selected) {
      if (!seenDirs.has(dir)) throw new BackupError('truncated', `archive holds no data for ${dir}`);
    }
    return { header, qubesXml, files };
  } catch (err) {
    current?.destroy();
    throw asBackupError(err, 'backup archive');
  } finally {
    await entries.return(undefined).catch(() => undefined);
    await src.close().catch(() => undefined);
  }
}

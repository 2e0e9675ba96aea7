// Facts about Qubes backup format version 4 shared by the writer and the
// reader: file names, the header file, and how each stored file's scrypt
// passphrase is bound to its name and to the backup it belongs to.
export const FORMAT_VERSION = 4;
export const HEADER_NAME = 'backup-header';
export const HEADER_HMAC_NAME = 'backup-header.hmac';
export const QUBES_XML_NAME = 'qubes.xml';
/** Plaintext bytes per chunk of a stored file (before encryption). */
export const CHUNK_SIZE = 100 * 1024 * 1024;
/** Qubes refuses backup headers larger than this. */
export const HEADER_MAX_SIZE = 4096;
export const DEFAULT_COMPRESSION = 'gzip';
/** Filters Qubes' restore accepts; the optional ones only when installed. */
export const KNOWN_COMPRESSION_FILTERS = ['gzip', 'bzip2', 'xz'] as const;
export const OPTIONAL_COMPRESSION_FILTERS = ['lzma', 'pbzip2', 'pigz', 'zstd', 'zstdmt'] as const;

export interface BackupHeader {
  version: number;
  encrypted: boolean;
  compressed: boolean;
  compressionFilter: string;
  hmacAlgorithm: string;
  backupId: string;
}

export class BackupFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupFormatError';
  }
}

/** Same key order as Qubes writes: version first. */
export function serializeHeader(h: BackupHeader): Buffer {
  return Buffer.from(
    [
      `version=${h.version}`,
      `encrypted=${h.encrypted ? 'True' : 'False'}`,
      `compressed=${h.compressed ? 'True' : 'False'}`,
      `compression-filter=${h.compressionFilter}`,
      `hmac-algorithm=${h.hmacAlgorithm}`,
      `backup-id=${h.backupId}`,
    ].join('\n') + '\n',
    'ascii',
  );
}

/** Parses an (already authenticated) header and accepts only what this
 * implementation can restore: version 4, encrypted with scrypt. */
export function parseHeader(text: Buffer): BackupHeader {
  const fields = new Map<string, string>();
  for (const line of text.toString('ascii').split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new BackupFormatError(`malformed backup header line: ${JSON.stringify(line)}`);
    const key = line.slice(0, eq);
    if (fields.has(key)) throw new BackupFormatError(`duplicate backup header key: ${key}`);
    fields.set(key, line.slice(eq + 1));
  }
  const bool = (key: string): boolean => {
    const v = fields.get(key);
    if (v === 'True') return true;
    if (v === 'False') return false;
    throw new BackupFormatError(`backup header: ${key} must be True or False, got ${JSON.stringify(v)}`);
  };
  const version = Number(fields.get('version'));
  if (version !== FORMAT_VERSION)
    throw new BackupFormatError(`unsupported backup format version ${JSON.stringify(fields.get('version'))} (only 4 is supported)`);
  const header: BackupHeader = {
    version,
    encrypted: bool('encrypted'),
    compressed: bool('compressed'),
    compressionFilter: fields.get('compression-filter') ?? DEFAULT_COMPRESSION,
    hmacAlgorithm: fields.get('hmac-algorithm') ?? '',
    backupId: fields.get('backup-id') ?? '',
  };
  if (!header.encrypted || header.hmacAlgorithm !== 'scrypt') {
    throw new BackupFormatError('format 4 backups must be encrypted and authenticated with scrypt');
  }
  if (!/^[A-Za-z0-9_.:-]+$/.test(header.backupId)) throw new BackupFormatError(`invalid backup-id ${JSON.stringify(header.backupId)}`);
  return header;
}

/** Name of chunk `index` of a stored file, without the `.enc` suffix. */
export function chunkName(storedPath: string, index: number): string {
  return `${storedPath}.${String(index).padStart(3, '0')}`;
}

/** The passphrase fed to scrypt for one stored file: binding the name and
 * the backup id means a chunk cannot be renamed, reordered or moved into
 * another backup without failing authentication. */
export function chunkPassphrase(backupId: string, nameWithoutEnc: string, passphrase: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${backupId}!${nameWithoutEnc}!`, 'utf8'), passphrase]);
}

export function headerPassphrase(passphrase: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${HEADER_NAME}!`, 'utf8'), passphrase]);
}

/** Backup id as Qubes makes it: local time stamp and a process id. */
export function newBackupId(now = new Date(), pid = process.pid): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}T${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}-${pid}`;
}

/** Default archive file name for a directory destination in dom0. */
export function archiveFileName(now = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `qubes-${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}T${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
}

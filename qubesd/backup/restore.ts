// Restore entry points over readBackup: list a backup, verify it, or
// extract chosen qubes' files into a directory. Extraction goes into a
// hidden staging directory that is renamed into place only after the whole
// archive has been read and authenticated, so a wrong passphrase, a
// tampered or a truncated archive restores nothing at all.
import { writeSparseFile } from '../../lib/sparse-scan.js';
import { createReadStream, promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { BackupHeader } from './format.js';
import { backedUpQubes, type BackedUpQube } from './qubes-xml.js';
import { BackupError, readBackup, type ReadHandlers, type ReadOptions, type ReadResult } from './reader.js';

export type { BackedUpQube } from './qubes-xml.js';

export interface ArchiveOptions extends Omit<ReadOptions, 'onProgress'> {
  /** Fraction of the archive read, 0..1. */
  onProgress?: (fraction: number, bytesRead: number, bytesTotal: number) => void;
}

async function readArchive(archive: string, opts: ArchiveOptions, handlers: ReadHandlers): Promise<ReadResult> {
  const total = (await fsp.stat(archive)).size;
  const stream = createReadStream(archive, { highWaterMark: 1 << 20 });
  try {
    return await readBackup(
      stream,
      {
        ...opts,
        onProgress: opts.onProgress ? (n) => opts.onProgress!(total ? n / total : 1, n, total) : undefined,
      },
      handlers,
    );
  } finally {
    stream.destroy();
  }
}

export interface BackupListing {
  header: BackupHeader;
  qubesXml: string;
  qubes: BackedUpQube[];
}

class ListingDone extends Error {}

/** Authenticates the header and qubes.xml and lists the backed-up qubes,
 * without reading the rest of the archive. */
export async function listBackup(archive: string, opts: ArchiveOptions): Promise<BackupListing> {
  let listing: BackupListing | undefined;
  try {
    await readArchive(archive, opts, {
      select(qubesXml, header) {
        listing = { header, qubesXml, qubes: backedUpQubes(qubesXml) };
        throw new ListingDone();
      },
    });
  } catch (err) {
    if (!listing) throw err;
  }
  return listing!;
}

/** The chosen qubes (all by default). dom0's home directory, which Qubes
 * stores as a directory tree under dom0-home/, is not restored here: it is
 * left out by default and refused when asked for. */
function chooseQubes(xml: string, names: readonly string[] | undefined): BackedUpQube[] {
  const all = backedUpQubes(xml);
  if (!names || names.length === 0) return all.filter((q) => q.klass !== 'AdminVM');
  const missing = names.filter((n) => !all.some((q) => q.name === n));
  if (missing.length) throw new BackupError('format', `not in this backup: ${missing.join(', ')}`);
  const chosen = all.filter((q) => names.includes(q.name));
  if (chosen.some((q) => q.klass === 'AdminVM')) throw new BackupError('unsupported', 'restoring the dom0 home directory is not supported');
  return chosen;
}

/** Reads and authenticates the whole archive (the chosen qubes' data, or
 * all of it), delivering nothing; use before an import that cannot be
 * undone. */
export async function verifyBackup(archive: string, opts: ArchiveOptions & { qubes?: readonly string[] } = { passphrase: '' }): Promise<ReadResult> {
  return readArchive(archive, opts, { select: (xml) => chooseQubes(xml, opts.qubes).map((q) => q.path) });
}

/** For the Admin API import: the parsed qubes.xml comes first (choose the
 * qubes there), then each chosen qube's files as streams. Callers that
 * create qubes should run verifyBackup first, since a failure late in the
 * archive can only be detected once it is reached. */
export async function streamBackup(
  archive: string,
  opts: ArchiveOptions & { qubes?: readonly string[] },
  onQubes: (qubes: BackedUpQube[], qubesXml: string, header: BackupHeader) => void | Promise<void>,
  onFile: (qube: BackedUpQube, name: string, size: number, stream: NodeJS.ReadableStream) => Promise<void>,
): Promise<ReadResult> {
  let chosen: BackedUpQube[] = [];
  return readArchive(archive, opts, {
    async select(xml, header) {
      chosen = chooseQubes(xml, opts.qubes);
      await onQubes(chosen, xml, header);
      return chosen.map((q) => q.path);
    },
    async onFile(file) {
      const qube = chosen.find((q) => q.path === file.dir)!;
      await onFile(qube, file.name, file.size, file.stream);
    },
  });
}

export interface RestoreResult {
  qubes: Array<{ name: string; dir: string; files: string[] }>;
  qubesXml: string;
}

/** Extracts the chosen qubes (all when none named) into `destDir/<qube>/`
 * and qubes.xml into `destDir/qubes.xml`; refuses to replace anything. */
export async function restoreToDirectory(archive: string, destDir: string, opts: ArchiveOptions & { qubes?: readonly string[] }): Promise<RestoreResult> {
  await fsp.mkdir(destDir, { recursive: true });
  const staging = join(destDir, `.qubes-restore-${randomBytes(6).toString('hex')}`);
  await fsp.mkdir(staging, { mode: 0o700 });
  const restored = new Map<string, string[]>();
  try {
    let chosen: BackedUpQube[] = [];
    const result = await readArchive(archive, opts, {
      async select(xml) {
        chosen = chooseQubes(xml, opts.qubes);
        for (const q of chosen) {
          if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(q.name)) throw new BackupError('format', `invalid qube name in backup: ${JSON.stringify(q.name)}`);
          await fsp.access(join(destDir, q.name)).then(
            () => {
              throw new Error(`${join(destDir, q.name)} already exists`);
            },
            () => undefined,
          );
          await fsp.mkdir(join(staging, q.name));
          restored.set(q.name, []);
        }
        return chosen.map((q) => q.path);
      },
      async onFile(file) {
        const qube = chosen.find((q) => q.path === file.dir)!;
        await writeSparseFile(file.stream as AsyncIterable<Buffer>, join(staging, qube.name, file.name));
        restored.get(qube.name)!.push(file.name);
      },
    });
    await fsp.writeFile(join(staging, 'qubes.xml'), result.qubesXml, { mode: 0o600 });
    // Everything authenticated: move into place.
    await fsp.link(join(staging, 'qubes.xml'), join(destDir, 'qubes.xml')).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    for (const name of restored.keys()) await fsp.rename(join(staging, name), join(destDir, name));
    return { qubesXml: result.qubesXml, qubes: [...restored].map(([name, files]) => ({ name, dir: join(destDir, name), files })) };
  } finally {
    await fsp.rm(staging, { recursive: true, force: true });
  }
}

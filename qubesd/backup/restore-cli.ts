// qubes-backup-restore ARCHIVE [--passphrase-file F] [--list] [--verify-only] [--dest-dir DIR]
//                      [--qubesd-socket SOCK [--internal-socket SOCK]] [--compression-filter NAME]... [qube ...]
// Lists, verifies, extracts a Qubes backup (format 4), or restores its
// qubes into a running qubesd through the Admin API. Without
// --passphrase-file the passphrase is read from stdin (first line).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BackupError } from './reader.js';
import { isFilterName } from './compress.js';
import { listBackup, restoreToDirectory, verifyBackup } from './restore.js';
import { restoreThroughAdminApi } from './admin-restore.js';
import { dirname, join } from 'node:path';

const USAGE = `usage: qubes-backup-restore ARCHIVE [--passphrase-file F] [--list] [--verify-only] [--dest-dir DIR]
                            [--qubesd-socket SOCK [--internal-socket SOCK]] [--compression-filter NAME]... [qube ...]
--compression-filter NAME: also accept archives compressed with program NAME
(a bare name found on PATH; gzip, bzip2, xz, lzma, pbzip2, pigz, zstd and zstdmt always are)`;

function readPassphrase(file: string | undefined): string {
  const text = readFileSync(file ?? 0, 'utf8');
  const line = text.split('\n')[0] ?? '';
  if (!line) throw new Error('empty passphrase');
  return line;
}

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'passphrase-file': { type: 'string' },
        list: { type: 'boolean' },
        'verify-only': { type: 'boolean' },
        'dest-dir': { type: 'string' },
        'qubesd-socket': { type: 'string' },
        'internal-socket': { type: 'string' },
        'compression-filter': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const [archive, ...qubes] = positionals;
  if (!archive || (!values.list && !values['verify-only'] && !values['dest-dir'] && !values['qubesd-socket'])) {
    process.stderr.write(`${USAGE}\n(one of --list, --verify-only, --dest-dir or --qubesd-socket is needed)\n`);
    return 2;
  }
  const extraFilters = values['compression-filter'] ?? [];
  const badFilter = extraFilters.find((f) => !isFilterName(f));
  if (badFilter !== undefined) {
    process.stderr.write(`qubes-backup-restore: --compression-filter takes a program name found on PATH, not ${JSON.stringify(badFilter)}\n`);
    return 2;
  }
  const passphrase = readPassphrase(values['passphrase-file']);
  let lastShown = -1;
  const onProgress = process.stderr.isTTY
    ? (f: number) => {
        const pct = Math.floor(f * 100);
        if (pct !== lastShown) {
          lastShown = pct;
          process.stderr.write(`\r${pct}%`);
        }
      }
    : undefined;
  if (values.list) {
    const l = await listBackup(archive, { passphrase, extraFilters });
    process.stdout.write(`backup-id ${l.header.backupId}, compressed: ${l.header.compressed ? l.header.compressionFilter : 'no'}\n`);
    for (const q of l.qubes) process.stdout.write(`${q.name}\t${q.klass}\t${q.path}\t${human(q.size)}\n`);
    return 0;
  }
  if (values['verify-only']) {
    const r = await verifyBackup(archive, { passphrase, qubes, onProgress, extraFilters });
    if (onProgress) process.stderr.write('\n');
    process.stdout.write(`verified ${r.files.length} files\n`);
    return 0;
  }
  if (values['qubesd-socket']) {
    const socket = values['qubesd-socket'];
    // Progress: a percentage on a terminal, a line per tenth otherwise.
    let shown = '';
    const progress = (phase: 'verify' | 'restore', f: number): void => {
      const pct = Math.floor(f * 100);
      const key = process.stderr.isTTY ? `${phase}${pct}` : `${phase}${Math.floor(pct / 10)}`;
      if (key === shown) return;
      shown = key;
      process.stderr.write(
        process.stderr.isTTY ? `\r${phase === 'verify' ? 'verifying' : 'restoring'} ${pct}%` : `${phase === 'verify' ? 'verifying' : 'restoring'} ${pct}%\n`,
      );
    };
    const restored = await restoreThroughAdminApi(archive, {
      passphrase,
      socket,
      internalSocket: values['internal-socket'] ?? join(dirname(socket), 'qubesd.internal.sock'),
      qubes,
      extraFilters,
      onProgress: progress,
      onWarning: (m) => process.stderr.write(`\nwarning: ${m}\n`),
    });
    if (process.stderr.isTTY) process.stderr.write('\n');
    for (const q of restored) {
      process.stdout.write(`${q.backupName}${q.name !== q.backupName ? ` -> ${q.name}` : ''}: ${q.files.join(' ')}\n`);
    }
    return 0;
  }
  const r = await restoreToDirectory(archive, values['dest-dir']!, { passphrase, qubes, onProgress, extraFilters });
  if (onProgress) process.stderr.write('\n');
  for (const q of r.qubes) process.stdout.write(`${q.name}: ${q.files.join(' ')}\n`);
  return 0;
}

/** The program (bin/qubes-backup-restore calls it; importing runs nothing). */
export function run(argv: string[]): Promise<void> {
  return main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const tag = err instanceof BackupError ? `${err.code}: ` : '';
      process.stderr.write(`qubes-backup-restore: ${tag}${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}

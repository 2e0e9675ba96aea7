// Where a backup stream goes. A destination is committed only once the
// whole archive has been written; until then no file with the archive's
// final name exists, so a cancelled or failed backup never leaves
// something that looks like a complete archive.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, fsync, open, promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { fsyncDir } from '../../lib/atomic-write.js';
import { archiveFileName } from './format.js';
import { BackupAbortedError, writeBackup, type BackupSource, type BackupSummary, type WriteOptions } from './writer.js';

export interface Destination {
  stream: Writable;
  /** Makes the written archive durable and visible; returns its location. */
  commit(): Promise<string>;
  /** Discards whatever was written. */
  abort(): Promise<void>;
  /** After abort(): why the receiving program failed on its own, if it did
   * (its exit status says more than the broken pipe the writer saw). */
  failure?(): string | null;
}

/** A file at `finalPath`, written under a temporary name in the same
 * directory, fsynced, then renamed (refusing to replace an existing file).
 * Not lib/atomic-write.ts: the archive is streamed, and it must never
 * replace an existing file, so it is linked into place instead of renamed. */
export async function fileDestination(finalPath: string, opts: { uniquify?: boolean } = {}): Promise<Destination> {
  const dir = dirname(finalPath);
  const tmp = join(dir, `.${basename(finalPath)}.${randomBytes(6).toString('hex')}.partial`);
  const fd = await promisify(open)(tmp, 'wx', 0o600);
  // autoClose: false keeps the file open after the last write, for the
  // fsync; the stream still owns the descriptor and closes it when
  // destroyed. Closing it here as well closed the number twice: once the
  // stream had closed it, the number could already belong to something new
  // (a child's pipe, a socket), and libuv aborted the daemon on it.
  const stream = createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 });
  const closeStream = (): Promise<void> =>
    stream.closed
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          let failed: Error | null = null;
          stream.once('error', (e) => {
            failed = e;
          });
          stream.once('close', () => (failed ? reject(failed) : resolve()));
          stream.destroy();
        });
  return {
    stream,
    async commit() {
      if (!stream.writableFinished) throw new Error('backup stream not finished');
      await promisify(fsync)(fd);
      await closeStream();
      // link() fails with EEXIST instead of silently replacing a file. A
      // name of our own choosing (a time stamp) may be taken by another
      // backup finished in the same second: then take the next free one.
      let name = finalPath;
      for (let n = 1; ; n++) {
        try {
          await fsp.link(tmp, name);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !opts.uniquify || n > 999) throw e;
          name = `${finalPath}.${n}`;
        }
      }
      await fsp.unlink(tmp);
      await fsyncDir(dir);
      return name;
    },
    async abort() {
      // Pending writes fail with ERR_STREAM_DESTROYED: expected here.
      stream.on('error', () => undefined);
      await closeStream().catch(() => undefined);
      await fsp.unlink(tmp).catch(() => undefined);
    },
  };
}

/** dom0 destination_path: an existing directory gets a new file named by
 * the time stamp; anything else is taken as the archive's file name. */
export async function dom0PathDestination(path: string, now = new Date()): Promise<Destination> {
  const st = await fsp.stat(path).catch(() => undefined);
  if (st?.isDirectory()) return fileDestination(join(path, archiveFileName(now)), { uniquify: true });
  const parent = await fsp.stat(dirname(path)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new Error(`the backup directory for ${path} does not exist`);
  return fileDestination(path);
}

/** A program the archive is piped into, already started: `exit` settles
 * with its exit status (or a reason it could not run). */
export interface ServiceCall {
  stdin: Writable;
  exit: Promise<number | string>;
  kill(): void;
}

/** The backup counts as done only if the program exits with status 0. */
function programDestination(p: ServiceCall, location: string, describe: (status: number | string) => string): Destination {
  let failedAlone: string | null = null;
  return {
    stream: p.stdin,
    async commit() {
      const status = await p.exit;
      if (status !== 0) throw new Error(describe(status));
      return location;
    },
    async abort() {
      // A program that is failing by itself gets a moment to say so: its
      // exit status explains more than the broken pipe the writer saw.
      let timer: NodeJS.Timeout | undefined;
      const early = await Promise.race([
        p.exit.catch(() => 0),
        new Promise<undefined>((r) => {
          timer = setTimeout(() => r(undefined), 200);
        }),
      ]);
      clearTimeout(timer);
      if (early !== undefined && early !== 0) failedAlone = describe(early);
      p.stdin.on('error', () => undefined);
      p.stdin.destroy();
      p.kill();
      await p.exit.catch(() => undefined);
    },
    failure: () => failedAlone,
  };
}

/** A command run by /bin/sh that receives the archive on its stdin. */
export function commandDestination(command: string): Destination {
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1024) stderr += d.toString();
  });
  const exit = new Promise<number | string>((resolve) => {
    child.on('error', (err) => resolve(err.message));
    child.on('close', (code, signal) => resolve(code ?? String(signal)));
  });
  return programDestination(
    { stdin: child.stdin, exit, kill: () => child.kill('SIGTERM') },
    command,
    (status) => `backup command failed (${status})${stderr ? `: ${stderr.trim()}` : ''}`,
  );
}

/** A qrexec call of qubes.Backup in the destination qube, already started
 * by the caller. The service first reads destination_path on one line. */
export function serviceDestination(call: ServiceCall, destinationPath: string, what = 'the destination qube'): Destination {
  call.stdin.write(destinationPath.replace(/[\r\n]/g, '') + '\n');
  return programDestination(call, destinationPath, (status) => `Writing backup to ${what} failed (exit status ${status})`);
}

/** Writes a backup to a destination and commits it; on any failure or
 * cancellation the destination is aborted and the error re-thrown. */
export async function runBackup(source: BackupSource, dest: Destination, opts: WriteOptions): Promise<BackupSummary & { location: string }> {
  try {
    const summary = await writeBackup(source, dest.stream, opts);
    if (opts.signal?.aborted) throw new BackupAbortedError();
    return { ...summary, location: await dest.commit() };
  } catch (err) {
    await dest.abort();
    const why = err instanceof BackupAbortedError ? null : dest.failure?.();
    throw why ? new Error(why) : err;
  }
}

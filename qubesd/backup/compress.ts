// Compression filters. Qubes names a filter by the program that compresses
// stdin to stdout and decompresses with `-d`; gzip is done in-process with
// zlib (same format, no child process), anything else runs the program.
import { spawn } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';

export interface Filter {
  stream: Duplex;
  /** Settles once the filter has finished; rejects if it failed. */
  done: Promise<void>;
  kill(): void;
}

/** Splits a filter command into argv; refuses anything a shell would
 * interpret, since the command comes from a profile or a backup header. */
export function filterArgv(command: string): string[] {
  const argv = command.trim().split(/\s+/);
  if (!argv[0] || !argv.every((a) => /^[A-Za-z0-9_./=+:,-]+$/.test(a))) {
    throw new Error(`invalid compression filter command: ${JSON.stringify(command)}`);
  }
  return argv;
}

function zlibFilter(stream: Duplex): Filter {
  const done = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  done.catch(() => undefined);
  return { stream, done, kill: () => stream.destroy() };
}

function programFilter(argv: string[]): Filter {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new PassThrough();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { if (stderr.length < 1024) stderr += d.toString(); });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new Error(`compression filter ${argv[0]} failed to start: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`compression filter ${argv.join(' ')} failed (${signal ?? `exit code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
    });
  });
  done.catch((err: Error) => out.destroy(err));
  child.stdout.pipe(out);
  // A writer facing a dead filter gets EPIPE; the exit status is the real
  // cause and is reported through `done`.
  child.stdin.on('error', () => undefined);
  return { stream: Duplex.from({ writable: child.stdin, readable: out }), done, kill: () => child.kill('SIGKILL') };
}

export function compressor(filter: string): Filter {
  if (filter === 'gzip') return zlibFilter(createGzip());
  return programFilter(filterArgv(filter));
}

export function decompressor(filter: string): Filter {
  if (filter === 'gzip') return zlibFilter(createGunzip());
  return programFilter([...filterArgv(filter), '-d']);
}

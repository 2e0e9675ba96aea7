// Compression filters. Qubes names a filter by the program that compresses
// stdin to stdout and decompresses with `-d`; gzip is done in-process with
// zlib (same format, no child process), anything else runs the program.
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import { systemErrorWords } from '../../lib/system-error.js';
import { Duplex, PassThrough } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';

export interface Filter {
  stream: Duplex;
  /** Settles once the filter has finished; rejects if it failed. */
  done: Promise<void>;
  kill(): void;
}

/** A filter is named by a bare program name: never a path, never an option. */
const PROGRAM_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;

export function isFilterName(name: string): boolean {
  return PROGRAM_NAME.test(name) && name !== '.' && name !== '..';
}

/** The program `name` as found on PATH (absolute directories only: an empty
 * or relative entry would mean the current directory), or null. */
export function findOnPath(name: string, pathEnv = process.env.PATH ?? '/usr/bin:/bin'): string | null {
  if (!isFilterName(name)) return null;
  for (const dir of pathEnv.split(':')) {
    if (!isAbsolute(dir)) continue;
    const file = join(dir, name);
    try {
      if (statSync(file).isFile()) {
        accessSync(file, constants.X_OK);
        return file;
      }
    } catch {
      /* not here */
    }
  }
  return null;
}

/** The argv that runs a filter. The name comes from a profile or from a
 * backup header (the least trusted input a restore meets), so it must be a
 * bare program name found on PATH; the program runs by its absolute path. */
export function filterArgv(name: string): string[] {
  const program = findOnPath(name);
  if (!program) {
    throw new Error(
      isFilterName(name)
        ? `compression filter ${name} is not a program found on PATH`
        : `invalid compression filter ${JSON.stringify(name)}: a program name is expected, not a path or a command`,
    );
  }
  return [program];
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
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1024) stderr += d.toString();
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new Error(`compression filter ${basename(argv[0]!)} failed to start: ${systemErrorWords(err)}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`compression filter ${basename(argv[0]!)} failed (${signal ?? `exit code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
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

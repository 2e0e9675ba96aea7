// File-system helpers with the path semantics the reference engine has
// (Python pathlib): normalised joins, non-strict symlink resolution, and
// OS errors reported as "[Errno N] text: 'path'".

import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve as resolveAbs } from 'node:path';
import { AccessDenied } from './errors.js';
import { pyRepr } from '../lib/py-repr.js';

/** pathlib-style normalisation: no "//", no "/./", no trailing "/" (keeps ".."). */
export function normPath(p: string): string {
  const abs = p.startsWith('/');
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  const s = parts.join('/');
  return abs ? '/' + s : s || '.';
}

export function joinPath(dir: string, name: string): string {
  if (isAbsolute(name)) return normPath(name);
  return normPath(dir + '/' + name);
}

/** Resolves symlinks as far as the path exists (pathlib's `resolve()`). */
export function resolvePath(p: string): string {
  const abs = resolveAbs(p);
  try {
    return realpathSync.native(abs);
  } catch {
    const parent = dirname(abs);
    if (parent === abs) return abs;
    return joinPath(resolvePath(parent), basename(abs));
  }
}

export function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const ERRNO: Record<string, [number, string]> = {
  ENOENT: [2, 'No such file or directory'],
  EACCES: [13, 'Permission denied'],
  EPERM: [1, 'Operation not permitted'],
  EISDIR: [21, 'Is a directory'],
  ENOTDIR: [20, 'Not a directory'],
  ELOOP: [40, 'Too many levels of symbolic links'],
  EIO: [5, 'Input/output error'],
  EMFILE: [24, 'Too many open files'],
};

/** An OS error as the reference reports a policy file it could not read. */
export function loadFailure(path: string, err: unknown): AccessDenied {
  const code = (err as NodeJS.ErrnoException)?.code ?? '';
  const [no, text] = ERRNO[code] ?? [0, (err as Error)?.message ?? String(err)];
  return new AccessDenied(`failed to load ${path} file: [Errno ${no}] ${text}: ${pyRepr(path)}`);
}

export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    throw loadFailure(dir, err);
  }
}

export function readBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw loadFailure(path, err);
  }
}

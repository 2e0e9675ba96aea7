// File-system helpers with the path semantics the reference engine has
// (Python pathlib): normalised joins, non-strict symlink resolution, and
// OS errors reported as "[Errno N] text: 'path'".

import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, isAbsolute } from 'node:path';
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

/**
 * pathlib's `resolve()` (os.path.realpath, not strict): the path is walked
 * component by component and each symlink is replaced by its target before
 * the next component applies, so `link/../x` is the `x` beside the link's
 * target, not beside the link. What does not exist is kept as written; a
 * symlink loop stops resolution there.
 */
export function resolvePath(p: string): string {
  // not path.resolve(): it would apply '..' before the symlinks ahead of it
  const [path] = joinReal('/', isAbsolute(p) ? p : process.cwd() + '/' + p, new Map());
  return path;
}

function joinReal(start: string, rest: string, seen: Map<string, string | null>): [string, boolean] {
  let path = start;
  if (rest.startsWith('/')) path = '/';
  const names = rest.split('/');
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    if (name === '' || name === '.') continue;
    if (name === '..') {
      path = path === '/' ? '/' : dirname(path);
      continue;
    }
    const next = path === '/' ? '/' + name : path + '/' + name;
    let link: boolean;
    try {
      link = lstatSync(next).isSymbolicLink();
    } catch {
      link = false;
    }
    if (!link) {
      path = next;
      continue;
    }
    const remaining = names.slice(i + 1).join('/');
    if (seen.has(next)) {
      const known = seen.get(next);
      if (known) {
        path = known;
        continue;
      }
      return [joinPath(next, remaining), false]; // a loop: left as it is
    }
    seen.set(next, null);
    let target: string;
    try {
      target = readlinkSync(next);
    } catch {
      path = next;
      continue;
    }
    const [resolved, ok] = joinReal(path, target, seen);
    if (!ok) return [joinPath(resolved, remaining), false];
    seen.set(next, resolved);
    path = resolved;
  }
  return [path, true];
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

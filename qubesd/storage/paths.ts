// Volume ids and pool names become file names: nothing that reaches the
// disk may leave its pool directory, whatever qubes.xml or a caller says.
import * as path from 'node:path';
import { StoragePoolException } from '../errors.js';

/** One path component of a vid: what qube names, volume names and kernel versions use. */
const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;

export function isSafeComponent(s: string): boolean {
  return s.length > 0 && s.length <= 255 && COMPONENT.test(s) && s !== '.' && s !== '..';
}

/** A vid: one or more safe components joined by '/', no '..', not absolute. */
export function isSafeVid(vid: string): boolean {
  if (vid.length === 0 || vid.length > 1024) return false;
  return vid.split('/').every(isSafeComponent);
}

/** The file for `vid` + `suffix` inside `dir`; refuses anything that would land outside. */
export function pathInPool(dir: string, vid: string, suffix = ''): string {
  if (!isSafeVid(vid)) throw StoragePoolException(`Invalid volume id ${JSON.stringify(vid)}: must be names of [A-Za-z0-9_.+-] separated by '/'`);
  const root = path.resolve(dir);
  const full = path.resolve(root, vid + suffix);
  const rel = path.relative(root, full);
  if (rel.startsWith('..') || path.isAbsolute(rel) || rel === '') throw StoragePoolException(`Volume id ${JSON.stringify(vid)} escapes the pool directory`);
  return full;
}

/** Like Python's os.path.realpath: resolves symlinks of the part that exists, keeps the rest. */
export function realpathLoose(p: string, realpathSync: (p: string) => string): string {
  const abs = path.resolve(p);
  let head = abs;
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(head), ...tail.reverse());
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return abs;
      tail.push(path.basename(head));
      head = parent;
    }
  }
}

/** Is `inner` the same as or below `outer`? (both absolute, normalised) */
export function isWithin(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

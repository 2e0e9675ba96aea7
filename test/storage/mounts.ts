// Small real filesystems for failure and reflink tests: a size-limited tmpfs
// (disk full) and an XFS image with reflink on a loop device. Both need root;
// callers skip with the reason when mounting is impossible here.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface Mounted {
  dir: string;
  kind: string;
  unmount(): void;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function unmounter(dir: string, extra?: () => void): () => void {
  return () => {
    try {
      run('umount', [dir]);
    } catch {
      try {
        run('umount', ['-l', dir]);
      } catch {
        /* already gone */
      }
    }
    extra?.();
  };
}

/** A tmpfs of `size` (e.g. '8M') at parent/name, or the reason it cannot be had. */
export function mountTmpfs(parent: string, name: string, size: string): Mounted | string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  try {
    run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  } catch (e) {
    return `cannot mount tmpfs: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
  }
  return { dir, kind: `tmpfs size=${size}`, unmount: unmounter(dir) };
}

/** An XFS filesystem with reflink on a loop device, or the reason it cannot be had. */
export function mountReflinkFs(parent: string, name: string, sizeMiB = 320): Mounted | string {
  const dir = join(parent, name);
  const image = join(parent, `${name}.xfs`);
  mkdirSync(dir, { recursive: true });
  try {
    run('truncate', ['-s', `${sizeMiB}M`, image]);
    run('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
    run('mount', ['-o', 'loop', image, dir]);
  } catch (e) {
    rmSync(image, { force: true });
    return `cannot mount an XFS loop image: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
  }
  return { dir, kind: 'xfs (reflink=1) on loop', unmount: unmounter(dir, () => rmSync(image, { force: true })) };
}

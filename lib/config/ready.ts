// The readiness signal: a daemon that has fully started (for qubesd: store
// loaded, hypervisor connected, running qubes reconciled, sockets listening)
// writes its ready file, and removes it when it stops. The file holds the
// daemon's pid, so that a file left behind by a killed daemon is told apart
// from a live one. qubes-wait-init-complete and qubes-stack read these files.
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface ReadyInfo {
  daemon: string;
  pid: number;
  since: string;
}

/** Write `path` atomically; removed again when the process exits. '' means no ready file. */
export function announceReady(path: string, daemon: string): void {
  if (!path) return;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ daemon, pid: process.pid, since: new Date().toISOString() }) + '\n');
  renameSync(tmp, path);
  process.once('exit', () => withdrawReady(path));
}

/** Remove the ready file if it is this process's (a successor's file is left alone). */
export function withdrawReady(path: string): void {
  if (!path) return;
  const r = readReady(path);
  if (r && r.pid !== process.pid) return;
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

export function readReady(path: string): ReadyInfo | null {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as ReadyInfo;
    return typeof r.pid === 'number' ? r : null;
  } catch {
    return null;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The ready file's daemon, when it is present and its process alive. */
export function liveReady(path: string): ReadyInfo | null {
  const r = readReady(path);
  return r && isAlive(r.pid) ? r : null;
}

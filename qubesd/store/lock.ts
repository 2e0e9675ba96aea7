// The store lock: one daemon per store.
//
// Choice: a kernel flock(2) on `<store>.lock`, which the kernel drops when the
// holding process dies in any way (SIGKILL included), so there is no stale
// lock to detect and no pid-reuse race to get wrong. Node has no flock
// binding, and a native addon is not wanted, so the lock is taken by
// util-linux flock(1) on a file descriptor we pass it: flock(2) locks belong
// to the open file description, which the helper shares with us through the
// inherited descriptor. The helper exits at once; the lock stays with our
// descriptor (opened close-on-exec, so no child of the daemon inherits it)
// until we close it or die. The pid written into the file is only for the
// error message a second daemon prints.

import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

const CONFLICT = 75; // the exit code we ask flock(1) to use when the lock is held

export class LockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LockError';
  }
}

export class StoreLock {
  private constructor(
    private fh: FileHandle | null,
    readonly path: string,
  ) {}

  /** Takes the lock without waiting; throws LockError if another process holds it. */
  static async acquire(path: string, what: string): Promise<StoreLock> {
    let fh: FileHandle;
    try {
      fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o660);
    } catch (e) {
      throw new LockError(`cannot open lock file ${path}: ${(e as Error).message}`);
    }
    try {
      const { code, stderr } = await runFlock(fh.fd);
      if (code === CONFLICT) {
        const holder = (await fh.readFile('utf8').catch(() => '')).trim();
        throw new LockError(
          `${what} is in use by another qubesd${/^[0-9]+$/.test(holder) ? ` (pid ${holder})` : ''}; ` +
            `only one daemon may use a store at a time (lock file ${path})`,
        );
      }
      if (code !== 0) throw new LockError(`cannot lock ${path}: flock exited with ${code}${stderr ? `: ${stderr.trim()}` : ''}`);
      const pid = Buffer.from(`${process.pid}\n`);
      await fh.truncate(0);
      await fh.write(pid, 0, pid.length, 0);
      return new StoreLock(fh, path);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  /** Releases the lock (the lock file stays: removing it would race with a new locker). */
  async release(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close();
  }
}

function runFlock(fd: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', '--nonblock', '--conflict-exit-code', String(CONFLICT), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(
        new LockError(
          e.code === 'ENOENT'
            ? 'cannot lock the store: flock(1) from util-linux is not installed'
            : `cannot lock the store: running flock(1) failed: ${e.message}`,
        ),
      );
    });
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

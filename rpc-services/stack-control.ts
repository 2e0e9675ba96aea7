// Talking to a running qubes-stack: it leaves its pid in
// PREFIX/var/run/qubes/qubes-stack.pid; `qubes-stack reload` sends it SIGHUP
// (forwarded to every daemon), `qubes-stack restart` sends SIGUSR2 (restart
// the daemons in order) and returns once the old daemons are gone, so that
// `qubes-wait-init-complete` run next waits for the new ones.
import { mkdirSync, readFileSync, writeFileSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DAEMON_SCHEMAS, readyPath, stackPidPath } from './daemon-configs.js';
import { isAlive, readReady } from '../lib/config/ready.js';
import { CHECKOUT } from './install.js';

/** Record this process as the installation's running stack (removed at exit). */
export function holdPidFile(prefix: string): void {
  const path = stackPidPath(prefix);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${process.pid}\n`);
  process.once('exit', () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch {
      /* gone */
    }
  });
}

/** The running stack's pid, or why there is none. */
export function stackPid(prefix: string): number | string {
  let pid: number;
  try {
    pid = Number(readFileSync(stackPidPath(prefix), 'utf8').trim());
  } catch {
    return `no running qubes-stack for ${prefix} (no ${stackPidPath(prefix)})`;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return `no running qubes-stack for ${prefix} (stale ${stackPidPath(prefix)})`;
  return pid;
}

const USAGE = 'usage: qubes-stack restart|reload [--prefix DIR] [--timeout SECONDS]';

export async function controlMain(cmd: 'restart' | 'reload', argv: string[]): Promise<number> {
  let prefix: string, timeout: number;
  try {
    const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' }, timeout: { type: 'string' } }, strict: true });
    prefix = resolve(values.prefix ?? join(CHECKOUT, 'tmp', 'stack'));
    timeout = Number(values.timeout ?? '60');
    if (!(timeout > 0)) throw new Error('--timeout is a number of seconds');
  } catch (e) {
    console.error(`qubes-stack ${cmd}: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const pid = stackPid(prefix);
  if (typeof pid === 'string') {
    console.error(`qubes-stack ${cmd}: ${pid}`);
    return 1;
  }
  if (cmd === 'reload') {
    process.kill(pid, 'SIGHUP');
    console.log(`qubes-stack reload: sent SIGHUP to the stack (pid ${pid}); each daemon logs what it applied`);
    return 0;
  }
  const old = DAEMON_SCHEMAS.map((s) => readReady(readyPath(prefix, s.daemon))?.pid).filter((p): p is number => p !== undefined && isAlive(p));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + timeout * 1000;
  while (old.some(isAlive)) {
    if (!isAlive(pid)) {
      console.error('qubes-stack restart: the stack stopped during the restart (see its log)');
      return 1;
    }
    if (Date.now() > deadline) {
      console.error(`qubes-stack restart: the old daemons are still running after ${timeout} s`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log(`qubes-stack restart: the daemons are restarting in order; wait for them with: qubes-wait-init-complete SECONDS --prefix ${prefix}`);
  return 0;
}

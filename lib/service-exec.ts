// Starting an allowed service the way qrexec does in dom0: find its entry
// (<dir>/<service>+<argument>, else <dir>/<service>), then either run the
// program with qrexec's environment, or, if the entry is a UNIX socket,
// connect to it and send the service descriptor before the caller's data.
// Both the qrexec dispatcher (rpc-services) and qubesd (calling services of
// dom0 and of qubes) start services this way, so it lives below both.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** Exit codes as qrexec reports them for a service it could not run. */
export const EXIT_PROBLEM = 125;
export const EXIT_NOT_FOUND = 127;

export interface ServiceCall {
  service: string;
  arg: string;
  source: string;
  /** how the caller named dom0: a name ("dom0") or a keyword ("adminvm" for @adminvm) */
  targetType: 'name' | 'keyword';
  target: string;
}

export interface RunningService {
  stdin: Writable;
  stdout: Readable;
  /** resolves with the service's exit code (128+n for signal n) */
  exit: Promise<number>;
  /** the caller went away */
  kill(): void;
}

export interface Entry {
  path: string;
  socket: boolean;
}

export function findEntry(dirs: readonly string[], service: string, arg: string): Entry | null {
  for (const name of [`${service}+${arg}`, service]) {
    for (const dir of dirs) {
      const path = join(dir, name);
      try {
        const st = statSync(path);
        if (st.isSocket()) return { path, socket: true };
        if (st.isFile()) return { path, socket: false };
      } catch {
        /* not here */
      }
    }
  }
  return null;
}

/** What qrexec puts in a service's environment; inherited QREXEC_* never leak through. */
export function serviceEnv(base: NodeJS.ProcessEnv, c: ServiceCall): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('QREXEC_')) env[k] = v;
  env.QREXEC_REQUESTED_TARGET_TYPE = c.targetType;
  if (c.targetType === 'name') env.QREXEC_REQUESTED_TARGET = c.target;
  else env.QREXEC_REQUESTED_TARGET_KEYWORD = c.target;
  env.QREXEC_SERVICE_FULL_NAME = `${c.service}+${c.arg}`;
  env.QREXEC_REMOTE_DOMAIN = c.source;
  env.QREXEC_SERVICE_ARGUMENT = c.arg;
  return env;
}

/** The descriptor a socket service receives first, NUL-terminated. */
export function descriptor(c: ServiceCall): Buffer {
  return Buffer.from(`${c.service}+${c.arg} ${c.source} ${c.targetType} ${c.target}\0`, 'latin1');
}

export function startService(entry: Entry, c: ServiceCall, onStderr: (line: string) => void): RunningService {
  return entry.socket ? startSocketService(entry.path, c) : startProgram(entry.path, c, onStderr);
}

function startProgram(path: string, c: ServiceCall, onStderr: (line: string) => void): RunningService {
  const child = spawn(path, c.arg ? [c.arg] : [], { env: serviceEnv(process.env, c), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.on('error', () => {
    /* the service stopped reading */
  });
  let errBuf = '';
  child.stderr!.on('data', (d) => {
    errBuf += d;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      onStderr(errBuf.slice(0, i));
      errBuf = errBuf.slice(i + 1);
    }
  });
  const exit = new Promise<number>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      onStderr(`cannot execute ${path}: ${e.message}`);
      resolve(e.code === 'ENOENT' ? EXIT_NOT_FOUND : EXIT_PROBLEM);
    });
    child.once('close', (code, signal) => {
      if (errBuf) onStderr(errBuf);
      resolve(code ?? 128 + (signal ? osConstants.signals[signal] : 0));
    });
  });
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    exit,
    kill: () => {
      child.stdin!.destroy();
      child.stdout!.destroy();
      if (child.exitCode === null) child.kill('SIGTERM');
    },
  };
}

function startSocketService(path: string, c: ServiceCall): RunningService {
  const sock = net.connect({ path, allowHalfOpen: true });
  sock.write(descriptor(c));
  const exit = new Promise<number>((resolve) => {
    let failed = false;
    sock.once('error', () => {
      failed = true;
    });
    sock.once('close', () => resolve(failed && sock.bytesRead === 0 ? EXIT_PROBLEM : 0));
  });
  return { stdin: sock, stdout: sock, exit, kill: () => sock.destroy() };
}

// Test helpers: start a real bin/qubesd on a temporary store and talk to it
// over its real socket, one connection per call as the Qubes client does.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeRequest } from '../../qubesd/protocol/request.js';

/** repository root (this file is compiled to dist/test/helpers/) */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SHARED = resolve(ROOT, '..', 'shared');
export const FIXTURE = join(SHARED, 'conformance', 'qubesd', 'fixtures', 'default');

export interface Daemon {
  dir: string;
  base: string;
  store: string;
  socket: string;
  internalSocket: string;
  proc: ChildProcess;
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** 'fixture' copies the conformance fixture; 'fresh' starts without a store */
  from?: 'fixture' | 'fresh';
  /** reuse an existing directory (e.g. to restart on the same store) */
  dir?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

export async function startDaemon(o: StartOptions = {}): Promise<Daemon> {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'qubesd-test-'));
  const base = join(dir, 'base'), run = join(dir, 'run'), store = join(dir, 'qubes.xml');
  mkdirSync(base, { recursive: true }); mkdirSync(run, { recursive: true });
  if (!o.dir && (o.from ?? 'fixture') === 'fixture') {
    writeFileSync(store, readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base));
    cpSync(join(FIXTURE, 'base'), base, { recursive: true });
  }
  const logFile = join(dir, 'qubesd.log');
  const proc = spawn(process.execPath, [join(ROOT, 'bin', 'qubesd'), '--store', store, '--base-dir', base, '--socket-dir', run,
    '--policy-dir', join(dir, 'policy.d'), '--log', logFile, ...(o.args ?? [])], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...o.env } });
  let stderr = '';
  proc.stderr!.on('data', (d) => { stderr += d; });
  const socket = join(run, 'qubesd.sock');
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const deadline = Date.now() + 15000;
  while (!(await canConnect(socket))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`qubesd did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    dir, base, store, socket, internalSocket: join(run, 'qubesd.internal.sock'), proc,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') + stderr,
    stop: async (signal = 'SIGTERM') => { if (proc.exitCode === null) proc.kill(signal); return exited; },
  };
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); res(true); });
    c.once('error', () => res(false));
  });
}

/** Send raw request bytes, return everything the daemon sent until it closed. */
export function rawCall(socket: string, data: Buffer): Promise<Buffer> {
  return new Promise((res, rej) => {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    c.on('connect', () => { c.end(data); });
    c.on('data', (d) => chunks.push(d));
    c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? res(Buffer.concat(chunks)) : rej(e)));
    c.on('close', () => res(Buffer.concat(chunks)));
  });
}

export interface Reply { ok: boolean; content: string; type?: string; message?: string; raw: Buffer }

/** One Admin API call; resolves with the parsed reply. */
export async function call(socket: string, method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0'): Promise<Reply> {
  const raw = await rawCall(socket, encodeRequest(method, arg, source, dest, payload));
  if (raw.length >= 2 && raw[0] === 0x30) return { ok: true, content: raw.subarray(2).toString('utf8'), raw };
  if (raw.length >= 2 && raw[0] === 0x32) {
    const [type, , message] = raw.subarray(2).toString('utf8').split('\0');
    return { ok: false, content: '', type: type!, message: message!, raw };
  }
  return { ok: false, content: '', type: raw.length ? 'malformed' : 'dropped', raw };
}

export function cleanup(d: Daemon): void {
  rmSync(d.dir, { recursive: true, force: true });
}

// Test helpers: start a real bin/qubesd on a temporary store and talk to it
// over its real socket, one connection per call as the Qubes client does.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeRequest } from '../../lib/protocol/request.js';
import { QUBESD_NODE_FLAGS } from '../../lib/node-flags.js';

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
  // tap's NODE_OPTIONS (its loaders) must not leak into the daemon.
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, [...QUBESD_NODE_FLAGS, join(ROOT, 'bin', 'qubesd'), '--store', store, '--base-dir', base, '--socket-dir', run,
    '--policy-dir', join(dir, 'policy.d'), '--log', logFile, ...(o.args ?? [])], { stdio: ['ignore', 'ignore', 'pipe'], env });
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

export interface QEvent { subject: string; event: string; kwargs: Record<string, string>; pairs: Array<[string, string]> }

/** Subscribe to admin.Events (or admin.vm.Stats); collects parsed events until close(). */
export function subscribeEvents(socket: string, dest = 'dom0', source = 'dom0', method = 'admin.Events'): Promise<{ events: QEvent[]; waitFor(pred: (e: QEvent) => boolean, ms?: number): Promise<QEvent>; close(): void }> {
  return new Promise((resolveSub, rejectSub) => {
    const c = net.connect(socket);
    const events: QEvent[] = [];
    const waiters: Array<{ pred: (e: QEvent) => boolean; res: (e: QEvent) => void }> = [];
    let buf = Buffer.alloc(0);
    let started = false;
    c.on('connect', () => c.end(encodeRequest(method, '', source, dest)));
    c.on('error', (e) => { if (!started) rejectSub(e); });
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2 || buf[0] !== 0x31) break;
        // an event frame ends with an empty field: subject, event, then k/v pairs, then ''
        const fields: string[] = [];
        let pos = 2, complete = false;
        for (;;) {
          const z = buf.indexOf(0, pos);
          if (z < 0) break;
          const f = buf.subarray(pos, z).toString('utf8');
          pos = z + 1;
          if (fields.length >= 2 && f === '' && (fields.length - 2) % 2 === 0) { complete = true; break; }
          fields.push(f);
        }
        if (!complete) break;
        buf = buf.subarray(pos);
        const pairs: Array<[string, string]> = [];
        for (let i = 2; i + 1 < fields.length; i += 2) pairs.push([fields[i]!, fields[i + 1]!]);
        const ev = { subject: fields[0]!, event: fields[1]!, kwargs: Object.fromEntries(pairs), pairs };
        events.push(ev);
        if (!started && ev.event === 'connection-established') {
          started = true;
          resolveSub({
            events,
            waitFor: (pred, ms = 30000) => {
              const found = events.find(pred);
              if (found) return Promise.resolve(found);
              return new Promise((res, rej) => {
                const t = setTimeout(() => rej(new Error('timed out waiting for an event; got: ' + events.map((e) => `${e.subject}:${e.event}`).join(', '))), ms);
                waiters.push({ pred, res: (e) => { clearTimeout(t); res(e); } });
              });
            },
            close: () => c.destroy(),
          });
        }
        for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]!.pred(ev)) { waiters[i]!.res(ev); waiters.splice(i, 1); }
      }
    });
  });
}

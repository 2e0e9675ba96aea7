// Starts a qubesd serving the firewall and device families on a copy of the
// conformance fixture, and talks to it over its real socket.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, FIXTURE, ROOT, type Daemon } from '../helpers/qubesd.js';
import { encodeRequest } from '../../qubesd/protocol/request.js';
import { HANDLERS } from '../../qubesd/api/handlers/index.js';

const registered = 'admin.vm.firewall.Get' in HANDLERS && 'admin.vm.device.pci.Assign' in HANDLERS;

/** Start on a fresh copy of the fixture, or again on `dir` (a restart). */
export async function startDaemon(dir?: string): Promise<Daemon> {
  const fresh = dir === undefined;
  dir ??= mkdtempSync(join(tmpdir(), 'fw-dev-'));
  const base = join(dir, 'base'), run = join(dir, 'run'), store = join(dir, 'qubes.xml');
  mkdirSync(base, { recursive: true }); mkdirSync(run, { recursive: true });
  if (fresh) {
    writeFileSync(store, readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base));
    cpSync(join(FIXTURE, 'base'), base, { recursive: true });
  }
  const entry = registered ? join(ROOT, 'dist', 'qubesd', 'cli.js') : join(ROOT, 'dist', 'test', 'firewall', 'daemon-main.js');
  const extra = registered ? ['--policy-dir', join(dir, 'policy.d'), '--sim-state-file', join(dir, 'sim.json'), '--log', 'none'] : [];
  const proc = spawn(process.execPath, [entry, '--store', store, '--base-dir', base, '--socket-dir', run, ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c) => { stderr += c; });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  const socket = join(run, 'qubesd.sock');
  const deadline = Date.now() + 15000;
  while (!(await canConnect(socket))) {
    if (proc.exitCode !== null || Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`qubesd did not start: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    dir, base, store, socket, internalSocket: join(run, 'qubesd.internal.sock'), proc,
    log: () => stderr,
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

/** ok(...) resolves with the content of a successful call, or rejects. */
export function caller(d: () => Daemon) {
  const ok = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
    const r = await call(d().socket, method, dest, arg, payload, source);
    if (!r.ok) throw new Error(`${method}+${arg} ${dest}: ${r.type}: ${r.message}`);
    return r.content;
  };
  const err = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
    const r = await call(d().socket, method, dest, arg, payload, source);
    if (r.ok) throw new Error(`${method}+${arg} ${dest} unexpectedly succeeded`);
    return `${r.type}: ${r.message}`;
  };
  return { ok, err };
}

export type Event = [subject: string, event: string, kwargs: Array<[string, string]>];

/** An admin.Events stream on dom0: the events seen so far, until close(). */
export async function watchEvents(socket: string): Promise<{ events: Event[]; close(): void }> {
  const events: Event[] = [];
  let buf = Buffer.alloc(0);
  const c = net.connect(socket);
  let ready: () => void;
  const established = new Promise<void>((res) => { ready = res; });
  c.on('connect', () => c.end(encodeRequest('admin.Events', '', 'dom0', 'dom0', '')));
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      // a frame: "1\0" subject \0 event \0 (key \0 value \0)* \0
      const fields: string[] = [];
      let at = 2, complete = false;
      while (at <= buf.length) {
        const end = buf.indexOf(0, at);
        if (end < 0) break;
        const f = buf.subarray(at, end).toString('utf8');
        at = end + 1;
        if (fields.length >= 2 && (fields.length - 2) % 2 === 0 && f === '') { complete = true; break; }
        fields.push(f);
      }
      if (!complete) break;
      buf = buf.subarray(at);
      const kwargs: Array<[string, string]> = [];
      for (let i = 2; i < fields.length; i += 2) kwargs.push([fields[i]!, fields[i + 1]!]);
      events.push([fields[0]!, fields[1]!, kwargs]);
      if (fields[1] === 'connection-established') ready();
    }
  });
  c.on('error', () => {});
  await established;
  return { events, close: () => c.destroy() };
}

/** Poll until `check` holds (the daemon works asynchronously); fails after a generous limit. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every file under `dir` (but sockets) with its content: to see that nothing changed. */
export function snapshotFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(p, readFileSync(p, 'latin1'));
    }
  };
  walk(dir);
  return out;
}

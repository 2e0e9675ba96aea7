// Test helpers: start a real bin/qubesd on a temporary store and talk to it
// over its real socket, one connection per call as the Qubes client does.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeRequest } from '../../lib/protocol/request.js';
import { decodeReply, streamEvents } from '../../lib/qubesd-client.js';
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
  const base = join(dir, 'base'),
    run = join(dir, 'run'),
    store = join(dir, 'qubes.xml');
  mkdirSync(base, { recursive: true });
  mkdirSync(run, { recursive: true });
  if (!o.dir && (o.from ?? 'fixture') === 'fixture') {
    writeFileSync(store, readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base));
    cpSync(join(FIXTURE, 'base'), base, { recursive: true });
  }
  const logFile = join(dir, 'qubesd.log');
  // tap's NODE_OPTIONS (its loaders) must not leak into the daemon.
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  delete env.NODE_OPTIONS;
  const proc = spawn(
    process.execPath,
    [
      ...QUBESD_NODE_FLAGS,
      join(ROOT, 'bin', 'qubesd'),
      '--store',
      store,
      '--base-dir',
      base,
      '--socket-dir',
      run,
      '--policy-dir',
      join(dir, 'policy.d'),
      '--log',
      logFile,
      ...(o.args ?? []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env },
  );
  let stderr = '';
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
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
    dir,
    base,
    store,
    socket,
    internalSocket: join(run, 'qubesd.internal.sock'),
    proc,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') + stderr,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/**
 * qubesd without an audit log on a fresh copy of the fixture, or again on
 * `dir` (a restart); `keepSimState` also carries the simulated hypervisor's
 * state (which qubes run) across the restart.
 */
export function startFixtureDaemon(dir?: string, o: { keepSimState?: boolean } = {}): Promise<Daemon> {
  if (dir === undefined) return startDaemon({ args: ['--log', 'none'] });
  return startDaemon({ dir, args: ['--log', 'none', ...(o.keepSimState ? ['--sim-state-file', join(dir, 'sim.json')] : [])] });
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      res(true);
    });
    c.once('error', () => res(false));
  });
}

/** Send raw request bytes, return everything the daemon sent until it closed. */
export function rawCall(socket: string, data: Buffer): Promise<Buffer> {
  return new Promise((res, rej) => {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    c.on('connect', () => {
      c.end(data);
    });
    c.on('data', (d) => chunks.push(d));
    c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? res(Buffer.concat(chunks)) : rej(e)));
    c.on('close', () => res(Buffer.concat(chunks)));
  });
}

export interface Reply {
  ok: boolean;
  content: string;
  type?: string;
  message?: string;
  raw: Buffer;
}

/** One Admin API call; resolves with the reply as lib/qubesd-client.ts decodes it ('dropped': no reply at all). */
export async function call(socket: string, method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0'): Promise<Reply> {
  const raw = await rawCall(socket, encodeRequest(method, arg, source, dest, payload));
  const reply = decodeReply(raw);
  if (reply.kind === 'ok') return { ok: true, content: reply.content.toString('utf8'), raw };
  if (reply.kind === 'exception') return { ok: false, content: '', type: reply.type, message: reply.message, raw };
  return { ok: false, content: '', type: raw.length ? 'malformed' : 'dropped', raw };
}

export function cleanup(d: Daemon): void {
  rmSync(d.dir, { recursive: true, force: true });
}

export interface QEvent {
  subject: string;
  event: string;
  kwargs: Record<string, string>;
  pairs: Array<[string, string]>;
}

export interface EventSubscription {
  events: QEvent[];
  waitFor(pred: (e: QEvent) => boolean, ms?: number): Promise<QEvent>;
  close(): void;
}

/**
 * Subscribe to admin.Events (or admin.vm.Stats) through lib/qubesd-client.ts;
 * resolves once qubesd confirms the subscription (connection-established),
 * then collects events until close().
 */
export function subscribeEvents(socket: string, dest = 'dom0', source = 'dom0', method = 'admin.Events'): Promise<EventSubscription> {
  return new Promise((resolveSub, rejectSub) => {
    const events: QEvent[] = [];
    const waiters: Array<{ pred: (e: QEvent) => boolean; res: (e: QEvent) => void }> = [];
    let started = false;
    const sub: EventSubscription = {
      events,
      waitFor: (pred, ms = 30000) => {
        const found = events.find(pred);
        if (found) return Promise.resolve(found);
        return new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('timed out waiting for an event; got: ' + events.map((e) => `${e.subject}:${e.event}`).join(', '))), ms);
          waiters.push({
            pred,
            res: (e) => {
              clearTimeout(t);
              res(e);
            },
          });
        });
      },
      close: () => stream.close(),
    };
    const stream = streamEvents(socket, { method, dest, source }, (e) => {
      const ev: QEvent = { subject: e.subject, event: e.event, kwargs: Object.fromEntries(e.kwargs), pairs: e.kwargs };
      events.push(ev);
      if (!started && ev.event === 'connection-established') {
        started = true;
        resolveSub(sub);
      }
      for (let i = waiters.length - 1; i >= 0; i--)
        if (waiters[i]!.pred(ev)) {
          waiters[i]!.res(ev);
          waiters.splice(i, 1);
        }
    });
    stream.finished.then(
      () => {
        if (!started) rejectSub(new Error('the event stream ended before connection-established'));
      },
      (e: unknown) => {
        if (!started) rejectSub(e);
      },
    );
  });
}

/** The properties that let a new StandaloneVM boot under the real QEMU here:
 * HVM without a kernel (it sits in the BIOS), 64 MiB, one vCPU. */
export const BOOTS_WITHOUT_KERNEL: ReadonlyArray<readonly [string, string]> = [
  ['virt_mode', 'hvm'],
  ['kernel', ''],
  ['memory', '64'],
  ['maxmem', '0'],
  ['vcpus', '1'],
];

let sentinels = 0;
/**
 * qubesd's audit records of calls (the log's `"ev":"call"` lines) once every
 * call made so far has its line: qubesd writes them in batches, a few
 * milliseconds after the call, in order; so a call of our own (a feature.Get
 * on `work` named after a marker) is made, waited for, and left out.
 */
export async function settledAuditCalls(d: { socket: string; log(): string }): Promise<Array<Record<string, unknown>>> {
  const marker = `audit-settled-${++sentinels}`;
  await call(d.socket, 'admin.vm.feature.Get', 'work', marker);
  for (let i = 0; i < 200 && !d.log().includes(marker); i++) await new Promise((r) => setTimeout(r, 10));
  if (!d.log().includes(marker)) throw new Error(`qubesd's audit log never showed ${marker}`);
  return d
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.ev === 'call' && l.arg !== marker);
}

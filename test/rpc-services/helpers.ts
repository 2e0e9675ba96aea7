// Helpers for the rpc-services tests: qubesd (the shared daemon helper), a
// stand-in policy daemon speaking the qrexec-policy-daemon protocol, and a
// runner for bin/qrexec-client-vm.
import net from 'node:net';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startDaemon } from '../helpers/qubesd.js';
import { decodeReply } from '../../lib/qubesd-client.js';

export const BIN = join(ROOT, 'bin');

/**
 * Start a program as it would start outside the test runner. tap's process
 * tracker puts its loader hooks into NODE_OPTIONS of every child it sees
 * spawned, and with them Node refuses to load the extensionless ES modules
 * in bin/; `env -u` takes them out again one level down.
 */
export function spawnPlain(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', cmd, ...args], opts);
}

export interface Qubesd {
  dir: string;
  socket: string;
  internalSocket: string;
  log(): string;
  stop(): Promise<void>;
}

/** bin/qubesd on a copy of the conformance fixture (or a fresh store) in a
 * temporary directory (test/helpers/qubesd.ts), removed again on stop(). */
export async function startQubesd(from: 'fixture' | 'fresh' = 'fixture'): Promise<Qubesd> {
  const d = await startDaemon({ from });
  return {
    dir: d.dir,
    socket: d.socket,
    internalSocket: d.internalSocket,
    log: d.log,
    stop: async () => {
      await d.stop();
      rmSync(d.dir, { recursive: true, force: true });
    },
  };
}

export interface PolicyQuery {
  source: string;
  intended_target: string;
  service_and_arg: string;
  assume_yes_for_ask?: string;
}
/** 'allow' | 'deny' | 'ask' | a full raw answer */
export type Decide = (q: PolicyQuery) => 'allow' | 'deny' | 'ask' | { raw: string };

export interface FakePolicy {
  queries: PolicyQuery[];
  close(): Promise<void>;
}

/** A policy daemon whose decisions come from a function; 'ask' behaves as the real daemon without a user agent. */
export async function startFakePolicyDaemon(path: string, decide: Decide): Promise<FakePolicy> {
  if (existsSync(path)) unlinkSync(path);
  const queries: PolicyQuery[] = [];
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      if (!buf.endsWith('\n\n')) return;
      const q = Object.fromEntries(
        buf
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      ) as unknown as PolicyQuery;
      queries.push(q);
      const d0 = decide(q);
      const allow = (target: string) => `user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=${target}`;
      let answer: string;
      if (typeof d0 === 'object') answer = d0.raw;
      else if (d0 === 'allow' || (d0 === 'ask' && q.assume_yes_for_ask === 'yes')) answer = allow(q.intended_target);
      else answer = 'result=deny';
      sock.end(answer);
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { queries, close: () => new Promise((r) => server.close(() => r())) };
}

export interface ClientResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run bin/qrexec-client-vm as the qube whose dispatcher socket is `socket`. */
export function qrexecClient(socket: string, args: string[], input: Buffer | string = '', env: NodeJS.ProcessEnv = {}): Promise<ClientResult> {
  return new Promise((resolve) => {
    const p = spawnPlain(process.execPath, [join(BIN, 'qrexec-client-vm'), ...args], { env: { ...process.env, QREXEC_SOCKET: socket, ...env } });
    const out: Buffer[] = [];
    let err = '';
    p.stdout!.on('data', (d) => out.push(d));
    p.stderr!.on('data', (d) => {
      err += d;
    });
    p.stdin!.on('error', () => {});
    p.stdin!.end(input);
    p.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** An EXCEPTION frame's type and message (decoded by lib/qubesd-client.ts); null for any other reply. */
export function exceptionOf(reply: Buffer): { type: string; message: string } | null {
  const r = decodeReply(reply);
  return r.kind === 'exception' ? { type: r.type, message: r.message } : null;
}

export interface StackRun {
  output(): string;
  waitFor(re: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

/** bin/qubes-stack on an installation under `prefix`, ready; output is its standard output and error together. */
export async function runStack(prefix: string, args: string[] = [], readyMs = 30_000): Promise<StackRun> {
  const stack = spawnPlain(process.execPath, [join(BIN, 'qubes-stack'), '--prefix', prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  stack.stdout!.on('data', (d) => {
    output += d;
  });
  stack.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<void>((r) => stack.once('exit', () => r()));
  // a test runner timeout must not leave the stack running
  process.once('exit', () => {
    if (stack.exitCode === null) stack.kill('SIGTERM');
  });
  const waitFor = async (re: RegExp, ms = 30_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(output);
      if (m) return m[0];
      if (stack.exitCode !== null || Date.now() > deadline) throw new Error(`no ${re} from the stack:\n${output}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  await waitFor(/qubes-stack: ready/, readyMs);
  return {
    output: () => output,
    waitFor,
    stop: async () => {
      if (stack.exitCode === null) stack.kill('SIGTERM');
      await exited;
    },
  };
}

/** Poll until `read()` matches `re` (a log written asynchronously). */
export async function eventually(read: () => string, re: RegExp, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = read();
    if (re.test(text) || Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 25));
  }
}

// Shared helpers for benchmarks: every figure is printed as one JSON line so
// that `npm run bench` output is machine-readable.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { install } from '../rpc-services/install.js';
import { configPath } from '../lib/stack-config.js';
import { startStack, type RunningStack } from '../rpc-services/stack.js';
import { ROOT } from '../test/helpers/qubesd.js';
import { tokenFileFor } from '../rest/options.js';
import { TokenStore } from '../rest/tokens.js';
import { REST_NODE_FLAGS } from '../lib/node-flags.js';

export interface Figure {
  bench: string;
  name: string;
  value: number;
  unit: string;
  [k: string]: unknown;
}
export function report(f: Figure): void {
  process.stdout.write(JSON.stringify(f) + '\n');
}
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
export function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
}

/** Compiles one C tool with cc; false (and nothing thrown) when that is not possible. */
export function buildC(src: string, out: string, flags: string[] = []): boolean {
  const r = spawnSync('cc', ['-O2', ...flags, '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  return r.status === 0;
}

/** Runs a tool that prints one JSON object on stdout and returns it parsed. */
export function runJson<T>(cmd: string, args: string[]): T {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/**
 * A Node program run as its own process, considered started once a line it
 * prints on stdout is `ready` (e.g. the conformance floor server's "ready")
 * or matches it; resolves with the process and that line's match.
 */
export async function startProcessMatching(args: string[], ready: string | RegExp, timeoutMs = 10000): Promise<{ proc: ChildProcess; match: string[] }> {
  const test = (line: string): string[] | null => (typeof ready === 'string' ? (line === ready ? [line] : null) : ready.exec(line));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const match = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${args.join(' ')}: not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    proc.stdout!.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        const m = test(line);
        if (m) {
          clearTimeout(timer);
          resolve(m);
          return;
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited with ${code}`));
    });
  });
  return { proc, match };
}

/** startProcessMatching for a program that prints exactly `readyLine`. */
export async function startProcess(args: string[], readyLine: string, timeoutMs = 10000): Promise<ChildProcess> {
  return (await startProcessMatching(args, readyLine, timeoutMs)).proc;
}

export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  await exited;
}

/** A stack installed under a temporary prefix, with the REST gateway in its own process (for the REST benches). */
export interface RestBenchStack {
  prefix: string;
  stack: RunningStack;
  /** the gateway's base URL, e.g. http://127.0.0.1:40123 */
  url: string;
  gateway: ChildProcess;
  /** a dom0 bearer token */
  token: string;
  /** stops the gateway and the stack and removes the prefix */
  stop(): Promise<void>;
}

/**
 * Installs and starts the stack (qubesd, policy daemon, dispatcher), then the
 * gateway on an ephemeral port, with its access log where the installation
 * puts it (a line per request costs the gateway; a bench without it would
 * flatter it).
 */
export async function startRestBenchStack(prefixName: string): Promise<RestBenchStack> {
  const prefix = mkdtempSync(join(tmpdir(), `${prefixName}-`));
  install({ prefix });
  const stack = await startStack(configPath(prefix), { quiet: true, rest: false });
  let gateway: ChildProcess, url: string;
  try {
    const started = await startProcessMatching(
      [...REST_NODE_FLAGS, join(ROOT, 'bin', 'qubes-rest'), '--prefix', prefix, '--listen', '127.0.0.1:0'],
      /listening on (\S+)/,
      30_000,
    );
    gateway = started.proc;
    url = started.match[1]!;
  } catch (e) {
    await stack.stop();
    rmSync(prefix, { recursive: true, force: true });
    throw e;
  }
  const stop = async (): Promise<void> => {
    gateway.kill('SIGTERM');
    await stack.stop();
    rmSync(prefix, { recursive: true, force: true });
  };
  const token = new TokenStore(tokenFileFor(prefix)).create('dom0', { description: 'bench' }).token;
  return { prefix, stack, url, gateway, token, stop };
}

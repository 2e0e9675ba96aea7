// Shared helpers for benchmarks: every figure is printed as one JSON line so
// that `npm run bench` output is machine-readable.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface Figure { bench: string; name: string; value: number; unit: string; [k: string]: unknown }
export function report(f: Figure): void { process.stdout.write(JSON.stringify(f) + '\n'); }
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
export function median(xs: number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50);
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
 * A Node program run as its own process, considered started once it printed
 * `readyLine` on stdout (e.g. the conformance floor server's "ready").
 */
export async function startProcess(args: string[], readyLine: string, timeoutMs = 10000): Promise<ChildProcess> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready after ${timeoutMs} ms`)), timeoutMs);
    proc.stdout!.on('data', (d) => {
      out += d;
      if (out.split('\n').includes(readyLine)) { clearTimeout(timer); resolve(); }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${args.join(' ')} exited with ${code}`)); });
  });
  await ready;
  return proc;
}

export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  await exited;
}

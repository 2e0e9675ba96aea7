// Test helpers for whole-stack operations: an installation in a temporary
// prefix, bin/qubes-stack running on it, and the operator's commands.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';

export const BIN = join(ROOT, 'bin');
const ENV = { ...process.env, NODE_OPTIONS: '' };

export function prefixDir(opts: { backend?: 'sim' | 'libvirt' } = {}): string {
  const prefix = mkdtempSync(join(tmpdir(), 'qubes-ops-'));
  install({ prefix, ...(opts.backend ? { backend: opts.backend } : {}) });
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
  return prefix;
}

export interface Stack {
  proc: ChildProcess;
  out(): string;
  waitFor(text: string, ms?: number): Promise<void>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function runStack(prefix: string): Stack {
  const proc = spawn(process.execPath, [join(BIN, 'qubes-stack'), '--prefix', prefix], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  // a test runner timeout must not leave the stack running
  const onExit = () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
  };
  process.once('exit', onExit);
  const s: Stack = {
    proc,
    exited,
    out: () => out,
    async waitFor(text, ms = 30000) {
      const deadline = Date.now() + ms;
      while (!out.includes(text)) {
        if (Date.now() > deadline) throw new Error(`never saw ${JSON.stringify(text)}:\n${out}`);
        if (proc.exitCode !== null) throw new Error(`the stack exited (${proc.exitCode}) before ${JSON.stringify(text)}:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  t.teardown(() => s.stop());
  return s;
}

/** A bin/ program run to its end (async: the stack keeps running meanwhile). */
export function runBin(name: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(BIN, name), ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '',
      stderr = '';
    p.stdout!.on('data', (d) => {
      stdout += d;
    });
    p.stderr!.on('data', (d) => {
      stderr += d;
    });
    p.once('exit', (status) => resolve({ status, stdout, stderr, ms: Date.now() - t0 }));
  });
}

export function runBinSync(name: string, args: string[]) {
  return spawnSync(process.execPath, [join(BIN, name), ...args], { env: ENV, encoding: 'utf8', timeout: 60000 });
}

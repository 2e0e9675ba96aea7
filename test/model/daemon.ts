// Starts bin/qubesd's code (dist/qubesd/cli.js) on a copy of the conformance
// fixture. The shared helper spawns bin/qubesd, an extension-less script
// that tap's child-process hooks load as CommonJS and fail on; spawning the
// compiled entry point directly avoids that.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE, ROOT, type Daemon } from '../helpers/qubesd.js';

export async function startFixtureDaemon(dir?: string): Promise<Daemon> {
  const fresh = dir === undefined;
  dir ??= mkdtempSync(join(tmpdir(), 'model-api-'));
  const base = join(dir, 'base'), run = join(dir, 'run'), store = join(dir, 'qubes.xml');
  mkdirSync(base, { recursive: true }); mkdirSync(run, { recursive: true });
  if (fresh) {
    writeFileSync(store, readFileSync(join(FIXTURE, 'qubes.xml'), 'utf8').replaceAll('@BASE@', base));
    cpSync(join(FIXTURE, 'base'), base, { recursive: true });
  }
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'qubesd', 'cli.js'), '--store', store, '--base-dir', base,
    '--socket-dir', run, '--policy-dir', join(dir, 'policy.d'), '--log', 'none'], { stdio: ['ignore', 'ignore', 'pipe'] });
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

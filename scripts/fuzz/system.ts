// The system under test for the soak: an installation under a temporary
// prefix (bin/qubes-install's layout), whose three processes (qubesd, the
// policy daemon, the qrexec dispatcher) are started here one by one, as
// qubes-stack would, so that qubesd alone can be SIGKILLed and restarted on
// the same store. Also reads a process's memory and descriptors from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { install } from '../../rpc-services/install.js';
import { configPath, loadConfig, type StackConfig } from '../../lib/stack-config.js';
import { commands, unitEnv } from '../../rpc-services/stack.js';
import { readReady } from '../../lib/config/ready.js';

export interface Part {
  name: string;
  proc: ChildProcess;
  /** last few KiB of its stderr, for the report */
  stderr(): string;
  /** set before we kill it on purpose */
  killedOnPurpose: boolean;
  exited: Promise<void>;
}

export interface ProcStats {
  rssMB: number;
  fds: number;
}

/** VmRSS and the number of open descriptors of a live process, or null when it is gone. */
export function procStats(pid: number): ProcStats | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rssMB: m ? Number(m[1]) / 1024 : 0, fds };
  } catch {
    return null;
  }
}

export class System {
  readonly config: StackConfig;
  readonly cfgPath: string;
  private readonly cmds: ReturnType<typeof commands>;
  parts = new Map<string, Part>();
  /** called when a part exits without us killing it */
  onUnexpectedExit: (p: Part, code: number | null, signal: string | null) => void = () => {};

  constructor(readonly prefix: string) {
    install({ prefix });
    this.cfgPath = configPath(prefix);
    this.config = loadConfig(this.cfgPath);
    this.cmds = commands(this.config, this.cfgPath, { rest: false });
  }

  async start(name: string, timeoutMs = 30_000): Promise<Part> {
    const cmd = this.cmds.find((c) => c.name === name)!;
    const proc = spawn(cmd.argv[0]!, cmd.argv.slice(1), { env: unitEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let sawLine = false;
    proc.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-8192);
    });
    proc.stdout!.on('data', () => {
      sawLine = true;
    });
    const part: Part = {
      name,
      proc,
      stderr: () => err,
      killedOnPurpose: false,
      exited: new Promise((r) => proc.once('exit', () => r())),
    };
    // an exit during start-up is reported by start() itself, not as a crash
    let ready = false;
    proc.once('exit', (code, signal) => {
      if (ready && !part.killedOnPurpose) this.onUnexpectedExit(part, code, signal);
    });
    this.parts.set(name, part);
    const deadline = Date.now() + timeoutMs;
    while (!(cmd.ready === 'line' ? sawLine : readReady(cmd.ready)?.pid === proc.pid)) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`${name} exited during start-up (${proc.exitCode ?? proc.signalCode}): ${err.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${timeoutMs} ms: ${err.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    ready = true;
    return part;
  }

  async startAll(): Promise<void> {
    for (const c of this.cmds) await this.start(c.name);
  }

  pid(name: string): number | undefined {
    const p = this.parts.get(name);
    return p && p.proc.exitCode === null && p.proc.signalCode === null ? p.proc.pid : undefined;
  }

  async kill(name: string, signal: NodeJS.Signals): Promise<void> {
    const p = this.parts.get(name);
    if (!p || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
    p.killedOnPurpose = true;
    p.proc.kill(signal);
    const t = setTimeout(() => p.proc.kill('SIGKILL'), 10_000);
    await p.exited;
    clearTimeout(t);
  }

  async stopAll(): Promise<void> {
    for (const name of [...this.parts.keys()].reverse()) await this.kill(name, 'SIGTERM');
  }
}

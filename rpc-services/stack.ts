// qubes-stack: runs an installation's processes in the foreground, in
// dependency order: qubesd, then the policy daemon (which reads qubesd's
// system info), then the qrexec dispatcher. Stops them in reverse order on
// SIGTERM/SIGINT, and stops everything if one of them dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configPath, loadConfig, type StackConfig } from './config.js';
import { CHECKOUT, install } from './install.js';
import { QUBESD_NODE_FLAGS } from '../qubesd/node-flags.js';
import { askSocketFor, tokenFileFor } from '../rest/options.js';
import { TokenStore } from '../rest/tokens.js';

export interface Part { name: string; proc: ChildProcess }

export function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); res(true); });
    c.once('error', () => res(false));
  });
}

async function waitFor(part: Part, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (part.proc.exitCode !== null || part.proc.signalCode !== null) throw new Error(`${part.name} exited during start-up (code ${part.proc.exitCode ?? part.proc.signalCode})`);
    if (Date.now() > deadline) throw new Error(`${part.name} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The REST gateway's line once it listens: "qubes-rest: listening on URL". */
const REST_LISTENING = /^qubes-rest: listening on (\S+)$/m;

/** The command lines (qubesd, policy daemon, dispatcher, REST gateway), from one installation's configuration. */
export function commands(c: StackConfig, cfgPath: string, opts: { rest?: boolean } = {}): Array<{ name: string; script: string; argv: string[]; ready: string | 'line' }> {
  const node = process.execPath;
  const rest = opts.rest === false ? [] : [{
    name: 'qubes-rest',
    script: join(c.checkout, 'dist', 'rest', 'cli.js'),
    argv: [node, join(c.checkout, 'dist', 'rest', 'cli.js'), '--prefix', c.prefix, '--listen', '127.0.0.1:0'],
    ready: 'line' as const,
  }];
  return [
    {
      name: 'qubesd',
      script: join(c.checkout, 'dist', 'qubesd', 'cli.js'),
      argv: [node, ...QUBESD_NODE_FLAGS, join(c.checkout, 'bin', 'qubesd'), '--store', c.qubesd.store, '--base-dir', c.qubesd.baseDir,
        '--socket-dir', c.qubesd.socketDir, '--policy-dir', c.policy.dir, '--runtime-policy-dir', c.policy.runtimeDir,
        '--backup-profile-dir', c.qubesd.backupProfileDir, '--services-dir', c.qrexec.serviceDir,
        ...(c.qubesd.guestServicesDir ? ['--guest-services-dir', c.qubesd.guestServicesDir] : []),
        '--backend', c.qubesd.backend, '--log', c.qubesd.log],
      ready: c.qubesd.socket,
    },
    {
      name: 'policy-daemon',
      script: join(c.checkout, 'dist', 'policy', 'cli.js'),
      argv: [node, join(c.checkout, 'dist', 'policy', 'cli.js'), 'daemon', '--socket', c.policy.socket,
        '--policy-dir', c.policy.dir, '--runtime-dir', c.policy.runtimeDir, '--system-info-socket', c.qubesd.internalSocket],
      ready: c.policy.socket,
    },
    {
      name: 'qrexec-dispatcher',
      script: join(c.checkout, 'dist', 'rpc-services', 'qrexec', 'main-run.js'),
      // with the gateway, an `ask` the installation leaves at deny goes to its console's ask agent
      argv: [node, join(c.checkout, 'dist', 'rpc-services', 'qrexec', 'main-run.js'), '--config', cfgPath,
        ...(opts.rest !== false && c.qrexec.ask === 'deny' ? ['--ask', `socket:${askSocketFor(c.prefix)}`] : [])],
      ready: 'line',
    },
    ...rest,
  ];
}

export interface RunningStack {
  parts: Part[]; config: StackConfig; stop(): Promise<void>; exited: Promise<string>;
  /** where the REST gateway listens (http://127.0.0.1:PORT/rest/v0), if it runs */
  restUrl?: string;
}

/**
 * The environment the parts run in: what a systemd unit gets, not whatever
 * the invoking shell carries (NODE_OPTIONS or NODE_EXTRA_CA_CERTS there would
 * be inherited by every handler program qrexec starts, and slow each start).
 */
export function unitEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', LANG: process.env.LANG ?? 'C.UTF-8', ...(process.env.TZ ? { TZ: process.env.TZ } : {}) };
}

/** Start every part, waiting for each to be ready before the next. */
export async function startStack(cfgPath: string, opts: { quiet?: boolean; rest?: boolean } = {}): Promise<RunningStack> {
  const c = loadConfig(cfgPath);
  const parts: Part[] = [];
  let restUrl: string | undefined;
  let stopping = false;
  let announceExit: (msg: string) => void = () => {};
  const exited = new Promise<string>((r) => { announceExit = r; });
  const stop = async () => {
    stopping = true;
    for (const p of [...parts].reverse()) {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null) continue;
      const gone = new Promise((r) => p.proc.once('exit', r));
      p.proc.kill('SIGTERM');
      const t = setTimeout(() => p.proc.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
  };
  try {
    for (const cmd of commands(c, cfgPath, opts)) {
      if (!existsSync(cmd.script)) throw new Error(`${cmd.name} is not built: ${cmd.script} is missing (npm run build)`);
      let sawReadyLine = false;
      const proc = spawn(cmd.argv[0]!, cmd.argv.slice(1), { env: unitEnv(), stdio: ['ignore', 'pipe', opts.quiet ? 'ignore' : 'inherit'] });
      const part = { name: cmd.name, proc };
      parts.push(part);
      proc.stdout!.on('data', (d: Buffer) => {
        if (cmd.name === 'qubes-rest') {
          const m = REST_LISTENING.exec(d.toString());
          if (!m) return;
          restUrl = m[1];
        }
        sawReadyLine = true;
        // the gateway's line is printed by main() as it is, unprefixed
        if (!opts.quiet && cmd.name !== 'qubes-rest') for (const line of d.toString().split('\n')) if (line) process.stdout.write(`[${cmd.name}] ${line}\n`);
      });
      proc.once('exit', (code, signal) => { if (!stopping) announceExit(`${cmd.name} exited unexpectedly (${code ?? signal})`); });
      await waitFor(part, async () => (cmd.ready === 'line' ? sawReadyLine : canConnect(cmd.ready)), 20_000);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { parts, config: c, stop, exited, ...(restUrl ? { restUrl } : {}) };
}

const USAGE = 'usage: qubes-stack [--prefix DIR]   (without --prefix: an installation in <checkout>/tmp/stack, created if missing)';

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let prefix: string;
  try {
    const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' }, help: { type: 'boolean' } }, strict: true });
    if (values.help) { console.log(USAGE); return; }
    prefix = resolve(values.prefix ?? join(CHECKOUT, 'tmp', 'stack'));
    if (!values.prefix && !existsSync(configPath(prefix))) {
      install({ prefix });
      console.log(`qubes-stack: installed the default layout under ${prefix}`);
    }
  } catch (e) {
    console.error(`qubes-stack: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const cfg = configPath(prefix);
  if (!existsSync(cfg)) {
    console.error(`qubes-stack: no installation under ${prefix} (run: qubes-install --prefix ${prefix})`);
    process.exit(2);
  }
  // on first start, a dom0 token for the REST gateway (shown this once)
  let firstToken: string | null = null;
  const tokenFile = tokenFileFor(prefix);
  if (!existsSync(tokenFile)) {
    try {
      firstToken = new TokenStore(tokenFile).create('dom0', { description: 'created by qubes-stack on first start' }).token;
    } catch (e) {
      console.error(`qubes-stack: cannot create the first REST token: ${(e as Error).message}`);
    }
  }
  let stack: RunningStack;
  try {
    stack = await startStack(cfg);
  } catch (e) {
    console.error(`qubes-stack: cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  if (stack.restUrl) {
    console.log(`qubes-rest: listening on ${stack.restUrl}`);
    if (firstToken) {
      console.log(`qubes-rest: dom0 token (shown once; more with: qubes-rest token create --prefix ${prefix} --as IDENTITY): ${firstToken}`);
      console.log(`qubes-rest: console ${stack.restUrl.replace(/\/rest\/v0$/, '')}/#token=${firstToken}`);
    }
  }
  console.log(`qubes-stack: ready (qubesd ${stack.config.qubesd.socket}, policy ${stack.config.policy.socket}, qrexec ${stack.config.qrexec.socketDir}/qrexec.<qube>)`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => { void stack.stop().then(() => process.exit(0)); });
  }
  const why = await stack.exited;
  console.error(`qubes-stack: ${why}; stopping the rest`);
  await stack.stop();
  process.exit(1);
}

// qubes-stack: runs an installation's processes in the foreground, in
// dependency order: qubesd, then the policy daemon (which reads qubesd's
// system info), then the qrexec dispatcher. Stops them in reverse order on
// SIGTERM/SIGINT, and stops everything if one of them dies. Each daemon gets
// its configuration file (PREFIX/etc/qubes/<daemon>.conf) and counts as
// started when it has written its ready file. While it runs, the stack
// forwards SIGHUP (reload) to every daemon and restarts them in order on
// SIGUSR2 (`qubes-stack restart|reload --prefix DIR`: stack-control.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configPath, loadConfig, type StackConfig } from '../lib/stack-config.js';
import { CHECKOUT, install } from './install.js';
import { QUBESD_NODE_FLAGS, REST_NODE_FLAGS } from '../lib/node-flags.js';
import { populateDemo } from './demo.js';
import { daemonConfigPath, readyPath } from './daemon-configs.js';
import { readReady } from '../lib/config/ready.js';
import { controlMain, holdPidFile } from './stack-control.js';
import { askSocketFor, tokenFileFor } from '../rest/options.js';
import { TokenStore } from '../rest/tokens.js';

export interface Part {
  name: string;
  proc: ChildProcess;
}

export function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      res(true);
    });
    c.once('error', () => res(false));
  });
}

async function waitFor(part: Part, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (part.proc.exitCode !== null || part.proc.signalCode !== null)
      throw new Error(`${part.name} exited during start-up (code ${part.proc.exitCode ?? part.proc.signalCode})`);
    if (Date.now() > deadline) throw new Error(`${part.name} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The REST gateway's line once it listens: "qubes-rest: listening on URL". */
const REST_LISTENING = /^qubes-rest: listening on (\S+)$/m;

/**
 * The command lines (qubesd, policy daemon, dispatcher, REST gateway), from
 * one installation's configuration; `ready`: the daemon's ready file, or
 * 'line' for the gateway (ready once it prints where it listens).
 */
export function commands(
  c: StackConfig,
  _cfgPath?: string,
  opts: { rest?: boolean; restListen?: string } = {},
): Array<{ name: string; script: string; argv: string[]; ready: string | 'line' }> {
  const node = process.execPath;
  const conf = (daemon: string) => ['--config', daemonConfigPath(c.prefix, daemon)];
  const rest =
    opts.rest === false
      ? []
      : [
          {
            name: 'qubes-rest',
            script: join(c.checkout, 'dist', 'rest', 'cli.js'),
            argv: [node, ...REST_NODE_FLAGS, join(c.checkout, 'dist', 'rest', 'cli.js'), '--prefix', c.prefix, '--listen', opts.restListen ?? '127.0.0.1:0'],
            ready: 'line' as const,
          },
        ];
  return [
    {
      name: 'qubesd',
      script: join(c.checkout, 'dist', 'qubesd', 'cli.js'),
      argv: [node, ...QUBESD_NODE_FLAGS, join(c.checkout, 'bin', 'qubesd'), ...conf('qubesd')],
      ready: readyPath(c.prefix, 'qubesd'),
    },
    {
      name: 'policy-daemon',
      script: join(c.checkout, 'dist', 'policy', 'cli.js'),
      // with the gateway, an `ask` the installation leaves at deny goes to its console's ask agent
      argv: [
        node,
        join(c.checkout, 'dist', 'policy', 'cli.js'),
        'daemon',
        ...conf('qubes-policy-daemon'),
        ...(opts.rest !== false && c.qrexec.ask === 'deny' ? ['--ask-socket', askSocketFor(c.prefix)] : []),
      ],
      ready: readyPath(c.prefix, 'qubes-policy-daemon'),
    },
    {
      name: 'qrexec-dispatcher',
      script: join(c.checkout, 'dist', 'rpc-services', 'qrexec', 'dispatcher-main.js'),
      argv: [node, join(c.checkout, 'dist', 'rpc-services', 'qrexec', 'dispatcher-main.js'), ...conf('qrexec-dispatcher')],
      ready: readyPath(c.prefix, 'qrexec-dispatcher'),
    },
    ...rest,
  ];
}

export interface RunningStack {
  parts: Part[];
  config: StackConfig;
  stop(): Promise<void>;
  exited: Promise<string>;
  /** stop every daemon (in reverse order), then start them again in order */
  restart(): Promise<boolean>;
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
  let failed = false;
  let announceExit: (msg: string) => void = () => {};
  const exited = new Promise<string>((r) => {
    announceExit = r;
  });
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
  const startParts = async () => {
    // a restarted gateway keeps the address it had
    const restListen = restUrl ? new URL(restUrl).host : undefined;
    for (const cmd of commands(c, cfgPath, { ...opts, ...(restListen ? { restListen } : {}) })) {
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
          sawReadyLine = true;
          return; // main() prints the gateway's line as it is
        }
        if (!opts.quiet) for (const line of d.toString().split('\n')) if (line) process.stdout.write(`[${cmd.name}] ${line}\n`);
      });
      proc.once('exit', (code, signal) => {
        if (!stopping) announceExit(`${cmd.name} exited unexpectedly (${code ?? signal})`);
      });
      await waitFor(part, async () => (cmd.ready === 'line' ? sawReadyLine : readReady(cmd.ready)?.pid === proc.pid), 20_000);
    }
  };
  try {
    await startParts();
  } catch (e) {
    await stop();
    throw e;
  }
  const restart = async () => {
    if (failed) return false;
    await stop();
    parts.length = 0;
    stopping = false;
    try {
      await startParts();
    } catch (e) {
      failed = true;
      await stop();
      announceExit(`restart failed: ${(e as Error).message}`);
      return false;
    }
    return true;
  };
  return {
    parts,
    config: c,
    stop,
    exited,
    restart,
    get restUrl() {
      return restUrl;
    },
  };
}

const USAGE = `usage: qubes-stack [--prefix DIR] [--demo]
        qubes-stack restart|reload [--prefix DIR]
  without --prefix: an installation in <checkout>/tmp/stack, created if missing
  --demo: when the system has no qube but dom0, create two templates, sys-net,
          sys-firewall and a few app qubes (through the Admin API, as qvm-create would)
  restart: restart the running stack's daemons in order; reload: SIGHUP every daemon`;

export async function main(argv = process.argv.slice(2)): Promise<void> {
  if (argv[0] === 'restart' || argv[0] === 'reload') {
    process.exitCode = await controlMain(argv[0], argv.slice(1));
    return;
  }
  let prefix: string;
  let demo = false;
  try {
    const { values } = parseArgs({ args: argv, options: { prefix: { type: 'string' }, demo: { type: 'boolean' }, help: { type: 'boolean' } }, strict: true });
    demo = values.demo ?? false;
    if (values.help) {
      console.log(USAGE);
      return;
    }
    prefix = resolve(values.prefix ?? join(CHECKOUT, 'tmp', 'stack'));
    // (an older default layout lacks the daemons' .conf files: lay it out again)
    if (!values.prefix && (!existsSync(configPath(prefix)) || !existsSync(daemonConfigPath(prefix, 'qubesd')))) {
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
  if (!existsSync(daemonConfigPath(prefix, 'qubesd'))) {
    console.error(`qubes-stack: the installation under ${prefix} predates the daemons' configuration files (run: qubes-install --prefix ${prefix})`);
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
  if (demo) {
    try {
      const created = await populateDemo(stack.config.qubesd.socket);
      console.log(
        created.length ? `qubes-stack: demo qubes created: ${created.join(', ')}` : 'qubes-stack: --demo: the system has qubes already; nothing created',
      );
    } catch (e) {
      console.error(`qubes-stack: --demo failed: ${(e as Error).message}`);
    }
  }
  console.log(
    `qubes-stack: ready (qubesd ${stack.config.qubesd.socket}, policy ${stack.config.policy.socket}, qrexec ${stack.config.qrexec.socketDir}/qrexec.<qube>)`,
  );
  holdPidFile(prefix);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      void stack.stop().then(() => process.exit(0));
    });
  }
  process.on('SIGHUP', () => {
    console.log('qubes-stack: reload: SIGHUP to every daemon');
    for (const p of stack.parts) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGHUP');
  });
  let restarting: Promise<void> | null = null;
  process.on('SIGUSR2', () => {
    if (restarting) {
      console.log('qubes-stack: restart already under way');
      return;
    }
    console.log('qubes-stack: restarting the daemons in order');
    restarting = stack
      .restart()
      .then((ok) => {
        if (ok) console.log('qubes-stack: ready again');
      })
      .finally(() => {
        restarting = null;
      });
  });
  const why = await stack.exited;
  console.error(`qubes-stack: ${why}; stopping the rest`);
  await stack.stop();
  process.exit(1);
}

// The dispatcher daemon: `node dist/rpc-services/qrexec/dispatcher-main.js --config
// FILE` (its qrexec-dispatcher.conf, drop-ins in FILE.d/) or with each key as
// a flag (rpc-services/qrexec/config-schema.ts declares them). Runs in the
// foreground; SIGTERM/SIGINT close every socket; SIGHUP re-reads the files
// and switches the log at once (the policy daemon decides `ask` rules).
import { appendFileSync } from 'node:fs';
import { QrexecDispatcher, type DispatcherOptions } from './dispatcher.js';
import { QubeWatcher } from './qubes-list.js';
import { refusalExplainer } from './refusal.js';
import { parseSocketOwner, type SocketOwners } from './socket-owner.js';
import { DISPATCHER_SCHEMA } from './config-schema.js';
import { loadConfig } from '../../lib/config/load.js';
import { parseCommandLine, reloadOnSighup, startConfig } from '../../lib/config/command-line.js';
import { announceReady, withdrawReady } from '../../lib/config/ready.js';
import type { ConfigValues } from '../../lib/config/schema.js';

const USAGE = `usage: qrexec-dispatcher [--config FILE] [--print-config] [--KEY-NAME VALUE]...
  e.g. --socket-dir DIR --service-dir DIR [--service-dir DIR ...] --policy-socket PATH
       (--qubesd-socket PATH | --qube NAME ...) [--socket-owner QUBE=[USER]:[GROUP][:MODE] ...]
       [--policy-dir DIR [--runtime-policy-dir DIR] --system-info-socket PATH] (to log why a call was refused)
       [--log stderr|FILE]
  Every key of qrexec-dispatcher.conf is also a flag (docs/CONFIGURATION.md).
  An ask rule is decided by the policy daemon's agent (qubes-policy-daemon.conf ask_*).`;

export interface DispatcherArgs {
  socketDir: string;
  serviceDirs: string[];
  policySocket: string;
  qubesdSocket: string | null;
  qubes: string[];
  log: string;
  socketOwners: SocketOwners;
  /** where the refusal explanations come from; null: the log says only "denied by policy" */
  explain: { policyDir: string; runtimeDir: string | null; systemInfoSocket: string } | null;
  readyFile: string;
}

export function dispatcherArgs(v: ConfigValues): DispatcherArgs {
  const a: DispatcherArgs = {
    socketDir: String(v.socket_dir),
    serviceDirs: v.service_dir as string[],
    policySocket: String(v.policy_socket),
    qubesdSocket: String(v.qubesd_socket) || null,
    qubes: v.qube as string[],
    log: String(v.log),
    socketOwners: new Map(),
    explain: null,
    readyFile: String(v.ready_file),
  };
  for (const o of v.socket_owner as string[]) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new Error(`socket_owner ${JSON.stringify(o)}: expected QUBE=[USER]:[GROUP][:MODE]`);
    a.socketOwners.set(o.slice(0, eq), parseSocketOwner(o.slice(eq + 1)));
  }
  const policyDir = String(v.policy_dir),
    infoSocket = String(v.system_info_socket);
  if (policyDir && infoSocket) a.explain = { policyDir, runtimeDir: String(v.runtime_policy_dir) || null, systemInfoSocket: infoSocket };
  if (!a.socketDir || !a.serviceDirs.length || !a.policySocket) throw new Error('socket_dir, service_dir and policy_socket are required');
  if (!a.qubes.length && !a.qubesdSocket) throw new Error('either qube (--qube NAME) or qubesd_socket (--qubesd-socket PATH) is needed');
  return a;
}

export function parseDispatcherArgs(argv: string[]): DispatcherArgs {
  const c = parseCommandLine(DISPATCHER_SCHEMA, argv);
  return dispatcherArgs(loadConfig(DISPATCHER_SCHEMA, { file: c.file, flags: c.flags }).values);
}

function logTo(target: string): (m: string) => void {
  return target === 'stderr' ? (m) => process.stderr.write(`qrexec: ${m}\n`) : (m) => appendFileSync(target, `${new Date().toISOString()} ${m}\n`);
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const cfg = startConfig('qrexec-dispatcher', DISPATCHER_SCHEMA, argv, USAGE);
  let a: DispatcherArgs;
  try {
    a = dispatcherArgs(cfg.current.values);
  } catch (e) {
    console.error(`qrexec-dispatcher: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  let logLine = logTo(a.log);
  const log = (m: string) => logLine(m);
  const opts: DispatcherOptions = {
    socketDir: a.socketDir,
    serviceDirs: a.serviceDirs,
    policySocket: a.policySocket,
    log,
    socketAccess: (qube) => a.socketOwners.get(qube) ?? a.socketOwners.get('*') ?? null,
    ...(a.explain ? { explainRefusal: refusalExplainer(a.explain) } : {}),
  };
  const d = new QrexecDispatcher(opts);
  let watcher: QubeWatcher | null = null;
  try {
    if (a.qubes.length) await d.setQubes(a.qubes);
    else {
      watcher = new QubeWatcher(a.qubesdSocket!, (names) => d.setQubes(names), log);
      await watcher.start();
    }
  } catch (e) {
    console.error(`qrexec-dispatcher: cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  announceReady(a.readyFile, 'qrexec-dispatcher');
  console.log(`qrexec-dispatcher: serving ${d.qubes.length} qube sockets in ${a.socketDir}`);
  reloadOnSighup(
    'qrexec-dispatcher',
    cfg,
    (next, keys) => {
      if (keys.includes('log')) logLine = logTo(String(next.values.log));
    },
    (m) => console.error(m),
  );
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      withdrawReady(a.readyFile);
      watcher?.stop();
      void d.close().then(() => process.exit(0));
    });
  }
}

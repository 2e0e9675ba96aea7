// `qubes-policy daemon`: the policy daemon as a program. Its settings come
// from qubes-policy-daemon.conf (--config FILE, drop-ins in FILE.d/) and the
// command line (policy/config-schema.ts declares them); SIGHUP re-reads the
// files and switches the ask agent and the log at once; the ready file is
// written once the policy is loaded and the socket listens.
import { appendFileSync } from 'node:fs';
import { PolicyDaemon, type PolicyDaemonOptions } from './daemon/server.js';
import { commandAskAgent, fixedAskAgent, socketAskAgent, type AskAgent } from './daemon/ask-agents.js';
import { systemInfoSource } from './daemon/system-info-source.js';
import { PolicyWatcher } from './watcher.js';
import { POLICY_DAEMON_SCHEMA } from './config-schema.js';
import { reloadOnSighup, startConfig } from '../lib/config/command-line.js';
import { announceReady, withdrawReady } from '../lib/config/ready.js';
import type { ConfigValues } from '../lib/config/schema.js';

const PROGRAM = 'qubes-policy daemon';
const USAGE = `usage: qubes-policy daemon [--config FILE] [--print-config] [--KEY-NAME VALUE]...
  Every key of qubes-policy-daemon.conf is also a flag (docs/CONFIGURATION.md).
  Needs socket, policy_dir and one of system_info_socket and system_info.`;

/** The ask agent the keys describe; undefined: every ask is denied. */
export function askAgentOf(v: ConfigValues): AskAgent | undefined {
  if ([v.ask_answer, v.ask_command, v.ask_socket].filter(Boolean).length > 1) throw new Error('give at most one of ask_answer, ask_command and ask_socket');
  if (v.ask_command) return commandAskAgent(String(v.ask_command));
  if (v.ask_socket) return socketAskAgent(String(v.ask_socket));
  if (v.ask_answer) return fixedAskAgent(v.ask_answer as 'allow' | 'deny');
  return undefined;
}

function logTo(target: string): (line: string) => void {
  return target === 'stderr' ? (l) => process.stderr.write(l + '\n') : (l) => appendFileSync(target, `${new Date().toISOString()} ${l}\n`);
}

export async function daemonMain(argv: string[]): Promise<number> {
  const cfg = startConfig(PROGRAM, POLICY_DAEMON_SCHEMA, argv, USAGE);
  const v = cfg.current.values;
  let askAgent: AskAgent | undefined;
  try {
    if (!v.socket) throw new Error('socket is required (--socket PATH or socket = PATH)');
    if (!v.system_info_socket === !v.system_info) throw new Error('give exactly one of system_info_socket and system_info');
    askAgent = askAgentOf(v);
  } catch (e) {
    process.stderr.write(`${PROGRAM}: ${(e as Error).message}\n`);
    return 2;
  }
  let log = logTo(String(v.log));
  const watcher = new PolicyWatcher({
    policyDir: String(v.policy_dir),
    runtimeDir: String(v.runtime_dir) || null,
    legacyDir: String(v.legacy_dir) || null,
    onError: (err) => log(`policy reload failed, keeping the previous policy: ${err.message}`),
  });
  const systemInfo = systemInfoSource({ socket: String(v.system_info_socket), file: String(v.system_info) });
  // kept: SIGHUP swaps the agent and the log in this object
  const opts: PolicyDaemonOptions = {
    socketPath: String(v.socket),
    evalSocketPath: String(v.eval_socket) || undefined,
    guiSocketPath: String(v.gui_socket) || undefined,
    watcher,
    systemInfo,
    askAgent,
    log: (l) => log(l),
  };
  const daemon = new PolicyDaemon(opts);
  await daemon.start();
  const readyFile = String(v.ready_file);
  announceReady(readyFile, 'qubes-policy-daemon');
  log(`qubes-policy daemon listening on ${opts.socketPath}`);
  const stopReload = reloadOnSighup(
    PROGRAM,
    cfg,
    (next, keys) => {
      if (keys.some((k) => k.startsWith('ask_'))) opts.askAgent = askAgentOf(next.values);
      if (keys.includes('log')) log = logTo(String(next.values.log));
    },
    (l) => log(l),
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  stopReload();
  withdrawReady(readyFile);
  await daemon.close();
  watcher.close();
  return 0;
}

// The dispatcher daemon: `node dist/rpc-services/qrexec/main.js --config FILE`
// (an installation's stack.json) or with each path given. Runs in the
// foreground; SIGTERM/SIGINT close every socket.
import { parseArgs } from 'node:util';
import { appendFileSync } from 'node:fs';
import { loadConfig } from '../config.js';
import { makeAskAgent } from './ask.js';
import { QrexecDispatcher } from './dispatcher.js';
import { QubeWatcher } from './qubes-list.js';

const USAGE = `usage: qrexec-dispatcher --config STACK.json
       qrexec-dispatcher --socket-dir DIR --service-dir DIR [--service-dir DIR ...]
                         --policy-socket PATH (--qubesd-socket PATH | --qube NAME ...)
                         [--ask deny|allow|command:PROGRAM|socket:PATH] [--log stderr|FILE]`;

export interface DispatcherArgs {
  socketDir: string;
  serviceDirs: string[];
  policySocket: string;
  qubesdSocket: string | null;
  qubes: string[];
  ask: string;
  log: string;
}

export function parseDispatcherArgs(argv: string[]): DispatcherArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' }, 'socket-dir': { type: 'string' }, 'service-dir': { type: 'string', multiple: true },
      'policy-socket': { type: 'string' }, 'qubesd-socket': { type: 'string' }, qube: { type: 'string', multiple: true },
      ask: { type: 'string' }, log: { type: 'string' }, help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) { console.log(USAGE); process.exit(0); }
  const c = values.config ? loadConfig(values.config) : null;
  const a: DispatcherArgs = {
    socketDir: values['socket-dir'] ?? c?.qrexec.socketDir ?? '',
    serviceDirs: values['service-dir'] ?? (c ? [c.qrexec.serviceDir] : []),
    policySocket: values['policy-socket'] ?? c?.policy.socket ?? '',
    qubesdSocket: values['qubesd-socket'] ?? c?.qubesd.socket ?? null,
    qubes: values.qube ?? [],
    ask: values.ask ?? c?.qrexec.ask ?? 'deny',
    log: values.log ?? 'stderr',
  };
  if (!a.socketDir || !a.serviceDirs.length || !a.policySocket) throw new Error('socket dir, service dir and policy socket are required');
  if (!a.qubes.length && !a.qubesdSocket) throw new Error('either --qube NAME or --qubesd-socket PATH is needed');
  return a;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let a: DispatcherArgs;
  try {
    a = parseDispatcherArgs(argv);
    makeAskAgent(a.ask);
  } catch (e) {
    console.error(`qrexec-dispatcher: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const log = a.log === 'stderr'
    ? (m: string) => process.stderr.write(`qrexec: ${m}\n`)
    : (m: string) => appendFileSync(a.log, `${new Date().toISOString()} ${m}\n`);
  const d = new QrexecDispatcher({ socketDir: a.socketDir, serviceDirs: a.serviceDirs, policySocket: a.policySocket, ask: makeAskAgent(a.ask), log });
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
  console.log(`qrexec-dispatcher: serving ${d.qubes.length} qube sockets in ${a.socketDir}`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => { watcher?.stop(); void d.close().then(() => process.exit(0)); });
  }
}

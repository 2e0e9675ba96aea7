// The dispatcher daemon: `node dist/rpc-services/qrexec/main.js --config FILE`
// (an installation's stack.json) or with each path given. Runs in the
// foreground; SIGTERM/SIGINT close every socket.
import { parseArgs } from 'node:util';
import { appendFileSync } from 'node:fs';
import { loadConfig } from '../config.js';
import { QrexecDispatcher } from './dispatcher.js';
import { QubeWatcher } from './qubes-list.js';
import { refusalExplainer } from './refusal.js';
import { parseSocketOwner, type SocketOwners } from './socket-owner.js';

const USAGE = `usage: qrexec-dispatcher --config STACK.json [options]
       qrexec-dispatcher --socket-dir DIR --service-dir DIR [--service-dir DIR ...]
                         --policy-socket PATH (--qubesd-socket PATH | --qube NAME ...) [options]
options: [--socket-owner QUBE=[USER]:[GROUP][:MODE] ...] (QUBE * for every qube without its own)
         [--policy-dir DIR [--runtime-policy-dir DIR] --system-info-socket PATH] (to log why a call was refused)
         [--log stderr|FILE]
An ask rule is decided by the policy daemon's agent (qubes-policy daemon --ask-*).`;

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
}

export function parseDispatcherArgs(argv: string[]): DispatcherArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' }, 'socket-dir': { type: 'string' }, 'service-dir': { type: 'string', multiple: true },
      'policy-socket': { type: 'string' }, 'qubesd-socket': { type: 'string' }, qube: { type: 'string', multiple: true },
      log: { type: 'string' }, help: { type: 'boolean' },
      'socket-owner': { type: 'string', multiple: true }, 'policy-dir': { type: 'string' },
      'runtime-policy-dir': { type: 'string' }, 'system-info-socket': { type: 'string' },
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
    log: values.log ?? 'stderr',
    socketOwners: new Map(),
    explain: null,
  };
  for (const [qube, spec] of Object.entries(c?.qrexec.socketOwners ?? {})) a.socketOwners.set(qube, parseSocketOwner(spec));
  for (const o of values['socket-owner'] ?? []) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new Error(`--socket-owner ${JSON.stringify(o)}: expected QUBE=[USER]:[GROUP][:MODE]`);
    a.socketOwners.set(o.slice(0, eq), parseSocketOwner(o.slice(eq + 1)));
  }
  const policyDir = values['policy-dir'] ?? c?.policy.dir;
  const infoSocket = values['system-info-socket'] ?? c?.qubesd.internalSocket;
  if (policyDir && infoSocket) a.explain = { policyDir, runtimeDir: values['runtime-policy-dir'] ?? c?.policy.runtimeDir ?? null, systemInfoSocket: infoSocket };
  if (!a.socketDir || !a.serviceDirs.length || !a.policySocket) throw new Error('socket dir, service dir and policy socket are required');
  if (!a.qubes.length && !a.qubesdSocket) throw new Error('either --qube NAME or --qubesd-socket PATH is needed');
  return a;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let a: DispatcherArgs;
  try {
    a = parseDispatcherArgs(argv);
  } catch (e) {
    console.error(`qrexec-dispatcher: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const log = a.log === 'stderr'
    ? (m: string) => process.stderr.write(`qrexec: ${m}\n`)
    : (m: string) => appendFileSync(a.log, `${new Date().toISOString()} ${m}\n`);
  const d = new QrexecDispatcher({
    socketDir: a.socketDir, serviceDirs: a.serviceDirs, policySocket: a.policySocket, log,
    socketAccess: (qube) => a.socketOwners.get(qube) ?? a.socketOwners.get('*') ?? null,
    ...(a.explain ? { explainRefusal: refusalExplainer(a.explain) } : {}),
  });
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

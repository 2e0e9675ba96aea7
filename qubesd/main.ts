// bin/qubesd: the daemon's entry point. Runs in the foreground, owns the
// store, serves qubesd.sock (Admin API) and qubesd.internal.sock, and exits
// cleanly on SIGTERM/SIGINT after a final save.
import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type net from 'node:net';
import { QubesApp } from './model/app.js';
import { Store } from './store/store.js';
import { Dispatcher } from './api/dispatch.js';
import { HANDLERS } from './api/handlers/index.js';
import { AuditLog } from './log/audit.js';
import { closeServer, listen } from './server.js';
import { StorageManager } from './storage/index.js';
import { PolicyFilter } from './api/policy-filter.js';
import { backendConfigFromOptions, createBackend } from './hypervisor/index.js';
import { Lifecycle, attachLifecycle } from './lifecycle/controller.js';
import { BackupService, attachBackups } from './backup/service.js';
import { QubeServices } from './qrexec/run-service.js';
import { ConnectionLimits } from './connection-limits.js';

export interface DaemonOptions {
  store: string;
  baseDir: string;
  socketDir: string;
  backend: 'sim' | 'libvirt';
  libvirtUri?: string;
  libvirtSocket?: string;
  /** sim backend: where simulated domains are kept across qubesd restarts */
  simStateFile?: string;
  policyDir: string;
  runtimePolicyDir: string;
  backupProfileDir: string;
  /** dom0's qrexec service directories (services qubesd calls in dom0) */
  servicesDirs: string[];
  /** per-qube service directories standing in for guests' qrexec agents */
  guestServicesDir: string | null;
  log: string;
  /** open connections per socket (default: from the descriptor limit) */
  maxConnections?: number;
  /** bytes an event stream may have waiting for a client that does not read */
  streamBuffer?: number;
  /** bytes all event streams together may have waiting */
  streamBufferTotal?: number;
}

const USAGE = `usage: qubesd [--store FILE] [--base-dir DIR] [--socket-dir DIR]
              [--backend sim|libvirt] [--libvirt-uri URI] [--libvirt-socket PATH]
              [--sim-state-file FILE]
              [--policy-dir DIR] [--runtime-policy-dir DIR]
              [--backup-profile-dir DIR] [--services-dir DIR]... [--guest-services-dir DIR]
              [--log stderr|none|FILE] [--max-connections N]
              [--stream-buffer BYTES] [--stream-buffer-total BYTES]`;

/** A positive byte count, with an optional K/M/G suffix (powers of 1024). */
function parseSize(opt: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)([KMG]?)$/i.exec(v);
  const n = m ? Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase()) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${opt}: expected a positive number (with K, M or G), got ${JSON.stringify(v)}`);
  return n;
}

export function parseDaemonArgs(argv: string[]): DaemonOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' }, 'base-dir': { type: 'string' }, 'socket-dir': { type: 'string' },
      backend: { type: 'string' }, 'libvirt-uri': { type: 'string' }, 'libvirt-socket': { type: 'string' }, 'sim-state-file': { type: 'string' },
      'policy-dir': { type: 'string' }, 'runtime-policy-dir': { type: 'string' },
      'backup-profile-dir': { type: 'string' }, 'services-dir': { type: 'string', multiple: true },
      'guest-services-dir': { type: 'string' }, log: { type: 'string' }, help: { type: 'boolean' },
      'max-connections': { type: 'string' }, 'stream-buffer': { type: 'string' }, 'stream-buffer-total': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) { console.log(USAGE); process.exit(0); }
  const backend = values.backend ?? 'sim';
  if (backend !== 'sim' && backend !== 'libvirt') throw new Error(`unknown backend ${JSON.stringify(backend)} (sim or libvirt)`);
  const baseDir = resolve(values['base-dir'] ?? '/var/lib/qubes');
  return {
    store: resolve(values.store ?? join(baseDir, 'qubes.xml')),
    baseDir,
    socketDir: resolve(values['socket-dir'] ?? '/var/run'),
    backend,
    libvirtUri: values['libvirt-uri'],
    libvirtSocket: values['libvirt-socket'],
    simStateFile: resolve(values['sim-state-file'] ?? join(baseDir, 'sim-domains.json')),
    policyDir: resolve(values['policy-dir'] ?? '/etc/qubes/policy.d'),
    runtimePolicyDir: resolve(values['runtime-policy-dir'] ?? '/run/qubes/policy.d'),
    backupProfileDir: resolve(values['backup-profile-dir'] ?? '/etc/qubes/backup'),
    servicesDirs: (values['services-dir'] ?? ['/etc/qubes-rpc']).map((d) => resolve(d)),
    guestServicesDir: values['guest-services-dir'] ? resolve(values['guest-services-dir']) : null,
    log: values.log ?? 'stderr',
    maxConnections: parseSize('max-connections', values['max-connections']),
    streamBuffer: parseSize('stream-buffer', values['stream-buffer']),
    streamBufferTotal: parseSize('stream-buffer-total', values['stream-buffer-total']),
  };
}

export interface RunningDaemon {
  app: QubesApp;
  adminSocket: string;
  internalSocket: string;
  stop(): Promise<void>;
}

export async function startDaemon(o: DaemonOptions): Promise<RunningDaemon> {
  const audit = new AuditLog(o.log);
  mkdirSync(o.baseDir, { recursive: true });
  mkdirSync(o.socketDir, { recursive: true });
  const store = await Store.open(o.store, { fresh: () => QubesApp.freshDoc({ baseDir: o.baseDir }) });
  let app: QubesApp;
  try {
    app = QubesApp.fromDoc(store.doc, { baseDir: o.baseDir });
  } catch (e) {
    await store.close();
    throw e;
  }
  store.setSnapshot(() => app.toDoc());
  const storage = StorageManager.attach(app, { baseDir: o.baseDir });
  const lifecycle = new Lifecycle(app, createBackend(backendConfigFromOptions(o)), {
    storage, log: (msg, extra) => audit.info(msg, extra),
  });
  attachLifecycle(app, lifecycle);
  const backups = new BackupService(app, {
    profileDir: o.backupProfileDir, storage,
    services: new QubeServices({ dom0Dirs: o.servicesDirs, guestServicesDir: o.guestServicesDir, log: (l) => audit.info(l) }),
    log: (msg, extra) => audit.info(msg, extra),
  });
  attachBackups(app, backups);
  try {
    await lifecycle.attach();
  } catch (e) {
    await store.close();
    throw new Error(`cannot connect to the ${o.backend} hypervisor backend: ${(e as Error).message}`);
  }

  const common = { app, store, handlers: HANDLERS, audit };
  const policy = new PolicyFilter(app, { policyDir: o.policyDir, runtimeDir: o.runtimePolicyDir, onError: (m) => audit.info(m) });
  const adminSocket = join(o.socketDir, 'qubesd.sock');
  const internalSocket = join(o.socketDir, 'qubesd.internal.sock');
  const servers: Array<[net.Server, string]> = [];
  const limits = new ConnectionLimits({
    maxConnections: o.maxConnections, streamBuffer: o.streamBuffer, streamBufferTotal: o.streamBufferTotal,
    log: (msg, extra) => audit.info(msg, extra),
  });
  try {
    servers.push([await listen(adminSocket, new Dispatcher({ ...common, socket: 'admin', filterFor: policy.factory }), limits.forSocket('admin')), adminSocket]);
    servers.push([await listen(internalSocket, new Dispatcher({ ...common, socket: 'internal' }), limits.forSocket('internal')), internalSocket]);
  } catch (e) {
    for (const [s, p] of servers) await closeServer(s, p);
    await lifecycle.close();
    await store.close();
    throw e;
  }
  audit.info('qubesd ready', { adminSocket, internalSocket, store: o.store, backend: o.backend, domains: app.allVms().length });

  let stopping: Promise<void> | null = null;
  return {
    app, adminSocket, internalSocket,
    stop: () => (stopping ??= (async () => {
      backups.cancelAll();
      await Promise.all(servers.map(([s, p]) => closeServer(s, p)));
      policy.close();
      await lifecycle.close();
      await store.close();
      await audit.close();
    })()),
  };
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  let opts: DaemonOptions;
  try {
    opts = parseDaemonArgs(argv);
  } catch (e) {
    console.error(`qubesd: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  let d: RunningDaemon;
  try {
    d = await startDaemon(opts);
  } catch (e) {
    console.error(`qubesd: cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  console.log(`qubesd: listening on ${d.adminSocket} (internal: ${d.internalSocket})`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      d.stop().then(() => process.exit(0), (e) => { console.error(`qubesd: error while stopping: ${(e as Error).message}`); process.exit(1); });
    });
  }
}

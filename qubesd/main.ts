// bin/qubesd: the daemon's entry point. Runs in the foreground, owns the
// store, serves qubesd.sock (Admin API) and qubesd.internal.sock, and exits
// cleanly on SIGTERM/SIGINT after a final save.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type net from 'node:net';
import { QubesApp } from './model/app.js';
import { Store } from './store/store.js';
import { Dispatcher } from './api/dispatch.js';
import { ReplyCache } from './api/reply-cache.js';
import { HANDLERS } from './api/handlers/index.js';
import { AuditLog } from './log/audit.js';
import { closeServer, listen } from './server.js';
import { StorageManager } from './storage/index.js';
import { PolicyFilter } from './api/policy-filter.js';
import { backendConfigFromOptions, createBackend } from './hypervisor/index.js';
import { Lifecycle } from './lifecycle/controller.js';
import { Firewalls } from './firewall/firewall.js';
import type { Services } from './api/services.js';
import { BackupService } from './backup/service.js';
import { QubeServices } from './qrexec/run-service.js';
import { ConnectionLimits, type ConnectionLimitOptions } from './connection-limits.js';
import { QUBESD_SCHEMA } from './config-schema.js';
import { loadConfig } from '../lib/config/load.js';
import { parseCommandLine, reloadOnSighup, startConfig } from '../lib/config/command-line.js';
import { announceReady, withdrawReady } from '../lib/config/ready.js';
import type { ConfigValues } from '../lib/config/schema.js';

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
  /** 'info': no per-call lines in the audit log */
  logLevel?: 'calls' | 'info';
  /** connection and stream limits */
  limits?: Omit<ConnectionLimitOptions, 'log' | 'probeIntervalMs'>;
}

const USAGE = `usage: qubesd [--config FILE] [--print-config] [--KEY-NAME VALUE]...
  Every key of qubesd.conf is also a flag (docs/CONFIGURATION.md); flags win over the files.`;

/** The options startDaemon takes, from a loaded configuration. */
export function daemonOptions(v: ConfigValues): DaemonOptions {
  const str = (k: string) => String(v[k]);
  return {
    store: str('store'),
    baseDir: str('base_dir'),
    socketDir: str('socket_dir'),
    backend: str('backend') as DaemonOptions['backend'],
    libvirtUri: str('libvirt_uri') || undefined,
    libvirtSocket: str('libvirt_socket') || undefined,
    simStateFile: str('sim_state_file'),
    policyDir: str('policy_dir'),
    runtimePolicyDir: str('runtime_policy_dir'),
    backupProfileDir: str('backup_profile_dir'),
    servicesDirs: v.services_dir as string[],
    guestServicesDir: str('guest_services_dir') || null,
    log: str('log'),
    logLevel: str('log_level') as DaemonOptions['logLevel'],
    limits: limitsOf(v),
  };
}

function limitsOf(v: ConfigValues): Omit<ConnectionLimitOptions, 'log' | 'probeIntervalMs'> {
  return {
    requestTimeoutMs: Number(v.request_timeout) * 1000,
    maxConnections: Number(v.max_connections),
    streamBuffer: Number(v.stream_buffer),
    streamBufferTotal: Number(v.stream_buffer_total),
  };
}

/** The options of a command line, with no configuration file unless --config names one. */
export function parseDaemonArgs(argv: string[]): DaemonOptions {
  const c = parseCommandLine(QUBESD_SCHEMA, argv);
  return daemonOptions(loadConfig(QUBESD_SCHEMA, { file: c.file, flags: c.flags }).values);
}

export interface RunningDaemon {
  app: QubesApp;
  adminSocket: string;
  internalSocket: string;
  audit: AuditLog;
  /** the connection and stream limits (configure() applies new ones) */
  limits: ConnectionLimits;
  stop(): Promise<void>;
}

export async function startDaemon(o: DaemonOptions): Promise<RunningDaemon> {
  const audit = new AuditLog(o.log);
  audit.calls = o.logLevel !== 'info';
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
  const storage = new StorageManager(app, { baseDir: o.baseDir });
  const lifecycle = new Lifecycle(app, createBackend(backendConfigFromOptions(o)), {
    storage,
    log: (msg, extra) => audit.info(msg, extra),
  });
  const backups = new BackupService(app, {
    profileDir: o.backupProfileDir,
    storage,
    services: new QubeServices({ dom0Dirs: o.servicesDirs, guestServicesDir: o.guestServicesDir, log: (l) => audit.info(l) }),
    log: (msg, extra) => audit.info(msg, extra),
  });
  try {
    await lifecycle.attach();
  } catch (e) {
    await store.close();
    throw new Error(`cannot connect to the ${o.backend} hypervisor backend: ${(e as Error).message}`);
  }

  const services: Services = { storage, lifecycle, backups, firewalls: new Firewalls() };
  const common = { app, services, store, handlers: HANDLERS, audit, replies: new ReplyCache(app) };
  const policy = new PolicyFilter(app, { policyDir: o.policyDir, runtimeDir: o.runtimePolicyDir, onError: (m) => audit.info(m) });
  const adminSocket = join(o.socketDir, 'qubesd.sock');
  const internalSocket = join(o.socketDir, 'qubesd.internal.sock');
  const servers: Array<[net.Server, string]> = [];
  const limits = new ConnectionLimits({ ...o.limits, log: (msg, extra) => audit.info(msg, extra) });
  try {
    servers.push([
      await listen(adminSocket, new Dispatcher({ ...common, socket: 'admin', filterFor: policy.factory }), limits.forSocket('admin')),
      adminSocket,
    ]);
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
    app,
    adminSocket,
    internalSocket,
    audit,
    limits,
    stop: () =>
      (stopping ??= (async () => {
        backups.cancelAll();
        // Let cancelled backups remove their partial archive and answer their
        // caller (BackupCancelledError) before the connections are closed.
        for (const until = Date.now() + 8000; backups.runningProfiles.length && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
        await Promise.all(servers.map(([s, p]) => closeServer(s, p)));
        policy.close();
        await lifecycle.close();
        await store.close();
        await audit.close();
      })()),
  };
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const cfg = startConfig('qubesd', QUBESD_SCHEMA, argv, USAGE);
  const opts = daemonOptions(cfg.current.values);
  const readyFile = String(cfg.current.values.ready_file);
  let d: RunningDaemon;
  try {
    d = await startDaemon(opts);
  } catch (e) {
    console.error(`qubesd: cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  announceReady(readyFile, 'qubesd');
  console.log(`qubesd: listening on ${d.adminSocket} (internal: ${d.internalSocket})`);
  reloadOnSighup(
    'qubesd',
    cfg,
    (next, keys) => {
      d.limits.configure(limitsOf(next.values));
      if (keys.includes('log_level')) d.audit.calls = next.values.log_level !== 'info';
      if (keys.includes('log')) void d.audit.retarget(String(next.values.log));
    },
    (line) => {
      // once on stderr: as a plain line, unless the audit log already goes there
      if (String(cfg.current.values.log) !== 'stderr') console.error(line);
      d.audit.info(line);
    },
  );
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      withdrawReady(readyFile);
      d.stop().then(
        () => process.exit(0),
        (e) => {
          console.error(`qubesd: error while stopping: ${(e as Error).message}`);
          process.exit(1);
        },
      );
    });
  }
}

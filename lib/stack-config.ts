// Where the parts of one installation find each other: sockets, state and
// policy. `qubes-install --prefix DIR` writes it to DIR/etc/qubes/stack.json;
// every program of that installation reads it. Import-light on purpose: the
// handler program loads it on every call.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export interface StackConfig {
  /** installation prefix ('/' for a real system) */
  prefix: string;
  /** the checkout whose dist/ holds the programs */
  checkout: string;
  qubesd: {
    socket: string;
    internalSocket: string;
    socketDir: string;
    store: string;
    baseDir: string;
    backend: 'sim' | 'libvirt';
    log: string;
    backupProfileDir: string;
    /** per-qube service directories standing in for guests' qrexec agents
     * (the simulator's guests); absent: qubesd calls services only in dom0 */
    guestServicesDir?: string;
  };
  policy: {
    dir: string;
    runtimeDir: string;
    socket: string;
    /** where the policy admin services log changes */
    adminLog: string;
  };
  qrexec: {
    /** where service entries live (QREXEC_SERVICE_PATH) */
    serviceDir: string;
    /** per-qube dispatcher sockets: <socketDir>/qrexec.<qube> */
    socketDir: string;
    /** what an `ask` resolution becomes: deny | allow | command:PROG | socket:PATH */
    ask: string;
    /** 'handler': entries are the handler program; 'socket': admin.* entries are qubesd.sock */
    entries: 'handler' | 'socket';
    /** optional: qube (or '*') → "USER:GROUP[:MODE]" of its dispatcher socket (default root:root 0660) */
    socketOwners?: Record<string, string>;
  };
}

export const CONFIG_NAME = 'stack.json';

/** The layout of an installation under `prefix`, as Qubes places things. */
export function layoutFor(prefix: string, checkout: string): StackConfig {
  const p = (...parts: string[]) => join(prefix, ...parts);
  return {
    prefix,
    checkout,
    qubesd: {
      socket: p('var/run/qubesd.sock'),
      internalSocket: p('var/run/qubesd.internal.sock'),
      socketDir: p('var/run'),
      store: p('var/lib/qubes/qubes.xml'),
      baseDir: p('var/lib/qubes'),
      backend: 'sim',
      log: p('var/log/qubes/qubesd.log'),
      backupProfileDir: p('etc/qubes/backup'),
      guestServicesDir: p('var/lib/qubes/guest-services'),
    },
    policy: {
      dir: p('etc/qubes/policy.d'),
      runtimeDir: p('run/qubes/policy.d'),
      socket: p('var/run/qubes/policy.sock'),
      adminLog: p('var/log/qubes/policy-admin.log'),
    },
    qrexec: {
      serviceDir: p('etc/qubes-rpc'),
      socketDir: p('var/run/qubes'),
      ask: 'deny',
      entries: 'handler',
    },
  };
}

export function configPath(prefix: string): string {
  return join(prefix, 'etc', 'qubes', CONFIG_NAME);
}

export function loadConfig(path: string): StackConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read configuration ${path}: ${(e as Error).message}`);
  }
  const c = raw as StackConfig;
  if (!c || typeof c !== 'object' || !c.qubesd?.socket || !c.policy?.socket || !c.qrexec?.serviceDir) {
    throw new Error(`configuration ${path} lacks qubesd/policy/qrexec sections`);
  }
  return c;
}

/**
 * The configuration for a program started as `entry` (a service entry in
 * DIR/etc/qubes-rpc, or a bin/ program): $QUBES_STACK_CONFIG, else the
 * stack.json of the installation the entry belongs to, else none (Qubes'
 * own paths apply).
 */
export function findConfig(entry: string | undefined): string | null {
  const env = process.env.QUBES_STACK_CONFIG;
  if (env) return resolve(env);
  if (entry) {
    const candidate = join(dirname(resolve(entry)), '..', 'qubes', CONFIG_NAME);
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

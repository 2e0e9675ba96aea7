// Every daemon of the stack with its configuration declaration, and where an
// installation keeps their files: PREFIX/etc/qubes/<daemon>.conf and
// <daemon>.conf.d/. Used by the installer, qubes-stack, qubes-wait-init-complete
// and the docs generator.
import { join } from 'node:path';
import type { ConfigValues, DaemonSchema } from '../lib/config/schema.js';
import type { StackConfig } from '../lib/stack-config.js';
import { QUBESD_SCHEMA } from '../qubesd/config-schema.js';
import { POLICY_DAEMON_SCHEMA } from '../policy/config-schema.js';
import { DISPATCHER_SCHEMA } from './qrexec/config-schema.js';
import { REST_SCHEMA } from '../rest/config-schema.js';
import { policyDaemonAskKeys } from './qrexec/ask.js';

/** In start order. */
export const DAEMON_SCHEMAS: readonly DaemonSchema[] = [QUBESD_SCHEMA, POLICY_DAEMON_SCHEMA, DISPATCHER_SCHEMA, REST_SCHEMA];

export function daemonConfigPath(prefix: string, daemon: string): string {
  return join(prefix, 'etc', 'qubes', `${daemon}.conf`);
}

export function readyPath(prefix: string, daemon: string): string {
  return join(prefix, 'var', 'run', 'qubes', `${daemon}.ready`);
}

/** Where a running qubes-stack leaves its pid (qubes-stack restart/reload signal it). */
export function stackPidPath(prefix: string): string {
  return join(prefix, 'var', 'run', 'qubes', 'qubes-stack.pid');
}

/**
 * What an installation's packaged <daemon>.conf sets: its own paths (and the
 * installer's choices); every other key is left at its default, commented.
 */
export function installedValues(c: StackConfig, daemon: string): ConfigValues {
  const ready = readyPath(c.prefix, daemon);
  switch (daemon) {
    case 'qubesd':
      return {
        base_dir: c.qubesd.baseDir,
        store: c.qubesd.store,
        socket_dir: c.qubesd.socketDir,
        backend: c.qubesd.backend,
        policy_dir: c.policy.dir,
        runtime_policy_dir: c.policy.runtimeDir,
        backup_profile_dir: c.qubesd.backupProfileDir,
        services_dir: [c.qrexec.serviceDir],
        ...(c.qubesd.guestServicesDir ? { guest_services_dir: c.qubesd.guestServicesDir } : {}),
        log: c.qubesd.log,
        ready_file: ready,
      };
    case 'qubes-policy-daemon':
      return {
        socket: c.policy.socket,
        policy_dir: c.policy.dir,
        runtime_dir: c.policy.runtimeDir,
        system_info_socket: c.qubesd.internalSocket,
        ...policyDaemonAskKeys(c.qrexec.ask),
        ready_file: ready,
      };
    case 'qrexec-dispatcher':
      return {
        socket_dir: c.qrexec.socketDir,
        service_dir: [c.qrexec.serviceDir],
        policy_socket: c.policy.socket,
        qubesd_socket: c.qubesd.socket,
        ...(c.qrexec.socketOwners && Object.keys(c.qrexec.socketOwners).length
          ? { socket_owner: Object.entries(c.qrexec.socketOwners).map(([q, spec]) => `${q}=${spec}`) }
          : {}),
        // where the dispatcher's log finds why a call was refused
        policy_dir: c.policy.dir,
        runtime_policy_dir: c.policy.runtimeDir,
        system_info_socket: c.qubesd.internalSocket,
        ready_file: ready,
      };
    case 'qubes-rest':
      return { qubesd_socket: c.qubesd.socket, ready_file: ready };
    default:
      throw new Error(`unknown daemon ${daemon}`);
  }
}

// Every daemon of the stack with its configuration declaration, and where an
// installation keeps their files: PREFIX/etc/qubes/<daemon>.conf and
// <daemon>.conf.d/. Used by the installer, qubes-stack, qubes-wait-init-complete
// and the docs generator.
import { join } from 'node:path';
import type { DaemonSchema } from '../lib/config/schema.js';
import { QUBESD_SCHEMA } from '../qubesd/config-schema.js';
import { POLICY_DAEMON_SCHEMA } from '../policy/config-schema.js';
import { DISPATCHER_SCHEMA } from './qrexec/config-schema.js';
import { REST_SCHEMA } from '../rest/config-schema.js';

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

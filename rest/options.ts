// The gateway's options: one plain object, filled from the command line (and,
// later, from a configuration file; the names are the ones that file uses).
// Paths to qubesd's and the policy daemon's sockets come from the
// installation (DIR/etc/qubes/stack.json, written by qubes-install).
import { join } from 'node:path';
import { configPath, loadConfig } from '../lib/stack-config.js';
import { DEFAULT_TASK_LIMITS, type TaskLimits } from './tasks.js';

export interface RestOptions extends TaskLimits {
  /** HOST:PORT (port 0: any free port) */
  listen: string;
  tls_cert?: string;
  tls_key?: string;
  /** Strict-Transport-Security max-age (seconds) on HTTPS; 0: no header */
  hsts_max_age: number;
  /** largest request body (bytes) for JSON routes */
  body_limit: number;
  /** seconds to receive a request's headers */
  header_timeout: number;
  /** seconds an idle keep-alive connection is kept */
  idle_timeout: number;
  /** seconds one Admin API call may take (0: no limit) */
  call_timeout: number;
  /** Admin API calls and policy questions in flight at once, for the whole gateway */
  max_connections: number;
  /** bytes of events a slow /events client may have queued before it is dropped */
  events_buffer: number;
  qubesd_socket: string;
  policy_socket: string;
  /** the policy files (policy.* calls are served by the policy admin code in-process); null: no /policies routes */
  policy_dir?: string | null;
  /** where the console's ask agent listens for the policy daemon's questions; null: none */
  ask_socket?: string | null;
  /** seconds a policy question waits for a console answer before it is a deny */
  ask_timeout: number;
  token_file: string;
  task_file: string | null;
  /** 'stderr', 'none' or a file */
  access_log: string;
}

export const DEFAULTS = {
  listen: '127.0.0.1:8080',
  hsts_max_age: 0,
  body_limit: 1 << 20,
  header_timeout: 30,
  idle_timeout: 60,
  call_timeout: 600,
  max_connections: 64,
  events_buffer: 1 << 20,
  ask_timeout: 60,
  ...DEFAULT_TASK_LIMITS,
} as const;

/** Where the token file of an installation is. */
export function tokenFileFor(prefix: string): string {
  return join(prefix, 'etc', 'qubes', 'rest-tokens.json');
}

/** The console's ask agent socket of the installation under `prefix`. */
export function askSocketFor(prefix: string): string {
  return join(prefix, 'var', 'run', 'qubes', 'rest-ask.sock');
}

/** Options for serving the installation under `prefix`, with `overrides` on top. */
export function optionsForPrefix(prefix: string, overrides: Partial<RestOptions> = {}): RestOptions {
  const c = loadConfig(configPath(prefix));
  return {
    ...DEFAULTS,
    qubesd_socket: c.qubesd.socket,
    policy_socket: c.policy.socket,
    policy_dir: c.policy.dir,
    ask_socket: askSocketFor(prefix),
    token_file: tokenFileFor(prefix),
    task_file: join(prefix, 'var', 'lib', 'qubes', 'rest', 'tasks.json'),
    access_log: join(prefix, 'var', 'log', 'qubes', 'qubes-rest.log'),
    ...overrides,
  };
}

/** "HOST:PORT" or "[v6]:PORT". */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`bad --listen ${JSON.stringify(text)} (HOST:PORT)`);
  return { host: (m[1] ?? m[2])!, port };
}

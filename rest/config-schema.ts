// The REST gateway's configuration keys (qubes-rest.conf), declared once (see
// lib/config/schema.ts) with the names RestOptions uses (rest/options.ts).
// This table is what the gateway's files, flags, --print-config and
// docs/CONFIGURATION.md come from; restSchemaFor() puts the defaults an
// installation implies (its sockets and state files) in place of the generic ones.
import type { DaemonSchema, KeySpec } from '../lib/config/schema.js';
import { DEFAULTS, optionsForPrefix } from './options.js';

export const REST_SCHEMA: DaemonSchema = {
  daemon: 'qubes-rest',
  summary: 'The REST gateway (`qubes-rest`). The stack is complete without it; it counts for readiness only when `listen` is set.',
  keys: {
    listen: {
      type: 'string',
      pattern: '^$|^(\\[[0-9a-fA-F:.]+\\]:\\d{1,5}|[A-Za-z0-9.-]+:\\d{1,5})$',
      default: '',
      defaultDoc: DEFAULTS.listen,
      help: `Where to listen: HOST:PORT or [IPv6]:PORT (port 0: any free port); empty: ${DEFAULTS.listen} (and the stack does not wait for the gateway).`,
    },
    tls_cert: { type: 'path', default: '', help: 'PEM certificate chain for HTTPS (with tls_key); empty: plain HTTP (only sensible on loopback).' },
    tls_key: { type: 'path', default: '', help: 'PEM private key of tls_cert.' },
    hsts_max_age: {
      type: 'integer',
      minimum: 0,
      maximum: 63072000,
      unit: 'seconds',
      default: DEFAULTS.hsts_max_age,
      reload: true,
      help: 'Strict-Transport-Security max-age sent over HTTPS; 0: no HSTS header. Do not enable with a certificate clients cannot verify.',
    },
    pending_task_timeout: {
      type: 'integer',
      minimum: 1,
      unit: 'seconds',
      default: DEFAULTS.pending_task_timeout,
      reload: true,
      help: 'How long a task may stay pending or running before it is cancelled.',
    },
    completed_task_timeout: {
      type: 'integer',
      minimum: 1,
      unit: 'seconds',
      default: DEFAULTS.completed_task_timeout,
      reload: true,
      help: 'How long a finished task is kept for its caller to read.',
    },
    max_tasks: { type: 'integer', minimum: 1, default: DEFAULTS.max_tasks, reload: true, help: 'Most tasks kept at once (pending and completed).' },
    body_limit: {
      type: 'size',
      minimum: 1,
      unit: 'bytes',
      default: DEFAULTS.body_limit,
      help: 'Largest request body of the JSON routes (volume uploads excepted).',
    },
    header_timeout: {
      type: 'integer',
      minimum: 1,
      maximum: 86400,
      unit: 'seconds',
      default: DEFAULTS.header_timeout,
      help: 'How long a client may take to send its request headers.',
    },
    idle_timeout: {
      type: 'integer',
      minimum: 1,
      unit: 'seconds',
      default: DEFAULTS.idle_timeout,
      help: 'How long an idle keep-alive connection is kept open.',
    },
    call_timeout: { type: 'integer', minimum: 0, unit: 'seconds', default: DEFAULTS.call_timeout, help: 'How long one Admin API call may take; 0: no limit.' },
    max_connections: {
      type: 'integer',
      minimum: 1,
      default: DEFAULTS.max_connections,
      help: 'Admin API calls and policy questions in flight at once, for the whole gateway.',
    },
    events_buffer: {
      type: 'size',
      minimum: 1,
      unit: 'bytes',
      default: DEFAULTS.events_buffer,
      reload: true,
      help: 'Most bytes of events a slow /events client may have queued before it is dropped.',
    },
    ask_timeout: {
      type: 'integer',
      minimum: 1,
      unit: 'seconds',
      default: DEFAULTS.ask_timeout,
      help: 'How long a policy question waits for a console answer before it is a deny.',
    },
    access_log: {
      type: 'string',
      default: 'stderr',
      defaultDoc: 'PREFIX/var/log/qubes/qubes-rest.log',
      help: 'Where the access log goes: stderr, none or a file.',
    },
    qubesd_socket: { type: 'path', default: '/var/run/qubesd.sock', help: "qubesd's Admin API socket." },
    policy_socket: { type: 'path', default: '/var/run/qubes/policy.sock', help: "The policy daemon's socket." },
    policy_dir: {
      type: 'path',
      default: '/etc/qubes/policy.d',
      help: 'The policy files (the /policies routes edit them in-process); empty: no /policies routes.',
    },
    ask_socket: {
      type: 'path',
      default: '/var/run/qubes/rest-ask.sock',
      help: "Where the console's ask agent listens for the policy daemon's questions; empty: none.",
    },
    token_file: { type: 'path', default: '/etc/qubes/rest-tokens.json', help: 'The API tokens (managed with `qubes-rest token`).' },
    task_file: { type: 'path', default: '/var/lib/qubes/rest/tasks.json', help: 'Where tasks are kept across restarts; empty: in memory only.' },
    ready_file: { type: 'path', default: '', help: 'Written once the gateway listens (removed at exit); empty: none.' },
  },
};

/** REST_SCHEMA with the defaults of the installation under `prefix` (its stack.json). */
export function restSchemaFor(prefix: string): DaemonSchema {
  const o = optionsForPrefix(prefix);
  const keys: Record<string, KeySpec> = { ...REST_SCHEMA.keys };
  const set = (k: string, v: string | null | undefined) => {
    keys[k] = { ...keys[k]!, default: v ?? '' };
  };
  set('qubesd_socket', o.qubesd_socket);
  set('policy_socket', o.policy_socket);
  set('policy_dir', o.policy_dir);
  set('ask_socket', o.ask_socket);
  set('token_file', o.token_file);
  set('task_file', o.task_file);
  set('access_log', o.access_log);
  return { ...REST_SCHEMA, keys };
}

// The REST gateway's configuration keys (qubes-rest.conf), declared once (see
// lib/config/schema.ts). The gateway itself lives in this folder; this table
// is what its files, flags, --print-config and docs/CONFIGURATION.md come from.
import type { DaemonSchema } from '../lib/config/schema.js';

export const REST_SCHEMA: DaemonSchema = {
  daemon: 'qubes-rest',
  summary: 'The REST gateway (`qubes-rest`). The stack is complete without it; it counts for readiness only when `listen` is set.',
  keys: {
    listen: { type: 'string', pattern: '^$|^(/.+|\\[[0-9a-fA-F:.]+\\]:\\d+|[A-Za-z0-9.-]+:\\d+)$', default: '', help: 'Where to listen: HOST:PORT, [IPv6]:PORT or an absolute UNIX socket path; empty: the gateway is not run.' },
    tls_cert: { type: 'path', default: '', help: 'PEM certificate chain for HTTPS; empty: plain HTTP (only sensible on a UNIX socket or loopback).' },
    tls_key: { type: 'path', default: '', help: 'PEM private key of tls_cert.' },
    hsts_max_age: { type: 'integer', minimum: 0, maximum: 63072000, unit: 'seconds', default: 0, reload: true, help: 'Strict-Transport-Security max-age sent over HTTPS; 0: no HSTS header. Do not enable with a certificate clients cannot verify.' },
    pending_task_timeout: { type: 'integer', minimum: 1, unit: 'seconds', default: 86400, reload: true, help: 'How long a task may stay pending or running before it is cancelled.' },
    completed_task_timeout: { type: 'integer', minimum: 1, unit: 'seconds', default: 3900, reload: true, help: 'How long a finished task is kept for its caller to read.' },
    max_tasks: { type: 'integer', minimum: 1, default: 200, reload: true, help: 'Most tasks kept at once (pending and completed).' },
    max_body_bytes: { type: 'integer', minimum: 1, unit: 'bytes', default: 1048576, reload: true, help: 'Largest request body accepted (volume uploads excepted).' },
    max_upload_bytes: { type: 'integer', minimum: 0, unit: 'bytes', default: 0, reload: true, help: 'Largest streamed upload (volume import); 0: no limit.' },
    request_timeout: { type: 'integer', minimum: 1, maximum: 86400, unit: 'seconds', default: 30, reload: true, help: 'How long a client may take to send its request headers and body.' },
    idle_timeout: { type: 'integer', minimum: 1, unit: 'seconds', default: 60, reload: true, help: 'How long an idle keep-alive connection is kept open.' },
    max_connections: { type: 'integer', minimum: 0, default: 0, reload: true, help: 'Most client connections open at once; 0: no limit.' },
    event_buffer_bytes: { type: 'integer', minimum: 0, unit: 'bytes', default: 0, reload: true, help: 'Most bytes an event stream may have waiting for a slow reader before it is dropped; 0: no limit.' },
    qubesd_socket: { type: 'path', default: '/var/run/qubesd.sock', help: 'qubesd\'s Admin API socket.' },
    log: { type: 'string', pattern: '^(stderr|none|/.*)$', default: 'stderr', reload: true, help: 'Where the gateway logs: stderr, none or an absolute file path.' },
    ready_file: { type: 'path', default: '', help: 'Written once the gateway listens (removed at exit); empty: none.' },
  },
};

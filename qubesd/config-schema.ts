// qubesd's configuration keys, declared once (see lib/config/schema.ts):
// qubesd.conf, qubesd.conf.d/*.conf, the command-line flags, --print-config
// and docs/CONFIGURATION.md all come from this table.
import { join } from 'node:path';
import type { DaemonSchema } from '../lib/config/schema.js';

export const LOG_TARGET = '^(stderr|none|/.*)$';

export const QUBESD_SCHEMA: DaemonSchema = {
  daemon: 'qubesd',
  summary: 'The Admin API daemon (`bin/qubesd`).',
  keys: {
    base_dir: { type: 'path', default: '/var/lib/qubes', help: "Where qubes' volumes and state live." },
    store: {
      type: 'path',
      default: '',
      derive: (v) => join(String(v.base_dir), 'qubes.xml'),
      defaultDoc: 'BASE_DIR/qubes.xml',
      help: 'The qubes.xml store; created (dom0, default labels and pools) when missing.',
    },
    socket_dir: { type: 'path', default: '/var/run', help: 'Where qubesd.sock and qubesd.internal.sock are created.' },
    backend: { type: 'string', enum: ['sim', 'libvirt'], default: 'sim', help: 'The hypervisor backend: the in-process simulator or libvirt.' },
    libvirt_uri: {
      type: 'string',
      default: '',
      help: "libvirt connection URI (libvirt backend), e.g. qemu+unix:///system?socket=PATH; empty: libvirt's default.",
    },
    libvirt_socket: { type: 'path', default: '', help: "libvirtd's UNIX socket, when not given in the URI." },
    sim_state_file: {
      type: 'path',
      default: '',
      derive: (v) => join(String(v.base_dir), 'sim-domains.json'),
      defaultDoc: 'BASE_DIR/sim-domains.json',
      help: 'Simulator backend: where simulated domains are kept, so that running qubes outlive a qubesd restart.',
    },
    policy_dir: { type: 'path', default: '/etc/qubes/policy.d', help: 'The qrexec policy directory (what management qubes may see).' },
    runtime_policy_dir: { type: 'path', default: '/run/qubes/policy.d', help: 'The runtime policy directory.' },
    backup_profile_dir: { type: 'path', default: '/etc/qubes/backup', help: 'Where the <profile>.conf files of admin.backup.* are.' },
    services_dir: {
      type: 'list',
      paths: true,
      default: ['/etc/qubes-rpc'],
      help: "dom0's qrexec service directories (services qubesd calls in dom0, e.g. qubes.BackupPassphrase).",
    },
    guest_services_dir: {
      type: 'path',
      default: '',
      help: "Per-qube service directories (DIR/<qube>/<service>) standing in for guests' qrexec agents; empty: none.",
    },
    log: {
      type: 'string',
      pattern: LOG_TARGET,
      default: 'stderr',
      reload: true,
      help: 'Where the audit log goes: stderr, none, or an absolute file path (reopened on SIGHUP).',
    },
    log_level: {
      type: 'string',
      enum: ['calls', 'info'],
      default: 'calls',
      reload: true,
      help: "calls: one line per Admin API call and the daemon's messages; info: the daemon's messages only.",
    },
    request_timeout: {
      type: 'integer',
      minimum: 1,
      maximum: 86400,
      unit: 'seconds',
      default: 30,
      reload: true,
      help: 'How long a client may take to send its whole request before the connection is dropped.',
    },
    max_connections: {
      type: 'integer',
      minimum: 0,
      maximum: 1_000_000,
      default: 0,
      reload: true,
      help: "Most client connections open at once per socket (a quarter of them kept for dom0's event streams); 0: from the descriptor limit.",
    },
    stream_buffer: {
      type: 'size',
      minimum: 4096,
      unit: 'bytes',
      default: 4 * 1024 * 1024,
      reload: true,
      help: 'Most bytes an admin.Events or admin.vm.Stats stream may have waiting for a client that does not read; past it the client is disconnected (K, M, G suffixes).',
    },
    stream_buffer_total: {
      type: 'size',
      minimum: 4096,
      unit: 'bytes',
      default: 64 * 1024 * 1024,
      reload: true,
      help: 'Most bytes all event streams together may have waiting; past it the streams furthest behind are disconnected (K, M, G suffixes).',
    },
    ready_file: {
      type: 'path',
      default: '',
      help: 'Written once the store is loaded, the hypervisor connected and running qubes reconciled (removed at exit); empty: none.',
    },
  },
};

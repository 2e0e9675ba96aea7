// The qrexec dispatcher's configuration keys (qrexec-dispatcher.conf),
// declared once (see lib/config/schema.ts): files, flags, --print-config and
// docs/CONFIGURATION.md come from this table.
import type { DaemonSchema } from '../../lib/config/schema.js';

export const DISPATCHER_SCHEMA: DaemonSchema = {
  daemon: 'qrexec-dispatcher',
  summary: 'The local qrexec dispatcher (`dist/rpc-services/qrexec/dispatcher-main.js`).',
  keys: {
    socket_dir: { type: 'path', default: '', help: 'Where the per-qube sockets qrexec.<qube> are created (required).' },
    service_dir: { type: 'list', paths: true, default: [], help: 'Service directories (QREXEC_SERVICE_PATH), searched in order (required).' },
    policy_socket: { type: 'path', default: '', help: "The policy daemon's socket (required)." },
    qubesd_socket: { type: 'path', default: '', help: 'qubesd.sock: which qubes get a socket follows its qubes.' },
    qube: { type: 'list', default: [], help: 'A fixed set of qubes instead of following qubesd.' },
    socket_owner: {
      type: 'list',
      default: [],
      help: 'Owner and mode of per-qube sockets: QUBE=[USER]:[GROUP][:MODE] words (QUBE * for every qube without its own); default root:root 0660.',
    },
    policy_dir: { type: 'path', default: '', help: 'The policy directory, read to log why a call was refused; empty: the log says only "denied by policy".' },
    runtime_policy_dir: { type: 'path', default: '', help: 'The runtime policy directory, for the same explanations.' },
    system_info_socket: { type: 'path', default: '', help: "qubesd's internal socket, for the same explanations." },
    log: { type: 'string', pattern: '^(stderr|/.*)$', default: 'stderr', reload: true, help: 'Where calls are logged: stderr or an absolute file path.' },
    ready_file: { type: 'path', default: '', help: "Written once every qube's socket listens (removed at exit); empty: none." },
  },
};

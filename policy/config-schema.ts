// The policy daemon's configuration keys (qubes-policy-daemon.conf), declared
// once (see lib/config/schema.ts): files, flags, --print-config and
// docs/CONFIGURATION.md come from this table.
import type { DaemonSchema } from '../lib/config/schema.js';

export const POLICY_DAEMON_SCHEMA: DaemonSchema = {
  daemon: 'qubes-policy-daemon',
  summary: 'The qrexec policy daemon (`bin/qubes-policy daemon`).',
  keys: {
    socket: { type: 'path', default: '', help: "The policy daemon protocol's UNIX socket (required)." },
    eval_socket: { type: 'path', default: '', help: 'Also serve policy.EvalSimple on this socket; empty: no.' },
    gui_socket: { type: 'path', default: '', help: 'Also serve policy.EvalGUI on this socket; empty: no.' },
    policy_dir: { type: 'path', default: '/etc/qubes/policy.d', help: 'The policy directory.' },
    runtime_dir: { type: 'path', default: '', help: 'The runtime policy directory; empty: none.' },
    legacy_dir: { type: 'path', default: '', help: 'The R4.0 policy directory (!compat-4.0); empty: none.' },
    system_info_socket: { type: 'path', default: '', help: "qubesd's internal socket, asked for system information on every request." },
    system_info: { type: 'path', default: '', help: 'A system information JSON file instead of qubesd (tests, tools).' },
    ask_answer: {
      type: 'string',
      enum: ['', 'allow', 'deny'],
      default: '',
      reload: true,
      help: 'The `ask` agent: a fixed answer (allow picks the default target); empty: see ask_command.',
    },
    ask_command: {
      type: 'string',
      default: '',
      reload: true,
      help: 'The `ask` agent: a command given the question as JSON on stdin, printing allow:TARGET or deny.',
    },
    ask_socket: {
      type: 'path',
      default: '',
      reload: true,
      help: "The `ask` agent: a policy.Ask socket service (e.g. the web console's); with none of the ask keys set, ask is denied.",
    },
    log: { type: 'string', pattern: '^(stderr|/.*)$', default: 'stderr', reload: true, help: 'Where the daemon logs: stderr or an absolute file path.' },
    ready_file: { type: 'path', default: '', help: 'Written once the policy is loaded and the socket listens (removed at exit); empty: none.' },
  },
};

// Who decides an `ask` resolution, as the GUI qube's policy agent does in
// Qubes. There is one ask-agent protocol, whatever carries it:
//   question  a JSON object: source, service, argument ("+ARG", "+" for
//             none), targets (the rule's choices), default_target ("" for
//             none) — the parameters of Qubes' policy.Ask — and, for a
//             command, intended_target (what the caller asked for) and guivm
//             (the qube whose GUI shows the question);
//   answer    "allow:TARGET" or "deny" on the first line; anything else, no
//             answer or a TARGET that was not offered is a deny.
// Carriers: a fixed answer (ask_answer), a command run with `sh -c` that
// reads the question on standard input and prints the answer (ask_command),
// or a policy.Ask socket service called as qrexec calls one from dom0
// (ask_socket; Qubes' exact parameters, so a real policy agent understands
// them). rpc-services/qrexec/ask.ts turns an installation's `--ask SPEC` into
// these keys; rest/ask-agent.ts is a policy.Ask socket service.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';

/** Decides an `ask`: the chosen target, or null for no. */
export type AskAgent = (question: AskQuestion) => Promise<string | null>;

export interface AskQuestion {
  source: string;
  service: string;
  argument: string;
  targets: string[];
  default_target: string;
  /** what the caller asked for */
  intended_target: string;
  /** the qube whose GUI shows the question */
  guivm: string;
}

/**
 * An agent that always gives the same answer. "allow" picks what a user
 * accepting the dialog gets: the default target, else the intended target if
 * it is offered, else the first choice (`ask target=dom0` offers only dom0).
 */
export function fixedAskAgent(answer: 'allow' | 'deny'): AskAgent {
  if (answer === 'deny') return async () => null;
  return async (q) => q.default_target || (q.targets.includes(q.intended_target) ? q.intended_target : (q.targets[0] ?? null));
}

/** The agent's "allow:TARGET" / "deny" answer; anything else is a deny. */
function agentChoice(text: string): string | null {
  const first = text.split('\n')[0]!.trim();
  return first.startsWith('allow:') && first.length > 6 ? first.slice(6) : null;
}

/**
 * An agent behind a policy.Ask socket service, called as qrexec calls a
 * local socket service from dom0: "policy.Ask dom0 name dom0\0", then the
 * JSON parameters Qubes' policy daemon sends, then EOF; the answer is
 * "allow:TARGET" or "deny".
 */
export function socketAskAgent(path: string, timeoutMs = 300_000): AskAgent {
  return (q) =>
    new Promise((resolve) => {
      const params = { source: q.source, service: q.service, argument: q.argument, targets: q.targets, default_target: q.default_target, icons: {} };
      const sock = connect(path);
      let out = '';
      const timer = setTimeout(() => sock.destroy(), timeoutMs);
      sock.setEncoding('latin1');
      sock.once('connect', () => sock.end(`policy.Ask dom0 name dom0\0${JSON.stringify(params)}`));
      sock.on('data', (d: string) => {
        if (out.length < 4096) out += d;
      });
      sock.once('error', () => undefined);
      sock.once('close', () => {
        clearTimeout(timer);
        resolve(agentChoice(out));
      });
    });
}

/** An agent that runs a shell command: question as JSON on stdin, "allow:TARGET" or "deny" on stdout. */
export function commandAskAgent(command: string): AskAgent {
  return (q) =>
    new Promise((resolve) => {
      const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => (out += d));
      child.on('error', () => resolve(null));
      child.on('close', (code) => {
        resolve(code === 0 ? agentChoice(out) : null);
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify(q));
    });
}

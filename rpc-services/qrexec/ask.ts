// Who answers an `ask` resolution. In Qubes the policy daemon asks the user
// through the GUI qube's policy agent; here the dispatcher asks a pluggable
// agent: a fixed answer for headless use, a command, or a socket service that
// speaks the policy agent's policy.Ask protocol (a qrexec socket-service header,
// then JSON parameters; the answer is "allow:<target>" or "deny").
import { execFile } from 'node:child_process';
import net from 'node:net';

export interface AskQuestion { source: string; service: string; argument: string; target: string }
/** null: denied; otherwise the target the agent chose. */
export type AskAnswer = string | null;
export type AskAgent = (q: AskQuestion) => Promise<AskAnswer>;

export function parseAnswer(text: string, q: AskQuestion): AskAnswer {
  const t = text.trim();
  if (t === 'allow') return q.target;
  if (t.startsWith('allow:') && t.length > 6) return t.slice(6);
  return null;
}

/** "deny" | "allow" | "command:PROGRAM" | "socket:PATH" */
export function makeAskAgent(spec: string): AskAgent {
  if (spec === 'deny') return DENY_AGENT;
  if (spec === 'allow') return async (q) => q.target;
  if (spec.startsWith('command:')) {
    const program = spec.slice(8);
    return (q) => new Promise((resolve) => {
      execFile(program, [q.source, q.service, q.argument, q.target], { timeout: 60_000 }, (err, stdout) => {
        resolve(err ? null : parseAnswer(stdout, q));
      });
    });
  }
  if (spec.startsWith('socket:')) {
    const path = spec.slice(7);
    return (q) => new Promise((resolve) => {
      const sock = net.connect(path);
      const params = { source: q.source, service: q.service, argument: q.argument ? `+${q.argument}` : '+', targets: [q.target], default_target: q.target, icons: {} };
      let out = '';
      sock.once('connect', () => sock.end(`policy.Ask+ dom0\0${JSON.stringify(params)}`));
      sock.on('data', (d) => { out += d; });
      sock.once('end', () => resolve(parseAnswer(out, q)));
      sock.once('error', () => resolve(null));
    });
  }
  throw new Error(`unknown ask agent ${JSON.stringify(spec)} (deny, allow, command:PROGRAM or socket:PATH)`);
}

/** The fixed "deny" answer; the dispatcher skips the ask detection for it. */
export const DENY_AGENT: AskAgent = async () => null;

// Who answers an `ask` resolution. In Qubes the policy daemon asks the user
// through the GUI qube's policy agent (policy.Ask), offering the rule's
// choices and default target, and the target the user picks is where the call
// goes. Here too the policy daemon asks; an installation names its agent once
// (`qrexec.ask` in stack.json, `qubes-install --ask SPEC`) and this module
// turns that name into the policy daemon's options:
//   deny             nobody is asked: `ask` is a refusal (headless default)
//   allow            yes to every question (the default target, else the
//                    intended one if offered, else the first choice)
//   command:PROGRAM  PROGRAM gets the question as JSON on standard input
//                    ({source, service, argument, targets, default_target,
//                    intended_target, guivm}) and prints allow:TARGET or deny
//   socket:PATH      a policy.Ask socket service at PATH (JSON parameters in,
//                    allow:TARGET or deny out)

export class AskSpecError extends Error {}

/** Quoted for `sh -c`, which the policy daemon runs a command with. */
function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The policy daemon's ask keys (qubes-policy-daemon.conf) for an installation's `ask` setting. */
export function policyDaemonAskKeys(spec: string): Record<string, string> {
  if (spec === 'deny') return {};
  if (spec === 'allow') return { ask_answer: 'allow' };
  if (spec.startsWith('command:') && spec.length > 8) return { ask_command: shellWord(spec.slice(8)) };
  if (spec.startsWith('socket:') && spec.length > 7) return { ask_socket: spec.slice(7) };
  throw new AskSpecError(`unknown ask agent ${JSON.stringify(spec)} (deny, allow, command:PROGRAM or socket:PATH)`);
}

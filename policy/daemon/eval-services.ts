// policy.EvalSimple and policy.EvalGUI: socket services qrexec connects
// qubes to, so that a qube may ask what the policy would answer. Request:
// "SERVICE+ARG REMOTE\0" header, then "source\0target"; answer
// "result=allow|deny\n". EvalGUI is only for a qube that provides the GUI of
// both source and target. Bad requests are logged and closed unanswered.
import type { Socket } from 'node:net';
import type { SystemInfo } from '../system-info.js';

export interface EvalServiceDeps {
  /** the daemon's answer to a parsed request */
  answer(args: Map<string, string>): Promise<string>;
  systemInfo: () => Promise<SystemInfo>;
  log(line: string): void;
}

function splitOnce(s: string, sep: string): [string, string | null] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)];
}

/** A qube name as qrexec sanitises it: [A-Za-z0-9@_.-], 1..max characters. */
function validName(s: string, max: number): boolean {
  return s.length >= 1 && s.length <= max && /^[A-Za-z0-9@_.-]+$/.test(s);
}

/** Serves one connection to policy.EvalSimple (checkGui false) or policy.EvalGUI. */
export function serveEvalConnection(sock: Socket, checkGui: boolean, deps: EvalServiceDeps): void {
  const name = checkGui ? 'policy.EvalGUI' : 'policy.EvalSimple';
  let buf = Buffer.alloc(0);
  let handled = false;
  const handle = async (): Promise<void> => {
    const sp = buf.indexOf(0x20);
    const nul = buf.indexOf(0, sp + 1);
    const [invoked, queried] = splitOnce(buf.subarray(0, sp).toString('latin1'), '+');
    const remote = buf
      .subarray(sp + 1, nul)
      .toString('latin1')
      .split(' ')[0]!;
    const body = buf.subarray(nul + 1);
    if (invoked !== name) return deps.log(`${name} invoked with incorrect name ${invoked} by ${remote}`);
    if (!queried || queried.startsWith('+')) return deps.log(`${name} requires an argument (the service to query), but ${remote} did not provide one`);
    const zero = body.indexOf(0);
    const source = zero < 0 ? '' : body.subarray(0, zero).toString('latin1');
    const target = zero < 0 ? '' : body.subarray(zero + 1, 96).toString('latin1');
    if (zero < 0 || !validName(source, 31) || !validName(target, 63)) return deps.log(`${name}: invalid data from qube ${remote}`);
    const system = await deps.systemInfo();
    if (checkGui) {
      const tag = 'guivm-' + remote;
      for (const q of [source, target]) {
        if (!system.domains[q]?.tags.includes(tag)) {
          return deps.log(`${name} can only be invoked by a domain that provides GUI to both the source and target domains, not ${remote}`);
        }
      }
    }
    const response = await deps.answer(
      new Map([
        ['source', source],
        ['intended_target', target],
        ['service_and_arg', queried],
        ['assume_yes_for_ask', 'yes'],
        ['just_evaluate', 'yes'],
      ]),
    );
    sock.write(response + '\n');
  };
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    if (buf.length > 4096 + 96) sock.destroy();
  });
  sock.on('end', () => {
    if (handled) return;
    handled = true;
    handle()
      .catch((err) => deps.log(`${name} failed: ${(err as Error)?.message ?? err}`))
      .finally(() => sock.end());
  });
}

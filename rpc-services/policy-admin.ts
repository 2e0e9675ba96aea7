// policy.* services: after the handler program's checks, the call goes to the
// policy admin program (bin/qubes-policy-admin), which owns policy files.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CallContext } from './handler.js';

/** this module is dist/rpc-services/policy-admin.js: the checkout is two levels up */
const CHECKOUT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function servePolicy(c: CallContext, env: NodeJS.ProcessEnv): Promise<number> {
  const program = join(c.sockets.checkout ?? CHECKOUT, 'bin', 'qubes-policy-admin');
  const childEnv: NodeJS.ProcessEnv = {
    ...env,
    QREXEC_SERVICE_FULL_NAME: `${c.service}+${c.arg}`,
    QREXEC_SERVICE_ARGUMENT: c.arg,
    QREXEC_REMOTE_DOMAIN: c.source,
    ...(c.sockets.policyDir ? { QREXEC_POLICY_DIR: c.sockets.policyDir } : {}),
  };
  return new Promise((res) => {
    const child = spawn(process.execPath, [program, ...(c.arg ? [c.arg] : [])], { stdio: 'inherit', env: childEnv });
    child.once('error', (e) => { process.stderr.write(`qubes-rpc-handler: cannot run ${program}: ${e.message}\n`); res(125); });
    child.once('exit', (code, signal) => res(code ?? 128 + (signal ? osConstants.signals[signal] : 0)));
  });
}

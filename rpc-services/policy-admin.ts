// policy.* services: after the handler program's checks, the call goes to the
// policy admin program of the policy engine (bin/qubes-policy-admin), which
// owns the policy files. It is loaded into this process, with the environment
// qrexec would give it, rather than started as a second program.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { CallContext } from './call-context.js';

/** this module is dist/rpc-services/policy-admin.js: the checkout is two levels up */
const CHECKOUT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function servePolicy(c: CallContext): Promise<number> {
  const env = process.env;
  env.QREXEC_SERVICE_FULL_NAME = `${c.service}+${c.arg}`;
  env.QREXEC_SERVICE_ARGUMENT = c.arg;
  env.QREXEC_REMOTE_DOMAIN = c.source;
  if (c.sockets.policyDir) env.QREXEC_POLICY_DIR = c.sockets.policyDir;
  if (c.sockets.policyAdminLog) env.QREXEC_POLICY_ADMIN_LOG = c.sockets.policyAdminLog;
  // the policy admin entry module runs on import and leaves its exit code
  await import(pathToFileURL(join(c.sockets.checkout ?? CHECKOUT, 'dist', 'policy', 'admin-main.js')).href);
  return Number(process.exitCode ?? 0);
}

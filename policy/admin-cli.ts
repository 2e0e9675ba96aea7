// Two front ends of the policy admin API:
//  - the qrexec service program (`qubes-policy-admin`): service and argument
//    from QREXEC_SERVICE_FULL_NAME, caller from QREXEC_REMOTE_DOMAIN, policy
//    directory from QREXEC_POLICY_DIR, payload on stdin; reply on stdout;
//    "<ExceptionClass> <message>" on stderr with exit 1 for the caller's
//    mistakes, exit 2 for anything else (Qubes' conventions);
//  - `qubes-policy list|get|replace|remove`, the same calls on a local directory.

import { appendFileSync, readFileSync } from 'node:fs';
import { PolicyAdmin, PolicyAdminException } from './admin.js';
import { parseArgs, UsageError } from './args.js';
import { DEFAULT_POLICY_DIR } from './loader.js';
import { pyRepr } from '../lib/py-repr.js';

const DEFAULT_LOG = '/var/log/qubes/policy-admin.log';

function log(file: string, line: string): void {
  try {
    appendFileSync(file, `${new Date().toISOString()} ${line}\n`);
  } catch {
    // logging must never change the answer
  }
}

interface CallResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** One admin call, with Qubes' exit codes and error text. */
export function adminCall(admin: PolicyAdmin, service: string, arg: string, payload: Buffer, logFile: string, caller: string): CallResult {
  try {
    const reply = admin.handleRequest(service, arg, payload);
    log(logFile, `${service}+${arg} (${caller})`);
    return { code: 0, stdout: reply ?? Buffer.alloc(0), stderr: '' };
  } catch (err) {
    if (err instanceof PolicyAdminException) {
      log(logFile, `${service}+${arg} (${caller}): error: ${err.message}`);
      return { code: 1, stdout: Buffer.alloc(0), stderr: `${err.name} ${err.message}` };
    }
    log(logFile, `${service}+${arg} (${caller}): exception: ${(err as Error)?.stack ?? String(err)}`);
    return { code: 2, stdout: Buffer.alloc(0), stderr: `Internal error. See ${pyRepr(logFile)} in dom0 for details.` };
  }
}

/** The qrexec service program. */
export async function qrexecAdminMain(): Promise<number> {
  const env = process.env;
  const full = env['QREXEC_SERVICE_FULL_NAME'];
  if (!full) {
    process.stderr.write('QREXEC_SERVICE_FULL_NAME is not set: this program is run by qrexec\n');
    return 2;
  }
  const plus = full.indexOf('+');
  const service = plus < 0 ? full : full.slice(0, plus);
  const arg = plus < 0 ? '' : full.slice(plus + 1);
  const caller = env['QREXEC_REMOTE_DOMAIN'] ?? '';
  const logFile = env['QREXEC_POLICY_ADMIN_LOG'] ?? DEFAULT_LOG;
  const payload = readFileSync(0);
  const admin = new PolicyAdmin(env['QREXEC_POLICY_DIR'] ?? DEFAULT_POLICY_DIR);
  const r = adminCall(admin, service, arg, payload, logFile, caller);
  process.stdout.write(r.stdout);
  if (r.stderr) process.stderr.write(r.stderr);
  return r.code;
}

/** `qubes-policy list|get|replace|remove [--include] [--policy-dir DIR] [NAME] [--token T]`. */
export async function localAdminMain(cmd: 'list' | 'get' | 'replace' | 'remove', argv: string[]): Promise<number> {
  const a = parseArgs(argv, ['policy-dir', 'token', 'legacy-dir'], ['include']);
  const ns = a.flags.has('include') ? 'policy.include.' : 'policy.';
  const name = a.positional[0] ?? '';
  if (cmd !== 'list' && !name) throw new UsageError(`${cmd} needs a file name`);
  if (a.positional.length > (cmd === 'list' ? 0 : 1)) throw new UsageError('too many arguments');
  let payload = Buffer.alloc(0);
  const token = a.options.get('token') ?? 'any';
  if (cmd === 'replace') payload = Buffer.concat([Buffer.from(token + '\n'), readFileSync(0)]);
  if (cmd === 'remove') payload = Buffer.from(token);
  const method = ns + { list: 'List', get: 'Get', replace: 'Replace', remove: 'Remove' }[cmd];
  const legacy = a.options.get('legacy-dir');
  const admin = new PolicyAdmin(a.options.get('policy-dir') ?? DEFAULT_POLICY_DIR, legacy ? { legacyDir: legacy } : {});
  const r = adminCall(admin, method, name, payload, process.env['QREXEC_POLICY_ADMIN_LOG'] ?? '/dev/null', 'local');
  process.stdout.write(r.stdout);
  if (r.stderr) process.stderr.write(r.stderr + '\n');
  return r.code;
}

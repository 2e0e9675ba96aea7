// What the handler program serves and which strings it accepts. Import-free
// except for lib/ lists and rules (method table, policy services, qube names),
// because the per-call handler program loads it.
import { lookupMethod, type MethodSpec } from '../lib/api-methods.js';
import { POLICY_SERVICES } from '../lib/policy-services.js';
import { isValidQubeName } from '../lib/qube-names.js';

// The policy admin services are served by the policy helper's qubes-policy-admin.
export { POLICY_SERVICES };

export type Served =
  | { kind: 'admin'; spec: MethodSpec } // forwarded to qubesd.sock
  | { kind: 'import'; spec: MethodSpec } // streamed through qubesd.internal.sock
  | { kind: 'policy'; name: string }; // handed to qubes-policy-admin

/** The services a qube may reach through qrexec; internal.* never is. */
export function servedService(name: string): Served | null {
  const spec = lookupMethod(name);
  if (spec) {
    if (spec.socket === 'admin' && name.startsWith('admin.')) return { kind: 'admin', spec };
    if (spec.socket === 'none' && spec.streamed) return { kind: 'import', spec };
    return null;
  }
  return POLICY_SERVICES.some((p) => p.name === name) ? { kind: 'policy', name } : null;
}

// qrexec passes service names and arguments made of these characters only
// (its sanitize_name with '+' as the one extra character).
const SERVICE_CHARS = /^[A-Za-z0-9_.+-]*$/;
/** Longest service name part qrexec executes (NAME_MAX). */
export const MAX_SERVICE_NAME = 255;
/** Longest "service+argument" qrexec accepts (MAX_SERVICE_NAME_LEN). */
export const MAX_SERVICE_DESCRIPTOR = 65000;

export function isValidArgument(arg: string): boolean {
  return arg.length <= MAX_SERVICE_DESCRIPTOR && SERVICE_CHARS.test(arg);
}

/** "service[+argument]": non-empty name, no leading '+', qrexec's characters. */
export function isValidServiceDescriptor(desc: string): boolean {
  if (desc.length === 0 || desc.length > MAX_SERVICE_DESCRIPTOR || desc[0] === '+') return false;
  if (!SERVICE_CHARS.test(desc)) return false;
  const plus = desc.indexOf('+');
  return (plus < 0 ? desc.length : plus) <= MAX_SERVICE_NAME;
}

const UUID_FORM = /^uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A destination qrexec may hand over with type "name": a qube name or uuid:<uuid>. */
export function isValidTargetName(name: string): boolean {
  return isValidQubeName(name) || UUID_FORM.test(name);
}

/** Target as the caller writes it: a name, uuid:…, or an @keyword form. */
const TARGET_CHARS = /^[A-Za-z0-9_.:@-]{0,64}$/;
export function isValidRequestedTarget(t: string): boolean {
  return TARGET_CHARS.test(t);
}

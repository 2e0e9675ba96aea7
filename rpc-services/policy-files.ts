// The default qrexec policy an installation starts with, generated from the
// method table the way Qubes generates its admin policy: every admin.* method
// with a scope gets one `!include-service` line pointing at the include file
// for its scope and access (admin-{local,global}-{ro,rwx}), so granting a
// management qube a family of calls means editing one include file.
import { METHODS, policyInclude } from '../lib/api-methods.js';
import { POLICY_SERVICES } from './service-names.js';

/** Qubes leaves these out: creating another AdminVM is never delegated. */
const NOT_DELEGATED = new Set(['admin.vm.Create.AdminVM', 'admin.vm.CreateInPool.AdminVM']);

function column(s: string, width: number): string {
  return s.length >= width ? `${s} ` : s.padEnd(width);
}

export function adminDefaultPolicy(): string {
  const lines = [
    '## Generated from the Admin API method table by qubes-install; do not edit.',
    '## Put your own rules in a file that sorts earlier, e.g. 30-admin-user.policy.',
    '##',
    '## Every Admin API service below is delegated to one of four include files:',
    '##   include/admin-local-ro    read the configuration of a qube',
    '##   include/admin-local-rwx   change or run a qube',
    '##   include/admin-global-ro   read system-wide state (includes admin-global-rwx)',
    '##   include/admin-global-rwx  change system-wide state',
    '## The ro files include their rwx counterpart: whoever may change may read.',
    '## Rules in them need target=dom0, since these services run in dom0.',
    '',
  ];
  for (const spec of METHODS) {
    if (!spec.name.startsWith('admin.') || NOT_DELEGATED.has(spec.name)) continue;
    const inc = policyInclude(spec);
    if (inc) lines.push(`!include-service ${column(spec.name, 48)}* include/${inc}`);
  }
  return lines.join('\n') + '\n';
}

function includeFile(what: string, rwxCounterpart: string | null): string {
  const lines = [
    `## Rules for the ${what}.`,
    '## Included from 90-admin-default.policy; the first matching rule wins.',
    '## Allow and ask rules here need target=dom0.',
    '',
  ];
  if (rwxCounterpart) lines.push('## whoever may change may also read', `!include include/${rwxCounterpart}`, '');
  return lines.join('\n');
}

export function policyAdminDefaultPolicy(): string {
  const lines = [
    '## Policy admin services (policy.*): reading and replacing qrexec policy.',
    '## Whoever may call them controls the whole system; grant them sparingly,',
    '## in include/admin-policy-ro and include/admin-policy-rwx.',
    '',
  ];
  for (const s of POLICY_SERVICES) {
    lines.push(`!include-service ${column(s.name, 28)}* include/admin-policy-${s.write ? 'rwx' : 'ro'}`);
  }
  return lines.join('\n') + '\n';
}

/** GetAll is called routinely when only some properties are granted: deny it without notifications. */
export function adminDefaultDenyPolicy(): string {
  return [
    '## Deny property listings quietly: tools fall back to per-property calls',
    '## when a qube may read only some of them.',
    '',
    'admin.vm.property.GetAll * @anyvm @anyvm   deny notify=no',
    'admin.vm.property.GetAll * @anyvm @adminvm deny notify=no',
    'admin.property.GetAll    * @anyvm @anyvm   deny notify=no',
    'admin.property.GetAll    * @anyvm @adminvm deny notify=no',
    '',
  ].join('\n');
}

/** Services that qubes call in dom0 in any Qubes system, allowed as Qubes allows them. */
export function dom0DefaultPolicy(): string {
  return [
    '## Services every qube may call in dom0 in a default Qubes system.',
    '## Arguments of policy.RegisterArgument are registered one by one elsewhere.',
    '',
    'policy.RegisterArgument *  @anyvm            @anyvm  deny',
    'policy.RegisterArgument *  @anyvm            dom0    deny',
    'qubes.FeaturesRequest   *  @anyvm            dom0    allow',
    'qubes.NotifyTools       *  @anyvm            dom0    allow',
    'qubes.GetDate           *  @tag:anon-vm      @anyvm  deny',
    'qubes.GetDate           *  @anyvm            @anyvm  allow target=dom0',
    'qubes.GetRandomizedTime *  @anyvm            dom0    allow',
    'qubes.NotifyUpdates     *  @anyvm            dom0    allow',
    'qubes.SyncAppMenus      *  @anyvm            dom0    allow',
    '',
  ].join('\n');
}

/** Every file of the default policy, by path relative to policy.d/. */
export function defaultPolicyFiles(): Map<string, string> {
  return new Map([
    ['90-admin-default.policy', adminDefaultPolicy()],
    ['90-admin-policy-default.policy', policyAdminDefaultPolicy()],
    ['90-default.policy', dom0DefaultPolicy()],
    ['91-admin-default-deny.policy', adminDefaultDenyPolicy()],
    ['include/admin-local-ro', includeFile('read-only services on one qube', 'admin-local-rwx')],
    ['include/admin-local-rwx', includeFile('services that change or run one qube', null)],
    ['include/admin-global-ro', includeFile('read-only system-wide services', 'admin-global-rwx')],
    ['include/admin-global-rwx', includeFile('services that change system-wide state', null)],
    ['include/admin-policy-ro', includeFile('services that read qrexec policy', 'admin-policy-rwx')],
    ['include/admin-policy-rwx', includeFile('services that change qrexec policy', null)],
  ]);
}

// The policy admin services (policy.List, policy.Replace, ...): one list for
// the handler program that serves them, the installer that lays out their
// entries and policy, the docs, and the policy admin API that implements them.
// Import-free: the per-call handler program loads it.

export const POLICY_SERVICES = Object.freeze([
  { name: 'policy.List', write: false },
  { name: 'policy.Get', write: false },
  { name: 'policy.GetFiles', write: false },
  { name: 'policy.include.List', write: false },
  { name: 'policy.include.Get', write: false },
  { name: 'policy.Replace', write: true },
  { name: 'policy.Remove', write: true },
  { name: 'policy.include.Replace', write: true },
  { name: 'policy.include.Remove', write: true },
] as const);

export type PolicyServiceName = (typeof POLICY_SERVICES)[number]['name'];

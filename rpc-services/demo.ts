// `qubes-stack --demo`: a fresh installation starts with dom0 alone (and the
// default labels and storage pools qubesd creates), and a new user would
// have to know the Admin API to get a first qube. The demo fills such an
// empty system through qubesd's Admin API, exactly as dom0's `qvm-create`
// and `qubes-prefs` would: two templates, the usual service qubes and a few
// app qubes, with the global defaults pointing at them. A system that has
// any qube besides dom0 is left alone, so --demo can stay on the command line.
import { call, QubesdException } from '../lib/qubesd-client.js';

/** One Admin API call from dom0; resolves with the reply content, rejects with Qubes' exception text. */
async function adminCall(socket: string, method: string, dest: string, arg = '', payload = ''): Promise<string> {
  try {
    return await call(socket, { method, dest, arg, payload });
  } catch (e) {
    const what = e instanceof QubesdException ? `${e.type}: ${e.message}` : (e as Error).message;
    throw new Error(`${method} ${dest} ${arg}: ${what}`);
  }
}

/** The demo's qubes, in creation order (templates first); props are set once all exist, before DEMO_PREFS. */
export const DEMO_QUBES: ReadonlyArray<{ name: string; klass: 'TemplateVM' | 'AppVM'; template?: string; label: string; props?: Record<string, string> }> = [
  { name: 'debian-12-xfce', klass: 'TemplateVM', label: 'black' },
  { name: 'fedora-41-xfce', klass: 'TemplateVM', label: 'black' },
  { name: 'sys-net', klass: 'AppVM', template: 'debian-12-xfce', label: 'red', props: { provides_network: 'True', netvm: '' } },
  { name: 'sys-firewall', klass: 'AppVM', template: 'debian-12-xfce', label: 'green', props: { provides_network: 'True', netvm: 'sys-net' } },
  { name: 'work', klass: 'AppVM', template: 'debian-12-xfce', label: 'blue' },
  { name: 'personal', klass: 'AppVM', template: 'fedora-41-xfce', label: 'yellow' },
  { name: 'untrusted', klass: 'AppVM', template: 'fedora-41-xfce', label: 'red' },
  { name: 'vault', klass: 'AppVM', template: 'debian-12-xfce', label: 'black', props: { netvm: '' } },
];

export const DEMO_PREFS: Readonly<Record<string, string>> = {
  default_template: 'debian-12-xfce',
  default_netvm: 'sys-firewall',
  updatevm: 'sys-firewall',
  clockvm: 'sys-net',
};

/** Fill an empty system; returns the qubes created ([] when there was something already). */
export async function populateDemo(socket: string): Promise<string[]> {
  const listing = await adminCall(socket, 'admin.vm.List', 'dom0');
  const existing = listing
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0]!);
  if (existing.some((n) => n !== 'dom0')) return [];
  const created: string[] = [];
  for (const q of DEMO_QUBES) {
    await adminCall(socket, `admin.vm.Create.${q.klass}`, 'dom0', q.template ?? '', `name=${q.name} label=${q.label}`);
    created.push(q.name);
  }
  // the service qubes' own netvm first: with default_netvm=sys-firewall,
  // a sys-firewall still on the default would be a network loop
  for (const q of DEMO_QUBES) {
    for (const [key, value] of Object.entries(q.props ?? {})) await adminCall(socket, 'admin.vm.property.Set', q.name, key, value);
  }
  for (const [key, value] of Object.entries(DEMO_PREFS)) await adminCall(socket, 'admin.property.Set', 'dom0', key, value);
  return created;
}

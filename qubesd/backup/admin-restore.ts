// Restoring qubes from a backup into a running qubesd, through the Admin
// API as Qubes' qvm-backup-restore does: create each qube (templates
// first, under a new name when the name is taken), set its properties,
// features and tags, then stream its volumes, firewall and notes in.
//
// Safety: the whole archive is authenticated before the first qube is
// created (a wrong passphrase, a tampered or truncated archive restores
// nothing), and if anything fails once creation has begun, the qubes this
// run created are removed again.
import { call as qubesdCall, QubesdException } from '../../lib/qubesd-client.js';
import { parseQubesXml } from '../store/qubes-xml.js';
import type { DomainDoc } from '../store/document.js';
import { parseFirewallXml } from '../firewall/file.js';
import { apiRule } from '../firewall/rule.js';
import { listBackup, streamBackup, verifyBackup, type BackedUpQube } from './restore.js';
import { copyStreamInto } from '../../lib/sparse-copy.js';

/** One Admin API call as dom0. A refusal reads "method+arg dest: Type: message"
 * in warnings and errors, so the operator sees which call failed. */
export async function adminCall(socket: string, method: string, dest: string, arg = '', payload: Buffer | string = ''): Promise<string> {
  try {
    return await qubesdCall(socket, { method, dest, arg, payload });
  } catch (e) {
    if (e instanceof QubesdException) throw new Error(`${e.call}: ${e.type}${e.message ? `: ${e.message}` : ''}`);
    throw e;
  }
}

/** How the restore makes an Admin API call (dom0's socket by default). */
export type AdminCall = (method: string, dest: string, arg?: string, payload?: Buffer | string) => Promise<string>;
/** How it streams a volume in (internal.vm.volume.ImportBegin/End by default). */
export type VolumeImporter = (qube: string, volume: string, size: number, stream: NodeJS.ReadableStream) => Promise<void>;

export interface AdminRestoreOptions {
  passphrase: string | Buffer;
  /** qubesd.sock (Admin API); not needed when `call` is given */
  socket?: string;
  /** qubesd.internal.sock (volume import, as the handler program uses it); not needed when `importVolume` is given */
  internalSocket?: string;
  /** every Admin API call goes through this when given (the REST gateway's
   * policy-checked caller, acting as its client's identity) */
  call?: AdminCall;
  /** every volume import goes through this when given */
  importVolume?: VolumeImporter;
  /** create the qubes in this storage pool (admin.vm.CreateInPool) */
  pool?: string;
  /** qubes to restore (all but dom0 by default) */
  qubes?: readonly string[];
  /** 'verify' then 'restore', each from 0 to 1 */
  onProgress?: (phase: 'verify' | 'restore', fraction: number) => void;
  /** problems that do not stop the restore (a property the system refuses...) */
  onWarning?: (message: string) => void;
  /** compression filters accepted on top of Qubes' list (bare program names) */
  extraFilters?: readonly string[];
}

export interface RestoredQube {
  backupName: string;
  name: string;
  klass: string;
  files: string[];
}

/** Properties not copied as they are: identity, set at creation, or
 * pointing at other qubes (mapped to their restored names afterwards). */
const NOT_COPIED = new Set(['name', 'qid', 'uuid', 'label', 'template', 'netvm', 'default_dispvm', 'dispid', 'installed_by_rpm']);
const QUBE_REFS = ['netvm', 'default_dispvm'] as const;

function freeName(name: string, taken: Set<string>): string {
  if (!taken.has(name)) return name;
  for (let i = 1; ; i++) {
    const suffix = `-${i}`;
    const candidate = name.slice(0, 31 - suffix.length) + suffix;
    if (!taken.has(candidate)) return candidate;
  }
}

function prop(d: DomainDoc, name: string): string | undefined {
  return d.properties.find(([k]) => k === name)?.[1];
}

/** Restores the chosen qubes of `archive` into the qubesd behind `socket`. */
export async function restoreThroughAdminApi(archive: string, o: AdminRestoreOptions): Promise<RestoredQube[]> {
  const call: AdminCall = o.call ?? ((method, dest, arg = '', payload = '') => adminCall(socketOf(o.socket), method, dest, arg, payload));
  const importInto: VolumeImporter = o.importVolume ?? ((qube, volume, size, stream) => importVolume(socketOf(o.internalSocket), qube, volume, size, stream));
  const warn = (m: string) => o.onWarning?.(m);

  const listing = await listBackup(archive, { passphrase: o.passphrase, extraFilters: o.extraFilters ?? [] });
  const doc = parseQubesXml(listing.qubesXml);
  await verifyBackup(archive, {
    passphrase: o.passphrase,
    extraFilters: o.extraFilters ?? [],
    ...(o.qubes ? { qubes: o.qubes } : {}),
    onProgress: (f) => o.onProgress?.('verify', f),
  });

  const wanted = listing.qubes.filter((q) => q.klass !== 'AdminVM' && (!o.qubes?.length || o.qubes.includes(q.name)));
  if (o.qubes?.includes('dom0')) throw new Error('restoring the dom0 home directory is not supported');
  const docs = new Map<string, DomainDoc>();
  for (const q of wanted) {
    const d = doc.domains.find((x) => x.klass === q.klass && prop(x, 'name') === q.name);
    if (!d) throw new Error(`${q.name} is listed in the backup but has no entry in its qubes.xml`);
    docs.set(q.name, d);
  }
  const existing = new Set(
    (await call('admin.vm.List', 'dom0'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ')[0]!),
  );
  const labels = new Set((await call('admin.label.List', 'dom0')).split('\n').filter(Boolean));
  const taken = new Set(existing);
  const newName = new Map<string, string>();
  // Templates first, so that qubes based on them can be created.
  const order = [...wanted].sort((a, b) => Number(b.klass === 'TemplateVM') - Number(a.klass === 'TemplateVM'));
  for (const q of order) {
    const n = freeName(q.name, taken);
    taken.add(n);
    newName.set(q.name, n);
  }

  // Check what every qube needs before creating any.
  const problems: string[] = [];
  for (const q of order) {
    const template = prop(docs.get(q.name)!, 'template');
    if (template && !newName.has(template) && !existing.has(template))
      problems.push(`${q.name}: its template ${template} is neither on this system nor in the restore`);
  }
  if (problems.length) throw new Error(`nothing restored: ${problems.join('; ')}`);

  const created: string[] = [];
  const restored = new Map<string, RestoredQube>();
  try {
    for (const q of order) {
      const d = docs.get(q.name)!;
      const name = newName.get(q.name)!;
      const template = prop(d, 'template');
      // Qubes' qubes.xml names a label by its id (label-3) or by its name.
      const stored = prop(d, 'label') ?? 'red';
      let label = doc.labels.find((l) => l.id === stored)?.name ?? stored;
      if (!labels.has(label)) {
        warn(`${q.name}: label ${label} does not exist here, using red`);
        label = 'red';
      }
      await call(
        `admin.vm.${o.pool ? 'CreateInPool' : 'Create'}.${q.klass}`,
        'dom0',
        template ? (newName.get(template) ?? template) : '',
        `name=${name} label=${label}${o.pool ? ` pool=${o.pool}` : ''}`,
      );
      created.push(name);
      restored.set(q.name, { backupName: q.name, name, klass: q.klass, files: [] });
    }
    for (const q of order) {
      const d = docs.get(q.name)!;
      const name = newName.get(q.name)!;
      for (const [key, value] of d.properties) {
        if (NOT_COPIED.has(key)) continue;
        await call('admin.vm.property.Set', name, key, value).catch((e: Error) => warn(`${q.name}: property ${key}: ${e.message}`));
      }
      for (const key of QUBE_REFS) {
        const value = prop(d, key);
        if (value === undefined) continue;
        const target = value === '' ? '' : (newName.get(value) ?? value);
        if (target && !taken.has(target)) {
          warn(`${q.name}: ${key} ${value} does not exist here, left at its default`);
          continue;
        }
        await call('admin.vm.property.Set', name, key, target).catch((e: Error) => warn(`${q.name}: property ${key}: ${e.message}`));
      }
      for (const [key, value] of d.features) {
        if (key.startsWith('backup-')) continue;
        await call('admin.vm.feature.Set', name, key, value).catch((e: Error) => warn(`${q.name}: feature ${key}: ${e.message}`));
      }
      for (const tag of d.tags) await call('admin.vm.tag.Set', name, tag).catch((e: Error) => warn(`${q.name}: tag ${tag}: ${e.message}`));
      if (d.devices.some((x) => /<device\b/.test(x))) warn(`${q.name}: device assignments are not restored`);
    }

    await streamBackup(
      archive,
      { passphrase: o.passphrase, extraFilters: o.extraFilters ?? [], qubes: wanted.map((q) => q.name), onProgress: (f) => o.onProgress?.('restore', f) },
      () => undefined,
      async (q: BackedUpQube, file: string, size: number, stream: NodeJS.ReadableStream) => {
        const name = newName.get(q.name)!;
        restored.get(q.name)!.files.push(file);
        if (file.endsWith('.img')) return importInto(name, file.slice(0, -4), size, stream);
        const data = await collect(stream, 1 << 20, `${q.name}/${file}`);
        if (file === 'notes.txt') await call('admin.vm.notes.Set', name, '', data);
        else if (file === 'firewall.xml') {
          const rules = parseFirewallXml(data)
            .map((r) => apiRule(r))
            .filter((l): l is string => l !== null);
          // no rules at all drops everything; the API takes that as one drop rule
          await call('admin.vm.firewall.Set', name, '', rules.length ? rules.map((l) => l + '\n').join('') : 'action=drop\n');
        } else if (file !== 'empty') warn(`${q.name}: ${file} is not restored`);
      },
    );
  } catch (e) {
    // Leave the system as it was: remove what this run created, in reverse.
    for (const name of created.reverse()) {
      await call('admin.vm.Remove', name).catch((err: Error) => warn(`could not remove ${name} after the failure: ${err.message}`));
    }
    throw e;
  }
  return [...restored.values()];
}

async function collect(stream: NodeJS.ReadableStream, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const p of stream as AsyncIterable<Buffer>) {
    n += p.length;
    if (n > limit) throw new Error(`${what} is larger than ${limit} bytes`);
    parts.push(p);
  }
  return Buffer.concat(parts);
}

/** The volume import protocol the handler program speaks with qubesd
 * (internal.vm.volume.ImportBegin, the storage layer's copy into the file it
 * hands out, ImportEnd). */
function socketOf(path: string | undefined): string {
  if (!path) throw new Error('restore: no qubesd socket given');
  return path;
}

async function importVolume(internalSocket: string, qube: string, volume: string, size: number, stream: NodeJS.ReadableStream): Promise<void> {
  const begin = await adminCall(internalSocket, 'internal.vm.volume.ImportBegin', qube, volume, String(size));
  const r = await copyStreamInto(stream as AsyncIterable<Buffer>, begin.slice(begin.indexOf(' ') + 1), size);
  if (!r.ok) (stream as Partial<NodeJS.ReadStream>).destroy?.();
  await adminCall(internalSocket, 'internal.vm.volume.ImportEnd', qube, volume, r.ok ? 'ok' : `fail\n${r.error}`);
  if (!r.ok) throw new Error(`importing ${qube}:${volume}: ${r.error}`);
}

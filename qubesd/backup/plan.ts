// What a profile backs up on this system: the selected qubes and, for each,
// the files Qubes stores (save_on_stop volumes as <volume>.img, firewall.xml,
// notes.txt), then the BackupSource the writer consumes.
//
// Consistency: every file is opened when the backup starts, before any byte
// is written. Volumes are replaced by rename (a qube stopping, a revert, an
// import), so an open file keeps the image as it was at the start, and the
// sizes announced in qubes.xml are those of what is actually read.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { QubesApp, Vm } from '../model/app.js';
import type { StorageManager } from '../storage/index.js';
import type { QubesDoc } from '../store/document.js';
import { serializeQubesXml } from '../store/qubes-xml.js';
import { QubesVMNotHaltedError } from '../errors.js';
import { selectQubes, type BackupProfile } from './profile.js';
import type { SummaryRow } from './summary.js';
import type { BackupSource } from './writer.js';
import { scanDataRegions } from '../../lib/sparse-scan.js';
import { diskUsage } from '../storage/fileops.js';

export interface PlannedFile {
  /** name in the archive, e.g. private.img */
  name: string;
  /** how to find the data when the backup starts */
  locate(): Promise<string>;
  /** a file that may be absent (firewall.xml, notes.txt) is skipped then */
  optional: boolean;
  /** a volume image: stored sparse */
  volume: boolean;
  /** what it takes on disk now, as Qubes' summary counts it: a volume's
   * usage, a file's allocated blocks (0 when absent) */
  usage(): Promise<number>;
}

export interface PlannedQube {
  vm: Vm;
  subdir: string;
  files: PlannedFile[];
}

export interface BackupPlan {
  qubes: PlannedQube[];
  /** qubes on the system that the backup does not hold */
  notSelected: Vm[];
  /** dom0 was selected, but its home directory is not something this
   * qubesd backs up (it manages qubes, not dom0's users) */
  dom0Skipped: boolean;
  /** include/exclude entries that match no qube (typos, removed qubes) */
  unmatched: string[];
}

function truthy(v: unknown): boolean {
  return v === true || v === 'True' || v === '1';
}

export function planBackup(app: QubesApp, storage: StorageManager, profile: Pick<BackupProfile, 'include' | 'exclude'>): BackupPlan {
  const all = app.allVms();
  const infos = all.map((vm) => ({
    vm,
    name: vm.name,
    qid: vm.qid,
    klass: vm.klass,
    tags: [...vm.tags],
    includeInBackupsDefault: truthy(vm.prop('include_in_backups')),
  }));
  const { selected, unmatched } = selectQubes(profile, infos);
  const chosen = new Set(selected.map((s) => s.vm));
  const dom0Skipped = selected.some((s) => s.vm.isAdmin);
  const qubes: PlannedQube[] = [];
  for (const { vm } of selected) {
    if (vm.isAdmin) continue;
    const files: PlannedFile[] = [];
    for (const name of storage.volumeNames(vm)) {
      const volume = storage.volume(vm, name);
      if (!volume.saveOnStop) continue;
      files.push({
        name: `${name}.img`,
        optional: false,
        volume: true,
        locate: () => storage.volume(vm, name).exportPath(vm.isRunning()),
        usage: () => storage.volume(vm, name).usage(),
      });
    }
    const dir = vm.dirPath;
    if (dir) {
      for (const name of ['firewall.xml', 'notes.txt']) {
        files.push({ name, optional: true, volume: false, locate: async () => join(dir, name), usage: () => diskUsage(join(dir, name)) });
      }
    }
    qubes.push({ vm, subdir: `vm${vm.qid}/`, files });
  }
  return { qubes, notSelected: all.filter((vm) => !chosen.has(vm) || vm.isAdmin), dom0Skipped, unmatched };
}

/** Reads a range of an open file; the handle stays open (it is shared by
 * the scan and every region, and closed when the backup ends). */
async function* readRange(fh: fsp.FileHandle, start: number, length: number): AsyncGenerator<Buffer> {
  for (let pos = start, end = start + length; pos < end;) {
    const buf = Buffer.allocUnsafe(Math.min(1 << 20, end - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) return; // shorter than announced: the writer reports it
    pos += bytesRead;
    yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }
}

/** A volume the running qube writes straight into (revisions_to_keep=-1). */
function keepsNoSnapshots(storage: StorageManager, vm: Vm): boolean {
  return storage.volumeNames(vm).some((n) => storage.volume(vm, n).snapshotsDisabled);
}

/**
 * Info rows: what each qube's files take on disk now, counted as Qubes
 * counts them for its summary (a volume's usage, a file's allocated blocks:
 * a 600-byte firewall.xml is 4.0 KiB), not the bytes the archive will hold.
 */
export async function summaryRows(plan: BackupPlan, storage: StorageManager): Promise<SummaryRow[]> {
  const rows: SummaryRow[] = [];
  for (const q of plan.qubes) {
    let size = 0;
    for (const f of q.files) size += await f.usage().catch(() => 0);
    const running = q.vm.isRunning() && q.vm.isQubesVM;
    const snapshotsDisabled = running && keepsNoSnapshots(storage, q.vm);
    rows.push({ name: q.vm.name, klass: q.vm.klass, size, updateable: truthy(q.vm.prop('updateable')), running, snapshotsDisabled });
  }
  return rows;
}

export interface OpenedSource {
  source: BackupSource;
  sizes: Map<Vm, number>;
  close(): Promise<void>;
}

/** Opens every file of the plan and builds the writer's source, with the
 * qubes.xml to store: backed-up qubes marked with backup-content,
 * backup-path and backup-size, all others with backup-content off. */
export async function openSource(app: QubesApp, storage: StorageManager, plan: BackupPlan): Promise<OpenedSource> {
  const handles: fsp.FileHandle[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
  };
  try {
    const vms: BackupSource['vms'] = [];
    const sizes = new Map<Vm, number>();
    for (const q of plan.qubes) {
      // A running qube whose volume keeps no snapshot writes straight into
      // the image the backup would read.
      if (q.vm.isRunning() && keepsNoSnapshots(storage, q.vm)) {
        throw QubesVMNotHaltedError(q.vm.name);
      }
      const files: BackupSource['vms'][number]['files'] = [];
      for (const f of q.files) {
        const path = await f.locate();
        let fh: fsp.FileHandle;
        try {
          fh = await fsp.open(path, 'r');
        } catch (e) {
          if (f.optional && (e as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw new Error(`cannot read ${f.name} of ${q.vm.name}: ${(e as Error).message}`);
        }
        handles.push(fh);
        const size = (await fh.stat()).size;
        const read = (start: number, length: number) => Readable.from(readRange(fh, start, length));
        files.push({
          name: f.name,
          size,
          open: () => read(0, size),
          ...(f.volume ? { sparse: { map: (signal?: AbortSignal) => scanDataRegions(fh, size, signal), read } } : {}),
        });
      }
      sizes.set(
        q.vm,
        files.reduce((a, f) => a + f.size, 0),
      );
      vms.push({ name: q.vm.name, subdir: q.subdir, files });
    }
    const qubesXml = Buffer.from(serializeQubesXml(backupDoc(app.toDoc(), plan, sizes)), 'utf8');
    return { source: { qubesXml, vms }, sizes, close };
  } catch (e) {
    await close();
    throw e;
  }
}

function setFeature(features: Array<[string, string]>, key: string, value: string): void {
  const at = features.findIndex(([k]) => k === key);
  if (at >= 0) features[at] = [key, value];
  else features.push([key, value]);
}

function backupDoc(doc: QubesDoc, plan: BackupPlan, sizes: Map<Vm, number>): QubesDoc {
  const byId = new Map(plan.qubes.map((q) => [`domain-${q.vm.qid}`, q]));
  return {
    ...doc,
    domains: doc.domains.map((d) => {
      const q = byId.get(d.id);
      let features = d.features.map(([k, v]) => [k, v] as [string, string]);
      if (q) {
        // Preloaded disposables are runtime state of this system; Qubes drops
        // them from backups too, keeping only the configured maximum.
        features = features.filter(([k]) => !k.startsWith('preload-dispvm') || k === 'preload-dispvm-max');
        setFeature(features, 'backup-content', '1');
        setFeature(features, 'backup-path', q.subdir);
        setFeature(features, 'backup-size', String(sizes.get(q.vm) ?? 0));
      } else {
        setFeature(features, 'backup-content', '');
      }
      return { ...d, features };
    }),
  };
}

// Volumes: one qube's disk in one pool, with Qubes' semantics.
//
//   snap_on_start save_on_stop  kind
//   no            yes           kept: the qube's own data, committed at stop with revisions
//   yes           no            snapshot of its source (the template's volume), discarded at stop
//   no            no            volatile: fresh and empty at every start
//
// Image files (both the `file` and the `file-reflink` driver) use a "clean"
// image (the committed data), a "running" image the qube writes to while it
// runs, an "import" image for data being imported, and revision images. A
// clean image is only ever replaced by rename(2) of a complete, fsync'd file,
// never written in place, so revisions can share its inode and a crash or a
// failed operation leaves the previous data untouched.
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { QubesNotImplementedError, QubesValueError, StoragePoolException } from '../errors.js';
import type { VolumeConf } from './config.js';
import {
  cloneFile,
  createSparseFile,
  diskUsage,
  exists,
  fileSize,
  linkFile,
  removeEmptyDir,
  removeFile,
  renameFile,
  truncateFile,
  type CopyMethod,
} from './fileops.js';
import type { StorageVm } from './model-view.js';
import { pathInPool } from './paths.js';
import { pyRepr } from '../../lib/py-repr.js';

export interface Revision {
  id: string;
  /** ISO time without zone, as Qubes prints it: 2024-01-31T12:00:00 */
  timestamp: string;
  file: string;
}

/** What a volume needs from its pool (see pools.ts). */
export interface VolumePool {
  readonly name: string;
  readonly driver: string;
  readonly dirPath: string;
  readonly ephemeralVolatile: boolean;
  readonly pythonVolumeClass: string;
  /** report how a copy was made (reflink or plain copy) */
  noteCopy(src: string, dst: string, method: CopyMethod): void;
}

/** Seconds since the epoch -> Qubes' isodate(): UTC, no zone suffix. */
export function isodate(seconds: number): string {
  return new Date(Math.floor(seconds) * 1000).toISOString().slice(0, 19);
}

export abstract class Volume {
  constructor(
    readonly pool: VolumePool,
    readonly vm: StorageVm,
    readonly conf: VolumeConf,
    /** the resolved source volume of a snap_on_start volume */
    readonly source: Volume | null,
  ) {}

  get name(): string {
    return this.conf.name;
  }

  /**
   * Qubes' Volume.verify, made for every volume before a start and before
   * anything is started (the network chain included): the image the start
   * will read exists. Nothing to check by default.
   */
  async verify(): Promise<void> {}
  get vid(): string {
    return this.conf.vid ?? '';
  }
  get rw(): boolean {
    return this.conf.rw;
  }
  get saveOnStop(): boolean {
    return this.conf.saveOnStop;
  }
  get snapOnStart(): boolean {
    return this.conf.snapOnStart;
  }
  get revisionsToKeep(): number {
    return this.conf.revisionsToKeep ?? 0;
  }
  get snapshotsDisabled(): boolean {
    return this.revisionsToKeep === -1 && !this.snapOnStart && this.saveOnStop;
  }

  get ephemeral(): boolean {
    if (this.conf.ephemeral !== undefined) return this.conf.ephemeral;
    if (this.snapOnStart || this.saveOnStop || !this.rw) return false;
    return this.pool.ephemeralVolatile;
  }

  setEphemeral(value: boolean): void {
    if (value && (this.snapOnStart || this.saveOnStop || !this.rw)) {
      throw QubesValueError('Cannot enable ephemeral on snap_on_start or save_on_stop or non-dom0 or not writable volume');
    }
    this.conf.ephemeral = value;
  }

  setRw(value: boolean): void {
    this.conf.rw = value;
  }

  /** driver limits on revisions_to_keep (the range check is the caller's) */
  setRevisionsToKeep(value: number): void {
    this.conf.revisionsToKeep = value;
  }

  protected notImplemented(method: string): Error {
    return QubesNotImplementedError(`Volume ${this.pool.pythonVolumeClass} has ${method}() not implemented`);
  }

  abstract size(): Promise<number>;
  abstract usage(): Promise<number>;
  /** the path Qubes shows in admin.vm.volume.Info, or null */
  abstract path(): string | null;
  abstract revisions(): Promise<Revision[]>;
  abstract isOutdated(): Promise<boolean>;
  /** has the qube written to it without a commit (running, or not cleanly stopped)? */
  abstract isDirty(): Promise<boolean>;

  /** the image a running qube uses, or null when there is none */
  abstract blockDevice(): string | null;
  abstract create(): Promise<void>;
  abstract remove(): Promise<void>;
  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
  abstract resize(size: number): Promise<void>;
  abstract revert(revision: string): Promise<void>;
  /** a fresh file of `size` bytes to write new data to */
  abstract importBegin(size: number): Promise<string>;
  abstract importEnd(success: boolean): Promise<void>;
  /** the file to read this volume's committed data from */
  abstract exportPath(running: boolean): Promise<string>;
  /** replace this volume's data with a copy of src's */
  abstract importVolume(src: Volume, srcRunning: boolean): Promise<CopyMethod | null>;
  /** every file this volume may own on disk (for removal and checks) */
  abstract ownFiles(): Promise<string[]>;
}

/** Common engine of the `file` and `file-reflink` drivers; subclasses choose names and Qubes' wording. */
export abstract class ImageVolume extends Volume {
  protected get cleanPath(): string {
    return pathInPool(this.pool.dirPath, this.vid, '.img');
  }
  protected get importPath(): string {
    return pathInPool(this.pool.dirPath, this.vid, '-import.img');
  }
  protected abstract get runningPath(): string;
  protected abstract listRevisions(): Promise<Revision[]>;
  /** the file the next revision goes to (may replace the only one) */
  protected abstract nextRevision(existing: Revision[], timestamp: string): Revision;
  /** timestamp a revision of the current clean image gets */
  protected abstract revisionTimestamp(clean: string): Promise<string>;
  /** does committing imported data keep the old data as a revision? */
  protected abstract get importKeepsRevision(): boolean;

  protected sourceClean(): string {
    if (!(this.source instanceof ImageVolume)) throw StoragePoolException(`Volume ${this.vid} has no source volume`);
    return this.source.cleanPath;
  }

  override async revisions(): Promise<Revision[]> {
    return this.listRevisions();
  }

  override async isDirty(): Promise<boolean> {
    return this.saveOnStop && this.runningPath !== this.cleanPath && exists(this.runningPath);
  }

  override blockDevice(): string {
    return this.runningPath;
  }

  override async size(): Promise<number> {
    for (const f of this.sizeFiles()) {
      const s = await fileSize(f);
      if (s !== null) return s;
    }
    return this.conf.size;
  }

  protected abstract sizeFiles(): string[];

  /** which volumes get an image at creation (the `file` driver also makes the volatile one) */
  protected get createsImage(): boolean {
    return this.saveOnStop && !this.snapOnStart;
  }

  /** which volumes must have a size above 0 to be created */
  protected get needsSize(): boolean {
    return this.createsImage;
  }

  override async create(): Promise<void> {
    if (this.needsSize && !(this.conf.size > 0)) throw StoragePoolException(`Volume size must be > 0 (volume ${this.vid})`);
    if (this.createsImage) {
      // data nobody references any more is still somebody's data: never create over it
      if (await exists(this.cleanPath)) throw StoragePoolException(`Volume ${this.cleanPath} already exists`);
      await createSparseFile(this.cleanPath, this.conf.size);
    }
  }

  override async ownFiles(): Promise<string[]> {
    const files = [this.cleanPath, this.runningPath, this.importPath, ...(await this.listRevisions()).map((r) => r.file)];
    const dir = path.dirname(this.cleanPath);
    const base = path.basename(this.cleanPath, '.img');
    let names: string[] = [];
    try {
      names = await fsp.readdir(dir);
    } catch {
      /* no directory: nothing more */
    }
    // leftovers of interrupted writes: "<vid>*.img*~<random>"
    for (const n of names) {
      if ((n.startsWith(base + '.') || n.startsWith(base + '-')) && n.includes('.img') && n.includes('~')) files.push(path.join(dir, n));
    }
    return [...new Set(files)];
  }

  override async remove(): Promise<void> {
    for (const f of await this.ownFiles()) await removeFile(f);
    await removeEmptyDir(path.dirname(this.cleanPath));
  }

  protected async removeIncomplete(): Promise<void> {
    const keep = new Set([this.cleanPath, this.runningPath, this.importPath, ...(await this.listRevisions()).map((r) => r.file)]);
    for (const f of await this.ownFiles()) if (!keep.has(f)) await removeFile(f);
  }

  protected async copy(src: string, dst: string, size?: number): Promise<CopyMethod> {
    const method = await cloneFile(src, dst, size === undefined ? {} : { size });
    this.pool.noteCopy(src, dst, method);
    return method;
  }

  protected async prune(keep: number): Promise<void> {
    const revs = await this.listRevisions();
    const drop = keep <= 0 ? revs : revs.slice(0, Math.max(0, revs.length - keep));
    for (const r of drop) await removeFile(r.file);
  }

  /** Keep the current clean image as a revision (shares its data by hard link). */
  protected async addRevision(): Promise<Revision | null> {
    if (this.revisionsToKeep <= 0 || !(await exists(this.cleanPath))) return null;
    const rev = this.nextRevision(await this.listRevisions(), await this.revisionTimestamp(this.cleanPath));
    await linkFile(this.cleanPath, rev.file);
    return rev;
  }

  /** Make `from` (complete, not yet durable) the new clean image, keeping revisions. */
  protected async commit(from: string): Promise<void> {
    await this.addRevision();
    await this.prune(this.revisionsToKeep);
    const fh = await fsp.open(from, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await renameFile(from, this.cleanPath);
  }

  override async start(): Promise<void> {
    await this.removeIncomplete();
    await removeFile(this.importPath); // the manager refuses a start during a live import: this one is stale
    const running = this.runningPath;
    if (this.snapshotsDisabled) {
      await this.prune(0);
      if (running !== this.cleanPath && !(await exists(running))) await renameFile(this.cleanPath, running);
      return;
    }
    if (await this.isDirty()) return; // not cleanly stopped: keep what the qube wrote
    if (this.snapOnStart) {
      await this.startSnapshot(running);
    } else if (this.saveOnStop) {
      if (!(await exists(this.cleanPath))) throw this.missingImage(this.cleanPath);
      await this.copy(this.cleanPath, running);
    } else {
      await createSparseFile(running, this.conf.size);
    }
  }

  /** Qubes names a missing image by its full path; a reply does not carry
   * our directory layout, so the file is named inside its pool's directory
   * (`vm-templates/<qube>/root.img`). */
  protected missingImage(file: string, end = ''): Error {
    return StoragePoolException(`Missing image file: ${this.shown(file)}${end}`);
  }

  /** `file` as a reply may name it: inside its pool's directory. */
  protected shown(file: string): string {
    const inPool = path.relative(this.pool.dirPath, file);
    return inPool.startsWith('..') || path.isAbsolute(inPool) ? file.split(path.sep).slice(-3).join('/') : inPool;
  }

  protected async startSnapshot(running: string): Promise<void> {
    const src = this.sourceClean();
    if (!(await exists(src))) throw this.missingImage(src);
    await this.copy(src, running);
  }

  override async stop(): Promise<void> {
    const running = this.runningPath;
    if (await this.isDirty()) {
      if (!this.rw) await removeFile(running);
      else if (this.snapshotsDisabled) await renameFile(running, this.cleanPath);
      else await this.commit(running);
    } else if (!this.saveOnStop) {
      if (!this.snapOnStart) this.conf.size = await this.size(); // keep a resize done while running
      await removeFile(running);
      if (!this.snapOnStart) await removeFile(this.cleanPath);
      else await this.removeSnapshotLink();
    }
  }

  protected async removeSnapshotLink(): Promise<void> {
    /* only file-reflink keeps one */
  }

  protected abstract checkResizable(): void;

  override async resize(size: number): Promise<void> {
    this.checkResizable();
    const running = this.runningPath;
    if (running !== this.cleanPath && (await exists(running))) {
      await truncateFile(running, size);
    } else if (this.saveOnStop && !this.snapOnStart) {
      // a new inode: revisions sharing the old one keep their size and data
      if (await exists(this.cleanPath)) await this.copy(this.cleanPath, this.cleanPath, size);
      else await createSparseFile(this.cleanPath, size);
    } else if (running === this.cleanPath) {
      // Qubes' FileVolume opens the image for appending and truncates it: a
      // volatile image a halted qube does not have is made, at the new size
      if (await exists(running)) await truncateFile(running, size);
      else await createSparseFile(running, size);
    }
    this.conf.size = size;
  }

  override async revert(revision: string): Promise<void> {
    if (await this.isDirty()) throw StoragePoolException(`Cannot revert: ${this.vid} is not cleanly stopped`);
    const rev = (await this.listRevisions()).find((r) => r.id === revision);
    if (!rev) throw StoragePoolException(`No revision ${revision} of volume ${this.vid}`);
    // hold the revision under a private name: adding the current data as a
    // revision may reuse its file name (the `file` driver keeps only one)
    const held = `${rev.file}~revert`;
    await linkFile(rev.file, held);
    try {
      const added = await this.addRevision();
      await renameFile(held, this.cleanPath);
      if (!added || added.file !== rev.file) await removeFile(rev.file);
    } finally {
      await removeFile(held);
    }
  }

  protected abstract checkImportable(): void;

  override async importBegin(size: number): Promise<string> {
    this.checkImportable();
    await removeFile(this.importPath);
    await createSparseFile(this.importPath, size);
    return this.importPath;
  }

  override async importEnd(success: boolean): Promise<void> {
    if (!success) {
      await removeFile(this.importPath);
      return;
    }
    if (!(await exists(this.importPath))) throw StoragePoolException(`No import in progress for volume ${this.vid}`);
    if (this.importKeepsRevision) await this.commit(this.importPath);
    else {
      const fh = await fsp.open(this.importPath, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await renameFile(this.importPath, this.cleanPath);
    }
    this.conf.size = (await fileSize(this.cleanPath)) ?? this.conf.size;
  }

  override async importVolume(src: Volume, srcRunning: boolean): Promise<CopyMethod | null> {
    if (!this.saveOnStop) return null; // Qubes: data of a non-kept volume is not imported
    const from = await src.exportPath(srcRunning);
    let method: CopyMethod;
    try {
      method = await this.copy(from, this.importPath);
    } catch (e) {
      await removeFile(this.importPath);
      throw e;
    }
    await this.importEnd(true);
    return method;
  }
}

/** Qubes' `file` driver: <vid>.img, the running copy in <vid>-cow.img, one revision "old" in <vid>-cow.img.old. */
export class FileVolume extends ImageVolume {
  protected override get runningPath(): string {
    if ((!this.saveOnStop && !this.snapOnStart) || this.snapshotsDisabled) return this.cleanPath;
    return pathInPool(this.pool.dirPath, this.vid, '-cow.img');
  }
  private get oldPath(): string {
    return pathInPool(this.pool.dirPath, this.vid, '-cow.img.old');
  }
  /** the `file` driver makes an image for every volume that is not a snapshot (the volatile one too) */
  protected override get createsImage(): boolean {
    return !this.snapOnStart;
  }

  /**
   * Qubes' FileVolume.create asserts a size above 0 for every volume, so a
   * new qube whose kernel volume lands in a file pool (default_pool_kernel
   * reset to the default pool) is not created; Qubes drops the connection on
   * that assertion, we answer with the error.
   */
  protected override get needsSize(): boolean {
    return true;
  }

  override path(): string {
    return this.snapOnStart ? this.sourceCleanOrOwn() : this.cleanPath;
  }

  /** Qubes' FileVolume.verify: its message ends with a full stop. */
  override async verify(): Promise<void> {
    if (!this.snapOnStart && !this.saveOnStop) return;
    const img = this.path();
    if (!(await exists(img))) throw this.missingImage(img, '.');
  }

  private sourceCleanOrOwn(): string {
    return this.source instanceof ImageVolume ? this.sourceClean() : pathInPool(this.pool.dirPath, this.conf.source ?? this.vid, '.img');
  }

  protected override sizeFiles(): string[] {
    return [this.path()];
  }

  override async usage(): Promise<number> {
    let u = 0;
    if (this.saveOnStop || this.snapOnStart) u += await diskUsage(pathInPool(this.pool.dirPath, this.vid, '-cow.img'));
    if (this.saveOnStop || !this.snapOnStart) u += await diskUsage(this.cleanPath);
    return u;
  }

  override async isOutdated(): Promise<boolean> {
    return false;
  }

  protected override async listRevisions(): Promise<Revision[]> {
    try {
      const st = await fsp.stat(this.oldPath);
      return [{ id: 'old', timestamp: isodate(st.ctimeMs / 1000), file: this.oldPath }];
    } catch {
      return [];
    }
  }

  protected override nextRevision(): Revision {
    return { id: 'old', timestamp: '', file: this.oldPath };
  }
  protected override async revisionTimestamp(): Promise<string> {
    return '';
  }
  protected override get importKeepsRevision(): boolean {
    return false;
  }

  override setRevisionsToKeep(value: number): void {
    if (value > 1 || value < -1) throw QubesNotImplementedError('FileVolume supports maximum 1 volume revision to keep');
    super.setRevisionsToKeep(value);
  }

  protected override checkResizable(): void {
    if (!this.rw) throw StoragePoolException(`Can not resize readonly volume ${this.vid}`);
    if (this.snapOnStart) throw StoragePoolException('Cannot resize volume based on a template - resizethe template instead');
  }

  protected override checkImportable(): void {
    if (!this.saveOnStop) throw StoragePoolException(`Can not import into save_on_stop=False volume ${this.vid}`);
  }

  override async exportPath(running: boolean): Promise<string> {
    if (running) throw StoragePoolException('file pool cannot export running volumes');
    if (await this.isDirty()) throw StoragePoolException('file pool cannot export dirty volumes');
    return this.cleanPath;
  }

  override async importVolume(src: Volume, srcRunning: boolean): Promise<CopyMethod | null> {
    if (src.snapOnStart) throw StoragePoolException(`Can not import snapshot volume ${src.vid} in to pool ${this.vid} `);
    return super.importVolume(src, srcRunning);
  }
}

const REVISION_RE = /^(\d+)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z$/;

/** Qubes' `file-reflink` driver: <vid>.img, <vid>-dirty.img while running, revisions <vid>.img.<n>@<time>Z. */
export class ReflinkVolume extends ImageVolume {
  protected override get runningPath(): string {
    return pathInPool(this.pool.dirPath, this.vid, '-dirty.img');
  }

  override path(): string {
    return this.runningPath;
  }
  protected override sizeFiles(): string[] {
    return [this.runningPath, this.cleanPath];
  }

  override async usage(): Promise<number> {
    for (const f of [this.runningPath, this.cleanPath]) if (await exists(f)) return diskUsage(f);
    return 0;
  }

  /** Qubes' ReflinkVolume.verify, in its words: the path as Python's repr. */
  override async verify(): Promise<void> {
    const img = this.snapOnStart ? (this.source instanceof ImageVolume ? this.sourceClean() : null) : this.saveOnStop ? this.cleanPath : null;
    if (img && !(await exists(img))) throw StoragePoolException(`Missing image file ${pyRepr(this.shown(img))} for volume ${this.vid}`);
  }

  override async isOutdated(): Promise<boolean> {
    if (!this.snapOnStart || !(this.source instanceof ImageVolume)) return false;
    try {
      const [a, b] = await Promise.all([fsp.stat(this.sourceClean()), fsp.stat(this.cleanPath)]);
      return a.ino !== b.ino || a.dev !== b.dev;
    } catch {
      return false;
    }
  }

  protected override async listRevisions(): Promise<Revision[]> {
    const clean = this.cleanPath;
    const prefix = path.basename(clean) + '.';
    let names: string[] = [];
    try {
      names = await fsp.readdir(path.dirname(clean));
    } catch {
      return [];
    }
    const revs: Revision[] = [];
    for (const n of names) {
      if (!n.startsWith(prefix)) continue;
      const m = REVISION_RE.exec(n.slice(prefix.length));
      if (m) revs.push({ id: m[1]!, timestamp: m[2]!, file: path.join(path.dirname(clean), n) });
    }
    return revs.sort((a, b) => Number(a.id) - Number(b.id));
  }

  protected override nextRevision(existing: Revision[], timestamp: string): Revision {
    const id = existing.length ? String(Number(existing[existing.length - 1]!.id) + 1) : '1';
    return { id, timestamp, file: `${this.cleanPath}.${id}@${timestamp}Z` };
  }

  protected override async revisionTimestamp(clean: string): Promise<string> {
    return isodate((await fsp.stat(clean)).mtimeMs / 1000);
  }

  protected override get importKeepsRevision(): boolean {
    return true;
  }

  protected override async startSnapshot(running: string): Promise<void> {
    const src = this.sourceClean();
    if (!(await exists(src))) throw this.missingImage(src);
    // the hard link records which source data this snapshot started from (is_outdated)
    await linkFile(src, this.cleanPath);
    await this.copy(this.cleanPath, running);
  }

  protected override async removeSnapshotLink(): Promise<void> {
    await removeFile(this.cleanPath);
  }

  protected override checkResizable(): void {
    if (!this.rw) throw StoragePoolException(`Cannot resize: ${this.vid} is read-only`);
  }

  protected override checkImportable(): void {
    if (!this.saveOnStop) throw QubesNotImplementedError(`Cannot import_data: ${this.vid} is not save_on_stop`);
  }

  override async exportPath(): Promise<string> {
    if (!this.saveOnStop) throw QubesNotImplementedError(`Cannot export: ${this.vid} is not save_on_stop`);
    return this.cleanPath;
  }
}

/** A kernel from the linux-kernel pool: read-only, its vid is the qube's kernel version. */
export class KernelVolume extends Volume {
  constructor(
    pool: VolumePool,
    vm: StorageVm,
    conf: VolumeConf,
    private readonly kernelVersion: string | null,
  ) {
    super(pool, vm, { ...conf, vid: kernelVersion ?? '', rw: false, revisionsToKeep: 0 }, null);
  }

  get kernelsDir(): string | null {
    return this.kernelVersion ? pathInPool(this.pool.dirPath, this.kernelVersion) : null;
  }

  override get ephemeral(): boolean {
    return false;
  }
  override setEphemeral(): void {
    throw QubesValueError('LinuxModules does not support setting ephemeral value');
  }
  override setRw(value: boolean): void {
    if (value) throw QubesValueError('LinuxModules supports only read-only volumes');
  }
  override setRevisionsToKeep(value: number): void {
    if (value) throw QubesValueError('LinuxModules supports only revisions_to_keep=0');
  }

  override async size(): Promise<number> {
    return this.conf.size;
  }
  override async usage(): Promise<number> {
    return 0;
  }
  override path(): string | null {
    const d = this.kernelsDir;
    return d ? path.join(d, 'modules.img') : null;
  }
  override async revisions(): Promise<Revision[]> {
    return [];
  }
  override async isOutdated(): Promise<boolean> {
    return false;
  }
  override async isDirty(): Promise<boolean> {
    return false;
  }
  /** modules.img is a disk only when the kernel ships one */
  override blockDevice(): string | null {
    const p = this.path();
    return p && existsSync(p) ? p : null;
  }
  override async create(): Promise<void> {
    /* kernels are installed, not created */
  }
  override async remove(): Promise<void> {
    /* shared by every qube using this kernel */
  }
  override async start(): Promise<void> {
    /* nothing to prepare */
  }
  override async stop(): Promise<void> {
    /* nothing to commit */
  }
  override async resize(): Promise<void> {
    throw this.notImplemented('resize');
  }
  override async revert(): Promise<void> {
    throw this.notImplemented('revert');
  }
  override async importBegin(): Promise<string> {
    throw this.notImplemented('import_data');
  }
  override async importEnd(): Promise<void> {
    throw this.notImplemented('import_data_end');
  }
  override async exportPath(): Promise<string> {
    const p = this.path();
    if (!p) throw StoragePoolException(`Volume ${this.name} of ${this.vm.name} has no kernel`);
    return p;
  }
  override async importVolume(src: Volume): Promise<CopyMethod | null> {
    if (src instanceof KernelVolume) return null;
    throw StoragePoolException('clone of LinuxModules volume from different volume type is not supported');
  }
  override async ownFiles(): Promise<string[]> {
    return [];
  }
}

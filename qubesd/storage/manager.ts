// The storage manager: the volumes of one app's qubes (built
// from each qube's <volume-config> on demand, so the store stays the single
// source of truth), and every storage operation the Admin API handlers and
// the lifecycle code call, serialised per qube. The pools are
// pool-registry.ts's (reached through this one service), clone tokens
// clone-tokens.ts's and open imports import-sessions.ts's; the Admin API's
// reply text is api/format/storage.ts's.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ProtocolError, QubesException, QubesValueError, QubesVMNotHaltedError, StoragePoolException } from '../errors.js';
import { defaultVolumes, parseVolumeConf, volumeConfDoc, type VolumeConf } from './config.js';
import { QubesPoolNotFoundError, QubesVolumeNotFoundError } from './errors.js';
import { CloneTokens } from './clone-tokens.js';
import { ImportSessions } from './import-sessions.js';
import { fileSize, removeEmptyDir, type CopyMethod } from './fileops.js';
import { defaultModelAccess, isHalted, type ModelAccess, type Placement, type StorageApp, type StorageVm } from './model-view.js';
import { pathInPool } from './paths.js';
import { DirPool, KernelPool, type Pool, type PoolContext, type VolumeSlot } from './pools.js';
import { PoolRegistry } from './pool-registry.js';
import type { Volume } from './volumes.js';
import type { VolumeConfigDoc } from '../store/document.js';

export interface StorageOptions {
  /** what /var/lib/qubes is on a real system (Qubes' default pool lives there) */
  baseDir: string;
  /** replacements for how model facts are read (see ModelAccess) */
  access?: Partial<ModelAccess>;
  /** one line per notable storage action (copies say whether they reflinked) */
  log?: (line: string) => void;
}

export interface CopyRecord {
  src: string;
  dst: string;
  method: CopyMethod;
}

/** A disk of a starting qube, for its domain XML. */
export interface BlockDevice {
  name: string;
  path: string;
  rw: boolean;
}

const py = (b: boolean): string => (b ? 'True' : 'False');

/** Parsed volume configs, for the scans over every qube (is a volume used
 * elsewhere?) that creating and removing a qube makes: parsing each qube's
 * config every time made creation cost grow with the number of qubes.
 * Docs are never changed in place (a change stores a new doc), so the
 * parse of a doc stays true; frozen, so no caller can make it false. */
const PARSED = new WeakMap<VolumeConfigDoc, Readonly<VolumeConf>>();
function frozenConf(doc: VolumeConfigDoc): Readonly<VolumeConf> {
  let c = PARSED.get(doc);
  if (!c) {
    c = Object.freeze(parseVolumeConf(doc));
    PARSED.set(doc, c);
  }
  return c;
}

/** Events after which a qube's kernel in effect may be another one. */
const KERNEL_EVENTS = new Set([
  'property-set:kernel',
  'property-reset:kernel',
  'property-set:template',
  'property-set:default_kernel',
  'property-reset:default_kernel',
]);

export class StorageManager {
  private readonly pools: PoolRegistry;
  private readonly access: ModelAccess;
  private readonly clones = new CloneTokens();
  private readonly imports = new ImportSessions();
  private readonly locks = new Map<string, Promise<unknown>>();
  /**
   * revisions_to_keep given through admin.vm.volume.Set.revisions_to_keep
   * since the daemon started, per qube and volume. Qubes' file pool forces 0
   * on a volume that is not save_on_stop only when it initialises the volume
   * (at load and creation); a value set later stays on the live volume, and
   * is reported, until the next start (or until a change of template
   * initialises the qube's snapshot volumes again: templateChanged forgets
   * them). Our volumes are built from their configuration on each use, which
   * would apply that rule every time.
   */
  private readonly revisionsSet = new WeakMap<StorageVm, Map<string, number>>();
  /** the last copies made (newest last), to say whether they were reflinks */
  readonly recentCopies: CopyRecord[] = [];
  readonly baseDir: string;

  /** Loads the app's pools; made once at daemon start (see api/services.ts). */
  constructor(
    readonly app: StorageApp,
    private readonly opts: StorageOptions,
  ) {
    this.baseDir = path.resolve(opts.baseDir);
    this.access = { ...defaultModelAccess(app), ...opts.access };
    this.pools = new PoolRegistry(app, this.access, this.baseDir, this.ctx(), (vm) => this.vidPrefix(vm));
    app.events?.subscribe?.((subject, event) => {
      if (event === 'property-set:template') {
        const vm = app.getVm(subject);
        if (vm) this.templateChanged(vm);
      }
      // a global property's subject is '': every qube may follow it
      if (KERNEL_EVENTS.has(event)) this.kernelsChanged(subject === '' ? null : app.getVm(subject));
    });
  }

  /**
   * Qubes writes a linux-kernel volume's vid as the qube's kernel at the
   * time it saves (LinuxModules.vid follows vm.kernel), so after a change of
   * a qube's kernel, of the template it takes its kernel from, or of
   * default_kernel, its qubes.xml names the kernel now in effect; so does
   * ours. Only the stored configuration changes: a kernel volume is built
   * with the kernel property in effect each time it is used. `changed`: the
   * qube whose kernel or template changed (it and the qubes whose template
   * chain goes through it follow), null for default_kernel (every qube).
   */
  private kernelsChanged(changed: StorageVm | null | undefined): void {
    if (changed === undefined) return;
    for (const vm of this.app.allVms()) if (!changed || this.followsTemplate(vm, changed)) this.kernelVidFollows(vm);
  }

  /** Whether `vm` is `of` or a qube whose template chain goes through it. */
  private followsTemplate(vm: StorageVm, of: StorageVm): boolean {
    let t: StorageVm | null = vm;
    for (let i = 0; t && i < 8; i++, t = this.access.template(t)) if (t === of) return true;
    return false;
  }

  /** The vid stored for the qube's linux-kernel volume: the kernel in effect. */
  private kernelVidFollows(vm: StorageVm): void {
    let changed = false;
    vm.volumeConfig.forEach((doc, i) => {
      const c = parseVolumeConf(doc);
      if (c.name === '' || c.vid === undefined || !(this.pools.get(c.pool ?? this.defaultPoolName(c.name)) instanceof KernelPool)) return;
      const vid = this.access.kernel(vm) ?? '';
      if (c.vid === vid) return;
      vm.volumeConfig[i] = { attrs: doc.attrs.map(([k, v]) => [k, k === 'vid' ? vid : v]) };
      changed = true;
    });
    if (changed) this.app.markDirty(vm);
  }

  private noteCopy(src: string, dst: string, method: CopyMethod): void {
    this.recentCopies.push({ src, dst, method });
    if (this.recentCopies.length > 32) this.recentCopies.shift();
    this.opts.log?.(`${method === 'reflink' ? 'reflinked' : 'copied (no reflink here)'} ${src} -> ${dst}`);
  }

  private ctx(): PoolContext {
    return { noteCopy: (s, d, m) => this.noteCopy(s, d, m) };
  }

  /** Serialise operations per qube, as Qubes' per-volume locks do. */
  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  private fire(vm: StorageVm, event: string, kwargs: Array<[string, string]>): void {
    this.app.events?.fire(vm.name, event, kwargs);
  }

  // ---- pools (pool-registry.ts; kept here so callers see one storage service) ----

  poolNames(): string[] {
    return this.pools.names();
  }
  pool(name: string): Pool | undefined {
    return this.pools.get(name);
  }
  allPools(): Pool[] {
    return this.pools.all();
  }
  /** Add a pool (parameters already checked against the driver's list by the caller). */
  addPool(driver: string, name: string, params: ReadonlyMap<string, string>): Promise<Pool> {
    return this.pools.add(driver, name, params);
  }
  removePool(name: string): Promise<void> {
    return this.pools.remove(name);
  }
  setPoolRevisionsToKeep(name: string, value: number): void {
    this.pools.setRevisionsToKeep(name, value);
  }
  setPoolEphemeralVolatile(name: string, value: boolean): void {
    this.pools.setEphemeralVolatile(name, value);
  }
  /** The pool of that name (QubesException when there is none). */
  mustPool(name: string): Pool {
    return this.pools.mustGet(name);
  }
  /** Volume ids in a pool, as admin.pool.volume.List lists them. */
  poolVolumeIds(name: string): Promise<string[]> {
    return this.pools.volumeIds(name);
  }
  /** The pool a new volume of this name goes to: default_pool_<name>, default_pool, Qubes' fallback. */
  defaultPoolName(volumeName: string): string {
    return this.pools.defaultPoolName(volumeName);
  }
  private effectivePoolName(conf: VolumeConf): string | undefined {
    return this.pools.effectivePoolName(conf);
  }

  // ---- volumes -----------------------------------------------------------

  vidPrefix(vm: StorageVm): string {
    return `${vm.klass === 'TemplateVM' ? 'vm-templates' : 'appvms'}/${vm.name}`;
  }

  private slot(vm: StorageVm): VolumeSlot {
    return { vm, vidPrefix: this.vidPrefix(vm) };
  }

  /** Volume names of a qube, in its configuration's order. */
  volumeNames(vm: StorageVm): string[] {
    return vm.volumeConfig.map((d) => parseVolumeConf(d).name).filter((n) => n !== '');
  }

  hasVolume(vm: StorageVm, name: string): boolean {
    return this.volumeNames(vm).includes(name);
  }

  /** Build the volume `name` of `vm` from its configuration. */
  volume(vm: StorageVm, name: string, depth = 0): Volume {
    const doc = vm.volumeConfig.find((d) => parseVolumeConf(d).name === name);
    if (!doc) throw StoragePoolException(`Qube ${vm.name} has no volume ${name}`);
    return this.build(vm, parseVolumeConf(doc), depth);
  }

  private build(vm: StorageVm, raw: VolumeConf, depth: number): Volume {
    const poolName = raw.pool ?? this.defaultPoolName(raw.name);
    const pool = this.pools.get(poolName);
    if (!pool) throw QubesException(`Unknown storage pool ${poolName}`);
    const conf = pool.initConf(raw, this.slot(vm));
    const set = this.revisionsSet.get(vm)?.get(raw.name);
    if (set !== undefined) conf.revisionsToKeep = set;
    let source: Volume | null = null;
    if (conf.snapOnStart && !(pool instanceof KernelPool)) source = this.findSource(vm, conf, depth);
    const kernel = pool instanceof KernelPool ? this.access.kernel(vm) : null;
    return pool.volume(vm, conf, source, kernel);
  }

  /** The volume a snap_on_start volume snapshots: by its source vid, else up the template chain. */
  private findSource(vm: StorageVm, conf: VolumeConf, depth: number): Volume | null {
    if (depth > 8) throw StoragePoolException(`Volume ${conf.vid}: source chain too long`);
    const candidates: StorageVm[] = [];
    for (let t = this.access.template(vm); t && candidates.length < 8; t = this.access.template(t)) candidates.push(t);
    if (conf.source) {
      const match = (v: StorageVm) =>
        v.volumeConfig.some((d) => {
          const c = parseVolumeConf(d);
          return c.name !== '' && (c.vid ?? `${this.vidPrefix(v)}/${c.name}`) === conf.source && this.effectivePoolName(c) === conf.pool;
        });
      const owner = candidates.find(match) ?? this.app.allVms().find((v) => v !== vm && match(v));
      if (!owner) return null;
      const name = owner.volumeConfig.map(parseVolumeConf).find((c) => (c.vid ?? `${this.vidPrefix(owner)}/${c.name}`) === conf.source)!.name;
      return this.volume(owner, name, depth + 1);
    }
    for (const t of candidates) {
      if (!this.hasVolume(t, conf.name)) return null;
      const src = this.volume(t, conf.name, depth + 1);
      if (!src.snapOnStart) return src;
    }
    return null;
  }

  private save(vm: StorageVm, vol: Volume): void {
    const i = vm.volumeConfig.findIndex((d) => parseVolumeConf(d).name === vol.name);
    const doc = volumeConfDoc(vol.conf);
    if (i >= 0) vm.volumeConfig[i] = doc;
    else vm.volumeConfig.push(doc);
    this.app.markDirty(vm);
  }

  /** End an import (commit when `ok`) and say how it ended; a failed commit is discarded and told as a failure. */
  private async finishImport(vm: StorageVm, v: Volume, ok: boolean): Promise<void> {
    const told = (success: boolean): void =>
      this.fire(vm, 'domain-volume-import-end', [
        ['volume', v.name],
        ['success', py(success)],
      ]);
    try {
      await v.importEnd(ok);
    } catch (e) {
      await v.importEnd(false).catch(() => undefined);
      told(false);
      throw e;
    }
    told(ok);
  }

  private mustBeHalted(vm: StorageVm): void {
    if (!isHalted(vm)) throw QubesVMNotHaltedError(vm.name);
  }

  private noImportRunning(vm: StorageVm, vol: Volume): void {
    if (this.imports.has(vm.name, vol.name)) throw StoragePoolException(`An import into volume ${vol.vid} is in progress`);
  }

  /** Revision ids, oldest first (by timestamp, as Qubes sorts them). */
  async listSnapshots(vm: StorageVm, name: string): Promise<string[]> {
    const revs = await this.volume(vm, name).revisions();
    return [...revs].sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0)).map((r) => r.id);
  }

  async revisionExists(vm: StorageVm, name: string, revision: string): Promise<boolean> {
    return (await this.volume(vm, name).revisions()).some((r) => r.id === revision);
  }

  async revert(vm: StorageVm, name: string, revision: string): Promise<void> {
    await this.locked(vm.name, async () => {
      this.mustBeHalted(vm);
      const v = this.volume(vm, name);
      this.noImportRunning(vm, v);
      await v.revert(revision);
      this.save(vm, v);
    });
  }

  async resize(vm: StorageVm, name: string, size: number): Promise<void> {
    await this.locked(vm.name, async () => {
      const v = this.volume(vm, name);
      this.noImportRunning(vm, v);
      try {
        await v.resize(size);
      } finally {
        this.save(vm, v);
      }
    });
  }

  /** admin.vm.volume.Clear: import empty data of the same size. */
  async clear(vm: StorageVm, name: string): Promise<void> {
    await this.locked(vm.name, async () => {
      this.mustBeHalted(vm);
      const v = this.volume(vm, name);
      this.noImportRunning(vm, v);
      const size = await v.size();
      await v.importBegin(size);
      this.fire(vm, 'domain-volume-import-begin', [
        ['volume', name],
        ['size', String(size)],
      ]);
      await this.finishImport(vm, v, true);
      this.save(vm, v);
    });
  }

  async setRevisionsToKeep(vm: StorageVm, name: string, value: number): Promise<void> {
    if (value < -1) throw QubesValueError('Invalid value for revisions_to_keep');
    const v = this.volume(vm, name);
    const current = v.revisionsToKeep;
    const toggling = value !== current && (current === -1 || value === -1);
    if (toggling && !isHalted(vm)) throw QubesVMNotHaltedError(vm.name);
    if (toggling && vm.klass === 'AppVM') {
      for (const d of this.app.allVms()) {
        if (d.klass === 'DispVM' && this.access.template(d) === vm && !isHalted(d)) throw QubesVMNotHaltedError(d.name);
      }
    }
    v.setRevisionsToKeep(value);
    let set = this.revisionsSet.get(vm);
    if (!set) this.revisionsSet.set(vm, (set = new Map()));
    set.set(name, value);
    this.save(vm, v);
  }

  setRw(vm: StorageVm, name: string, value: boolean): void {
    this.mustBeHalted(vm);
    const v = this.volume(vm, name);
    v.setRw(value);
    this.save(vm, v);
  }

  setEphemeral(vm: StorageVm, name: string, value: boolean): void {
    const v = this.volume(vm, name);
    v.setEphemeral(value);
    this.save(vm, v);
  }

  // ---- clone -------------------------------------------------------------

  /** admin.vm.volume.CloneFrom: a one-time token naming this volume. */
  cloneFrom(vm: StorageVm, name: string): string {
    const v = this.volume(vm, name);
    return this.clones.issue({ vm: vm.name, volume: name, pool: v.pool.name, vid: v.vid });
  }

  /** admin.vm.volume.CloneTo: the token is spent whatever happens next. */
  async cloneTo(vm: StorageVm, name: string, token: string): Promise<CopyMethod | null> {
    const src = this.clones.take(token);
    if (!this.pools.get(src.pool)) throw QubesPoolNotFoundError();
    const srcVm = this.app.getVm(src.vm);
    if (!srcVm || !this.hasVolume(srcVm, src.volume)) throw QubesVolumeNotFoundError();
    const srcVol = this.volume(srcVm, src.volume);
    if (srcVol.pool.name !== src.pool || srcVol.vid !== src.vid) throw QubesVolumeNotFoundError();
    return this.locked(vm.name, async () => {
      const dst = this.volume(vm, name);
      const srcRunning = !isHalted(srcVm);
      if (srcRunning && srcVol.snapshotsDisabled) throw StoragePoolException(`Volume ${srcVol.vid} must be stopped before importing its data`);
      this.mustBeHalted(vm);
      this.noImportRunning(vm, dst);
      const method = await dst.importVolume(srcVol, srcRunning);
      this.fire(vm, 'domain-import-volume', [
        ['name', name],
        ['source', srcVol.vid],
      ]);
      this.save(vm, dst);
      return method;
    });
  }

  // ---- import (internal.vm.volume.ImportBegin / ImportEnd) ---------------

  /** Prepare a file for new data; `size` null keeps the volume's size (a function is evaluated once the qube is known halted). */
  async importBegin(vm: StorageVm, name: string, size: number | null | (() => number | null)): Promise<{ size: number; path: string }> {
    return this.locked(vm.name, async () => {
      this.mustBeHalted(vm);
      const requested = typeof size === 'function' ? size() : size;
      const v = this.volume(vm, name);
      this.noImportRunning(vm, v);
      const target = requested ?? (await v.size());
      const file = await v.importBegin(target);
      if (/\s/.test(file)) {
        await v.importEnd(false);
        throw ProtocolError('Path contains whitespace');
      }
      this.imports.begin(vm.name, name, { size: target, path: file });
      this.fire(vm, 'domain-volume-import-begin', [
        ['volume', name],
        ['size', String(target)],
      ]);
      return { size: target, path: file };
    });
  }

  /** Commit (success) or discard the prepared data. On failure, `error` is the writer's reason. */
  async importEnd(vm: StorageVm, name: string, success: boolean, error = ''): Promise<void> {
    await this.locked(vm.name, async () => {
      const state = this.imports.end(vm.name, name);
      if (!state) throw StoragePoolException(`No import in progress for volume ${name} of ${vm.name}`);
      const v = this.volume(vm, name);
      let ok = success;
      let reason = error;
      if (ok) {
        const actual = await fileSize(state.path);
        if (actual !== state.size) {
          ok = false;
          reason = `size of imported data is ${actual ?? 'unknown'}, expected ${state.size} bytes`;
        }
      }
      await this.finishImport(vm, v, ok);
      if (ok) this.save(vm, v);
      else throw QubesException(`Data import failed: ${reason}`);
    });
  }

  /** Is an import into this volume between ImportBegin and ImportEnd? */
  importInProgress(vm: StorageVm, name: string): boolean {
    return this.imports.has(vm.name, name);
  }

  // ---- export (admin.vm.volume.Export) ----------------------------------

  /** The committed image, open for reading, and its size. Under the qube's
   * lock, so that no revert or commit is half done; once open, later
   * renames cannot change what is read. */
  async openExport(vm: StorageVm, name: string): Promise<{ fh: fsp.FileHandle; size: number }> {
    return this.locked(vm.name, async () => {
      const v = this.volume(vm, name);
      const running = !isHalted(vm);
      if (running && v.snapshotsDisabled) throw StoragePoolException(`Volume ${v.vid} must be stopped before exporting its data`);
      const file = await v.exportPath(running);
      let fh: fsp.FileHandle;
      try {
        fh = await fsp.open(file, 'r');
      } catch {
        throw StoragePoolException(`Volume ${v.vid} has no data to export`);
      }
      try {
        return { fh, size: (await fh.stat()).size };
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
    });
  }

  // ---- qube life cycle ---------------------------------------------------

  /** Create the volumes of a new qube (admin.vm.Create*, a new disposable). */
  async createVolumes(vm: StorageVm, placement: Placement = {}): Promise<void> {
    if (placement.pool && placement.pools && Object.keys(placement.pools).length) {
      throw ProtocolError("Conflicting options specified: 'pool=', 'pool:volume='");
    }
    for (const p of [placement.pool, ...Object.values(placement.pools ?? {})]) {
      if (p !== undefined && !this.pools.get(p)) throw QubesException(`Unknown storage pool ${p}`);
    }
    const confs = vm.volumeConfig.length ? vm.volumeConfig.map(parseVolumeConf) : this.defaultConfs(vm);
    const created: Volume[] = [];
    try {
      const built: Volume[] = [];
      for (const raw of confs) {
        const c = { ...raw };
        if (vm.klass === 'DispVM' && !vm.volumeConfig.length) this.inheritFromAppVm(vm, c);
        if (c.snapOnStart && !c.source) this.takeFromSource(vm, c);
        if (placement.pool && !c.snapOnStart && c.rw) c.pool = placement.pool;
        else if (!placement.pool && placement.pools && placement.pools[c.name] !== undefined) {
          if (c.snapOnStart) {
            throw QubesException(
              `Snapshot volume ${c.name} must be in the same pool as its origin (${c.name} volume of template),cannot move to pool ${placement.pools[c.name]} `,
            );
          }
          c.pool = placement.pools[c.name];
        }
        if (!c.pool) c.pool = this.defaultPoolName(c.name);
        const pool = this.pools.get(c.pool);
        if (!pool) throw QubesException(`Unknown storage pool ${c.pool}`);
        const full = pool.initConf(c, this.slot(vm));
        if (full.vid && !(pool instanceof KernelPool)) pathInPool(pool.dirPath, full.vid); // refuse escaping names early
        built.push(pool.volume(vm, full, null, pool instanceof KernelPool ? this.access.kernel(vm) : null));
      }
      for (const v of built) {
        this.assertNotShared(vm, v);
        await v.create();
        created.push(v);
      }
      vm.volumeConfig = built.map((v) => volumeConfDoc(v.conf));
      this.revisionsSet.delete(vm);
      this.app.markDirty(vm);
    } catch (e) {
      for (const v of created.reverse()) await v.remove().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Qubes' template_changed_update_storage, on every property-set:template
   * (the same template again included): each volume the qube's class
   * snapshots from its template (an AppVM's root; a disposable's root and
   * private) gets the class's default configuration back, with source, pool
   * and size from the new template chain, so that the next start snapshots
   * the new template. The qube's disposables follow. Nothing on disk: a
   * snapshot volume's image is made at start. A qube whose volumes are not
   * made yet is left to createVolumes.
   */
  private templateChanged(vm: StorageVm, depth = 0): void {
    if (!vm.volumeConfig.length || depth > 8) return;
    for (const d of this.defaultConfs(vm)) {
      if (!d.snapOnStart) continue;
      const c = { ...d };
      this.takeFromSource(vm, c);
      const pool = this.pools.mustGet(c.pool!); // takeFromSource gave the source's pool, or threw
      const doc = volumeConfDoc(pool.initConf(c, this.slot(vm)));
      const i = vm.volumeConfig.findIndex((x) => parseVolumeConf(x).name === c.name);
      if (i >= 0) vm.volumeConfig[i] = doc;
      else vm.volumeConfig.push(doc);
      this.revisionsSet.get(vm)?.delete(c.name);
    }
    this.app.markDirty(vm);
    for (const d of this.app.allVms()) if (d !== vm && this.access.template(d) === vm) this.templateChanged(d, depth + 1);
  }

  private defaultConfs(vm: StorageVm): VolumeConf[] {
    return (defaultVolumes(vm.klass) ?? []).map((t) => ({
      name: t.name,
      rw: t.rw,
      saveOnStop: t.saveOnStop,
      snapOnStart: t.snapOnStart,
      size: t.size ?? 0,
      extra: [],
    }));
  }

  /** A disposable takes pool, rw and an explicit ephemeral setting of its AppVM's same-named volume (qubes/vm/dispvm.py). */
  private inheritFromAppVm(vm: StorageVm, c: VolumeConf): void {
    const t = this.access.template(vm);
    if (!t || !this.hasVolume(t, c.name)) return;
    const src = this.volume(t, c.name);
    if (!c.pool) c.pool = src.pool.name;
    c.rw = src.rw;
    if (src.conf.ephemeral !== undefined) c.ephemeral = src.conf.ephemeral;
  }

  /** Qubes' _update_volume_config_source: source, pool and size from the template chain. */
  private takeFromSource(vm: StorageVm, c: VolumeConf): void {
    let t = this.access.template(vm);
    for (let i = 0; t && i < 8; i++) {
      if (!this.hasVolume(t, c.name)) break;
      const src = this.volume(t, c.name);
      c.source = src.vid;
      c.pool = src.pool.name;
      c.size = src.conf.size;
      if (!src.snapOnStart) return;
      t = this.access.template(t);
    }
    if (!c.source) throw StoragePoolException(`snap_on_start specified on '${c.name}' but no volume source set`);
  }

  /** A volume id another qube already uses must never be created over or removed. */
  private sharedWith(vm: StorageVm, v: Volume): StorageVm | null {
    if (v.pool instanceof KernelPool) return null;
    for (const other of this.app.allVms()) {
      if (other === vm || other.name === vm.name) continue;
      for (const doc of other.volumeConfig) {
        const c = frozenConf(doc);
        const poolName = this.effectivePoolName(c);
        if (poolName !== v.pool.name) continue;
        const vid = c.vid ?? `${this.vidPrefix(other)}/${c.name}`;
        if (vid === v.vid || (c.snapOnStart && c.source === v.vid)) return other;
      }
    }
    return null;
  }

  private assertNotShared(vm: StorageVm, v: Volume): void {
    const other = this.sharedWith(vm, v);
    if (other) throw StoragePoolException(`Volume ${v.pool.name}:${v.vid} is already used by qube ${other.name}`);
  }

  /** Remove a qube's volumes from disk (passed to QubesApp.removeVmWithFiles). */
  async removeVolumes(vm: StorageVm): Promise<void> {
    await this.locked(vm.name, async () => {
      const dirs = new Set<string>();
      const errors: string[] = [];
      for (const name of this.volumeNames(vm)) {
        let v: Volume;
        try {
          v = this.volume(vm, name);
        } catch (e) {
          errors.push(`${name}: ${(e as Error).message}`);
          continue;
        }
        this.imports.end(vm.name, name);
        if (this.sharedWith(vm, v)) {
          this.opts.log?.(`not removing ${v.pool.name}:${v.vid}: used by another qube`);
          continue;
        }
        try {
          await v.remove();
        } catch (e) {
          errors.push(`${name}: ${(e as Error).message}`);
        }
        if (v.pool instanceof DirPool) dirs.add(path.join(v.pool.dirPath, this.vidPrefix(vm)));
      }
      for (const d of dirs) await removeEmptyDir(d);
      this.clones.forgetQube(vm.name);
      if (errors.length) this.opts.log?.(`errors removing volumes of ${vm.name}: ${errors.join('; ')}`);
    });
  }

  /** Qubes' storage.verify for the volumes, before a start: each has what it starts from. */
  async verifyVolumes(vm: StorageVm): Promise<void> {
    for (const n of this.volumeNames(vm)) await this.volume(vm, n).verify();
  }

  /** Prepare every volume for a starting qube; returns its disks. Undoes what it did on failure. */
  async startVolumes(vm: StorageVm): Promise<BlockDevice[]> {
    return this.locked(vm.name, async () => {
      const vols = this.volumeNames(vm).map((n) => this.volume(vm, n));
      for (const v of vols) {
        this.noImportRunning(vm, v);
        if (v.source && v.source.snapshotsDisabled && !isHalted(v.source.vm)) {
          throw StoragePoolException(`Volume ${v.source.vid} is running`);
        }
      }
      const started: Volume[] = [];
      try {
        for (const v of vols) {
          await v.start();
          started.push(v);
        }
      } catch (e) {
        for (const v of started.reverse()) await v.stop().catch(() => undefined);
        throw e;
      }
      const out: BlockDevice[] = [];
      for (const v of vols) {
        const p = v.blockDevice();
        if (p) out.push({ name: v.name, path: p, rw: v.rw });
      }
      return out;
    });
  }

  /** Commit or discard each volume of a stopped qube. */
  async stopVolumes(vm: StorageVm): Promise<void> {
    await this.locked(vm.name, async () => {
      const errors: Error[] = [];
      for (const n of this.volumeNames(vm)) {
        try {
          const v = this.volume(vm, n);
          await v.stop();
          this.save(vm, v);
        } catch (e) {
          errors.push(e as Error);
        }
      }
      if (errors.length) throw errors[0];
    });
  }
}

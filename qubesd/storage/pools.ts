// Storage pools and their drivers. A pool's configuration is the <pool>
// element of qubes.xml; the drivers are those Qubes lists, of which `file`,
// `file-reflink` and `linux-kernel` work here (the others are listed, kept
// when found in a store, and refused when added).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { QubesError, QubesException, QubesNotImplementedError, QubesValueError, StoragePoolException, pyRepr } from '../errors.js';
import type { PoolDoc } from '../store/document.js';
import { pyBool, type VolumeConf } from './config.js';
import { ensureDir, fsUsage, supportsReflink, type CopyMethod } from './fileops.js';
import type { StorageVm } from './model-view.js';
import { isSafeComponent, isWithin, realpathLoose } from './paths.js';
import { FileVolume, KernelVolume, ReflinkVolume, type Volume, type VolumePool } from './volumes.js';
import { systemErrorWords } from '../../lib/system-error.js';

/** A driver's constructor parameters, as admin.pool.ListDrivers shows them: name -> required? */
export interface DriverInfo {
  readonly name: string;
  readonly params: ReadonlyArray<readonly [string, boolean]>;
  readonly supported: boolean;
}

/** Qubes 4.x drivers, in the order and with the parameters Qubes reports. */
export const DRIVERS: readonly DriverInfo[] = Object.freeze([
  { name: 'callback', params: [['conf_id', true]], supported: false },
  {
    name: 'file',
    params: [
      ['revisions_to_keep', false],
      ['dir_path', true],
      ['ephemeral_volatile', false],
    ],
    supported: true,
  },
  {
    name: 'file-reflink',
    params: [
      ['revisions_to_keep', false],
      ['dir_path', true],
      ['setup_check', false],
      ['ephemeral_volatile', false],
    ],
    supported: true,
  },
  { name: 'linux-kernel', params: [['dir_path', true]], supported: true },
  {
    name: 'lvm_thin',
    params: [
      ['revisions_to_keep', false],
      ['volume_group', true],
      ['thin_pool', true],
      ['ephemeral_volatile', false],
    ],
    supported: false,
  },
  {
    name: 'zfs',
    params: [
      ['revisions_to_keep', false],
      ['container', true],
      ['ephemeral_volatile', false],
      ['snap_on_start_forensics', false],
    ],
    supported: false,
  },
] as const);

export function driverInfo(name: string): DriverInfo | undefined {
  return DRIVERS.find((d) => d.name === name);
}

/** Python's qubes.utils.parse_bool, as pool options are parsed. */
function parsePoolBool(v: string, what: string): boolean {
  if (v === 'True' || v === '1' || v === 'on') return true;
  if (v === 'False' || v === '0' || v === 'off' || v === '') return false;
  throw QubesValueError(`Invalid value for ${what}: ${JSON.stringify(v)} (expected True or False)`);
}

function parseRevisions(v: string): number {
  if (!/^-?\d{1,9}$/.test(v)) throw QubesValueError(`Invalid value for revisions_to_keep: ${JSON.stringify(v)} (expected an integer)`);
  const n = Number(v);
  if (n < -1) throw QubesValueError('Invalid value for revisions_to_keep');
  return n;
}

function parseDirPath(v: string): string {
  if (!v.startsWith('/') || /[\x00-\x1f\x7f]/.test(v)) throw QubesValueError(`Invalid dir_path ${JSON.stringify(v)}: must be an absolute path`);
  return path.normalize(v).replace(/(.)\/+$/, '$1');
}

export interface PoolContext {
  noteCopy(src: string, dst: string, method: CopyMethod): void;
}

/** What a pool may use to place a new volume. */
export interface VolumeSlot {
  vm: StorageVm;
  /** vid prefix by qube class: vm-templates/<name> or appvms/<name> */
  vidPrefix: string;
}

export abstract class Pool implements VolumePool {
  abstract readonly driver: string;
  abstract readonly pythonClass: string;
  abstract readonly pythonVolumeClass: string;
  revisionsToKeep = 1;
  ephemeralVolatile = false;

  constructor(
    readonly name: string,
    readonly dirPath: string,
    protected readonly ctx: PoolContext,
  ) {}

  noteCopy(src: string, dst: string, method: CopyMethod): void {
    this.ctx.noteCopy(src, dst, method);
  }

  /** The <pool> attributes, in Qubes' order. */
  abstract config(): Array<[string, string]>;
  toDoc(): PoolDoc {
    return { attrs: this.config() };
  }

  /** Python's repr() of the pool object, as QubesPoolInUseError shows it. */
  pyRepr(): string {
    return `<${this.pythonClass} object at 0x7f${(hashName(this.name) >>> 0).toString(16).padStart(8, '0')}>`;
  }

  async size(): Promise<number | null> {
    return null;
  }
  async usage(): Promise<number | null> {
    return null;
  }
  async usageDetails(): Promise<Array<[string, number]>> {
    const out: Array<[string, number]> = [];
    const size = await this.size();
    const usage = await this.usage();
    if (size !== null) out.push(['data_size', size]);
    if (usage !== null) out.push(['data_usage', usage]);
    return out;
  }

  /** Qubes' included_in: another pool whose directory holds this one's. */
  includedIn(others: Pool[]): Pool | null {
    const mine = realpathLoose(this.dirPath, fs.realpathSync);
    for (const p of others) {
      if (p === this || !(p instanceof DirPool || p instanceof KernelPool)) continue;
      if (isWithin(realpathLoose(p.dirPath, fs.realpathSync), mine)) return p;
    }
    return null;
  }

  /** Prepare the pool's directory when it is added. */
  abstract setup(): Promise<void>;

  setRevisionsToKeep(value: number): void {
    this.revisionsToKeep = value;
  }
  setEphemeralVolatile(value: boolean): void {
    this.ephemeralVolatile = value;
  }

  /** Fill in what Qubes' init_volume does: vid and revisions_to_keep defaults. */
  abstract initConf(conf: VolumeConf, slot: VolumeSlot): VolumeConf;
  abstract volume(vm: StorageVm, conf: VolumeConf, source: Volume | null, kernel: string | null): Volume;
}

function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** Pools of image files in a directory (`file`, `file-reflink`). */
export abstract class DirPool extends Pool {
  override async size(): Promise<number | null> {
    return (await fsUsage(this.dirPath))?.size ?? 0;
  }
  override async usage(): Promise<number | null> {
    return (await fsUsage(this.dirPath))?.used ?? 0;
  }

  override config(): Array<[string, string]> {
    return [
      ['name', this.name],
      ['dir_path', this.dirPath],
      ['driver', this.driver],
      ['revisions_to_keep', String(this.revisionsToKeep)],
      ['ephemeral_volatile', pyBool(this.ephemeralVolatile)],
    ];
  }

  protected async makeDirs(): Promise<boolean> {
    let created = false;
    try {
      await fsp.mkdir(this.dirPath, { mode: 0o775 });
      created = true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw StoragePoolException(`Cannot create pool directory ${this.dirPath}: its parent directory does not exist`);
      if (code !== 'EEXIST') throw StoragePoolException(`Cannot create pool directory ${this.dirPath}: ${systemErrorWords(e)}`);
      if (!(await fsp.stat(this.dirPath)).isDirectory()) throw StoragePoolException(`Cannot use ${this.dirPath} as a pool directory: not a directory`);
    }
    return created;
  }

  protected async makeSubdirs(): Promise<void> {
    for (const sub of ['appvms', 'vm-templates']) await ensureDir(path.join(this.dirPath, sub));
  }

  override initConf(conf: VolumeConf, slot: VolumeSlot): VolumeConf {
    const c = { ...conf, pool: this.name };
    if (!c.vid) c.vid = `${slot.vidPrefix}/${c.name}`;
    if (c.revisionsToKeep === undefined) c.revisionsToKeep = this.revisionsToKeep;
    return c;
  }
}

export class FilePool extends DirPool {
  readonly driver = 'file';
  readonly pythonClass = 'qubes.storage.file.FilePool';
  readonly pythonVolumeClass = 'FileVolume';

  override setRevisionsToKeep(value: number): void {
    if (value > 1) throw QubesNotImplementedError('FilePool supports maximum 1 volume revision to keep');
    super.setRevisionsToKeep(value);
  }

  override async setup(): Promise<void> {
    await this.makeDirs();
    await this.makeSubdirs();
  }

  override initConf(conf: VolumeConf, slot: VolumeSlot): VolumeConf {
    if (conf.snapOnStart && conf.saveOnStop) throw QubesNotImplementedError('snap_on_start + save_on_stop not supported by file driver');
    const c = super.initConf(conf, slot);
    if (!c.saveOnStop) c.revisionsToKeep = 0;
    return c;
  }

  override volume(vm: StorageVm, conf: VolumeConf, source: Volume | null): Volume {
    return new FileVolume(this, vm, conf, source);
  }
}

export class ReflinkPool extends DirPool {
  readonly driver = 'file-reflink';
  readonly pythonClass = 'qubes.storage.reflink.ReflinkPool';
  readonly pythonVolumeClass = 'ReflinkVolume';
  setupCheck = true;

  override async setup(): Promise<void> {
    const created = await this.makeDirs();
    if (this.setupCheck && !(await supportsReflink(this.dirPath))) {
      if (created) await fsp.rmdir(this.dirPath).catch(() => undefined);
      throw StoragePoolException(
        `The filesystem for ${pyRepr(this.dirPath)} does not support reflinks. If you can live with delays on VM startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option.`,
      );
    }
    await this.makeSubdirs();
  }

  override volume(vm: StorageVm, conf: VolumeConf, source: Volume | null): Volume {
    return new ReflinkVolume(this, vm, conf, source);
  }

  // unlike the file driver (0), a missing directory reports nothing at all
  override async size(): Promise<number | null> {
    return (await fsUsage(this.dirPath))?.size ?? null;
  }
  override async usage(): Promise<number | null> {
    return (await fsUsage(this.dirPath))?.used ?? null;
  }
}

export class KernelPool extends Pool {
  readonly driver = 'linux-kernel';
  readonly pythonClass = 'qubes.storage.kernels.LinuxKernel';
  readonly pythonVolumeClass = 'LinuxModules';
  override revisionsToKeep = 0;

  override config(): Array<[string, string]> {
    return [
      ['name', this.name],
      ['dir_path', this.dirPath],
      ['driver', this.driver],
    ];
  }

  override setRevisionsToKeep(value: number): void {
    if (value) throw QubesValueError('LinuxKernel supports only revisions_to_keep=0');
  }

  override async setup(): Promise<void> {
    /* kernels are installed by packages */
  }

  /** Kernel versions installed in the pool directory. */
  async installed(): Promise<string[]> {
    try {
      return (await fsp.readdir(this.dirPath)).filter(isSafeComponent).sort();
    } catch {
      return [];
    }
  }

  override initConf(conf: VolumeConf): VolumeConf {
    if (conf.saveOnStop) throw QubesNotImplementedError('LinuxKernel pool does not support save_on_stop=True');
    const c = { ...conf, pool: this.name, rw: false, revisionsToKeep: 0 };
    if (c.snapOnStart && !c.source) c.snapOnStart = false;
    return c;
  }

  override volume(vm: StorageVm, conf: VolumeConf, _source: Volume | null, kernel: string | null): Volume {
    return new KernelVolume(this, vm, conf, kernel && isSafeComponent(kernel) ? kernel : null);
  }
}

/** A pool whose driver this qubesd does not run (kept as configured, volumes refused). */
export class ForeignPool extends Pool {
  readonly pythonClass: string;
  readonly pythonVolumeClass: string;
  constructor(
    name: string,
    readonly driver: string,
    private readonly attrs: Array<[string, string]>,
    ctx: PoolContext,
  ) {
    super(name, '', ctx);
    this.pythonClass = `qubes.storage.${driver}.Pool`;
    this.pythonVolumeClass = 'Volume';
  }
  override config(): Array<[string, string]> {
    return this.attrs.map(([k, v]) => [k, v]);
  }
  override async setup(): Promise<void> {
    throw this.unavailable();
  }
  override initConf(): VolumeConf {
    throw this.unavailable();
  }
  override volume(): Volume {
    throw this.unavailable();
  }
  unavailable(): QubesError {
    return StoragePoolException(
      `Pool ${this.name}: storage driver '${this.driver}' is not available in this qubesd (supported: file, file-reflink, linux-kernel)`,
    );
  }
}

/** Build a pool from its stored or requested configuration; validates every parameter. */
export function makePool(driver: string, name: string, params: ReadonlyMap<string, string>, ctx: PoolContext, rawAttrs?: Array<[string, string]>): Pool {
  const info = driverInfo(driver);
  if (!info || !info.supported) {
    if (rawAttrs) return new ForeignPool(name, driver, rawAttrs, ctx);
    throw StoragePoolException(`Storage driver '${driver}' is not supported by this qubesd (supported: file, file-reflink, linux-kernel)`);
  }
  const known = new Set(info.params.map(([k]) => k));
  for (const k of params.keys()) if (!known.has(k)) throw QubesValueError(`Unexpected option ${JSON.stringify(k)} for driver ${driver}`);
  const dir = params.get('dir_path');
  if (dir === undefined) throw QubesException(`missing required driver options: dir_path`);
  const dirPath = parseDirPath(dir);
  let pool: Pool;
  if (driver === 'file') pool = new FilePool(name, dirPath, ctx);
  else if (driver === 'file-reflink') {
    const p = new ReflinkPool(name, dirPath, ctx);
    const sc = params.get('setup_check');
    if (sc !== undefined) p.setupCheck = parsePoolBool(sc, 'setup_check');
    pool = p;
  } else return new KernelPool(name, dirPath, ctx);
  const r = params.get('revisions_to_keep');
  if (r !== undefined) pool.setRevisionsToKeep(parseRevisions(r));
  const ev = params.get('ephemeral_volatile');
  if (ev !== undefined) pool.setEphemeralVolatile(parsePoolBool(ev, 'ephemeral_volatile'));
  return pool;
}

/** A pool from its <pool> element (a store written by Qubes or by us). */
export function poolFromDoc(doc: PoolDoc, ctx: PoolContext): Pool {
  const a = new Map(doc.attrs);
  const name = a.get('name');
  const driver = a.get('driver');
  if (!name) throw new Error('a <pool> in the store has no name');
  if (!driver) throw new Error(`pool ${name} in the store has no driver`);
  // attributes a newer Qubes may have added are kept out of the driver's way
  const known = new Set(driverInfo(driver)?.params.map(([k]) => k) ?? []);
  const params = new Map([...a].filter(([k]) => known.has(k)));
  return makePool(driver, name, params, ctx, doc.attrs);
}

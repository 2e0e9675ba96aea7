// The pools of one app: loaded from the store's <pools>, added and removed
// through the Admin API (saved back to the store as they change), and which
// pool a volume lands in when its config names none (Qubes' default_pool
// properties). The storage manager is its only user.
import * as path from 'node:path';
import { QubesException, QubesPoolInUseError } from '../errors.js';
import { parseVolumeConf, type VolumeConf } from './config.js';
import type { ModelAccess, StorageApp, StorageVm } from './model-view.js';
import { DirPool, KernelPool, makePool, poolFromDoc, type Pool, type PoolContext } from './pools.js';

export class PoolRegistry {
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly app: StorageApp,
    private readonly access: ModelAccess,
    private readonly baseDir: string,
    private readonly ctx: PoolContext,
    private readonly vidPrefix: (vm: StorageVm) => string,
  ) {
    for (const doc of app.pools) {
      const pool = poolFromDoc(doc, ctx);
      this.pools.set(pool.name, pool);
    }
  }

  names(): string[] {
    return [...this.pools.keys()];
  }
  get(name: string): Pool | undefined {
    return this.pools.get(name);
  }
  all(): Pool[] {
    return [...this.pools.values()];
  }

  private savePools(): void {
    this.app.pools = this.all().map((p) => p.toDoc());
    this.app.markGlobalsDirty();
  }

  /** Add a pool (parameters already checked against the driver's list by the caller). */
  async add(driver: string, name: string, params: ReadonlyMap<string, string>): Promise<Pool> {
    if (this.pools.has(name)) throw QubesException(`pool named ${name} already exists \n`);
    const pool = makePool(driver, name, params, this.ctx);
    await pool.setup();
    this.pools.set(name, pool);
    this.savePools();
    this.app.events?.fire('', 'pool-add', [['pool', name]]);
    return pool;
  }

  async remove(name: string): Promise<void> {
    const pool = this.pools.get(name);
    if (!pool) return;
    for (const vm of this.app.allVms()) {
      for (const doc of vm.volumeConfig) {
        if (this.effectivePoolName(parseVolumeConf(doc)) === name) throw QubesPoolInUseError(name, `Storage pool is in use: ${pool.pyRepr()}`);
      }
    }
    for (const suffix of ['', '_kernel', '_private', '_root', '_volatile']) {
      if (this.access.globalProperty('default_pool' + suffix) === name) {
        throw QubesPoolInUseError(name, `Storage pool is in use: set as default_pool${suffix}`);
      }
    }
    this.pools.delete(name);
    this.savePools();
    this.app.events?.fire('', 'pool-delete', [['pool', name]]);
  }

  setRevisionsToKeep(name: string, value: number): void {
    this.mustGet(name).setRevisionsToKeep(value);
    this.savePools();
  }

  setEphemeralVolatile(name: string, value: boolean): void {
    this.mustGet(name).setEphemeralVolatile(value);
    this.savePools();
  }

  /** The pool of that name (QubesException when there is none). */
  mustGet(name: string): Pool {
    const p = this.pools.get(name);
    if (!p) throw QubesException(`Unknown storage pool ${name}`);
    return p;
  }

  /** Volume ids in a pool, as admin.pool.volume.List lists them. */
  async volumeIds(name: string): Promise<string[]> {
    const pool = this.mustGet(name);
    if (pool instanceof KernelPool) {
      const ids = new Set(await pool.installed());
      for (const vm of this.app.allVms()) {
        for (const doc of vm.volumeConfig) {
          if (this.effectivePoolName(parseVolumeConf(doc)) !== name) continue;
          const k = this.access.kernel(vm);
          if (k) ids.add(k);
        }
      }
      return [...ids].sort();
    }
    const ids: string[] = [];
    for (const vm of this.app.vmsByArrival()) {
      for (const doc of vm.volumeConfig) {
        const conf = parseVolumeConf(doc);
        if (this.effectivePoolName(conf) !== name) continue;
        ids.push(conf.vid ?? `${this.vidPrefix(vm)}/${conf.name}`);
      }
    }
    return ids;
  }

  /** The pool a new volume of this name goes to: default_pool_<name>, default_pool, Qubes' fallback. */
  defaultPoolName(volumeName: string): string {
    if (['root', 'private', 'volatile', 'kernel'].includes(volumeName)) {
      const v = this.access.globalProperty(`default_pool_${volumeName}`);
      if (v && this.pools.has(v)) return v;
    }
    const dp = this.access.globalProperty('default_pool');
    if (dp && this.pools.has(dp)) return dp;
    if (this.pools.has('default')) return 'default';
    for (const p of this.pools.values()) {
      if (p instanceof DirPool && path.resolve(p.dirPath) === this.baseDir) return p.name;
    }
    throw QubesException('Cannot determine default storage pool');
  }

  /** The pool a volume is in: its own, else the default for its name (none when no default can be found). */
  effectivePoolName(conf: VolumeConf): string | undefined {
    if (conf.pool) return conf.pool;
    try {
      return this.defaultPoolName(conf.name);
    } catch {
      return undefined;
    }
  }
}

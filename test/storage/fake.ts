// A minimal app for storage tests: the storage layer only needs the
// structural StorageApp/StorageVm view, so these tests do not depend on the
// rest of the model. Real files in a temporary directory.
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PoolDoc, VolumeConfigDoc } from '../../qubesd/store/document.js';
import { StorageManager } from '../../qubesd/storage/index.js';
import type { StorageApp, StorageVm, Placement } from '../../qubesd/storage/index.js';
import { QubesApp } from '../../qubesd/model/app.js';

export class FakeVm implements StorageVm {
  power = 'Halted';
  volumeConfig: VolumeConfigDoc[] = [];
  constructor(
    readonly name: string,
    readonly klass: string,
    public template: FakeVm | null = null,
    public kernel: string | null = null,
  ) {}
}

export class FakeApp implements StorageApp {
  pools: PoolDoc[];
  vms = new Map<string, FakeVm>();
  dirty = new Set<string>();
  globalsDirty = 0;
  /** the manager under test (makeEnv sets it): qubes get and lose their volumes through it */
  storage: StorageManager | null = null;
  props = new Map<string, string>();
  events = {
    fired: [] as Array<[string, string, ReadonlyArray<readonly [string, string]>]>,
    fire(s: string, e: string, kw: ReadonlyArray<readonly [string, string]> = []) {
      this.fired.push([s, e, kw]);
    },
  };
  constructor(readonly baseDir: string) {
    this.pools = QubesApp.freshDoc({ baseDir }).pools;
    this.props.set('default_pool_kernel', 'linux-kernel');
    this.vms.set('dom0', new FakeVm('dom0', 'AdminVM'));
    this.vms.get('dom0')!.power = 'Running';
  }
  markDirty(vm: StorageVm): void {
    this.dirty.add(vm.name);
  }
  markGlobalsDirty(): void {
    this.globalsDirty++;
  }
  getVm(name: string): FakeVm | undefined {
    return this.vms.get(name);
  }
  allVms(): FakeVm[] {
    return [...this.vms.values()].sort((a, b) => (a.klass === 'AdminVM' ? -1 : b.klass === 'AdminVM' ? 1 : a.name < b.name ? -1 : 1));
  }
  vmsByArrival(): IterableIterator<FakeVm> {
    return this.vms.values();
  }
  globalValue(name: string): string | null {
    return this.props.get(name) ?? null;
  }
  /** add a qube and create its volumes through the storage manager */
  async addVm(name: string, klass: string, template: FakeVm | null = null, placement: Placement = {}): Promise<FakeVm> {
    const vm = new FakeVm(name, klass, template, klass === 'AdminVM' ? null : '6.1.0');
    this.vms.set(name, vm);
    try {
      await this.storage!.createVolumes(vm, placement);
    } catch (e) {
      this.vms.delete(name);
      throw e;
    }
    return vm;
  }
  async removeVm(vm: FakeVm): Promise<void> {
    await this.storage!.removeVolumes(vm);
    this.vms.delete(vm.name);
  }
}

export interface Env {
  dir: string;
  base: string;
  app: FakeApp;
  m: StorageManager;
  cleanup(): void;
}

export function makeEnv(prefix = 'storage-test-'): Env {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const base = join(dir, 'base');
  mkdirSync(join(base, 'vm-kernels', '6.1.0'), { recursive: true });
  const app = new FakeApp(base);
  const m = new StorageManager(app, { baseDir: base });
  app.storage = m;
  return { dir, base, app, m, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function attrsOf(vm: StorageVm, volume: string): Map<string, string> {
  const doc = vm.volumeConfig.find((d) => d.attrs.some(([k, v]) => k === 'name' && v === volume));
  return new Map(doc?.attrs ?? []);
}

export function parseInfo(text: string): Map<string, string> {
  return new Map(
    text
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]),
  );
}

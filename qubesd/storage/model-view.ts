// The storage layer's view of the model: the few things it reads and writes
// on qubes and on the app. Kept structural (no import of the model's classes)
// so that the storage layer can be built and tested on its own; the model's
// QubesApp and Vm satisfy these interfaces.
import type { PoolDoc, VolumeConfigDoc } from '../store/document.js';

export interface StorageVm {
  readonly name: string;
  /** AdminVM, AppVM, DispVM, StandaloneVM, TemplateVM, RemoteVM */
  readonly klass: string;
  /** libvirt-style power state; only 'Halted' counts as stopped */
  readonly power: string;
  /** raw <volume-config>; the storage layer owns its content */
  volumeConfig: VolumeConfigDoc[];
}

export interface StorageApp {
  pools: PoolDoc[];
  markDirty(vm: StorageVm): void;
  markGlobalsDirty(): void;
  getVm(name: string): StorageVm | undefined;
  allVms(): StorageVm[];
  /** loaded, then created: the order of a pool's volume list */
  vmsByArrival(): Iterable<StorageVm>;
  readonly events?: {
    fire(subject: string, event: string, kwargs?: ReadonlyArray<readonly [string, string]>): void;
    /** (optional: a test's app may have no bus to listen to) */
    subscribe?(listener: (subject: string, event: string) => void): unknown;
  };
}

/** Where a new qube's volumes go (admin.vm.CreateInPool): never both. */
export interface Placement {
  pool?: string;
  pools?: Record<string, string>;
}

/**
 * Model facts the storage layer needs but does not own. The defaults read
 * them off the objects structurally (vm.template, vm.prop('kernel'),
 * app.globalValue(name))
 * so that the model's classes work as they are; the StorageManager's options accept
 * replacements.
 */
export interface ModelAccess {
  /** the qube's template (AppVM, DispVM), or null */
  template(vm: StorageVm): StorageVm | null;
  /** the qube's effective kernel version; '' or null for none */
  kernel(vm: StorageVm): string | null;
  /** a global property's value as text, or undefined when unset/unknown */
  globalProperty(name: string): string | undefined;
}

type Loose = Record<string, unknown>;

function readMaybe(obj: unknown, key: string): unknown {
  if (obj === null || typeof obj !== 'object') return undefined;
  const o = obj as Loose;
  // the model's accessors: Vm.prop(name), QubesApp.globalValue(name)
  const getter = o['prop'] ?? o['globalValue'] ?? o['getProperty'];
  if (typeof getter === 'function') {
    try {
      const v = (getter as (k: string) => unknown).call(obj, key);
      if (v !== undefined) return v;
    } catch {
      /* unset property without default */
    }
  }
  return o[key];
}

function asText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && typeof (v as Loose)['name'] === 'string') return (v as Loose)['name'] as string;
  return String(v);
}

export function defaultModelAccess(app: StorageApp): ModelAccess {
  return {
    template(vm) {
      const t = readMaybe(vm, 'template');
      if (t && typeof t === 'object' && 'volumeConfig' in (t as object)) return t as StorageVm;
      const name = asText(t);
      return name ? (app.getVm(name) ?? null) : null;
    },
    kernel(vm) {
      return asText(readMaybe(vm, 'kernel'));
    },
    globalProperty(name) {
      const v = asText(readMaybe(app, name));
      return v === null ? undefined : v;
    },
  };
}

export function isHalted(vm: StorageVm): boolean {
  return vm.power === 'Halted';
}

// The qubesd domain model: the system (Qubes' qubes.app.Qubes) with its
// qubes, labels, pools and global properties; built from and saved to the
// store's QubesDoc; every Qubes event fired on one bus.
import * as path from 'node:path';
import { rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { EventBus } from '../events/bus.js';
import type { Change, DomainDoc, DomainEntriesChange, LabelDoc, PoolDoc, QubesDoc, VolumeConfigDoc } from '../store/document.js';
import { QubesPropertyValueError, QubesValueError, QubesVMInUseError, QubesVMNotHaltedError, pyRepr } from '../errors.js';
import { Label, LabelSet, DEFAULT_LABELS } from './labels.js';
import { getValue, parseBool, tryGet, type Holder, type PropDef } from './properties.js';
import { GLOBAL_TABLE } from './properties-global.js';
import { TABLES } from './properties-vm.js';
import { Extensions } from './extensions.js';
import { parsePyInt, truthy, wireStr, type Value } from './values.js';
import { Vm } from './vm.js';

export { validateVmName } from './names.js';
export { Vm } from './vm.js';
export { Label } from './labels.js';

export type { PowerState } from './power-state.js';

/** What the host offers (Qubes asks the hypervisor; values are KiB/MiB as Qubes uses them). */
export interface HostInfo {
  /** total host memory in KiB (qubes.app.QubesHost.memory_total) */
  memoryTotalKiB: number;
  /** global maxmem property: memory_total // 1024 (MiB), exact */
  maxmemMiB: number | bigint;
  noCpus: number;
  /** dom0's maxmem (MiB) */
  dom0MaxmemMiB: number;
}

export interface AppOptions {
  baseDir: string;
  /** defaults: the host the conformance data was recorded on */
  host?: Partial<HostInfo>;
}

export interface SystemInfoDomain {
  internal: string | null;
  tags: string[];
  type: string;
  template_for_dispvms: boolean;
  default_dispvm: string | null;
  icon: string;
  label: string;
  guivm: string | null;
  relayvm: string | null;
  transport_rpc: string | null;
  power_state: string;
  uuid: string;
}
export interface SystemInfo {
  domains: Record<string, SystemInfoDomain>;
}

const RECORDED_HOST_MAXMEM = 18014398509481983n;
const DEFAULT_HOST: HostInfo = {
  memoryTotalKiB: Number(RECORDED_HOST_MAXMEM * 1024n),
  maxmemMiB: RECORDED_HOST_MAXMEM,
  noCpus: 42,
  dom0MaxmemMiB: 4096,
};

export const MAX_QID = 10000;
/** What drainChanges() returns when nothing changed (shared, never modified). */
const NO_CHANGES: Change[] = Object.freeze([]) as unknown as Change[];

export class QubesApp implements Holder {
  readonly events = new EventBus();
  readonly baseDir: string;
  readonly host: HostInfo;
  readonly labels = new LabelSet();
  readonly values = new Map<string, Value>();
  readonly table = GLOBAL_TABLE;
  readonly hooks = new Extensions(this);
  pools: PoolDoc[] = [];
  private extra: string[] = [];

  private byName = new Map<string, Vm>();
  private byUuid = new Map<string, Vm>();
  private byQid = new Map<number, Vm>();
  private sorted: Vm[] | null = null;
  /**
   * Changes whenever what admin.vm.List shows changes: a qube added or
   * removed, or a power state (names, classes and uuids never change).
   */
  listVersion = 0;
  /** qubes to store whole (new ones, and changes the store has no smaller record for) */
  private dirty = new Set<Vm>();
  /** qubes of which only properties, features or tags changed: just those go to the store */
  private entries = new Map<Vm, DomainEntriesChange>();
  private removed = new Set<string>();
  private globalsDirty = false;

  private constructor(opts: AppOptions) {
    this.baseDir = opts.baseDir;
    this.host = { ...DEFAULT_HOST, ...opts.host };
  }

  // Holder (the system as a property holder)
  get app(): QubesApp {
    return this;
  }
  get subject(): string {
    return '';
  }
  get className(): string {
    return 'Qubes';
  }
  str(): string {
    return 'Qubes';
  }
  repr(): string {
    return '<qubes.app.Qubes object at 0x7f0000001000>';
  }
  touched(): void {
    this.markGlobalsDirty();
  }

  // ------------------------------------------------------------ construction

  static freshDoc(opts: AppOptions): QubesDoc {
    return {
      labels: DEFAULT_LABELS.map(([i, color, name]) => ({ id: `label-${i}`, color, name })),
      pools: [
        {
          attrs: [
            ['name', 'varlibqubes'],
            ['dir_path', opts.baseDir],
            ['driver', 'file'],
            ['revisions_to_keep', '1'],
            ['ephemeral_volatile', 'False'],
          ],
        },
        {
          attrs: [
            ['name', 'linux-kernel'],
            ['dir_path', path.join(opts.baseDir, 'vm-kernels')],
            ['driver', 'linux-kernel'],
          ],
        },
      ],
      // Qubes' load_initial_values names the kernel pool; without it kernel
      // volumes would go to the default pool, where they cannot be created
      properties: [['default_pool_kernel', 'linux-kernel']],
      domains: [{ id: 'domain-0', klass: 'AdminVM', properties: [['label', 'black']], features: [], tags: [], devices: [], volumeConfig: [], extra: [] }],
      extra: [],
    };
  }

  static fromDoc(doc: QubesDoc, opts: AppOptions): QubesApp {
    const app = new QubesApp(opts);
    for (const l of doc.labels) {
      const m = /^label-(\d+)$/.exec(l.id);
      if (!m) throw new Error(`qubes.xml: label ${pyRepr(l.name)} has an invalid id ${pyRepr(l.id)}`);
      app.labels.add(new Label(Number(m[1]), l.color === '0x555753' ? '0x555555' : l.color, l.name));
    }
    app.pools = doc.pools;
    app.extra = doc.extra;
    const pending: Array<[Vm, DomainDoc]> = [];
    for (const d of doc.domains) {
      const vm = app.vmFromDoc(d);
      if (app.byName.has(vm.name)) throw new Error(`qubes.xml: two qubes named ${pyRepr(vm.name)}`);
      if (app.byQid.has(vm.qid)) throw new Error(`qubes.xml: two qubes with qid ${vm.qid}`);
      app.index(vm);
      pending.push([vm, d]);
    }
    if (!app.byName.has('dom0')) throw new Error('qubes.xml: no AdminVM (dom0)');
    // Qubes' load stages: qube stubs, then global properties, then qube properties
    for (const [k, text] of doc.properties) app.loadProperty(app, k, text, `global property ${pyRepr(k)}`);
    for (const stage of [2, 4]) {
      for (const [vm, d] of pending) {
        for (const [k, text] of d.properties) {
          const def = vm.table.byName.get(k);
          if (def && def.stage === stage) app.loadProperty(vm, k, text, `property ${pyRepr(k)} of ${pyRepr(vm.name)}`);
        }
      }
    }
    for (const [vm, d] of pending) {
      for (const [k, v] of d.features) vm.features.set(k, v);
      for (const t of d.tags) vm.tags.add(t);
      // no label check: Qubes loads a qube without one (admin.vm.property.Reset+label leaves it so)
      const needsTemplate = vm.klass === 'AppVM' || vm.klass === 'DispVM';
      if (needsTemplate && !vm.values.get('template')) throw new Error(`qubes.xml: qube ${pyRepr(vm.name)} has no template`);
    }
    return app;
  }

  private vmFromDoc(d: DomainDoc): Vm {
    const table = TABLES[d.klass];
    if (!table) throw new Error(`qubes.xml: ${d.id} has unknown class ${pyRepr(d.klass)}`);
    const props = new Map(d.properties);
    for (const k of props.keys()) {
      if (!table.byName.has(k) && !(k === 'dispvm_allowed' && d.klass === 'AppVM')) {
        throw new Error(`qubes.xml: property ${pyRepr(k)} not applicable to ${pyRepr(d.klass)}`);
      }
    }
    let ident: { name: string; qid: number; uuid: string };
    if (d.klass === 'AdminVM') {
      ident = { name: 'dom0', qid: 0, uuid: '00000000-0000-0000-0000-000000000000' };
    } else {
      const name = props.get('name');
      const qid = Number(props.get('qid'));
      if (!name) throw new Error(`qubes.xml: ${d.id} has no name`);
      if (!Number.isInteger(qid) || qid < 0 || qid > MAX_QID) throw new Error(`qubes.xml: qube ${pyRepr(name)} has an invalid qid`);
      const uuid = (props.get('uuid') ?? randomUUID()).toLowerCase();
      ident = { name, qid, uuid };
    }
    const vm = new Vm(this, d.klass, table, ident);
    if (d.klass !== 'AdminVM') {
      vm.values.set('name', ident.name);
      vm.values.set('qid', ident.qid);
      vm.values.set('uuid', ident.uuid);
      if (!props.has('uuid')) this.dirty.add(vm);
    }
    const legacy = props.get('dispvm_allowed');
    if (legacy !== undefined && !props.has('template_for_dispvms')) {
      vm.values.set('template_for_dispvms', parseBool(legacy));
      this.dirty.add(vm);
    }
    // owned by the model from now on (the loaded document is not used again)
    vm.volumeConfig = d.volumeConfig;
    vm.devices = d.devices;
    vm.extra = d.extra;
    return vm;
  }

  /** One <property> from qubes.xml, converted to its type (no events, no cross checks). */
  private loadProperty(h: Holder, name: string, text: string, what: string): void {
    const def = h.table.byName.get(name);
    if (!def) throw new Error(`qubes.xml: unknown ${what}`);
    if (def.stateless || (['name', 'qid', 'uuid'].includes(name) && h !== this)) return;
    h.values.set(name, this.parseStored(def, text, what));
  }

  private parseStored(def: PropDef, text: string, what: string): Value {
    const bad = () => new Error(`qubes.xml: ${what} has an invalid value ${pyRepr(text)}`);
    switch (def.py) {
      case 'vm': {
        if (text === '') return null;
        const vm = this.byName.get(text);
        if (!vm) throw new Error(`qubes.xml: ${what} refers to a missing qube ${pyRepr(text)}`);
        return vm;
      }
      case 'label': {
        const key = text.startsWith('label-') ? text.slice(6) : text;
        try {
          return this.labels.get(key);
        } catch {
          throw bad();
        }
      }
      case 'int': {
        const n = parsePyInt(text);
        if (n === null) throw bad();
        return n;
      }
      case 'bool':
        try {
          return parseBool(text);
        } catch {
          throw bad();
        }
      default:
        if (def.name === 'label') {
          try {
            return this.labels.get(text.startsWith('label-') ? text.slice(6) : text);
          } catch {
            throw bad();
          }
        }
        return text;
    }
  }

  private index(vm: Vm): void {
    this.byName.set(vm.name, vm);
    this.byUuid.set(vm.uuid, vm);
    this.byQid.set(vm.qid, vm);
    this.sorted = null;
    this.listVersion++;
  }

  // ------------------------------------------------------------ store

  toDoc(): QubesDoc {
    return {
      labels: this.labelDocs(),
      pools: this.pools,
      properties: this.propertyDocs(),
      domains: this.allVms().map((vm) => vm.toDoc()),
      extra: this.extra,
    };
  }

  private labelDocs(): LabelDoc[] {
    return this.labels.all().map((l) => ({ id: `label-${l.index}`, color: l.color, name: l.name }));
  }

  private propertyDocs(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const def of this.table.list) {
      const v = this.values.get(def.name);
      if (v !== undefined) out.push([def.name, wireStr(v)]);
    }
    return out;
  }

  /** Something changed that the store has not been given yet (drainChanges). */
  get hasPendingChanges(): boolean {
    return this.removed.size !== 0 || this.dirty.size !== 0 || this.entries.size !== 0 || this.globalsDirty;
  }

  drainChanges(): Change[] {
    // most calls change nothing: no new array for those
    if (!this.hasPendingChanges) return NO_CHANGES;
    const out: Change[] = [];
    for (const id of this.removed) out.push({ kind: 'domain-removed', id });
    for (const vm of this.dirty) out.push({ kind: 'domain', doc: vm.toDoc() });
    for (const [vm, c] of this.entries) {
      // whole lists as they are now (marked by an empty one)
      if (c.properties) c.properties = vm.propertyDocs();
      if (c.features) c.features = [...vm.features];
      if (c.tags) c.tags = [...vm.tags];
      out.push(c);
    }
    if (this.globalsDirty) {
      out.push({ kind: 'globals', labels: this.labelDocs(), pools: this.pools, properties: this.propertyDocs(), extra: this.extra });
    }
    this.removed.clear();
    this.dirty.clear();
    this.entries.clear();
    this.globalsDirty = false;
    return out;
  }

  /** The whole qube is to be stored (its devices, volumes or anything else changed). */
  markDirty(vm: Vm): void {
    if (this.byName.get(vm.name) === vm) {
      this.dirty.add(vm);
      this.entries.delete(vm);
    }
  }

  /**
   * What changed of a qube that is in the store already, or null when its
   * change needs no record of its own: a qube not (or no longer) in the
   * model, or one stored whole anyway.
   */
  private entriesOf(vm: Vm): DomainEntriesChange | null {
    if (this.byName.get(vm.name) !== vm || this.dirty.has(vm)) return null;
    let c = this.entries.get(vm);
    if (!c) this.entries.set(vm, (c = { kind: 'domain-entries', id: 'domain-' + vm.qid }));
    return c;
  }
  /** A property of `vm` was set or reset (the whole list is read when the change is drained). */
  markProperties(vm: Vm): void {
    const c = this.entriesOf(vm);
    if (c) c.properties ??= [];
  }
  /** Feature `key` of `vm` now has `value` (null: deleted, which stores the whole list). */
  markFeature(vm: Vm, key: string, value: string | null): void {
    const c = this.entriesOf(vm);
    if (!c || c.features) return;
    if (value === null) {
      c.features = [];
      delete c.setFeatures;
    } else (c.setFeatures ??= []).push([key, value]);
  }
  /** Tag `tag` was added to `vm` (true) or removed (false, which stores the whole list). */
  markTag(vm: Vm, tag: string, added: boolean): void {
    const c = this.entriesOf(vm);
    if (!c || c.tags) return;
    if (!added) {
      c.tags = [];
      delete c.addTags;
    } else (c.addTags ??= []).push(tag);
  }
  markGlobalsDirty(): void {
    this.globalsDirty = true;
  }

  // ------------------------------------------------------------ lookups

  getVm(name: string): Vm | undefined {
    return this.byName.get(name);
  }
  getVmByUuid(uuid: string): Vm | undefined {
    return this.byUuid.get(uuid.toLowerCase());
  }
  getVmByQid(qid: number): Vm | undefined {
    return this.byQid.get(qid);
  }

  /** dom0 first, then by name (Qubes' sort order of qubes) */
  allVms(): Vm[] {
    if (!this.sorted) {
      this.sorted = [...this.byName.values()].sort((a, b) => (a.isAdmin ? -1 : b.isAdmin ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    return this.sorted;
  }

  /**
   * In the order this daemon came to know them: as loaded (qubes.xml's
   * order), then as created. Qubes' file pools list their volumes in this
   * order (each qube's volumes join the pool's list when the qube is loaded
   * or created), which admin.pool.volume.List shows.
   */
  vmsByArrival(): IterableIterator<Vm> {
    return this.byName.values();
  }

  poolNames(): string[] {
    return this.pools.map((p) => p.attrs.find(([k]) => k === 'name')?.[1] ?? '');
  }

  /** getattr(app, name) for a VM-valued global property (None when unset or no default). */
  globalVm(name: string): Vm | null {
    const v = tryGet(this, name);
    return v instanceof Vm ? v : null;
  }

  /** getattr(app, name); raises NoValue like Qubes raises AttributeError. */
  globalValue(name: string): Value {
    return getValue(this, this.table.byName.get(name)!);
  }

  // ------------------------------------------------------------ dependencies

  /**
   * Qubes' get_qube_prop_deps: global VM properties pointing at `vm` (set or
   * default), and qubes' explicitly set VM properties pointing at it.
   */
  propDependencies(vm: Vm, systemProps?: string[], qubeProps?: string[]): { system: string[]; qube: Array<[string, string]> } {
    const system: string[] = [];
    const qube: Array<[string, string]> = [];
    for (const def of this.table.list) {
      if (def.py !== 'vm' || tryGet(this, def.name) !== vm) continue;
      if (systemProps && !systemProps.includes(def.name)) continue;
      system.push(def.name);
    }
    for (const other of this.allVms()) {
      if (other === vm) continue;
      for (const [name, v] of other.values) {
        if (v !== vm) continue;
        if (qubeProps && !qubeProps.includes(name)) continue;
        qube.push([other.name, name]);
      }
    }
    return { system, qube };
  }

  // ------------------------------------------------------------ create / remove

  private newQid(): number {
    for (let i = 1; i < MAX_QID; i++) if (!this.byQid.has(i)) return i;
    throw QubesValueError('Cannot find unused qid!');
  }

  /**
   * Qubes' add_new_vm + the Admin API's created-by tag: build the qube (its
   * setters validate the values), give it the extension tags, add it
   * (domain-add), tag it. The caller creates its volumes.
   */
  addNewVm(klass: string, init: { name: string; label: Label; template?: Vm | null; creator: Vm; dispid?: number }): Vm {
    const table = TABLES[klass];
    if (!table) throw QubesValueError(`unknown qube class ${klass}`);
    if (klass === 'AdminVM') throw QubesPropertyValueError("property 'qid' on AdminVM instance cannot be set");
    if (this.byName.has(init.name)) throw QubesValueError(`A VM named ${init.name} already exists`);
    let template = init.template;
    if (template === undefined && table.byName.has('template')) {
      template = klass === 'DispVM' ? this.globalVm('default_dispvm') : this.globalVm('default_template');
      if (!template) throw QubesValueError('Template for the qube not specified, nor default template set.');
    }
    if (klass === 'DispVM' && template && !truthy(template.prop('template_for_dispvms'))) {
      throw QubesValueError(`template for disposable (${template.name}) needs to be an AppVM with template_for_dispvms=True`);
    }
    const qid = this.newQid();
    let uuid = randomUUID();
    while (this.byUuid.has(uuid)) uuid = randomUUID();
    const vm = new Vm(this, klass, table, { name: init.name, qid, uuid });
    vm.values.set('name', init.name);
    vm.values.set('qid', qid);
    vm.values.set('uuid', uuid);
    vm.values.set('label', init.label);
    if (klass === 'DispVM') vm.values.set('dispid', init.dispid ?? this.newDispid());
    if (template && table.byName.has('template')) {
      const def = table.byName.get('template')!;
      const wanted = def.vmclass ?? 'LocalVM';
      const ok = wanted === 'TemplateVM' ? template.klass === 'TemplateVM' : template.klass !== 'RemoteVM';
      if (!ok) {
        throw QubesPropertyValueError(`wrong VM class: domains[${template.repr()}] is of type ${template.klass} and not ${wanted}`);
      }
      vm.values.set('template', template);
    }
    // QubesVM.__init__ for a new qube: with update checks off for new qubes,
    // it starts with check-updates False (stored as ''), before any event is
    // sent (so none is) and before a disposable takes its template's features
    if (!truthy(this.globalValue('check_updates_vm'))) vm.features.set('check-updates', '');
    this.hooks.domainInit(vm);
    if (klass === 'DispVM' && template) this.inheritFromDispvmTemplate(vm, template);
    this.index(vm);
    this.dirty.add(vm);
    this.events.fire('', 'domain-add', [['vm', vm.name]]);
    vm.addTag('created-by-' + init.creator.name);
    return vm;
  }

  /**
   * A new disposable starts as a copy of its disposable template: the
   * template's explicitly set properties (where the disposable has none),
   * its features (but the preloading bookkeeping) and its tags.
   */
  private inheritFromDispvmTemplate(vm: Vm, template: Vm): void {
    const noClone = new Set(['uuid', 'name', 'qid', 'dispid', 'template']);
    for (const def of vm.table.list) {
      if (noClone.has(def.name) || def.stateless || vm.values.has(def.name)) continue;
      const v = template.values.get(def.name);
      if (v !== undefined && template.table.byName.has(def.name)) vm.values.set(def.name, v);
    }
    for (const [k, v] of template.features) if (!k.startsWith('preload-dispvm')) vm.features.set(k, v);
    for (const t of template.tags) vm.tags.add(t);
  }

  private newDispid(): number {
    const used = new Set(this.allVms().map((v) => Number(v.values.get('dispid') ?? -1)));
    for (;;) {
      const id = 1 + Math.floor(Math.random() * 9999);
      if (!used.has(id)) return id;
    }
  }

  /**
   * The checks of del app.domains[vm]: refuse while running or in use. Fires
   * domain-pre-delete (which Qubes sends before its handlers refuse).
   */
  checkRemovable(vm: Vm): void {
    if (vm.isQubesVM && !vm.isHalted()) throw QubesVMNotHaltedError(vm.name);
    this.events.fire('', 'domain-pre-delete', [['vm', vm.name]]);
    const deps = this.propDependencies(vm);
    if (deps.system.length > 0 || deps.qube.length > 0) {
      throw QubesVMInUseError(vm.name, `Domain is in use: ${pyRepr(vm.name)};  see 'journalctl -u qubesd -e' in dom0 for details`);
    }
    const providing = this.allVms().filter((d) => d !== vm && d.devices.some((x) => x.includes(`backend-domain="${vm.name}"`)));
    if (providing.length) throw QubesVMInUseError(vm.name, 'VM has devices assigned to other VMs: ' + providing.map((d) => d.name).join(', '));
  }

  /** The qube leaves the model (after checkRemovable); fires domain-delete. */
  forgetVm(vm: Vm): void {
    this.byName.delete(vm.name);
    this.byUuid.delete(vm.uuid);
    this.byQid.delete(vm.qid);
    this.sorted = null;
    this.listVersion++;
    this.dirty.delete(vm);
    this.entries.delete(vm);
    this.removed.add('domain-' + vm.qid);
    this.events.fire('', 'domain-delete', [['vm', vm.name]]);
  }

  /** del app.domains[vm] */
  removeVm(vm: Vm): void {
    this.checkRemovable(vm);
    this.forgetVm(vm);
  }

  /**
   * Remove a qube and everything it has on disk, as admin.vm.Remove does and
   * as a stopped disposable is cleaned up: its volumes (`removeVolumes`, the
   * storage layer's, passed by the caller), then the qube, then its directory.
   * Refusals come before anything is touched; files that cannot be removed
   * do not keep the qube (as Qubes).
   */
  async removeVmWithFiles(vm: Vm, removeVolumes?: (vm: Vm) => Promise<void>): Promise<void> {
    this.checkRemovable(vm);
    try {
      await removeVolumes?.(vm);
    } catch {
      /* Qubes removes the qube even when its files cannot be */
    }
    this.forgetVm(vm);
    this.events.fire(vm.name, 'domain-remove-from-disk');
    if (vm.dirPath) await rm(vm.dirPath, { recursive: true, force: true });
  }

  // ------------------------------------------------------------ policy input

  systemInfo(): SystemInfo {
    const domains: Record<string, SystemInfoDomain> = {};
    for (const vm of this.allVms()) {
      const label = vm.label;
      const dd = vm.has('default_dispvm') ? vm.vmProp('default_dispvm') : null;
      const guivm = vm.has('guivm') ? vm.vmProp('guivm') : null;
      const relayvm = vm.has('relayvm') ? vm.vmProp('relayvm') : null;
      const transport = vm.has('transport_rpc') ? tryGet(vm, 'transport_rpc') : null;
      domains[vm.name] = {
        internal: vm.features.get('internal') ?? null,
        tags: [...vm.tags],
        type: vm.klass,
        template_for_dispvms: truthy(vm.has('template_for_dispvms') ? tryGet(vm, 'template_for_dispvms') : false),
        default_dispvm: dd ? dd.name : null,
        icon: vm.isAdmin ? 'adminvm-black' : (SYSINFO_ICON_PREFIX[vm.klass] ?? 'appvm-') + (label?.name ?? ''),
        label: label?.name ?? '',
        guivm: guivm ? guivm.name : null,
        relayvm: relayvm ? relayvm.name : null,
        transport_rpc: truthy(transport) ? String(transport) : null,
        power_state: vm.power,
        uuid: vm.uuid,
      };
    }
    return { domains };
  }
}

/** Icon names the policy engine sees, by class (as in the policy conformance data). */
const SYSINFO_ICON_PREFIX: Record<string, string> = {
  TemplateVM: 'templatevm-',
  StandaloneVM: 'standalonevm-',
  DispVM: 'dispvm-',
};

export type { Value } from './values.js';
export type { VolumeConfigDoc };

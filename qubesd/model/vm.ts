// One qube: its properties (through the class's property table), features,
// tags and the raw parts of its qubes.xml entry that other layers own
// (volume config, devices). Features and tags fire Qubes' events.
import * as path from 'node:path';
import type { DomainDoc, VolumeConfigDoc } from '../store/document.js';
import { QubesFeatureNotFoundError, QubesTagNotFoundError, QubesValueError } from '../errors.js';
import { fire, getValue, NoValue, tryGet, type Holder, type PropTable } from './properties.js';
import { pyStr, wireStr, type Value } from './values.js';
import type { QubesApp, PowerState } from './app.js';
import type { Label } from './labels.js';
import { readVolatileState } from './volatile-reads.js';

/** Feature values as Qubes stores them: str(value), booleans as '1'/''. */
function featureText(v: Value | undefined): string {
  if (v === null || v === undefined || typeof v === 'boolean') return v ? '1' : '';
  return typeof v === 'string' ? v : pyStr(v);
}

const TAG_CHARS = /^[a-zA-Z0-9_-]*$/;

/** What the hypervisor reports of a running qube (Vm.runtime). */
export interface VmRuntime {
  xid: number;
  startTime: string | null;
  memKiB: number;
  cputime: number;
}

export class Vm implements Holder {
  readonly name: string;
  readonly qid: number;
  readonly uuid: string;
  readonly values = new Map<string, Value>();
  readonly features = new Map<string, string>();
  readonly tags = new Set<string>();
  private powerState: PowerState;
  private readonly runtimeState: VmRuntime = { xid: -1, startTime: null, memKiB: 0, cputime: 0 };
  volumeConfig: VolumeConfigDoc[] = [];
  devices: string[] = [];
  extra: string[] = [];

  constructor(
    readonly app: QubesApp,
    readonly klass: string,
    readonly table: PropTable,
    ident: { name: string; qid: number; uuid: string },
  ) {
    this.name = ident.name;
    this.qid = ident.qid;
    this.uuid = ident.uuid;
    this.powerState = klass === 'AdminVM' || klass === 'RemoteVM' ? 'Running' : 'Halted';
  }

  get power(): PowerState {
    return this.powerState;
  }
  /**
   * kept by the lifecycle code; admin.vm.List shows it, and every change
   * counts in QubesApp.listVersion (which qubesd's reply cache watches)
   */
  set power(state: PowerState) {
    if (state === this.powerState) return;
    this.powerState = state;
    this.app.listVersion++;
  }

  /**
   * What the hypervisor reports of a running qube (domain id, start time,
   * current memory in KiB, CPU time in ns), kept by the lifecycle code. They
   * change without an event, so every access marks the call volatile
   * (model/volatile-reads.ts): no cached reply depends on them.
   */
  get runtime(): VmRuntime {
    readVolatileState();
    return this.runtimeState;
  }

  get subject(): string {
    return this.name;
  }
  get className(): string {
    return this.klass;
  }
  str(): string {
    return this.name;
  }
  /** a property was set or reset (Holder) */
  touched(): void {
    this.app.markProperties(this);
  }

  /** Python repr of the qube (<AppVM at 0x... name='x' qid=1 prop=value ...>). */
  repr(): string {
    const parts: string[] = [];
    for (const def of this.table.list) {
      if (def.name === 'name' || def.name === 'qid') continue;
      try {
        parts.push(`${def.name}=${pyStr(getValue(this, def))}`);
      } catch (e) {
        if (!(e instanceof NoValue)) throw e;
      }
    }
    return `<${this.klass} at 0x7f00${(this.qid + 0x1000).toString(16)}0 name='${this.name}' qid=${this.qid} ${parts.join(' ')}>`;
  }

  /** typed accessors used by defaults and handlers */
  prop(name: string): Value {
    return tryGet(this, name);
  }
  vmProp(name: string): Vm | null {
    const v = tryGet(this, name);
    return v instanceof Vm ? v : null;
  }
  has(name: string): boolean {
    return this.table.byName.has(name);
  }
  /** undefined only after a label reset (Qubes allows deleting it) */
  get label(): Label | undefined {
    return this.values.get('label') as Label | undefined;
  }
  get template(): Vm | null {
    return this.has('template') ? this.vmProp('template') : null;
  }
  get netvm(): Vm | null {
    return this.has('netvm') ? this.vmProp('netvm') : null;
  }

  get isAdmin(): boolean {
    return this.klass === 'AdminVM';
  }
  /** QubesVM in Qubes' terms: a local qube with a hypervisor domain */
  get isQubesVM(): boolean {
    return this.klass !== 'AdminVM' && this.klass !== 'RemoteVM';
  }
  isHalted(): boolean {
    return this.isQubesVM && this.power === 'Halted';
  }
  isRunning(): boolean {
    return this.power !== 'Halted' && this.power !== 'Crashed' && this.power !== 'NA';
  }

  /** Root directory of the qube's files (Qubes' vm.dir_path); null for dom0. */
  get dirPath(): string | null {
    if (!this.isQubesVM) return null;
    return path.join(this.app.baseDir, this.klass === 'TemplateVM' ? 'vm-templates' : 'appvms', this.name);
  }

  hasPciAssigned(): boolean {
    return this.devices.some((d) => /<devices\b[^>]*class="pci"[^>]*>[\s\S]*<device\b/.test(d));
  }

  // ------------------------------------------------------------ features

  getFeature(key: string): string | undefined {
    return this.features.get(key);
  }

  setFeature(key: string, value: Value): void {
    const text = featureText(value);
    const old = this.features.get(key);
    const kw: Array<[string, Value]> =
      old === undefined
        ? [
            ['feature', key],
            ['value', text],
          ]
        : [
            ['feature', key],
            ['value', text],
            ['oldvalue', old],
          ];
    fire(this, 'domain-feature-pre-set:' + key, kw);
    this.app.hooks.featurePreSet(this, key, text, old);
    this.features.set(key, text);
    this.app.markFeature(this, key, text);
    this.app.hooks.featurePostSet(this, key, text, old);
    fire(this, 'domain-feature-set:' + key, kw);
  }

  deleteFeature(key: string): void {
    // as in Qubes, the pre-delete event goes out before the feature is found missing
    fire(this, 'domain-feature-pre-delete:' + key, [['feature', key]]);
    if (!this.features.has(key)) throw QubesFeatureNotFoundError(this.name, key);
    this.features.delete(key);
    this.app.markFeature(this, key, null);
    fire(this, 'domain-feature-delete:' + key, [['feature', key]]);
  }

  /** Qubes' Features._recursive_check: along `attr`, then optionally dom0. */
  checkFeature(key: string, attr: 'template' | 'netvm' | null, adminvm: boolean): string | undefined {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the walk starts at this qube
    let subject: Vm | null = this;
    const seen = new Set<Vm>();
    while (subject && !seen.has(subject)) {
      seen.add(subject);
      const v = subject.features.get(key);
      if (v !== undefined) return v;
      if (attr === null) break;
      subject = attr === 'template' ? subject.template : subject.netvm;
    }
    if (adminvm) {
      const dom0 = this.app.getVm('dom0');
      if (dom0 && dom0 !== this) return dom0.features.get(key);
    }
    return undefined;
  }

  checkFeatureOrThrow(key: string, attr: 'template' | 'netvm' | null, adminvm: boolean): string {
    const v = this.checkFeature(key, attr, adminvm);
    if (v === undefined) throw QubesFeatureNotFoundError(this.name, key);
    return v;
  }

  // ------------------------------------------------------------ tags

  addTag(tag: string): void {
    if (!TAG_CHARS.test(tag)) throw QubesValueError('Invalid character in tag');
    if (this.tags.has(tag)) return;
    this.app.hooks.tagPreAdd(this, tag);
    this.tags.add(tag);
    this.app.markTag(this, tag, true);
    this.app.hooks.tagAdded(this, tag);
    fire(this, 'domain-tag-add:' + tag, [['tag', tag]]);
  }

  removeTag(tag: string): void {
    if (!this.tags.has(tag)) throw QubesTagNotFoundError(this.name, tag);
    this.tags.delete(tag);
    this.app.markTag(this, tag, false);
    fire(this, 'domain-tag-delete:' + tag, [['tag', tag]]);
  }

  // ------------------------------------------------------------ store

  /** The stored properties, in the class's (Qubes') order. */
  propertyDocs(): Array<[string, string]> {
    const properties: Array<[string, string]> = [];
    for (const def of this.table.list) {
      const v = this.values.get(def.name);
      if (v !== undefined && !def.stateless) properties.push([def.name, wireStr(v)]);
    }
    return properties;
  }

  toDoc(): DomainDoc {
    return {
      id: 'domain-' + this.qid,
      klass: this.klass,
      properties: this.propertyDocs(),
      features: [...this.features],
      tags: [...this.tags],
      devices: this.devices,
      volumeConfig: this.volumeConfig,
      extra: this.extra,
    };
  }
}

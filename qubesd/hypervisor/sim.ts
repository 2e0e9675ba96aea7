// The simulated hypervisor: qubesd's default backend, so that it runs on a
// machine without libvirt. It keeps domains in memory (and, given a
// stateFile, on disk, so that "running" qubes outlive a qubesd restart the way
// real ones do) and follows libvirt's state machine and event sequence for
// QEMU guests:
//   define      -> 'defined' (added | updated)
//   start       -> 'started' (booted)
//   shutdown    -> after shutdownDelayMs: 'shutdown' (finished), 'stopped' (shutdown)
//   destroy     -> 'stopped' (destroyed)
//   pause       -> 'paused' (paused);      resume -> 'resumed' (unpaused)
//   suspend     -> 'suspended' (memory);   wakeup -> 'started' (wakeup)
//   undefine    -> 'undefined' (removed)
// Events are emitted asynchronously (on the next turn of the event loop),
// like libvirt's, and never before the state they announce is visible.

import { EventEmitter } from 'node:events';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { QubesVMError, QubesVMNotFoundError } from '../errors.js';
import {
  checkState,
  type DomainStats,
  type DomainStatus,
  type HypervisorBackend,
  type LifecycleEvent,
  type LifecycleKind,
  type Operation,
  type PowerState,
} from './backend.js';
import { powerStateOf } from './libvirt/states.js';
import { validateSpec, type DomainSpec } from './domain-xml.js';
import { DomainState } from './libvirt/protocol.js';

export interface SimOptions {
  /** Time a guest takes to shut down after shutdown() (ms). */
  shutdownDelayMs?: number;
  /** JSON file keeping the simulated domains across restarts of qubesd. */
  stateFile?: string;
  /** Makes start() of a domain fail with the returned message (tests of start failures). */
  failStart?: (spec: DomainSpec) => string | null;
}

interface SimDomain {
  spec: DomainSpec;
  active: boolean;
  state: DomainState;
  id: number;
  /** When the current run started, for the CPU time figure (ms since epoch). */
  startedAt: number;
}

export class SimBackend extends EventEmitter implements HypervisorBackend {
  readonly kind = 'sim' as const;
  private readonly domains = new Map<string, SimDomain>();
  private readonly shutdownTimers = new Map<string, NodeJS.Timeout>();
  private nextId = 1;
  private readonly shutdownDelayMs: number;

  constructor(private readonly opts: SimOptions = {}) {
    super();
    this.shutdownDelayMs = opts.shutdownDelayMs ?? 50;
  }

  async connect(): Promise<void> {
    if (this.opts.stateFile) this.load(this.opts.stateFile);
    this.emit('resync', await this.list());
  }

  async close(): Promise<void> {
    // A shutdown already asked for completes, as a guest's would.
    for (const [name, timer] of this.shutdownTimers) {
      clearTimeout(timer);
      this.finishShutdown(name);
    }
    this.shutdownTimers.clear();
  }

  async list(): Promise<DomainStatus[]> {
    return [...this.domains.values()].map((d) => this.status(d));
  }

  async state(name: string): Promise<PowerState> {
    const d = this.domains.get(name);
    return d ? powerStateOf(d.state, d.active) : 'Halted';
  }

  async define(spec: DomainSpec): Promise<void> {
    validateSpec(spec, 'test');
    this.defineSpec(spec);
    this.save();
  }

  async undefine(name: string): Promise<void> {
    const d = this.get(name);
    checkState('undefine', name, powerStateOf(d.state, d.active));
    this.domains.delete(name);
    this.save();
    this.later({ name, uuid: d.spec.uuid, event: 'undefined', detail: 'removed' });
  }

  async start(spec: DomainSpec): Promise<void> {
    validateSpec(spec, 'test');
    const existing = this.domains.get(spec.name);
    if (existing) checkState('start', spec.name, powerStateOf(existing.state, existing.active));
    const d = this.defineSpec(spec);
    const failure = this.opts.failStart?.(spec) ?? null;
    if (failure !== null) {
      this.save();
      throw QubesVMError(failure);
    }
    Object.assign(d, { active: true, state: DomainState.Running, id: this.nextId++, startedAt: Date.now() });
    this.save();
    this.later(this.event(d, 'started', 'booted'));
  }

  async shutdown(name: string): Promise<void> {
    this.need(name, 'shutdown');
    if (this.shutdownTimers.has(name)) return;
    const timer = setTimeout(() => {
      this.shutdownTimers.delete(name);
      this.finishShutdown(name);
    }, this.shutdownDelayMs);
    this.shutdownTimers.set(name, timer);
  }

  async destroy(name: string): Promise<void> {
    const d = this.need(name, 'destroy');
    this.cancelShutdown(name);
    this.stop(d);
    this.later(this.event(d, 'stopped', 'destroyed'));
  }

  async pause(name: string): Promise<void> {
    const d = this.need(name, 'pause');
    this.setState(d, DomainState.Paused);
    this.later(this.event(d, 'paused', 'paused'));
  }

  async resume(name: string): Promise<void> {
    const d = this.need(name, 'resume');
    this.setState(d, DomainState.Running);
    this.later(this.event(d, 'resumed', 'unpaused'));
  }

  async suspend(name: string): Promise<void> {
    const d = this.need(name, 'suspend');
    this.setState(d, DomainState.PmSuspended);
    this.later(this.event(d, 'suspended', 'memory'));
  }

  async wakeup(name: string): Promise<void> {
    const d = this.need(name, 'wakeup');
    this.setState(d, DomainState.Running);
    this.later(this.event(d, 'started', 'wakeup'));
  }

  async stats(): Promise<DomainStats[]> {
    const now = Date.now();
    return [...this.domains.values()]
      .filter((d) => d.active)
      .map((d) => {
        const maxMb = d.spec.maxmemMb || d.spec.memoryMb;
        return {
          name: d.spec.name,
          uuid: d.spec.uuid,
          state: powerStateOf(d.state, true),
          // A guest sitting idle: a small, growing CPU time.
          cpuTimeNs: Math.max(1, now - d.startedAt) * 1000,
          memoryKb: d.spec.memoryMb * 1024,
          maxMemoryKb: maxMb * 1024,
          vcpus: d.spec.vcpus,
        };
      });
  }

  // --- internals -----------------------------------------------------------------

  private defineSpec(spec: DomainSpec): SimDomain {
    const old = this.domains.get(spec.name);
    const d: SimDomain = old ? Object.assign(old, { spec }) : { spec, active: false, state: DomainState.Shutoff, id: -1, startedAt: 0 };
    this.domains.set(spec.name, d);
    this.later(this.event(d, 'defined', old ? 'updated' : 'added'));
    return d;
  }

  private finishShutdown(name: string): void {
    const d = this.domains.get(name);
    if (!d?.active) return;
    this.stop(d);
    this.later(this.event(d, 'shutdown', 'finished'), this.event(d, 'stopped', 'shutdown'));
  }

  private cancelShutdown(name: string): void {
    const t = this.shutdownTimers.get(name);
    if (t) {
      clearTimeout(t);
      this.shutdownTimers.delete(name);
    }
  }

  private stop(d: SimDomain): void {
    Object.assign(d, { active: false, state: DomainState.Shutoff, id: -1, startedAt: 0 });
    this.save();
  }

  private setState(d: SimDomain, state: DomainState): void {
    d.state = state;
    this.save();
  }

  private get(name: string): SimDomain {
    const d = this.domains.get(name);
    if (!d) throw QubesVMNotFoundError(name);
    return d;
  }

  private need(name: string, op: Operation): SimDomain {
    const d = this.domains.get(name);
    checkState(op, name, d ? powerStateOf(d.state, d.active) : 'Halted');
    return d!;
  }

  private status(d: SimDomain): DomainStatus {
    return { name: d.spec.name, uuid: d.spec.uuid, state: powerStateOf(d.state, d.active), id: d.id };
  }

  private event(d: SimDomain, event: LifecycleKind, detail: string): LifecycleEvent {
    return { name: d.spec.name, uuid: d.spec.uuid, event, detail };
  }

  private later(...events: LifecycleEvent[]): void {
    setImmediate(() => {
      for (const e of events) this.emit('lifecycle', e);
    });
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const saved = JSON.parse(text) as { nextId: number; domains: SimDomain[] };
    this.domains.clear();
    for (const d of saved.domains) this.domains.set(d.spec.name, d);
    this.nextId = saved.nextId;
  }

  private save(): void {
    const file = this.opts.stateFile;
    if (!file) return;
    writeFileSync(file + '.tmp', JSON.stringify({ nextId: this.nextId, domains: [...this.domains.values()] }));
    renameSync(file + '.tmp', file);
  }
}

// The real hypervisor backend: HypervisorBackend over a LibvirtClient.
// See backend.ts for the contract; this file maps it onto libvirt calls,
// turns libvirt errors into Qubes exceptions, and keeps a small cache of the
// last known state of every domain so that after libvirtd restarts it can
// tell qubesd what changed meanwhile (resynchronisation).

import { EventEmitter } from 'node:events';
import { QubesError, QubesException, QubesNotImplementedError, QubesVMError, QubesVMNotFoundError } from '../errors.js';
import {
  checkState,
  wrongStateError,
  type DomainStats,
  type DomainStatus,
  type HypervisorBackend,
  type LifecycleEvent,
  type LifecycleKind,
  type Operation,
  type PowerState,
} from './backend.js';
import { eventDetail, lifecycleKind, powerStateOf } from './libvirt/states.js';
import { domainXml, type DomainSpec, type XmlFlavour } from './domain-xml.js';
import { kvmUsable } from './kvm-access.js';
import { LibvirtClient, type LibvirtClientOptions } from './libvirt/client.js';
import { DomainState, ErrorCode, LibvirtError, LIST_DOMAINS_ACTIVE, StatsType, type LifecycleMessage, type RemoteDomain } from './libvirt/protocol.js';
import { scrubSystemErrorText } from '../../lib/system-error.js';

export interface LibvirtBackendOptions {
  /** A libvirt URI: "qemu:///system", "qemu+unix:///system?socket=/path", "test:///default", "xen:///system". */
  uri: string;
  /** libvirtd's socket; overrides ?socket= in the URI. Default /run/libvirt/libvirt-sock. */
  socket?: string;
  /** Hardware acceleration for QEMU guests; default: KVM when /dev/kvm is usable by the QEMU user, else TCG. */
  accel?: 'kvm' | 'tcg';
  /** Extra client settings (keepalive, reconnection backoff, tracing). */
  client?: Partial<Omit<LibvirtClientOptions, 'socketPath' | 'uri'>>;
}

export const DEFAULT_LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';

export interface ParsedUri {
  driver: string;
  openUri: string;
  socketPath: string;
}

/** Splits a libvirt URI into the driver URI libvirtd opens and the socket to reach it by. */
export function parseLibvirtUri(uri: string, socketOverride?: string): ParsedUri {
  const m = /^([a-z][a-z0-9]*)(?:\+([a-z0-9]+))?:\/\/([^/?]*)(\/[^?]*)?(?:\?(.*))?$/i.exec(uri);
  if (!m) throw new TypeError(`invalid libvirt URI: ${JSON.stringify(uri)}`);
  const [, driver, transport, host, path, query] = m as unknown as [string, string, string | undefined, string, string | undefined, string | undefined];
  if (transport && transport !== 'unix') throw new TypeError(`libvirt URI ${uri}: only local UNIX-socket connections are supported, not "${transport}"`);
  if (host) throw new TypeError(`libvirt URI ${uri}: remote hosts are not supported`);
  const params = new URLSearchParams(query ?? '');
  const socket = params.get('socket');
  params.delete('socket');
  const rest = params.toString();
  return {
    driver: driver.toLowerCase(),
    openUri: `${driver}://${path ?? '/'}${rest ? '?' + rest : ''}`,
    socketPath: socketOverride ?? socket ?? DEFAULT_LIBVIRT_SOCKET,
  };
}

function flavourFor(driver: string, accel: 'kvm' | 'tcg' | undefined): XmlFlavour {
  switch (driver) {
    case 'xen':
      return 'xen';
    case 'test':
      return 'test';
    case 'qemu':
      return (accel ?? (kvmUsable() ? 'kvm' : 'tcg')) === 'kvm' ? 'kvm' : 'qemu';
    default:
      throw new TypeError(`unsupported libvirt driver "${driver}" (use qemu, xen or test)`);
  }
}

interface Known {
  uuid: string;
  state: PowerState;
}

export class LibvirtBackend extends EventEmitter implements HypervisorBackend {
  readonly kind = 'libvirt' as const;
  readonly flavour: XmlFlavour;
  readonly client: LibvirtClient;
  private known = new Map<string, Known>();

  constructor(opts: LibvirtBackendOptions) {
    super();
    const parsed = parseLibvirtUri(opts.uri, opts.socket);
    this.flavour = flavourFor(parsed.driver, opts.accel);
    this.client = new LibvirtClient({ ...opts.client, socketPath: parsed.socketPath, uri: parsed.openUri });
    this.client.on('lifecycle', (m: LifecycleMessage) => this.onLifecycle(m));
    this.client.on('disconnect', (e: Error) => this.emit('connection', { connected: false, error: e.message }));
    this.client.on('connect', ({ reconnected }: { reconnected: boolean }) => {
      if (!reconnected) return;
      this.emit('connection', { connected: true });
      this.resync(true).catch((e: Error) => this.emit('connection', { connected: this.client.connected, error: `resync failed: ${e.message}` }));
    });
  }

  /** The domain XML this backend would define for a spec. */
  xmlFor(spec: DomainSpec): string {
    return domainXml(spec, this.flavour);
  }

  async connect(): Promise<void> {
    try {
      await this.client.connect();
    } catch (e) {
      throw mapError(e, null, '');
    }
    await this.resync(false);
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  async list(): Promise<DomainStatus[]> {
    try {
      const records = await this.client.getAllDomainStats(StatsType.State);
      return records.map(({ domain, params }) => ({
        name: domain.name,
        uuid: domain.uuid,
        id: domain.id,
        state: powerStateOf(Number(params.get('state.state') ?? DomainState.NoState), domain.id >= 0),
      }));
    } catch (e) {
      throw mapError(e, null, '');
    }
  }

  async state(name: string): Promise<PowerState> {
    try {
      return await this.stateOf(await this.client.lookupByName(name));
    } catch (e) {
      if (e instanceof LibvirtError && e.code === ErrorCode.NoDomain) return 'Halted';
      throw mapError(e, null, name);
    }
  }

  async consoleTty(name: string): Promise<string> {
    let xml: string;
    try {
      xml = await this.client.getXmlDesc(await this.client.lookupByName(name));
    } catch (e) {
      throw mapError(e, null, name);
    }
    // libvirt's live XML names the allocated pty: <console type='pty' tty='/dev/pts/N'>
    const m = /<console\b[^>]*?\btty=(['"])([^'"]*)\1/.exec(xml);
    return m ? m[2]! : '';
  }

  async define(spec: DomainSpec): Promise<void> {
    const xml = this.xmlFor(spec);
    try {
      await this.client.defineXml(xml);
    } catch (e) {
      throw mapError(e, null, spec.name);
    }
  }

  async undefine(name: string): Promise<void> {
    await this.op('undefine', name, (d) => this.client.undefine(d));
  }

  async start(spec: DomainSpec): Promise<void> {
    const xml = this.xmlFor(spec);
    try {
      const current = await this.client.lookupByName(spec.name).catch((e: unknown) => {
        if (e instanceof LibvirtError && e.code === ErrorCode.NoDomain) return null;
        throw e;
      });
      if (current) checkState('start', spec.name, await this.stateOf(current));
      const d = await this.client.defineXml(xml);
      await this.client.create(d);
    } catch (e) {
      throw mapError(e, 'start', spec.name);
    }
  }

  shutdown(name: string): Promise<void> {
    return this.op('shutdown', name, (d) => this.client.shutdown(d));
  }
  destroy(name: string): Promise<void> {
    return this.op('destroy', name, (d) => this.client.destroy(d));
  }
  pause(name: string): Promise<void> {
    return this.op('pause', name, (d) => this.client.suspend(d));
  }
  resume(name: string): Promise<void> {
    return this.op('resume', name, (d) => this.client.resume(d));
  }
  suspend(name: string): Promise<void> {
    return this.op('suspend', name, (d) => this.client.pmSuspend(d));
  }
  wakeup(name: string): Promise<void> {
    return this.op('wakeup', name, (d) => this.client.pmWakeup(d));
  }

  async stats(): Promise<DomainStats[]> {
    try {
      const mask = StatsType.State | StatsType.CpuTotal | StatsType.Balloon | StatsType.Vcpu;
      const records = await this.client.getAllDomainStats(mask, [], LIST_DOMAINS_ACTIVE);
      return await Promise.all(
        records.map(async ({ domain, params }) => {
          const num = (k: string) => (params.has(k) ? Number(params.get(k)) : null);
          let cpu = num('cpu.time'),
            mem = num('balloon.current'),
            max = num('balloon.maximum'),
            vcpus = num('vcpu.current');
          if (cpu === null || mem === null || max === null || vcpus === null) {
            // Drivers without these stats (the test driver) still answer GetInfo.
            const info = await this.client.getInfo(domain);
            cpu ??= info.cpuTimeNs;
            mem ??= info.memoryKb;
            max ??= info.maxMemKb;
            vcpus ??= info.nrVirtCpu;
          }
          return {
            name: domain.name,
            uuid: domain.uuid,
            state: powerStateOf(Number(params.get('state.state') ?? DomainState.NoState), true),
            cpuTimeNs: cpu,
            memoryKb: mem,
            maxMemoryKb: max,
            vcpus,
          };
        }),
      );
    } catch (e) {
      throw mapError(e, null, '');
    }
  }

  // --- internals -----------------------------------------------------------------

  private async stateOf(d: RemoteDomain): Promise<PowerState> {
    return d.id < 0 ? 'Halted' : powerStateOf((await this.client.getState(d)).state, true);
  }

  private async op(op: Operation, name: string, f: (d: RemoteDomain) => Promise<void>): Promise<void> {
    try {
      const d = await this.client.lookupByName(name);
      checkState(op, name, await this.stateOf(d));
      await f(d);
    } catch (e) {
      if (e instanceof LibvirtError && e.code === ErrorCode.NoDomain && op !== 'undefine') throw wrongStateError(op, name);
      throw mapError(e, op, name);
    }
  }

  private onLifecycle(m: LifecycleMessage): void {
    const kind = lifecycleKind(m.event);
    if (!kind) return;
    const { name, uuid } = m.domain;
    const before = this.known.get(name)?.state ?? 'Halted';
    const next = stateAfter(kind, before);
    if (next === null) this.known.delete(name);
    else this.known.set(name, { uuid, state: next });
    // QEMU starts guests paused and reports resumed/unpaused just before
    // started/booted: noise for a domain that was not paused.
    if (kind === 'resumed' && before === 'Halted') return;
    this.emit('lifecycle', { name, uuid, event: kind, detail: eventDetail(m.event, m.detail) } satisfies LifecycleEvent);
  }

  /** Reads what libvirt has now; after a reconnection, reports the differences as events. */
  private async resync(report: boolean): Promise<void> {
    const now = await this.list();
    if (report) {
      const seen = new Set<string>();
      for (const d of now) {
        seen.add(d.name);
        const before = this.known.get(d.name);
        for (const kind of transitions(before?.state ?? null, d.state)) this.emit('lifecycle', { name: d.name, uuid: d.uuid, event: kind, detail: 'resync' });
      }
      for (const [name, k] of this.known) {
        if (seen.has(name)) continue;
        for (const kind of transitions(k.state, null)) this.emit('lifecycle', { name, uuid: k.uuid, event: kind, detail: 'resync' });
      }
    }
    this.known = new Map(now.map((d) => [d.name, { uuid: d.uuid, state: d.state }]));
    this.emit('resync', now);
  }
}

/** State a domain is in after an event; null once undefined. */
function stateAfter(kind: LifecycleKind, before: PowerState): PowerState | null {
  switch (kind) {
    case 'defined':
      return before;
    case 'undefined':
      return null;
    case 'started':
    case 'resumed':
      return 'Running';
    case 'paused':
      return 'Paused';
    case 'suspended':
      return 'Suspended';
    case 'shutdown':
      return before === 'Halted' ? 'Halted' : 'Halting';
    case 'stopped':
      return 'Halted';
    case 'crashed':
      return 'Crashed';
  }
}

/** Events that explain a change of state seen only by comparing snapshots (null: not defined). */
function transitions(before: PowerState | null, after: PowerState | null): LifecycleKind[] {
  if (before === after) return [];
  const out: LifecycleKind[] = [];
  if (before === null) out.push('defined');
  const wasActive = before !== null && before !== 'Halted';
  const isActive = after !== null && after !== 'Halted';
  if (wasActive && !isActive) out.push('stopped');
  if (!wasActive && isActive) out.push('started');
  if (isActive) {
    if (after === 'Paused') out.push('paused');
    else if (after === 'Suspended') out.push('suspended');
    else if (after === 'Crashed') out.push('crashed');
    else if (wasActive && (before === 'Paused' || before === 'Suspended')) out.push('resumed');
  }
  if (after === null) out.push('undefined');
  return out;
}

/** A libvirt failure as the Qubes exception qubesd reports. */
function mapError(e: unknown, op: Operation | null, name: string): Error {
  if (e instanceof QubesError || !(e instanceof LibvirtError)) return e as Error;
  let out: QubesError;
  if (e.domain === 0 && (e.code === ErrorCode.SystemError || e.code === ErrorCode.OperationTimeout)) out = QubesException(scrubSystemErrorText(e.message));
  else if (e.code === ErrorCode.NoDomain) out = QubesVMNotFoundError(name);
  else if (e.code === ErrorCode.OperationInvalid && op) out = wrongStateError(op, name);
  else if (e.code === ErrorCode.NoSupport || e.code === ErrorCode.ArgumentUnsupported) out = QubesNotImplementedError(e.message);
  else out = QubesVMError(e.message);
  (out as Error & { cause?: unknown }).cause = e;
  return out;
}

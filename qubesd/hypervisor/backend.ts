// The hypervisor as qubesd sees it: one interface, two implementations
// (LibvirtBackend over libvirtd, SimBackend in-process) that follow the same
// state machine and emit the same events, so the rest of qubesd never knows
// which one it talks to. Create one with createBackend() (./index.ts).
//
// Domains are addressed by name (the qube's name); a domain is known to the
// hypervisor once defined. start() (re)defines it from a DomainSpec first, so
// the hypervisor always runs the qube's current configuration.
//
// Power states are Qubes' (qubes.vm.qubesvm.QubesVM.get_power_state); the
// libvirt implementations derive them from virDomainState (libvirt/states.ts):
//   not defined / inactive          -> 'Halted'
//   active: PAUSED                  -> 'Paused'
//           SHUTDOWN (in progress)  -> 'Halting'
//           SHUTOFF  (still active) -> 'Dying'
//           CRASHED                 -> 'Crashed'
//           PMSUSPENDED             -> 'Suspended'
//           RUNNING, BLOCKED, other -> 'Running'
// 'Transient' (running but qrexec/GUI not yet up) and 'NA' are for qubesd to
// decide: the hypervisor never reports them.
//
// Lifecycle calls and the state they need (else the QubesError in brackets):
//   start(spec)   Halted -> Running                 [QubesVMNotHaltedError]
//   shutdown(n)   Running|Paused -> Halted, by the guest, asynchronously:
//                 the call returns once the request is sent; 'shutdown' and
//                 'stopped' events follow when the guest is gone
//                                                   [QubesVMNotStartedError]
//   destroy(n)    any active state -> Halted        [QubesVMNotStartedError]
//   pause(n)      Running -> Paused                 [QubesVMNotRunningError]
//   resume(n)     Paused -> Running                 [QubesVMNotPausedError]
//   suspend(n)    Running -> Suspended (S3)         [QubesVMNotRunningError]
//   wakeup(n)     Suspended -> Running              [QubesVMNotSuspendedError]
//   undefine(n)   Halted -> not defined             [QubesVMNotHaltedError]
// Unknown domain: QubesVMNotFoundError (except state(), which says 'Halted').
// A driver or guest that cannot do something (no S3 without a guest agent,
// say): QubesNotImplementedError. Anything else
// libvirt reports: QubesVMError with libvirt's message. No connection to
// libvirtd (down, restarting, not answering): QubesException saying so.
//
// Events (EventEmitter):
//   'lifecycle' (LifecycleEvent)  every state change, whoever caused it.
//       The event for a call may arrive before or after the call resolves.
//       A domain is gone when 'stopped' arrives (detail: 'shutdown' after a
//       graceful shutdown, 'destroyed' after destroy(), 'crashed', 'failed');
//       a 'shutdown' event may precede it (QEMU also sends 'shutdown'/'host'
//       on destroy), so drive domain-shutdown/domain-stopped from 'stopped'.
//   'connection' ({ connected: boolean, error?: string })  libvirt only:
//       the link to libvirtd dropped / came back.
//   'resync' (DomainStatus[])  after every (re)connection: what the
//       hypervisor runs now. Before it, the backend emits a synthesized
//       'lifecycle' event (detail 'resync') for each domain whose state
//       changed while nobody was listening, so a model kept from events
//       stays right across libvirtd restarts.

import type { EventEmitter } from 'node:events';
import type { DomainSpec } from './domain-xml.js';
import type { PowerState } from '../model/power-state.js';
import {
  QubesError,
  QubesVMNotHaltedError,
  QubesVMNotPausedError,
  QubesVMNotRunningError,
  QubesVMNotStartedError,
  QubesVMNotSuspendedError,
} from '../errors.js';

export type { PowerState };

export type LifecycleKind = 'defined' | 'undefined' | 'started' | 'paused' | 'resumed' | 'stopped' | 'shutdown' | 'suspended' | 'crashed';

export interface LifecycleEvent {
  name: string;
  uuid: string;
  /** What happened (libvirt's event type; 'paused' is its SUSPENDED, 'suspended' its PMSUSPENDED). */
  event: LifecycleKind;
  /** Why, in libvirt's words: 'booted', 'destroyed', 'shutdown', 'failed', 'unpaused', ...;
   *  'resync' for events synthesized after a reconnection. */
  detail: string;
}

export interface DomainStatus {
  name: string;
  uuid: string;
  state: PowerState;
  /** Hypervisor's domain id while active, -1 otherwise. */
  id: number;
}

export interface DomainStats {
  name: string;
  uuid: string;
  state: PowerState;
  /** Total CPU time consumed (ns); 0 when halted. */
  cpuTimeNs: number;
  /** Current memory (KiB) and its ceiling. */
  memoryKb: number;
  maxMemoryKb: number;
  vcpus: number;
}

export interface HypervisorBackend extends EventEmitter {
  readonly kind: 'sim' | 'libvirt';
  /** Connects (libvirt) and emits the first 'resync'. */
  connect(): Promise<void>;
  /** Disconnects; running domains keep running. */
  close(): Promise<void>;
  /** Every defined domain and every running one. */
  list(): Promise<DomainStatus[]>;
  /** Power state; 'Halted' for a domain the hypervisor does not know. */
  state(name: string): Promise<PowerState>;
  /** Defines (or redefines) the domain without starting it. */
  define(spec: DomainSpec): Promise<void>;
  undefine(name: string): Promise<void>;
  start(spec: DomainSpec): Promise<void>;
  shutdown(name: string): Promise<void>;
  destroy(name: string): Promise<void>;
  pause(name: string): Promise<void>;
  resume(name: string): Promise<void>;
  /** ACPI S3 suspend (Qubes' suspend); needs guest support. */
  suspend(name: string): Promise<void>;
  wakeup(name: string): Promise<void>;
  /** Stats of every active domain. */
  stats(): Promise<DomainStats[]>;
  /** The pty of an active domain's console ('' when it has none). */
  consoleTty?(name: string): Promise<string>;
}

/** The lifecycle operations, for error mapping. */
export type Operation = 'start' | 'shutdown' | 'destroy' | 'pause' | 'resume' | 'suspend' | 'wakeup' | 'undefine';

const ALLOWED: Record<Operation, (s: PowerState) => boolean> = {
  start: (s) => s === 'Halted',
  undefine: (s) => s === 'Halted',
  shutdown: (s) => s !== 'Halted',
  destroy: (s) => s !== 'Halted',
  pause: (s) => s === 'Running',
  suspend: (s) => s === 'Running',
  resume: (s) => s === 'Paused',
  wakeup: (s) => s === 'Suspended',
};

/** Refuses `op` on a domain in `state` the way Qubes does, before asking the
 *  hypervisor (drivers disagree on how they report such refusals). */
export function checkState(op: Operation, name: string, state: PowerState): void {
  if (!ALLOWED[op](state)) throw wrongStateError(op, name);
}

/** The Qubes exception for an operation refused because of the domain's state. */
export function wrongStateError(op: Operation, name: string): QubesError {
  switch (op) {
    case 'start':
    case 'undefine':
      return QubesVMNotHaltedError(name);
    case 'shutdown':
    case 'destroy':
      return QubesVMNotStartedError(name);
    case 'pause':
    case 'suspend':
      return QubesVMNotRunningError(name);
    case 'resume':
      return QubesVMNotPausedError(name);
    case 'wakeup':
      return QubesVMNotSuspendedError(name);
  }
}

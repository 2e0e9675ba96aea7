// libvirt's domain states and lifecycle events in Qubes' and our words. Only
// the implementations that speak libvirt (LibvirtBackend, and SimBackend,
// which simulates libvirt's state machine) need this; the interface
// (../backend.ts) knows nothing of libvirt.
import type { LifecycleKind, PowerState } from '../backend.js';
import { DomainState, DomainEventType, EVENT_DETAILS } from './protocol.js';

/** Qubes' mapping of libvirt's state of an *active* domain. */
export function powerStateOf(state: DomainState, active: boolean): PowerState {
  if (!active) return 'Halted';
  switch (state) {
    case DomainState.Paused:
      return 'Paused';
    case DomainState.Shutdown:
      return 'Halting';
    case DomainState.Shutoff:
      return 'Dying';
    case DomainState.Crashed:
      return 'Crashed';
    case DomainState.PmSuspended:
      return 'Suspended';
    default:
      return 'Running';
  }
}

const KINDS: Record<DomainEventType, LifecycleKind> = {
  [DomainEventType.Defined]: 'defined',
  [DomainEventType.Undefined]: 'undefined',
  [DomainEventType.Started]: 'started',
  [DomainEventType.Suspended]: 'paused',
  [DomainEventType.Resumed]: 'resumed',
  [DomainEventType.Stopped]: 'stopped',
  [DomainEventType.Shutdown]: 'shutdown',
  [DomainEventType.PmSuspended]: 'suspended',
  [DomainEventType.Crashed]: 'crashed',
};

export function lifecycleKind(event: DomainEventType): LifecycleKind | null {
  return KINDS[event] ?? null;
}

export function eventDetail(event: DomainEventType, detail: number): string {
  return EVENT_DETAILS[event]?.[detail] ?? `detail-${detail}`;
}

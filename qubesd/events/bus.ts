// The event bus: the model fires every event here (property, feature, tag,
// domain life cycle...), and admin.Events subscribers, the audit log and the
// hypervisor glue listen. Synchronous fan-out: a subscriber must not throw and
// must not block; admin.Events writes to a socket buffer and returns.

/** Ordered key/value pairs, as Qubes sends event kwargs. */
export type EventKwargs = ReadonlyArray<readonly [string, string]>;

/**
 * subject: the qube's name, or '' for events of the whole system (the app).
 * event: e.g. "property-set:netvm", "domain-feature-set:gui".
 */
export type EventListener = (subject: string, event: string, kwargs: EventKwargs) => void;

export class EventBus {
  private listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  fire(subject: string, event: string, kwargs: EventKwargs = []): void {
    for (const l of this.listeners) {
      try {
        l(subject, event, kwargs);
      } catch {
        /* a broken subscriber must not break the caller's mutation */
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}

// Identical reads of concurrent requests, made once. Sixteen clients polling
// a 1000-qube collection each ask qubesd for the same admin.vm.List as the
// same identity; a read that is already queued answers all of them.
//
// Never stale: a request only joins a call that has not started yet. While a
// call for a key is in flight, the requests that arrive queue behind it and
// share the one call made when it ends; the answer each gets was therefore
// read after that request arrived, as if it had called alone. Only reads
// (the method table's `r` methods, no payload) are shared, per identity
// (qubesd filters what it answers by the caller), and after each request's
// own policy check; the caller's time-out applies to the shared call. qubesd's
// audit log has one line for the shared call.
import { lookupMethod } from '../lib/api-methods.js';

/** Reads that answer with a stream of events, not one reply. */
const EVENT_STREAMS = new Set(['admin.Events', 'admin.vm.Stats']);

/** Whether a call may be shared: a read, with no payload, with one reply. */
export function isSharedRead(method: string, payload: Buffer | string): boolean {
  if (payload.length !== 0 || EVENT_STREAMS.has(method)) return false;
  const spec = lookupMethod(method);
  return spec !== undefined && spec.access === 'r' && spec.socket === 'admin' && !spec.streamed;
}

export class SharedReads {
  /** the call in flight, per key */
  private readonly running = new Map<string, Promise<Buffer>>();
  /** the call that starts when the one in flight ends, per key */
  private readonly queued = new Map<string, Promise<Buffer>>();

  run(key: string, call: () => Promise<Buffer>): Promise<Buffer> {
    const next = this.queued.get(key);
    if (next) return next;
    const current = this.running.get(key);
    if (!current) return this.start(key, call);
    const p = current
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        this.queued.delete(key);
        return this.start(key, call);
      });
    this.queued.set(key, p);
    return p;
  }

  private start(key: string, call: () => Promise<Buffer>): Promise<Buffer> {
    const p = call();
    this.running.set(key, p);
    const done = (): void => {
      if (this.running.get(key) === p) this.running.delete(key);
    };
    p.then(done, done);
    return p;
  }
}

// Reads of state that changes without an Admin API call and without an event:
// a qube's power state and what the hypervisor reports with it (xid, start
// time), and files outside the store (a kernel's default command line). The
// model marks such a read here; qubesd's reply cache (api/reply-cache.ts) does
// not keep a reply whose computation made one, since nothing would tell it
// that the reply went stale. Every other input of a read is the model's own
// state, which changes only with an event or a recorded change.

let marked = false;

/** A computation read state that may change unannounced. */
export function readVolatileState(): void {
  marked = true;
}

/** Whether such a read happened since the last call; clears the mark. */
export function takeVolatileMark(): boolean {
  const m = marked;
  marked = false;
  return m;
}

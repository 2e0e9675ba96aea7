// Reads of state that changes without an Admin API call, an event or a
// recorded change: what the hypervisor reports of a running qube (xid, start
// time, memory, CPU time) and files outside the store (a kernel's default
// command line). The model marks such a read here; qubesd's reply cache
// (api/reply-cache.ts) does not keep a reply whose computation made one, since
// nothing would tell it that the reply went stale. Every other input of a
// read is the model's own state, which changes only with an event or a
// recorded change, or a power state, whose every change counts in
// QubesApp.listVersion (which the cache watches).

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

// dom0's repeated reads, answered from memory. Management tools ask the same
// questions over and over (qvm-ls, the REST console, a script polling a
// property or admin.vm.List), and the policy daemon asks for
// internal.GetSystemInfo on every request it decides; answering one costs
// qubesd more in decoding, validating and formatting than the socket does.
// A reply is kept, keyed by the request's exact bytes, when all of these hold:
//  - the method table marks the method as cacheable (MethodSpec.cache: its
//    reply follows from the model's state alone);
//  - the caller is dom0 (no policy filter applies) and the reply is OK;
//  - the handler answered at once, fired no event, changed nothing, and read
//    no state that changes unannounced (model/volatile-reads.ts).
// Every kept reply is forgotten as soon as anything may have changed: any
// event, a change of power state (app.listVersion), a change the store has
// not been given yet, and the start and the end of every call that may write
// (api/dispatch.ts says which). While such a call is in progress nothing is
// kept or served, so an answer never lags behind a change, even one the call
// makes before it waits for the disk. An answer from here is the same bytes,
// and leaves the same audit line, as the call made in full.
import type { QubesApp } from '../model/app.js';

/** Requests longer than this are not looked up (cacheable requests carry no payload). */
const MAX_KEY = 512;
/** Bounds: past either, everything kept is dropped and keeping starts over. */
const MAX_ENTRIES = 4096;
const MAX_BYTES = 1 << 20;

export interface CachedReply {
  readonly frame: Buffer;
  /** the socket it was asked on: the other one does not answer this method */
  readonly socket: string;
  // the audit record's fields, as the full call decodes them
  readonly source: string;
  readonly method: string;
  readonly arg: string;
  readonly dest: string;
}

export class ReplyCache {
  private readonly replies = new Map<string, CachedReply>();
  private bytes = 0;
  /** the app's listVersion the kept replies were made at */
  private listVersion: number;
  /** calls that may write, in progress */
  private writers = 0;
  /** counts the times everything was forgotten (a reply made across one is not kept) */
  private epoch = 0;

  constructor(private readonly app: QubesApp) {
    this.listVersion = app.listVersion;
    app.events.subscribe(() => this.forget());
  }

  /** The key of a request that may have a kept reply, or null. */
  keyOf(data: Buffer): string | null {
    // no payload: the header's NUL is the last byte
    if (data.length > MAX_KEY || data[data.length - 1] !== 0) return null;
    return data.toString('latin1');
  }

  /** The kept reply to `key`, when nothing may have changed since it was made. */
  get(key: string): CachedReply | undefined {
    if (this.replies.size === 0 || this.unsettled()) return undefined;
    return this.replies.get(key);
  }

  /**
   * True while nothing may be kept or served: a call that may write is in
   * progress, or (and then everything kept is forgotten) a power state
   * changed or a change waits for the store.
   */
  private unsettled(): boolean {
    if (this.writers !== 0) return true;
    if (this.listVersion === this.app.listVersion && !this.app.hasPendingChanges) return false;
    this.forget();
    return true;
  }

  /** Where a reply begins to be made: hand it back to keep(). */
  get mark(): number {
    return this.epoch;
  }

  /**
   * Keep `reply`, made by a call that began at `mark` (the caller has
   * checked the rest: method, caller, handler).
   */
  keep(key: string, mark: number, reply: CachedReply): void {
    if (mark !== this.epoch || this.unsettled()) return;
    const size = key.length + reply.frame.length;
    if (this.replies.size >= MAX_ENTRIES || this.bytes + size > MAX_BYTES) this.forget();
    // its own memory: a small frame is a slice of Node's shared pool
    const frame = Buffer.allocUnsafeSlow(reply.frame.length);
    reply.frame.copy(frame);
    this.replies.set(key, { ...reply, frame });
    this.bytes += size;
  }

  /** A call that may write begins: nothing is kept or served until it ends. */
  writerBegins(): void {
    this.writers++;
    this.forget();
  }

  writerEnds(): void {
    this.writers--;
    this.forget();
  }

  private forget(): void {
    this.epoch++;
    this.listVersion = this.app.listVersion;
    if (this.replies.size === 0) return;
    this.replies.clear();
    this.bytes = 0;
  }
}

// What a method handler receives, and what it may return. The dispatcher has
// already checked the method table's rules (payload, argument, destination)
// and resolved the source and destination qubes before a handler runs.
import type { MethodSpec } from '../../lib/api-methods.js';
import type { QubesApp, Vm } from '../model/app.js';
import type { OkReply } from '../../lib/protocol/reply.js';
import type { Services } from './services.js';

export interface Call {
  readonly app: QubesApp;
  /** the daemon's services (storage, lifecycle, backups, firewalls): all a handler uses besides the model */
  readonly services: Services;
  readonly spec: MethodSpec;
  /** full method name, e.g. "admin.vm.property.Get" */
  readonly method: string;
  readonly source: Vm;
  readonly dest: Vm;
  /** the argument, ASCII ('' when none) */
  readonly arg: string;
  /** the untrusted payload, raw bytes */
  readonly payload: Buffer;
  /**
   * Send one EVENT frame. Once a handler sent an event it may not return
   * content; the call ends when the handler's promise settles.
   */
  sendEvent(subject: string, event: string, kwargs?: ReadonlyArray<readonly [string, string]>): void;
  /** Aborted when the client goes away (event streams end on this). */
  readonly signal: AbortSignal;
  /** policy-based visibility for management qubes (see CallFilter) */
  readonly filter: CallFilter;
}

/**
 * OK content too large to hold in memory (admin.vm.volume.Export): the
 * dispatcher sends the OK frame's header once the first chunk is ready and
 * then the chunks as the client takes them. An error before the first chunk
 * is an EXCEPTION frame; after it, the connection is dropped (the content
 * must let the client see it is incomplete). A chunk is written out and
 * drained before the next is asked for, so a producer may reuse its buffer.
 */
export class StreamedContent {
  constructor(readonly body: AsyncIterable<Buffer>) {}
}

/** string/Buffer: OK content; OkReply: a prebuilt OK frame; StreamedContent: streamed OK content; void/null: empty OK (or nothing after events). */
export type HandlerResult = string | Buffer | OkReply | StreamedContent | void | null;
export type Handler = (call: Call) => Promise<HandlerResult> | HandlerResult;
export type Handlers = Readonly<Record<string, Handler>>;

/**
 * What the caller may see, decided by the qrexec policy for non-dom0 callers
 * (as Qubes' admin extension filters admin.vm.List and admin.Events). For
 * dom0 both always return true.
 */
export interface CallFilter {
  /** may the caller see this qube in admin.vm.List (dest dom0)? */
  vm(vm: Vm): boolean;
  /** may the caller receive this event? subject '' means the system. */
  event(subject: string, event: string, kwargs: ReadonlyArray<readonly [string, string]>): boolean;
}

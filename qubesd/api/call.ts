// What a method handler receives, and what it may return. The dispatcher has
// already checked the method table's rules (payload, argument, destination)
// and resolved the source and destination qubes before a handler runs.
import type { MethodSpec } from '../../lib/api-methods.js';
import type { QubesApp, Vm } from '../model/app.js';

export interface Call {
  readonly app: QubesApp;
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

/** string/Buffer: OK content; void/null: empty OK (or nothing after events). */
export type HandlerResult = string | Buffer | void | null;
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

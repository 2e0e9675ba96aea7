// From request bytes to reply frames: the one path every Admin API call
// takes. The order of checks follows Qubes' qubesd so that a bad request gets
// the same error as there: framing, then source, destination, argument and
// method name, then the method table's payload, argument and destination
// rules, then the handler. After the handler, whatever it changed is made
// durable before the reply goes out.
import { lookupMethod, type MethodSpec } from '../../lib/api-methods.js';
import { QubesError, ProtocolError, pyRepr, replyError, QubesVMInvalidUUIDError, QubesVMNotFoundError } from '../errors.js';
import { StreamedContent, type Call, type CallFilter, type Handlers } from './call.js';
import { FramingError, parseRequestText } from '../../lib/protocol/request.js';
import { eventFrame, exceptionFrame, okFrame } from '../../lib/protocol/reply.js';
import { validateVmName, type QubesApp, type Vm } from '../model/app.js';
import type { AuditLog, CallRecord } from '../log/audit.js';
import type { Services } from './services.js';
import type { Change } from '../store/document.js';
import type { ReplyCache } from './reply-cache.js';
import { takeVolatileMark } from '../model/volatile-reads.js';

/**
 * The bus hands one event to every admin.Events stream in one synchronous
 * fan-out: encode it once for all of them (a 32 KiB feature value sent to
 * 70 streams was encoded 70 times, and blocked the daemon for seconds).
 * The cached frame lives until the fan-out ends.
 */
let lastEvent: { subject: string; event: string; kwargs: ReadonlyArray<readonly [string, string]>; frame: Buffer } | null = null;
function sharedEventFrame(subject: string, event: string, kwargs: ReadonlyArray<readonly [string, string]>): Buffer {
  if (lastEvent && lastEvent.kwargs === kwargs && lastEvent.subject === subject && lastEvent.event === event) return lastEvent.frame;
  if (!lastEvent)
    queueMicrotask(() => {
      lastEvent = null;
    });
  lastEvent = { subject, event, kwargs, frame: eventFrame(subject, event, kwargs) };
  return lastEvent.frame;
}

/** How the dispatcher talks back to one client connection. */
export interface Responder {
  /** write bytes; returns false when the peer is gone */
  write(frame: Buffer): boolean;
  /** close gracefully after the last write */
  end(): void;
  /** drop the connection without a reply (framing errors, as Qubes does) */
  abort(): void;
  /** aborted when the peer disconnects */
  readonly signal: AbortSignal;
  /** resolves when the peer has taken what was written (streamed content) */
  drain?(): Promise<void>;
  /** true when no other client was sending a request as this one's arrived (see Store.commit's writeNow) */
  readonly alone?: boolean;
}

/** Makes changes durable; resolves only once they are on disk. */
export interface Persister {
  commit(changes: Change[], writeNow?: boolean): Promise<void>;
}

/** Policy-based visibility for a calling qube (see CallFilter). */
export type FilterFactory = (source: Vm, method: string, arg: string) => CallFilter;

export const ALLOW_ALL: CallFilter = Object.freeze({ vm: () => true, event: () => true });

export interface DispatcherOptions {
  app: QubesApp;
  /** what handlers may use besides the model (Call.services) */
  services: Services;
  store: Persister;
  handlers: Handlers;
  audit: AuditLog;
  /** which socket this dispatcher serves: methods of the other are unknown here */
  socket: 'admin' | 'internal';
  filterFor?: FilterFactory;
  /** dom0's repeated reads answered from memory; shared by both sockets' dispatchers */
  replies?: ReplyCache;
}

const UUID_RE = /^uuid:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]*$/;

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Bytes that are not 7-bit ASCII: Python's strict ascii decode refuses them.
 * Takes the bytes decoded as latin1 (one character per byte), which the
 * audit record holds anyway: no second decoding.
 */
function asciiOrThrow(s: string, what: string): string {
  if (NON_ASCII.test(s)) throw ProtocolError(`${what} contains non-ASCII characters`);
  return s;
}

/** Qubes' decode_vm: 'uuid:<uuid>' or a validated name, then a lookup. */
export function decodeVm(app: QubesApp, raw: Buffer | string, what: string): Vm {
  const s = asciiOrThrow(typeof raw === 'string' ? raw : raw.toString('latin1'), what);
  if (s.startsWith('uuid:')) {
    if (s.length !== 41 || !UUID_RE.test(s)) throw QubesVMInvalidUUIDError(s.slice(5));
    const vm = app.getVmByUuid(s.slice(5));
    if (!vm) throw QubesVMNotFoundError(s);
    return vm;
  }
  validateVmName(s);
  const vm = app.getVm(s);
  if (!vm) throw QubesVMNotFoundError(s);
  return vm;
}

/**
 * What a handler gets. A class, not an object literal: a literal with a
 * getter (signal) made V8 keep every call's objects through young-generation
 * collections until the next full one, which cost more than the call.
 */
class ApiCall implements Call {
  eventsSent = false;
  constructor(
    readonly app: QubesApp,
    readonly services: Services,
    readonly spec: MethodSpec,
    readonly method: string,
    readonly source: Vm,
    readonly dest: Vm,
    readonly arg: string,
    readonly payload: Buffer,
    private readonly res: Responder,
    readonly filter: CallFilter,
  ) {}

  get signal(): AbortSignal {
    return this.res.signal;
  }

  sendEvent(subject: string, event: string, kwargs: ReadonlyArray<readonly [string, string]> = []): void {
    this.eventsSent = true;
    this.res.write(sharedEventFrame(subject, event, kwargs));
  }
}

export class Dispatcher {
  private lastCommit: Promise<void> = Promise.resolve();

  constructor(private readonly o: DispatcherOptions) {}

  /** Handle one complete request; never throws. */
  async handle(data: Buffer, res: Responder): Promise<void> {
    const t0 = performance.now();
    const { replies } = this.o;
    const key = replies ? replies.keyOf(data) : null;
    if (key !== null) {
      const hit = replies!.get(key);
      if (hit !== undefined && hit.socket === this.o.socket) {
        res.write(hit.frame);
        res.end();
        // the record's keys in the order of a full call's (the audit line is the same)
        this.o.audit.call({
          source: hit.source,
          method: hit.method,
          arg: hit.arg,
          dest: hit.dest,
          payloadBytes: 0,
          socket: this.o.socket,
          outcome: 'ok',
          message: undefined,
          ms: performance.now() - t0,
        });
        return;
      }
    }
    let req;
    try {
      req = parseRequestText(data);
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
      this.o.audit.call({
        source: '',
        method: '',
        arg: '',
        dest: '',
        outcome: 'dropped',
        message: e.message,
        ms: performance.now() - t0,
        payloadBytes: data.length,
        socket: this.o.socket,
      });
      res.abort();
      return;
    }
    // The audit record, completed (outcome, message, ms) when the call ends.
    // Completed in place, not spread into a new object: that object's
    // allocation site ended up in the old generation, and each call's
    // strings it held were then kept until a full collection.
    const rec: CallRecord = {
      source: req.source,
      method: req.method,
      arg: req.arg,
      dest: req.dest,
      payloadBytes: req.payload.length,
      socket: this.o.socket,
      outcome: '',
      message: undefined,
      ms: 0,
    };
    let spec: MethodSpec | undefined;
    try {
      const { app } = this.o;
      const source = decodeVm(app, rec.source, 'source');
      const dest = decodeVm(app, rec.dest, 'destination');
      const arg = asciiOrThrow(rec.arg, 'argument');
      const method = asciiOrThrow(req.method, 'method name');
      spec = lookupMethod(method);
      if (!spec || spec.socket !== this.o.socket || !this.o.handlers[method]) {
        throw ProtocolError(`no such method: ${pyRepr(method)}`);
      }
      checkRules(spec, arg, req.payload, dest);
      const call = new ApiCall(
        app,
        this.o.services,
        spec,
        method,
        source,
        dest,
        arg,
        req.payload,
        res,
        source.klass === 'AdminVM' || !this.o.filterFor ? ALLOW_ALL : this.o.filterFor(source, method, arg),
      );
      let result;
      // a reply worth keeping: from a cacheable read for dom0, made at once
      // (no await), with no unannounced read (takeVolatileMark) and no change
      let keep = key !== null && spec.cache === true && call.filter === ALLOW_ALL;
      const mark = keep ? replies!.mark : 0;
      // a call that may change something: no reply is kept or served until it
      // ends (reads change nothing: an event stream open for hours must not
      // turn the cache off)
      const writer = replies !== undefined && spec.access !== 'r';
      if (writer) replies.writerBegins();
      else if (keep) takeVolatileMark();
      try {
        // most handlers answer synchronously: no await (and microtask) for those
        result = this.o.handlers[method]!(call);
        if (keep && takeVolatileMark()) keep = false;
        if (result instanceof Promise) {
          keep = false;
          result = await result;
        }
      } finally {
        try {
          const durable = this.persist(spec, res.alone === true);
          if (durable) {
            keep = false;
            await durable;
          }
        } finally {
          if (writer) replies.writerEnds();
        }
      }
      const eventsSent = call.eventsSent;
      if (result instanceof StreamedContent) {
        const bytes = await sendStreamed(result, res);
        rec.outcome = bytes < 0 ? 'dropped' : 'ok';
        rec.ms = performance.now() - t0;
        this.o.audit.call(rec);
        return;
      }
      if (!eventsSent) {
        const frame = okFrame(result ?? null);
        res.write(frame);
        if (keep) replies!.keep(key!, mark, { frame, socket: this.o.socket, source: rec.source, method: rec.method, arg: rec.arg, dest: rec.dest });
      }
      res.end();
      rec.outcome = eventsSent ? 'events' : 'ok';
      rec.ms = performance.now() - t0;
      this.o.audit.call(rec);
    } catch (e) {
      const [type, message] = replyError(e);
      if (!(e instanceof QubesError)) this.o.audit.info('unhandled error in handler', { method: rec.method, stack: (e as Error)?.stack });
      // after events too: Qubes ends a stream that fails with the exception
      res.write(exceptionFrame(type, message));
      res.end();
      rec.outcome = type;
      rec.message = message;
      rec.ms = performance.now() - t0;
      this.o.audit.call(rec);
    }
  }

  /**
   * Commit what the call changed, and wait until it is durable. A call whose
   * changes were drained by a concurrent call still waits for that commit, so
   * no reply can overtake the write it depends on. Null when a read-only
   * call has nothing to wait for.
   */
  private persist(spec: MethodSpec, alone: boolean): Promise<void> | null {
    const changes = this.o.app.drainChanges();
    if (changes.length) this.lastCommit = this.o.store.commit(changes, alone);
    else if (spec.access === 'r') return null; // nothing to wait for
    return this.lastCommit;
  }
}

/**
 * OK content as a stream. The first chunk is awaited before anything is
 * written, so a failure to start is still an EXCEPTION frame (thrown to the
 * caller); a failure later drops the connection. Returns the bytes sent, or
 * -1 when the stream broke off.
 */
async function sendStreamed(content: StreamedContent, res: Responder): Promise<number> {
  const it = content.body[Symbol.asyncIterator]();
  let r = await it.next();
  res.write(okFrame(null));
  let sent = 0;
  try {
    for (; !r.done; r = await it.next()) {
      if (!res.write(r.value)) {
        await it.return?.();
        return -1;
      }
      sent += r.value.length;
      // out of our hands before the next chunk: producers reuse their buffers (StreamedContent)
      await res.drain?.();
      if (res.signal.aborted) {
        await it.return?.();
        return -1;
      }
    }
  } catch {
    res.abort();
    return -1;
  }
  res.end();
  return sent;
}

/** The method table's rules, in Qubes' order: payload, argument, destination. */
function checkRules(spec: MethodSpec, arg: string, payload: Buffer, dest: Vm): void {
  if (spec.payload === true && payload.length === 0) throw ProtocolError('expected payload');
  if (spec.payload === false && payload.length !== 0) throw ProtocolError('unexpected payload');
  if (spec.arg === true && arg === '') throw ProtocolError('expected an argument');
  if (spec.arg === false && arg !== '') throw ProtocolError('unexpected argument');
  const isAdmin = dest.klass === 'AdminVM';
  if (spec.dest === 'adminvm' && !isAdmin) throw ProtocolError('expected destination to be AdminVM');
  if (spec.dest === 'not-adminvm' && isAdmin) throw ProtocolError('expected destination to not be AdminVM');
}

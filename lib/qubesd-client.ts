// The one client of qubesd's socket protocol. Every part that talks to qubesd
// as a client (the REST gateway, the Admin-API restore, the handler program's
// import, the dispatcher's qube list, the policy daemon, the tests) goes
// through here, so framing, reply parsing, event streaming and time-outs are
// written once.
//
// One connection is one call, as in Qubes: the request is
//   <method>[+<arg>] SP <source> SP name SP <dest> NUL <payload>
// then the client shuts its write side; the reply is one OK or EXCEPTION
// frame (lib/protocol/reply.ts), or, for streaming methods (admin.Events,
// admin.vm.Stats), any number of EVENT frames ended by the connection's close
// or by one EXCEPTION frame.
import net from 'node:net';
import { encodeRequest } from './protocol/request.js';
import { EVENT, EXCEPTION, OK } from './protocol/reply.js';
import { RingReader, type RingOptions } from './ring-reader.js';
import type { WarmConnection } from './warm-connection.js';
import { connectForReply, expectReply, noteReplySize, onChunk, settleExpectation } from './reply-socket.js';

/** What one call names: the method, its argument, who calls and on what. */
export interface CallSpec {
  method: string;
  dest: string;
  arg?: string;
  /** The caller as qubesd should see it: `dom0`, or a qube's name. */
  source?: string;
  payload?: Buffer | string;
}

export interface CallOptions {
  /** Give up (and close the connection) after this many ms; 0 = never. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Make the call on this connection's spare, if it has one, and open the
   * next spare when the call ends (lib/warm-connection.ts). Only for calls
   * that may be made twice: a spare that turns out closed before any reply
   * byte came is given up and the call made again on a new connection.
   */
  warm?: WarmConnection;
  /**
   * The OK content this call most likely answers (the last answer to the same
   * read). When the reply is exactly that, the call resolves with this very
   * buffer, and the reply was compared as it came instead of being given
   * memory of its own (lib/reply-socket.ts); any other reply is read as usual.
   */
  expect?: Buffer;
}

/** qubesd answered with an EXCEPTION frame: Qubes' exception type and message. */
export class QubesdException extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly call: string,
  ) {
    super(message);
    this.name = 'QubesdException';
  }
}

/** The conversation itself failed: no qubesd, a time-out, a malformed reply. */
export class QubesdTransportError extends Error {
  constructor(
    message: string,
    readonly call: string,
  ) {
    super(message);
    this.name = 'QubesdTransportError';
  }
}

/** One qubesd event, as admin.Events streams it. */
export interface QubesdEvent {
  subject: string;
  event: string;
  kwargs: Array<[string, string]>;
}

function describe(spec: CallSpec): string {
  return `${spec.method}${spec.arg ? `+${spec.arg}` : ''} ${spec.dest}`;
}

function requestBytes(spec: CallSpec): Buffer {
  return encodeRequest(spec.method, spec.arg ?? '', spec.source ?? 'dom0', spec.dest, spec.payload ?? '');
}

/** Splits an exception body `type\0traceback\0message\0`. */
function exceptionOf(body: Buffer, call: string): QubesdException {
  const parts = body.toString('utf8').split('\0');
  return new QubesdException(parts[0] ?? '', parts[2] ?? '', call);
}

/** What one complete reply says: an OK frame's content, an exception, or bytes that are neither. */
export type DecodedReply = { kind: 'ok'; content: Buffer } | { kind: 'exception'; type: string; message: string } | { kind: 'malformed'; why: string };

/** Decodes the whole reply to a one-shot call (an OK or EXCEPTION frame). */
export function decodeReply(buf: Buffer): DecodedReply {
  if (buf.length === 0) return { kind: 'malformed', why: 'connection closed without a reply' };
  if (buf.length < 2 || buf[1] !== 0) return { kind: 'malformed', why: 'malformed reply' };
  if (buf[0] === OK) return { kind: 'ok', content: buf.subarray(2) };
  if (buf[0] === EXCEPTION) {
    const parts = buf.subarray(2).toString('utf8').split('\0');
    return { kind: 'exception', type: parts[0] ?? '', message: parts[2] ?? '' };
  }
  return { kind: 'malformed', why: `unexpected reply kind 0x${buf[0]!.toString(16)}` };
}

function destroySocket(sock: net.Socket): void {
  sock.destroy();
}

/**
 * Opens a connection (or takes `pre`, one opened ahead) and sends one
 * request. The caller reads the reply from the returned socket; `done` is
 * called exactly once with the end result.
 */
function open(
  socketPath: string,
  spec: CallSpec,
  opts: CallOptions,
  onData: (d: Buffer) => void,
  /**
   * `byUs`: the call was given up here (time-out, abort), not ended by qubesd;
   * `expected`: the reply was exactly opts.expect, and nothing was handed to onData
   */
  done: (err: Error | null, byUs: boolean, expected: boolean) => void,
  pre: net.Socket | null = null,
): net.Socket {
  const call = describe(spec);
  const sock = pre ?? connectForReply(socketPath, opts.expect !== undefined);
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  const finish = (err: Error | null, ours = false): void => {
    if (finished) return;
    finished = true;
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    // After a whole reply the socket is closed once the caller has used it:
    // closing costs a system call and a wake-up of qubesd, which need not
    // come before whatever the reply was wanted for.
    if (err) sock.destroy();
    else setImmediate(destroySocket, sock);
    const expected = opts.expect !== undefined && settleExpectation(sock, err === null);
    done(err, ours, expected);
  };
  const onAbort = (): void => finish(new QubesdTransportError('call aborted', call), true);
  if (opts.signal?.aborted) {
    queueMicrotask(onAbort);
    return sock;
  }
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.timeoutMs && opts.timeoutMs > 0) {
    timer = setTimeout(() => finish(new QubesdTransportError(`no answer from qubesd within ${opts.timeoutMs} ms`, call), true), opts.timeoutMs);
  }
  // a spare waits unreferenced (lib/warm-connection.ts); a call keeps the process up
  pre?.ref();
  if (opts.expect) expectReply(sock, opts.expect);
  if (sock.connecting) sock.once('connect', () => sock.end(requestBytes(spec)));
  else sock.end(requestBytes(spec));
  onChunk(sock, onData);
  sock.once('end', () => finish(null));
  sock.once('error', (e: NodeJS.ErrnoException) => {
    // The code says what went wrong to an operator; the path is theirs too.
    finish(new QubesdTransportError(`cannot talk to qubesd at ${socketPath} (${e.code ?? 'error'})`, call));
  });
  // every call ends with a close: an Error (and its stack) only when it is one
  sock.once('close', () => {
    if (!finished) finish(new QubesdTransportError('connection closed', call));
  });
  return sock;
}

/**
 * One Admin API call. Resolves with the OK frame's content; rejects with a
 * QubesdException for an EXCEPTION frame, a QubesdTransportError otherwise.
 */
export function callRaw(socketPath: string, spec: CallSpec, opts: CallOptions = {}): Promise<Buffer> {
  const { warm } = opts;
  if (!warm) return callOn(socketPath, spec, opts, null);
  // a spare of another socket is no use here (and stays for its own calls)
  const p = callOn(socketPath, spec, opts, warm.socketPath === socketPath ? warm.take() : null);
  // the next call's connection, opened while qubesd works on this one
  warm.refillSoon();
  return p;
}

function callOn(socketPath: string, spec: CallSpec, opts: CallOptions, pre: net.Socket | null): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    open(
      socketPath,
      spec,
      opts,
      (d) => chunks.push(d),
      (err, byUs, expected) => {
        if (expected) {
          noteReplySize(2 + opts.expect!.length);
          return resolve(opts.expect!);
        }
        // qubesd had closed the spare (not a byte of reply, and not our doing):
        // the call, a read, is made on a new connection
        if (pre && chunks.length === 0 && !byUs) return callOn(socketPath, spec, opts, null).then(resolve, reject);
        if (err) return reject(err);
        const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        noteReplySize(whole.length);
        const reply = decodeReply(whole);
        const call = describe(spec);
        if (reply.kind === 'ok') return resolve(reply.content);
        if (reply.kind === 'exception') return reject(new QubesdException(reply.type, reply.message, call));
        reject(new QubesdTransportError(reply.why, call));
      },
      pre,
    );
  });
}

/** callRaw, decoded as UTF-8 text (most Admin API replies are text). */
export async function call(socketPath: string, spec: CallSpec, opts: CallOptions = {}): Promise<string> {
  return (await callRaw(socketPath, spec, opts)).toString('utf8');
}

/**
 * Incremental parser for a stream of reply frames. EVENT frames are
 * self-delimiting (subject, name, key/value pairs, an empty key); a final
 * OK or EXCEPTION frame runs to the end of the stream.
 */
export class FrameStreamParser {
  private buf: Buffer = Buffer.alloc(0);
  private tail: Buffer | null = null;

  constructor(private readonly onEvent: (e: QubesdEvent) => void) {}

  push(d: Buffer): void {
    if (this.tail) {
      this.tail = Buffer.concat([this.tail, d]);
      return;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      if (this.buf.length < 2) return;
      if (this.buf[0] !== EVENT) {
        this.tail = this.buf;
        this.buf = Buffer.alloc(0);
        return;
      }
      const fields: string[] = [];
      let pos = 2;
      let complete = false;
      for (;;) {
        const nul = this.buf.indexOf(0, pos);
        if (nul < 0) break;
        const field = this.buf.subarray(pos, nul).toString('utf8');
        pos = nul + 1;
        // subject and event name first; after them an empty key ends the frame
        if (fields.length >= 2 && fields.length % 2 === 0 && field === '') {
          complete = true;
          break;
        }
        fields.push(field);
      }
      if (!complete) return;
      this.buf = this.buf.subarray(pos);
      const kwargs: Array<[string, string]> = [];
      for (let i = 2; i + 1 < fields.length; i += 2) kwargs.push([fields[i]!, fields[i + 1]!]);
      this.onEvent({ subject: fields[0]!, event: fields[1]!, kwargs });
    }
  }

  /** What followed the events (a final OK/EXCEPTION frame), if anything. */
  trailer(): Buffer | null {
    if (this.tail) return this.tail;
    return this.buf.length ? this.buf : null;
  }
}

export interface EventStream {
  /** Resolves when the stream ends cleanly; rejects on an EXCEPTION or a transport error. */
  readonly finished: Promise<void>;
  close(): void;
}

/**
 * Streams a method that answers with events (admin.Events by default).
 * `close()` ends it from our side; qubesd notices the closed connection.
 */
export function streamEvents(
  socketPath: string,
  spec: Partial<CallSpec> & { dest?: string },
  onEvent: (e: QubesdEvent) => void,
  opts: CallOptions = {},
): EventStream {
  const full: CallSpec = { method: 'admin.Events', dest: 'dom0', ...spec };
  const parser = new FrameStreamParser(onEvent);
  let closedByUs = false;
  let sock: net.Socket | undefined;
  const finished = new Promise<void>((resolve, reject) => {
    sock = open(
      socketPath,
      full,
      opts,
      (d) => parser.push(d),
      (err) => {
        if (closedByUs) return resolve();
        if (err) return reject(err);
        const t = parser.trailer();
        if (t && t.length >= 2 && t[0] === EXCEPTION) return reject(exceptionOf(t.subarray(2), describe(full)));
        resolve();
      },
    );
  });
  return {
    finished,
    close(): void {
      closedByUs = true;
      sock?.destroy();
    },
  };
}

/** A client bound to one socket and caller, for code that makes many calls. */
export class QubesdClient {
  constructor(
    readonly socketPath: string,
    readonly source = 'dom0',
    readonly defaults: CallOptions = {},
  ) {}

  call(method: string, dest: string, arg = '', payload: Buffer | string = '', opts: CallOptions = {}): Promise<string> {
    return call(this.socketPath, { method, dest, arg, payload, source: this.source }, { ...this.defaults, ...opts });
  }

  callRaw(method: string, dest: string, arg = '', payload: Buffer | string = '', opts: CallOptions = {}): Promise<Buffer> {
    return callRaw(this.socketPath, { method, dest, arg, payload, source: this.source }, { ...this.defaults, ...opts });
  }

  events(onEvent: (e: QubesdEvent) => void, dest = 'dom0', opts: CallOptions = {}): EventStream {
    return streamEvents(this.socketPath, { dest, source: this.source }, onEvent, opts);
  }
}

/**
 * A call whose OK content is streamed (admin.vm.volume.Export): resolves once
 * qubesd has answered, with the content as it arrives (read at the consumer's
 * pace); rejects with a QubesdException for an EXCEPTION frame. The content
 * iterator throws a QubesdTransportError if the connection fails mid-way;
 * `close()` drops the connection early.
 */
export async function callStream(
  socketPath: string,
  spec: CallSpec,
  opts: CallOptions & {
    /** Read into these buffers in turn (lib/ring-reader.ts): a chunk of the
     * content is then valid only until the next one is asked for. */
    ring?: RingOptions;
  } = {},
): Promise<{ content: AsyncGenerator<Buffer>; close(): void }> {
  const call = describe(spec);
  const ring = opts.ring ? new RingReader(opts.ring) : null;
  const sock = net.connect({ path: socketPath, allowHalfOpen: true, ...(ring ? { onread: ring.onread } : {}) });
  ring?.attach(sock);
  const onAbort = (): void => {
    sock.destroy(new QubesdTransportError('call aborted', call));
  };
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const cleanup = (): void => {
    opts.signal?.removeEventListener('abort', onAbort);
    sock.destroy();
  };
  sock.once('connect', () => sock.end(requestBytes(spec)));
  const it = ring ?? (sock as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const next = async (): Promise<IteratorResult<Buffer>> => {
    try {
      return await it.next();
    } catch (e) {
      if (e instanceof QubesdTransportError) throw e;
      throw new QubesdTransportError(`cannot talk to qubesd at ${socketPath} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, call);
    }
  };
  try {
    let head: Buffer = Buffer.alloc(0);
    while (head.length < 2) {
      const r = await next();
      if (r.done) throw new QubesdTransportError('connection closed without a reply', call);
      head = Buffer.concat([head, r.value]);
    }
    if (head[1] !== 0) throw new QubesdTransportError('malformed reply', call);
    if (head[0] === EXCEPTION) {
      const parts: Buffer[] = [head];
      // copied: a ring's chunk is reused once the next is read
      for (let r = await next(); !r.done; r = await next()) parts.push(Buffer.from(r.value));
      throw exceptionOf(Buffer.concat(parts).subarray(2), call);
    }
    if (head[0] !== OK) throw new QubesdTransportError(`unexpected reply kind 0x${head[0]!.toString(16)}`, call);
    const first = head.subarray(2);
    async function* content(): AsyncGenerator<Buffer> {
      try {
        if (first.length) yield first;
        for (let r = await next(); !r.done; r = await next()) yield r.value;
      } finally {
        cleanup();
      }
    }
    return { content: content(), close: cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

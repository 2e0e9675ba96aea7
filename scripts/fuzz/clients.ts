// The soak's clients: one connection per call as Qubes clients do, plus the
// misbehaving kinds (slow writers and readers, clients that vanish, event
// subscribers that never read) and a client of the local qrexec dispatcher.
// Every client has a deadline: nothing here can wait forever.
import net from 'node:net';
import { FrameReader } from '../../rpc-services/qrexec/protocol.js';

export interface Outcome {
  buf: Buffer;
  /** the daemon ended the connection (not us, not a timeout) */
  complete: boolean;
  /** the connection failed or was reset (ECONNRESET, EPIPE...) */
  error?: string;
  /** nothing came back before the deadline */
  timedOut: boolean;
  ms: number;
}

export interface CallOptions {
  /** give up after this long (default 30 s) */
  timeoutMs?: number;
  /** an event stream is closed by us this long after it started (default 300 ms) */
  streamMs?: number;
  /** write the request in small pieces with pauses (a slow client) */
  slowWrite?: { chunk: number; delayMs: number };
  /** do not read for this long after the request is sent (a slow reader) */
  readPauseMs?: number;
}

export function call(path: string, data: Buffer, o: CallOptions = {}): Promise<Outcome> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const sock = net.connect({ path, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let done = false;
    let streamTimer: NodeJS.Timeout | null = null;
    const finish = (complete: boolean, error?: string, timedOut = false) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      if (streamTimer) clearTimeout(streamTimer);
      sock.destroy();
      resolve({ buf: Buffer.concat(chunks), complete, error, timedOut, ms: Date.now() - t0 });
    };
    const deadline = setTimeout(() => finish(false, undefined, true), o.timeoutMs ?? 30_000);
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!streamTimer && chunks[0]![0] === 0x31) streamTimer = setTimeout(() => finish(false), o.streamMs ?? 300);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    sock.on('connect', async () => {
      if (o.readPauseMs) {
        sock.pause();
        setTimeout(() => {
          if (!done) sock.resume();
        }, o.readPauseMs);
      }
      if (!o.slowWrite) {
        sock.end(data);
        return;
      }
      for (let i = 0; i < data.length && !done; i += o.slowWrite.chunk) {
        sock.write(data.subarray(i, i + o.slowWrite.chunk));
        await new Promise((r) => setTimeout(r, o.slowWrite!.delayMs));
      }
      if (!done) sock.end();
    });
  });
}

/** Connect, maybe send part or all of a request, and go away after `afterMs`. */
export function vanish(path: string, data: Buffer, part: number, afterMs: number, endWrite: boolean): Promise<void> {
  return new Promise((resolve) => {
    const sock = net.connect({ path, allowHalfOpen: true });
    const t = setTimeout(() => {
      sock.destroy();
      resolve();
    }, afterMs);
    sock.on('error', () => {
      clearTimeout(t);
      sock.destroy();
      resolve();
    });
    sock.on('connect', () => {
      if (part > 0) sock.write(data.subarray(0, part));
      if (endWrite) sock.end();
    });
  });
}

export type SubscriberMode = 'never' | 'slow' | 'first';

export interface Subscriber {
  mode: SubscriberMode;
  received(): Buffer;
  /** the daemon closed the stream */
  closedByPeer(): boolean;
  close(): void;
  /** resolves when the connection is closed either way */
  gone: Promise<void>;
}

/**
 * An admin.Events subscriber. 'never' reads nothing at all; 'slow' reads a
 * little now and then; 'first' reads up to the first frame and disconnects.
 */
export function subscribe(path: string, request: Buffer, mode: SubscriberMode): Subscriber {
  const sock = net.connect({ path, allowHalfOpen: true });
  const chunks: Buffer[] = [];
  let peerClosed = false;
  let timer: NodeJS.Timeout | null = null;
  const gone = new Promise<void>((r) =>
    sock.once('close', () => {
      if (timer) clearInterval(timer);
      r();
    }),
  );
  sock.on('error', () => {
    /* close follows */
  });
  sock.on('end', () => {
    peerClosed = true;
  });
  sock.on('connect', () => {
    sock.end(request);
    if (mode === 'never') sock.pause();
    if (mode === 'slow') {
      sock.pause();
      timer = setInterval(() => {
        sock.resume();
        setTimeout(() => sock.pause(), 5);
      }, 200);
    }
  });
  sock.on('data', (d: Buffer) => {
    if (mode !== 'never') chunks.push(d);
    if (mode === 'first' && d.length > 0) sock.destroy();
  });
  return { mode, received: () => Buffer.concat(chunks), closedByPeer: () => peerClosed, close: () => sock.destroy(), gone };
}

export interface DispatcherOutcome {
  frames: Array<{ kind: number; data: Buffer }>;
  /** the dispatcher's frames did not parse */
  frameError?: string;
  complete: boolean;
  timedOut: boolean;
}

/**
 * Send raw bytes to a per-qube dispatcher socket; collect the frames that
 * come back. Like qrexec-client-vm, keep the write side open (the dispatcher
 * takes its end as the caller going away) unless `endWrite`.
 */
export function dispatcherCall(path: string, bytes: Buffer, endWrite: boolean, timeoutMs = 20_000): Promise<DispatcherOutcome> {
  return new Promise((resolve) => {
    const sock = net.connect({ path, allowHalfOpen: true });
    const reader = new FrameReader();
    const frames: Array<{ kind: number; data: Buffer }> = [];
    let done = false;
    const finish = (complete: boolean, frameError?: string, timedOut = false) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      if (streamTimer) clearTimeout(streamTimer);
      sock.destroy();
      resolve({ frames, frameError, complete, timedOut });
    };
    const t = setTimeout(() => finish(false, undefined, true), timeoutMs);
    sock.on('connect', () => (endWrite ? sock.end(bytes) : sock.write(bytes)));
    let streamTimer: NodeJS.Timeout | null = null;
    sock.on('data', (d: Buffer) => {
      try {
        frames.push(...reader.push(d));
      } catch (e) {
        finish(true, (e as Error).message);
        return;
      }
      // an event stream through qrexec never ends by itself: look at it briefly
      const firstOut = frames.find((f) => f.kind === 0x4f);
      if (!streamTimer && firstOut && firstOut.data[0] === 0x31) streamTimer = setTimeout(() => finish(false), 300);
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
  });
}

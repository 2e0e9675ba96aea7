// UNIX socket servers: one connection is one call. A request is everything
// the client sends before shutting its write side; more than MAX_REQUEST
// bytes and the connection is dropped unanswered, as Qubes does.
import net from 'node:net';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { MAX_REQUEST } from '../lib/protocol/request.js';
import type { Dispatcher, Responder } from './api/dispatch.js';
import type { SocketLimits } from './connection-limits.js';

export class SocketInUseError extends Error {}

/** Remove a stale socket file; refuse to steal one that a live process serves. */
export async function claimSocketPath(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new SocketInUseError(`socket already in use by a running process: ${path}`);
  unlinkSync(path);
}

/** the connections of each server still open */
const CONNECTIONS = new WeakMap<net.Server, OpenConnections>();
const SWEEPS = new WeakMap<net.Server, NodeJS.Timeout>();
/** How long a client may take to send its whole request. */
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Requests still being read are checked this often: one timer per server
 * instead of one per connection (arming and clearing a socket timeout on
 * every call costs a noticeable part of a short call).
 */
const SWEEP_MS = 1000;

/**
 * The open connections of one server, linked through the connections
 * themselves. A Map or Set of sockets, added to and deleted from on every
 * call, reallocated its hash table as it grew and shrank between one and
 * no entry: about 1 us and two garbage tables a call (perf, 1 client).
 */
class OpenConnections {
  head: SocketResponder | null = null;
  /**
   * how many are sending their request: connected clients that have sent
   * nothing yet (a client may connect ahead of its call, lib/warm-connection.ts)
   * are not counted, nor are event streams and calls being answered
   */
  reading = 0;
  /** timer ticks so far: a connection's `since` is compared with it */
  sweeps = 0;

  add(c: SocketResponder): void {
    c.next = this.head;
    if (this.head) this.head.prev = c;
    this.head = c;
  }

  /** its first bytes came: it counts as sending until its request is complete */
  sending(c: SocketResponder): void {
    c.sending = true;
    this.reading++;
  }

  remove(c: SocketResponder): void {
    this.requestDone(c);
    if (c.prev) c.prev.next = c.next;
    else if (this.head === c) this.head = c.next;
    if (c.next) c.next.prev = c.prev;
    c.prev = c.next = null;
  }

  /** the whole request arrived: no longer subject to the request timeout */
  requestDone(c: SocketResponder): void {
    if (c.sending) this.reading--;
    c.sending = false;
    c.since = -1;
  }

  sockets(): net.Socket[] {
    const out: net.Socket[] = [];
    for (let c = this.head; c; c = c.next) out.push(c.sock);
    return out;
  }
}

export async function listen(path: string, dispatcher: Dispatcher, limits?: SocketLimits): Promise<net.Server> {
  await claimSocketPath(path);
  const open = new OpenConnections();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    if (limits && !limits.admit(sock)) return;
    serveConnection(sock, dispatcher, open, limits);
  });
  CONNECTIONS.set(server, open);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o660);
  // A client that never finishes its request would hold a connection (and a
  // file descriptor) forever; one that is done sending is in no hurry.
  // When the socket is crowded, slow senders get less time (connection-limits.ts).
  const sweep = setInterval(() => {
    const sweeps = ++open.sweeps;
    const limit = Math.ceil((limits ? limits.requestTimeout() : REQUEST_TIMEOUT_MS) / SWEEP_MS);
    for (let c = open.head; c; c = c.next) if (c.since >= 0 && sweeps - c.since > limit) c.sock.destroy();
  }, SWEEP_MS);
  sweep.unref();
  SWEEPS.set(server, sweep);
  return server;
}

/**
 * How the dispatcher answers on one connection. A class, not an object
 * literal: a literal with a getter (signal) made V8 keep every connection's
 * objects through young-generation collections until the next full one
 * (about 2 KB a call promoted, measured with --trace-gc-nvp), and the
 * scavenges copying them were the largest cost of a short call.
 */
class SocketResponder implements Responder {
  /**
   * Only event streams and long calls look at the signal: creating (and
   * aborting) an AbortController for every short call costs more than the
   * call itself, so it is made on first use.
   */
  private ac: AbortController | null = null;
  closed = false;
  alone = false;
  /** some of its request came, not all */
  sending = false;
  /** neighbours in the server's OpenConnections */
  prev: SocketResponder | null = null;
  next: SocketResponder | null = null;

  constructor(
    readonly sock: net.Socket,
    private readonly limits: SocketLimits | undefined,
    /** the sweep count it arrived at, or -1 once its request is complete */
    public since: number,
  ) {}

  write(frame: Buffer): boolean {
    const { sock } = this;
    if (sock.destroyed) return false;
    if (this.limits) this.limits.write(sock, frame);
    else sock.write(frame);
    return true;
  }

  end(): void {
    if (this.sock.destroyed) return;
    if (this.limits) this.limits.end(this.sock);
    else this.sock.end();
  }

  abort(): void {
    this.sock.destroy();
  }

  drain(): Promise<void> {
    const { sock } = this;
    return !sock.writableNeedDrain || sock.destroyed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const done = (): void => {
            sock.off('drain', done);
            sock.off('close', done);
            resolve();
          };
          sock.on('drain', done);
          sock.on('close', done);
        });
  }

  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.closed) this.ac.abort();
    }
    return this.ac.signal;
  }

  /** the peer is gone: a signal already handed out is aborted */
  close(): void {
    this.closed = true;
    this.ac?.abort();
  }
}

function ignore(): void {
  /* peer vanished; 'close' follows */
}

function serveConnection(sock: net.Socket, dispatcher: Dispatcher, open: OpenConnections, limits?: SocketLimits): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let dropped = false;
  const res = new SocketResponder(sock, limits, open.sweeps);
  open.add(res);
  sock.on('data', (d: Buffer) => {
    if (dropped) return;
    if (size === 0) open.sending(res);
    size += d.length;
    if (size > MAX_REQUEST) {
      dropped = true;
      sock.destroy();
      return;
    }
    chunks.push(d);
  });
  sock.on('end', () => {
    open.requestDone(res);
    if (dropped) return;
    // a client that closes without sending a byte asked nothing: no call to
    // answer or record (one connected ahead of a call it did not make)
    if (size === 0) {
      res.abort();
      return;
    }
    res.alone = open.reading === 0;
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    if (limits && !limits.request(sock, data)) return;
    void dispatcher.handle(data, res);
  });
  sock.on('close', () => {
    open.remove(res);
    limits?.release();
    res.close();
  });
  sock.on('error', ignore);
}

/**
 * Stop accepting calls, give calls in progress a moment to finish, then end
 * what is left: event streams never end by themselves, and a client that
 * went away while its stream was idle is only noticed on the next write.
 */
export function closeServer(server: net.Server, path: string, graceMs = 2000): Promise<void> {
  const open = CONNECTIONS.get(server);
  clearInterval(SWEEPS.get(server));
  const timer = setTimeout(() => {
    for (const s of open?.sockets() ?? []) s.destroy();
  }, graceMs);
  return new Promise((resolve) => {
    server.close(() => {
      clearTimeout(timer);
      try {
        unlinkSync(path);
      } catch {
        /* already gone */
      }
      resolve();
    });
  });
}

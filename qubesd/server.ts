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

/** open connections: the sweep count they arrived at, or -1 once their request is complete */
const CONNECTIONS = new WeakMap<net.Server, Map<net.Socket, number>>();
const SWEEPS = new WeakMap<net.Server, NodeJS.Timeout>();
/** How long a client may take to send its whole request. */
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Requests still being read are checked this often: one timer per server
 * instead of one per connection (arming and clearing a socket timeout on
 * every call costs a noticeable part of a short call).
 */
const SWEEP_MS = 1000;

export async function listen(path: string, dispatcher: Dispatcher, limits?: SocketLimits): Promise<net.Server> {
  await claimSocketPath(path);
  // Whether a connection is still sending its request is the map's value:
  // a second collection, added to and removed from on every call, would
  // cost allocations on every call.
  const open = new Map<net.Socket, number>();
  // how many connections are still sending their request (event streams
  // and calls being answered are not counted)
  const reading = { count: 0 };
  let sweeps = 0;
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    if (limits && !limits.admit(sock)) return;
    open.set(sock, sweeps);
    reading.count++;
    serveConnection(sock, dispatcher, open, reading, limits);
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
    sweeps++;
    const limit = Math.ceil((limits ? limits.requestTimeout() : REQUEST_TIMEOUT_MS) / SWEEP_MS);
    for (const [sock, since] of open) if (since >= 0 && sweeps - since > limit) sock.destroy();
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

  constructor(
    private readonly sock: net.Socket,
    private readonly limits: SocketLimits | undefined,
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

function serveConnection(sock: net.Socket, dispatcher: Dispatcher, open: Map<net.Socket, number>, reading: { count: number }, limits?: SocketLimits): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let dropped = false;
  const res = new SocketResponder(sock, limits);
  sock.on('data', (d: Buffer) => {
    if (dropped) return;
    size += d.length;
    if (size > MAX_REQUEST) {
      dropped = true;
      sock.destroy();
      return;
    }
    chunks.push(d);
  });
  sock.on('end', () => {
    if (open.get(sock)! >= 0) reading.count--;
    open.set(sock, -1);
    if (dropped) return;
    res.alone = reading.count === 0;
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    if (limits && !limits.request(sock, data)) return;
    void dispatcher.handle(data, res);
  });
  sock.on('close', () => {
    if (open.get(sock)! >= 0) reading.count--;
    open.delete(sock);
    res.close();
  });
  sock.on('error', () => {
    /* peer vanished; 'close' follows */
  });
}

/**
 * Stop accepting calls, give calls in progress a moment to finish, then end
 * what is left: event streams never end by themselves, and a client that
 * went away while its stream was idle is only noticed on the next write.
 */
export function closeServer(server: net.Server, path: string, graceMs = 2000): Promise<void> {
  const open = CONNECTIONS.get(server) ?? new Map<net.Socket, number>();
  clearInterval(SWEEPS.get(server));
  const timer = setTimeout(() => {
    for (const s of open.keys()) s.destroy();
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

// UNIX socket servers: one connection is one call. A request is everything
// the client sends before shutting its write side; more than MAX_REQUEST
// bytes and the connection is dropped unanswered, as Qubes does.
import net from 'node:net';
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { MAX_REQUEST } from '../lib/protocol/request.js';
import type { Dispatcher, Responder } from './api/dispatch.js';

export class SocketInUseError extends Error {}

/** Remove a stale socket file; refuse to steal one that a live process serves. */
export async function claimSocketPath(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (live) throw new SocketInUseError(`socket already in use by a running process: ${path}`);
  unlinkSync(path);
}

const CONNECTIONS = new WeakMap<net.Server, Set<net.Socket>>();
/** How long a client may take to send its whole request. */
export const REQUEST_TIMEOUT_MS = 30_000;

export async function listen(path: string, dispatcher: Dispatcher): Promise<net.Server> {
  await claimSocketPath(path);
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    open.add(sock);
    sock.once('close', () => open.delete(sock));
    serveConnection(sock, dispatcher);
  });
  CONNECTIONS.set(server, open);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => { server.off('error', reject); resolve(); });
  });
  chmodSync(path, 0o660);
  return server;
}

function serveConnection(sock: net.Socket, dispatcher: Dispatcher): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let dropped = false;
  let requestDone = false;
  // Only event streams and long calls look at the signal: creating (and
  // aborting) an AbortController for every short call costs more than the
  // call itself, so it is made on first use.
  let ac: AbortController | null = null;
  let closed = false;
  const res: Responder = {
    write: (frame) => (sock.destroyed ? false : (sock.write(frame), true)),
    end: () => { if (!sock.destroyed) sock.end(); },
    abort: () => { sock.destroy(); },
    drain: () => (!sock.writableNeedDrain || sock.destroyed ? Promise.resolve() : new Promise<void>((resolve) => {
      const done = (): void => { sock.off('drain', done); sock.off('close', done); resolve(); };
      sock.on('drain', done);
      sock.on('close', done);
    })),
    get signal() {
      if (!ac) { ac = new AbortController(); if (closed) ac.abort(); }
      return ac.signal;
    },
  };
  sock.on('data', (d: Buffer) => {
    if (dropped) return;
    size += d.length;
    if (size > MAX_REQUEST) { dropped = true; sock.destroy(); return; }
    chunks.push(d);
  });
  // A client that never finishes its request would hold a connection (and a
  // file descriptor) forever; one that is done reading is in no hurry.
  sock.setTimeout(REQUEST_TIMEOUT_MS, () => { if (!requestDone) sock.destroy(); });
  sock.on('end', () => {
    requestDone = true;
    sock.setTimeout(0);
    if (dropped) return;
    void dispatcher.handle(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), res);
  });
  sock.on('close', () => { closed = true; ac?.abort(); });
  sock.on('error', () => { /* peer vanished; 'close' follows */ });
}

/**
 * Stop accepting calls, give calls in progress a moment to finish, then end
 * what is left: event streams never end by themselves, and a client that
 * went away while its stream was idle is only noticed on the next write.
 */
export function closeServer(server: net.Server, path: string, graceMs = 2000): Promise<void> {
  const open = CONNECTIONS.get(server) ?? new Set<net.Socket>();
  const timer = setTimeout(() => { for (const s of open) s.destroy(); }, graceMs);
  return new Promise((resolve) => {
    server.close(() => {
      clearTimeout(timer);
      try { unlinkSync(path); } catch { /* already gone */ }
      resolve();
    });
  });
}

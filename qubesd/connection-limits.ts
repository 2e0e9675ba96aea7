// What one client may hold of qubesd, so that no client (or crowd of them)
// can exhaust the daemon's memory or file descriptors, and dom0 always gets
// in:
// - connections per socket are capped; past the cap a new connection gets a
//   QubesException and is closed;
// - event streams (admin.Events, admin.vm.Stats) of callers other than dom0
//   may not use the last share of the connections: that share is dom0's;
// - every event stream has an output budget, and all streams together have
//   one: a client that does not read and falls that far behind is
//   disconnected (the audit log says so), so memory stays bounded;
// - a stream whose client went away is noticed at once, not at the next
//   event. The request ends with the client's shutdown of its write side,
//   so the daemon has already seen EOF and the kernel tells nothing more; a
//   zero-length write, though, fails with EPIPE as soon as the peer has
//   closed, and costs nothing otherwise: idle streams are probed so.
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import { exceptionFrame, EVENT } from '../lib/protocol/reply.js';

export interface ConnectionLimitOptions {
  /** how long a client may take to send its whole request (ms, default 30 s) */
  requestTimeoutMs?: number;
  /** open connections per socket (default, or 0: from the descriptor limit) */
  maxConnections?: number;
  /** connections of each socket that only dom0's event streams may use (default a quarter) */
  dom0Reserve?: number;
  /** bytes an event stream may have waiting for its client (default 4 MiB) */
  streamBuffer?: number;
  /** bytes all event streams together may have waiting (default 64 MiB) */
  streamBufferTotal?: number;
  /** how often idle streams are checked for a vanished client (ms, default 200) */
  probeIntervalMs?: number;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

const MiB = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
const STREAM_METHODS = [Buffer.from('admin.Events'), Buffer.from('admin.vm.Stats')];
/** How long a connection refused for being one too many may take to read its refusal. */
const REFUSED_LINGER_MS = 2000;
/** How long a connection may take to send its request once the socket is crowded. */
const CROWDED_REQUEST_TIMEOUT_MS = 2000;
/** How long a stream cut for falling behind may take to read what was queued before it. */
const CUT_LINGER_MS = 10_000;

/** The soft RLIMIT_NOFILE of this process (Linux), or null. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Two sockets share the descriptors, and the daemon keeps some for itself. */
export function defaultMaxConnections(limit = openFileLimit()): number {
  if (limit === null) return 1024;
  return Math.max(16, Math.min(4096, Math.floor((limit - 64) / 2)));
}

/**
 * Frames wait in `pending` (whole frames, ours to drop) while the socket's
 * own buffer is full, so that a stream can be cut without half a frame.
 * queued: pending bytes plus the socket's buffer, as last seen.
 * cut: no more frames; it ends after those the socket already holds (see drop).
 */
interface Stream {
  sock: net.Socket;
  source: string;
  dom0: boolean;
  queued: number;
  cut?: boolean;
  pending: Buffer[];
  pendingBytes: number;
  blocked: boolean;
  endWanted: boolean;
}

/** The limits of the whole daemon; one SocketLimits per listening socket. */
export class ConnectionLimits {
  requestTimeoutMs = 30_000;
  maxConnections = 0;
  dom0Reserve = 0;
  streamBuffer = 0;
  streamBufferTotal = 0;
  private readonly streams = new Map<net.Socket, Stream>();
  /** bytes queued by all streams, as last seen (kept exact when it matters) */
  private queuedTotal = 0;
  private probeTimer: NodeJS.Timeout | null = null;

  constructor(private readonly o: ConnectionLimitOptions = {}) {
    this.configure(o);
  }

  /** Set the limits (at start and on SIGHUP); connections already open keep theirs. */
  configure(c: Omit<ConnectionLimitOptions, 'log' | 'probeIntervalMs'>): void {
    this.requestTimeoutMs = c.requestTimeoutMs ?? 30_000;
    this.maxConnections = c.maxConnections || defaultMaxConnections();
    this.dom0Reserve = Math.min(this.maxConnections - 1, c.dom0Reserve ?? Math.max(2, Math.floor(this.maxConnections / 4)));
    this.streamBuffer = c.streamBuffer ?? 4 * MiB;
    this.streamBufferTotal = c.streamBufferTotal ?? 64 * MiB;
  }

  forSocket(name: string): SocketLimits {
    return new SocketLimits(this, name);
  }

  /** @internal a stream began on `sock` */
  addStream(s: Stream): void {
    this.streams.set(s.sock, s);
    if (!this.probeTimer) {
      this.probeTimer = setInterval(() => this.probe(), this.o.probeIntervalMs ?? 200);
      this.probeTimer.unref();
    }
  }

  /** @internal */
  removeStream(sock: net.Socket): void {
    const s = this.streams.get(sock);
    if (!s) return;
    this.queuedTotal -= s.queued;
    this.streams.delete(sock);
    if (this.streams.size === 0 && this.probeTimer) {
      clearInterval(this.probeTimer);
      this.probeTimer = null;
    }
  }

  /** @internal write a frame on a stream, in order; false: `sock` is not a stream */
  send(sock: net.Socket, frame: Buffer): boolean {
    // most calls are not streams, and most of the time there are none
    const s = this.streams.size === 0 ? undefined : this.streams.get(sock);
    if (!s) return false;
    if (s.cut) return true;
    if (s.pending.length === 0 && !s.blocked) {
      s.blocked = !sock.write(frame);
      if (s.blocked) sock.once('drain', () => this.flush(s));
    } else {
      s.pending.push(frame);
      s.pendingBytes += frame.length;
    }
    if (frame[0] === EVENT) this.accountWrite(s);
    return true;
  }

  /** @internal end a stream once its pending frames are written; false: not a stream */
  end(sock: net.Socket): boolean {
    const s = this.streams.size === 0 ? undefined : this.streams.get(sock);
    if (!s) return false;
    if (s.pending.length && !s.cut) s.endWanted = true;
    else sock.end();
    return true;
  }

  private flush(s: Stream): void {
    s.blocked = false;
    while (s.pending.length && !s.blocked && !s.sock.destroyed) {
      const f = s.pending.shift()!;
      s.pendingBytes -= f.length;
      s.blocked = !s.sock.write(f);
    }
    if (s.blocked) s.sock.once('drain', () => this.flush(s));
    else if (s.endWanted) s.sock.end();
    const now = s.pendingBytes + s.sock.writableLength;
    this.queuedTotal += now - s.queued;
    s.queued = now;
  }

  /** after a frame was queued on a stream: enforce both budgets */
  private accountWrite(s: Stream): void {
    const now = s.pendingBytes + s.sock.writableLength;
    this.queuedTotal += now - s.queued;
    s.queued = now;
    if (now > this.streamBuffer) {
      this.drop(s, 'stream buffer exceeded');
      return;
    }
    if (this.queuedTotal > this.streamBufferTotal) this.shed();
  }

  /** Over the shared budget: recount, then drop the streams furthest behind. */
  private shed(): void {
    let total = 0;
    for (const s of this.streams.values()) {
      s.queued = s.pendingBytes + s.sock.writableLength;
      total += s.queued;
    }
    this.queuedTotal = total;
    if (total <= this.streamBufferTotal) return;
    // cutting the streams furthest behind frees their pending frames; only if
    // that is not enough, streams already cut lose what the socket holds too
    const behind = [...this.streams.values()].sort((a, b) => Number(a.cut ?? false) - Number(b.cut ?? false) || b.queued - a.queued);
    for (const s of behind) {
      if (this.queuedTotal <= this.streamBufferTotal * 0.75) break;
      if (s.cut) {
        this.removeStream(s.sock);
        s.sock.destroy();
      } else {
        this.drop(s, 'total stream buffer exceeded');
      }
    }
  }

  /**
   * No more events for this stream; it ends after the frames already queued,
   * so a client that reads again sees whole frames and then the end, never
   * half a frame. One that does not read by CUT_LINGER_MS (or while the
   * shared budget is short) is disconnected outright.
   */
  private drop(s: Stream, reason: string): void {
    if (s.cut) return;
    this.o.log?.('event stream disconnected: client does not read', { source: s.source, queuedBytes: s.queued, reason });
    s.cut = true;
    s.pending = [];
    s.pendingBytes = 0;
    const left = s.sock.writableLength;
    this.queuedTotal += left - s.queued;
    s.queued = left;
    s.sock.end();
    const timer = setTimeout(() => s.sock.destroy(), CUT_LINGER_MS);
    timer.unref();
    s.sock.once('close', () => clearTimeout(timer));
  }

  /** A zero-length write fails at once (EPIPE) when the client is gone. */
  private probe(): void {
    for (const s of this.streams.values()) {
      const sock = s.sock;
      if (sock.destroyed || sock.writableEnded) continue;
      if (sock.writableLength === 0 && !s.blocked && s.pending.length === 0) {
        if (s.queued !== 0) {
          this.queuedTotal -= s.queued;
          s.queued = 0;
        }
        sock.write(EMPTY);
      }
    }
  }
}

/** The limits as one listening socket applies them. */
export class SocketLimits {
  /**
   * connections admitted and not yet closed (a count, not a set: the server
   * tells when one closes, see release)
   */
  private open = 0;
  private nonDom0Streams = 0;

  constructor(
    private readonly all: ConnectionLimits,
    readonly name: string,
  ) {}

  /**
   * A new connection: false (and the client told why) when there are too
   * many. The caller calls release() once an admitted one has closed.
   */
  admit(sock: net.Socket): boolean {
    if (this.open >= this.all.maxConnections) {
      sock.on('error', () => {
        /* the client may be gone already */
      });
      sock.resume();
      sock.end(exceptionFrame('QubesException', 'Too many connections to qubesd, try again later'));
      sock.setTimeout(REFUSED_LINGER_MS, () => sock.destroy());
      sock.once('end', () => sock.destroy());
      return false;
    }
    this.open++;
    return true;
  }

  /** An admitted connection closed. */
  release(): void {
    this.open--;
  }

  /** How long a connection may take to send its request (less when the socket is crowded). */
  requestTimeout(): number {
    const normal = this.all.requestTimeoutMs;
    return this.open >= this.all.maxConnections - this.all.dom0Reserve ? Math.min(normal, CROWDED_REQUEST_TIMEOUT_MS) : normal;
  }

  /**
   * The whole request arrived: an event stream is counted (and refused
   * when only dom0's share is left and the caller is not dom0).
   * Returns false when the request was answered here.
   */
  request(sock: net.Socket, data: Buffer): boolean {
    if (!STREAM_METHODS.some((m) => startsWithMethod(data, m))) return true;
    const s1 = data.indexOf(0x20);
    const s2 = s1 < 0 ? -1 : data.indexOf(0x20, s1 + 1);
    const source = s2 < 0 ? '' : data.subarray(s1 + 1, s2).toString('latin1');
    const dom0 = source === 'dom0';
    if (!dom0 && this.nonDom0Streams >= this.all.maxConnections - this.all.dom0Reserve) {
      sock.end(exceptionFrame('QubesException', 'Too many event streams open, try again later'));
      return false;
    }
    if (!dom0) {
      this.nonDom0Streams++;
      sock.once('close', () => {
        this.nonDom0Streams--;
      });
    }
    this.all.addStream({ sock, source, dom0, queued: 0, pending: [], pendingBytes: 0, blocked: false, endWanted: false });
    sock.once('close', () => this.all.removeStream(sock));
    return true;
  }

  /** Write a frame; event frames count against the stream's budget. */
  write(sock: net.Socket, frame: Buffer): void {
    if (sock.writableEnded) return; // a stream cut for falling behind
    if (!this.all.send(sock, frame)) sock.write(frame);
  }

  /** End the connection; a stream only after the frames it still has pending. */
  end(sock: net.Socket): void {
    if (!this.all.end(sock)) sock.end();
  }
}

/** Compared byte by byte here: Buffer.compare's call into C++ cost more than the loop. */
function startsWithMethod(data: Buffer, m: Buffer): boolean {
  const n = m.length;
  if (data.length <= n) return false;
  for (let i = 0; i < n; i++) if (data[i] !== m[i]) return false;
  const next = data[n];
  return next === 0x20 || next === 0x2b;
}

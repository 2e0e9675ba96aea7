// One connection to qubesd opened ahead of the call that will use it.
//
// A call is one connection, as in Qubes. Opening it is a connect() here, an
// accept and a new socket object in qubesd, and one more wake-up of qubesd
// before it sees the request: with one client waiting on a chain of processes
// (HTTP client, gateway, qubesd), all of that is latency. A caller that makes
// calls back to back (the REST gateway) can open the next call's connection
// ahead, so that the next request goes out on a socket qubesd has already
// accepted. It is opened as soon as a call has gone out on the last one,
// while qubesd works on that call: qubesd finds it waiting when it has
// answered and accepts it without being woken for it, and the caller connects
// while it would only wait. Opened once a call had ended instead, the connect
// woke qubesd again while the HTTP client was reading its answer, both
// wanting a CPU of two (one client on 1000 qubes: qubesd's CPU per request
// 0.15-0.18 ms against 0.17-0.20, 14 rounds in turn).
//
// qubesd sees nothing new: a connection that sends its request some time
// after connecting, which any client may do. A spare nobody uses is closed
// after `idleMs` (well within qubesd's request time-out), having sent
// nothing, which qubesd does not count as a call (qubesd/server.ts). qubesd
// may still close a spare first (it restarts, or a crowded socket shortens
// its time-out): a call whose connection ends before any reply byte is only
// safe to make again when it is a read, so only reads are given a warm
// connection (lib/qubesd-client.ts retries them once on a fresh one).
import type net from 'node:net';
import { connectForReply, onChunk } from './reply-socket.js';

/** Whatever happens to a spare before it is used ends it. */
const SPARE_EVENTS = ['error', 'end', 'close'] as const;

export class WarmConnection {
  private spare: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refilling = false;
  private closed = false;

  constructor(
    readonly socketPath: string,
    /** how long a spare may wait for a call (ms) */
    private readonly idleMs = 1000,
  ) {}

  /** The spare, connected or still connecting, or null when there is none. */
  take(): net.Socket | null {
    const s = this.spare;
    if (!s) return null;
    this.spare = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return s.destroyed || s.readableEnded ? null : s;
  }

  /**
   * Opens the next spare once the current turn of the event loop is over
   * (after the caller has sent what it was sending): called when a call has
   * gone out.
   */
  refillSoon(): void {
    if (this.spare || this.refilling || this.closed) return;
    this.refilling = true;
    setImmediate(() => {
      this.refilling = false;
      if (this.spare || this.closed) return;
      // spares serve reads, which may come with an expected reply
      const s = connectForReply(this.socketPath, true);
      // left in place once the spare is taken: from then on it does nothing
      const gone = (): void => {
        if (this.spare !== s) return;
        this.spare = null;
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        s.destroy();
      };
      for (const ev of SPARE_EVENTS) s.on(ev, gone);
      // qubesd says nothing before a request: a byte would be a broken peer
      onChunk(s, gone);
      this.spare = s;
      this.timer = setTimeout(gone, this.idleMs);
      this.timer.unref();
      s.unref();
    });
  }

  /** Closes the spare and opens no more. */
  close(): void {
    this.closed = true;
    this.take()?.destroy();
  }
}

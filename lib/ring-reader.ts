// Reading a socket into a fixed set of buffers, used in turn, instead of a new
// 64 KiB buffer per read. A disk export through the REST gateway is 512 MiB
// of reads from qubesd's socket: fresh buffers for all of that kept the
// gateway's garbage collector busy (the ones alive at two scavenges are
// promoted and count, 64 KiB each, towards the next full collection), and
// the bigger reads a ring allows cost fewer system calls per MiB.
//
// net's `onread` option does the reading: the kernel copies straight into
// the ring. A chunk handed out stays untouched until the consumer asks for
// the next one; when every buffer is filled or held, reading pauses (the
// writer on the other end waits on the socket) until one is handed back.
import type net from 'node:net';

export interface RingOptions {
  /** buffers in the ring (at least 2) */
  count: number;
  /** bytes per buffer, the most one read returns */
  size: number;
}

/** The `onread` option for net.connect, and the reader that consumes it. */
export class RingReader {
  private readonly ring: Buffer[];
  private readonly queue: Buffer[] = [];
  /** the buffer the next read fills */
  private write = 0;
  /** buffers filled and not handed back (queued, or with the consumer) */
  private filled = 0;
  private holding = false;
  private paused = false;
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private sock: net.Socket | null = null;

  constructor(opts: RingOptions) {
    this.ring = Array.from({ length: Math.max(2, opts.count) }, () => Buffer.allocUnsafeSlow(opts.size));
  }

  /** For net.connect({ onread }). */
  readonly onread = {
    buffer: (): Buffer => this.ring[this.write]!,
    callback: (n: number, buf: Buffer): boolean => {
      this.queue.push(buf.subarray(0, n));
      this.write = (this.write + 1) % this.ring.length;
      this.filled++;
      this.notify();
      if (this.filled < this.ring.length) return true;
      this.paused = true;
      return false;
    },
  };

  /** Watches `sock` for its end and its errors. */
  attach(sock: net.Socket): void {
    this.sock = sock;
    sock.once('end', () => {
      this.ended = true;
      this.notify();
    });
    sock.once('close', () => {
      this.ended = true;
      this.notify();
    });
    sock.once('error', (e) => {
      this.failure ??= e;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next chunk; the one handed out before is given back to the ring. */
  async next(): Promise<IteratorResult<Buffer>> {
    if (this.holding) {
      this.holding = false;
      this.filled--;
      if (this.paused && this.filled < this.ring.length) {
        this.paused = false;
        this.sock?.resume();
      }
    }
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        this.holding = true;
        return { done: false, value: chunk };
      }
      if (this.failure) throw this.failure;
      if (this.ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

// The local qrexec wire format between qrexec-client-vm and the dispatcher:
// one connection per call, a sequence of frames [kind u8][length u32 BE][data].
//
// client → dispatcher: REQUEST "<target>\0<service>[+<argument>]" once, then
//   STDIN chunks, then STDIN_EOF.
// dispatcher → client: ACCEPTED (the service runs) or REFUSED (policy said no)
//   or PROBLEM "<message>" (qrexec could not run it); after ACCEPTED, STDOUT
//   chunks and finally EXIT "<code>".
export const enum Kind {
  REQUEST = 0x52, // 'R'
  STDIN = 0x49, // 'I'
  STDIN_EOF = 0x45, // 'E'
  ACCEPTED = 0x41, // 'A'
  REFUSED = 0x44, // 'D'
  PROBLEM = 0x50, // 'P'
  STDOUT = 0x4f, // 'O'
  EXIT = 0x58, // 'X'
}

/** Exit codes as qrexec-client-vm reports them (a service that could not run:
 * lib/service-exec.ts). */
export const EXIT_REFUSED = 126;
export { EXIT_NOT_FOUND, EXIT_PROBLEM } from '../../lib/service-exec.js';
export const REFUSED_MESSAGE = 'Request refused';

/** Largest frame either side accepts (a REQUEST carries at most a 65000-byte service). */
export const MAX_FRAME = 1 << 17;

export function frame(kind: Kind, data: Buffer | string = ''): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = kind;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

export class FrameError extends Error {}

/** Incremental frame parser; push() returns the complete frames so far. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Array<{ kind: number; data: Buffer }> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Array<{ kind: number; data: Buffer }> = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (len > MAX_FRAME) throw new FrameError(`frame of ${len} bytes exceeds the limit of ${MAX_FRAME}`);
      if (this.buf.length < 5 + len) break;
      out.push({ kind: this.buf[0]!, data: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

// admin.vm.volume.Import and ImportWithSize: a volume image can be far larger
// than qubesd takes in one request, so the data never passes through qubesd.
// qubesd checks the call and hands out a path (internal.vm.volume.ImportBegin),
// this program streams standard input into it with exact size checks, and
// qubesd's answer to internal.vm.volume.ImportEnd is the caller's reply.
import net from 'node:net';
import { encodeRequest } from '../lib/protocol/request.js';
import { copyStreamInto } from '../lib/sparse-copy.js';
import { BadCall, forward, type CallContext } from './handler.js';

/** ImportWithSize's first line: the size in decimal, newline included at most 21 bytes. */
const SIZE_LINE_MAX = 21;

function internalCall(socketPath: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    sock.once('connect', () => sock.end(request));
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.once('end', () => resolve(Buffer.concat(chunks)));
    sock.once('error', (e) => reject(new BadCall('QubesDaemonCommunicationError', `cannot talk to qubesd at ${socketPath}: ${e.message}`)));
  });
}

/** Reads standard input in order: first a line, then the rest as a stream. */
class Input {
  private readonly it = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  private pending: Buffer | null = null;

  async next(): Promise<Buffer | null> {
    if (this.pending) { const p = this.pending; this.pending = null; return p; }
    const r = await this.it.next();
    return r.done ? null : r.value;
  }

  /** What is left of standard input (after the size line, if read). */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (let chunk = await this.next(); chunk; chunk = await this.next()) yield chunk;
  }

  async sizeLine(): Promise<string> {
    let line = Buffer.alloc(0);
    for (;;) {
      const chunk = await this.next();
      if (!chunk) throw new BadCall('ProtocolError', 'end of input before the size line ended');
      const nl = chunk.indexOf(0x0a);
      const upto = nl < 0 ? chunk : chunk.subarray(0, nl);
      line = Buffer.concat([line, upto]);
      if (line.length + 1 > SIZE_LINE_MAX) throw new BadCall('ProtocolError', `no newline in the first ${SIZE_LINE_MAX} bytes`);
      if (nl >= 0) {
        if (nl + 1 < chunk.length) this.pending = chunk.subarray(nl + 1);
        break;
      }
    }
    for (const b of line) if (b < 0x20 || b > 0x7e) throw new BadCall('ProtocolError', `invalid byte ${b} in size line`);
    return line.toString('latin1');
  }
}

export async function serveImport(c: CallContext): Promise<number> {
  const input = new Input();
  const payload = c.service === 'admin.vm.volume.ImportWithSize' ? await input.sizeLine() : '';
  const begin = await internalCall(c.sockets.internal,
    encodeRequest('internal.vm.volume.ImportBegin', c.arg, c.source, c.dest, payload));
  if (begin.length < 2 || begin[0] !== 0x30) {
    process.stdout.write(begin);
    return 1;
  }
  const content = begin.subarray(2).toString('utf8');
  const sp = content.indexOf(' ');
  const size = Number(content.slice(0, sp));
  const path = content.slice(sp + 1);
  if (sp <= 0 || !Number.isSafeInteger(size) || size < 0 || !path) {
    throw new BadCall('QubesException', `qubesd gave an unusable import target: ${JSON.stringify(content)}`);
  }
  // The storage layer's copy: exact size, zeros left as holes, fdatasync.
  const r = await copyStreamInto(input, path, size);
  await forward(c.sockets.internal,
    encodeRequest('internal.vm.volume.ImportEnd', c.arg, c.source, c.dest, r.ok ? 'ok' : `fail\n${r.error}`));
  return 0;
}

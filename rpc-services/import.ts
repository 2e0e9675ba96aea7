// admin.vm.volume.Import and ImportWithSize: a volume image can be far larger
// than qubesd takes in one request, so the data never passes through qubesd.
// qubesd checks the call and hands out a path (internal.vm.volume.ImportBegin),
// this program streams standard input into it with exact size checks, and
// qubesd's answer to internal.vm.volume.ImportEnd is the caller's reply.
//
// The handler program loads this module on demand, beside its own bundled
// copy of everything else, so the two share no classes: serveImport answers
// every failure itself and never throws.
import { callRaw, QubesdException, QubesdTransportError } from '../lib/qubesd-client.js';
import { exceptionFrame, okFrame } from '../lib/protocol/reply.js';
import { copyStreamInto } from '../lib/sparse-copy.js';
import type { CallContext } from './call-context.js';

/** A refusal of this program's own, in the exception type the caller sees. */
class ImportRefused extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** ImportWithSize's first line: the size in decimal, newline included at most 21 bytes. */
const SIZE_LINE_MAX = 21;

/** Reads standard input in order: first a line, then the rest as a stream. */
class Input {
  private readonly it = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  private pending: Buffer | null = null;

  async next(): Promise<Buffer | null> {
    if (this.pending) {
      const p = this.pending;
      this.pending = null;
      return p;
    }
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
      if (!chunk) throw new ImportRefused('ProtocolError', 'end of input before the size line ended');
      const nl = chunk.indexOf(0x0a);
      const upto = nl < 0 ? chunk : chunk.subarray(0, nl);
      line = Buffer.concat([line, upto]);
      if (line.length + 1 > SIZE_LINE_MAX) throw new ImportRefused('ProtocolError', `no newline in the first ${SIZE_LINE_MAX} bytes`);
      if (nl >= 0) {
        if (nl + 1 < chunk.length) this.pending = chunk.subarray(nl + 1);
        break;
      }
    }
    for (const b of line) if (b < 0x20 || b > 0x7e) throw new ImportRefused('ProtocolError', `invalid byte ${b} in size line`);
    return line.toString('latin1');
  }
}

/** The caller's reply: what qubesd answered, or why there is no answer. */
function reply(frame: Buffer): void {
  process.stdout.write(frame);
}

function failure(e: unknown): Buffer {
  if (e instanceof QubesdException || e instanceof ImportRefused) return exceptionFrame(e.type, e.message);
  if (e instanceof QubesdTransportError) return exceptionFrame('QubesDaemonCommunicationError', e.message);
  return exceptionFrame('QubesException', (e as Error).message);
}

/** Resolves with the exit code; the reply is on standard output. */
export async function serveImport(c: CallContext): Promise<number> {
  const input = new Input();
  const call = { arg: c.arg, source: c.source, dest: c.dest };
  let target: string;
  try {
    const payload = c.service === 'admin.vm.volume.ImportWithSize' ? await input.sizeLine() : '';
    target = (await callRaw(c.sockets.internal, { method: 'internal.vm.volume.ImportBegin', ...call, payload })).toString('utf8');
  } catch (e) {
    reply(failure(e));
    return 1;
  }
  try {
    const sp = target.indexOf(' ');
    const size = Number(target.slice(0, sp));
    const path = target.slice(sp + 1);
    if (sp <= 0 || !Number.isSafeInteger(size) || size < 0 || !path) {
      throw new ImportRefused('QubesException', `qubesd gave an unusable import target: ${JSON.stringify(target)}`);
    }
    // The sparse copy: exact size, zeros left as holes, fdatasync.
    const r = await copyStreamInto(input, path, size);
    const end = await callRaw(c.sockets.internal, { method: 'internal.vm.volume.ImportEnd', ...call, payload: r.ok ? 'ok' : `fail\n${r.error}` });
    reply(okFrame(end));
    return 0;
  } catch (e) {
    // qubesd's refusal of ImportEnd is the caller's reply, as Qubes' script has it
    reply(failure(e));
    return e instanceof QubesdException ? 0 : 1;
  }
}

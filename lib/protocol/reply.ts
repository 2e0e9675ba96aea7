// Reply frames. Every reply starts with a one-byte kind and a NUL:
//   0x30 0x00 <content>                                   OK
//   0x31 0x00 <subject> 0x00 <event> 0x00 (<k> 0x00 <v> 0x00)* 0x00   EVENT (repeated)
//   0x32 0x00 <type> 0x00 <traceback> 0x00 <message> 0x00  EXCEPTION
// The connection is closed after an OK or EXCEPTION reply.

export const OK = 0x30,
  EVENT = 0x31,
  EXCEPTION = 0x32;

/**
 * An OK frame built once and sent many times (a reply that is cached, such
 * as dom0's admin.vm.List): sending it copies nothing.
 */
export class OkReply {
  readonly frame: Buffer;
  constructor(content: string | Buffer) {
    this.frame = okFrame(content);
  }
}

export function okFrame(content: string | Buffer | OkReply | null | undefined): Buffer {
  if (content instanceof OkReply) return content.frame;
  if (content === null || content === undefined || content.length === 0) return Buffer.from([OK, 0]);
  if (typeof content === 'string') {
    // encoded straight into the frame, not into a buffer that is then copied
    const out = Buffer.allocUnsafe(Buffer.byteLength(content, 'utf8') + 2);
    out[0] = OK;
    out[1] = 0;
    out.write(content, 2, 'utf8');
    return out;
  }
  const out = Buffer.allocUnsafe(content.length + 2);
  out[0] = OK;
  out[1] = 0;
  content.copy(out, 2);
  return out;
}

/**
 * A field of an EXCEPTION or EVENT frame can never carry NUL: the client
 * splits frames at NUL, so one inside a field (a name echoed from an
 * untrusted payload, say) would shift every later field. Qubes sends such
 * text raw; here it goes out as Python's repr() spells the character.
 * Values are refused where they are validated; this is the last line of
 * defence.
 */
export function frameField(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '\\x00') : s;
}

export function exceptionFrame(type: string, message: string, traceback = ''): Buffer {
  return Buffer.concat([Buffer.from([EXCEPTION, 0]), Buffer.from(`${frameField(type)}\0${frameField(traceback)}\0${frameField(message)}\0`, 'utf8')]);
}

/** kwargs are written in insertion order, as Python keeps them. */
export function eventFrame(subject: string, event: string, kwargs: ReadonlyArray<readonly [string, string]> = []): Buffer {
  let s = `${frameField(subject)}\0${frameField(event)}\0`;
  for (const [k, v] of kwargs) s += `${frameField(k)}\0${frameField(v)}\0`;
  s += '\0';
  return Buffer.concat([Buffer.from([EVENT, 0]), Buffer.from(s, 'utf8')]);
}

export interface ParsedReply {
  kind: 'ok' | 'exception';
  content?: Buffer;
  type?: string;
  message?: string;
}

/** Parse a complete non-event reply (for clients and tests). */
export function parseReply(buf: Buffer): ParsedReply {
  if (buf.length < 2 || buf[1] !== 0) throw new Error('malformed reply');
  if (buf[0] === OK) return { kind: 'ok', content: buf.subarray(2) };
  if (buf[0] === EXCEPTION) {
    const parts = buf.subarray(2).toString('utf8').split('\0');
    return { kind: 'exception', type: parts[0]!, message: parts[2] ?? '' };
  }
  throw new Error(`unexpected reply kind 0x${buf[0]!.toString(16)}`);
}

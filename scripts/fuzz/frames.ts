// What the soak checks in every reply, written from the protocol description
// (not from qubesd's own encoder): the framing of OK, EXCEPTION and EVENT
// replies, and text that must never reach a client (Node error codes, stack
// frames, internal paths, unhandled-error wrappers).

export type ReplyKind = 'ok' | 'exception' | 'events' | 'empty';

export interface Verdict {
  kind: ReplyKind;
  /** why the bytes are not a valid reply; undefined when they are */
  malformed?: string;
  /** the human-readable parts, for the leak scan */
  texts: string[];
}

const TYPE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The NUL-terminated fields of buf from pos; `rest` is what follows the last NUL. */
function fieldsFrom(buf: Buffer, pos: number): { fields: Buffer[]; rest: Buffer } {
  const fields: Buffer[] = [];
  for (;;) {
    const z = buf.indexOf(0, pos);
    if (z < 0) return { fields, rest: buf.subarray(pos) };
    fields.push(buf.subarray(pos, z));
    pos = z + 1;
  }
}

function checkException(buf: Buffer): { malformed?: string; texts: string[] } {
  const { fields, rest } = fieldsFrom(buf, 2);
  const texts = fields.map((f) => f.toString('utf8'));
  if (fields.length !== 3 || rest.length !== 0)
    return {
      malformed: `EXCEPTION frame with ${fields.length} fields${rest.length ? ' and unterminated bytes' : ''}`,
      texts: [...texts, rest.toString('utf8')],
    };
  if (!TYPE_NAME.test(texts[0]!)) return { malformed: `EXCEPTION type ${JSON.stringify(texts[0])} is not a class name`, texts };
  return { texts };
}

/**
 * One event frame at pos: subject, event, key/value pairs, an empty key.
 * Returns the offset after it, or -1 when the bytes end inside it.
 */
function eventEnd(buf: Buffer, pos: number, names: string[]): number {
  let p = pos + 2;
  let n = 0;
  for (;;) {
    const z = buf.indexOf(0, p);
    if (z < 0) return -1;
    const empty = z === p;
    names.push(buf.subarray(p, z).toString('utf8'));
    p = z + 1;
    n++;
    // after subject and event, a field in key position that is empty ends the frame
    if (n >= 3 && (n - 3) % 2 === 0 && empty) return p;
  }
}

/**
 * Check a whole reply. `complete`: the daemon closed the connection (not us),
 * so a frame cut short is the daemon's fault.
 */
export function checkReply(buf: Buffer, complete: boolean): Verdict {
  if (buf.length === 0) return { kind: 'empty', texts: [] };
  if (buf.length < 2) return complete ? { kind: 'empty', malformed: 'a one-byte reply', texts: [] } : { kind: 'empty', texts: [] };
  if (buf[1] !== 0) return { kind: 'empty', malformed: `reply kind byte 0x${buf[0]!.toString(16)} not followed by NUL`, texts: [buf.toString('utf8')] };
  if (buf[0] === 0x30) return { kind: 'ok', texts: [buf.subarray(2).toString('utf8')] };
  if (buf[0] === 0x32) return { kind: 'exception', ...checkException(buf) };
  if (buf[0] !== 0x31) return { kind: 'empty', malformed: `unknown reply kind 0x${buf[0]!.toString(16)}`, texts: [buf.toString('utf8')] };
  const texts: string[] = [];
  let pos = 0;
  let first = true;
  while (pos < buf.length) {
    if (buf.length - pos < 2) return complete ? { kind: 'events', malformed: 'stream ends with a partial frame header', texts } : { kind: 'events', texts };
    if (buf[pos] === 0x31 && buf[pos + 1] === 0) {
      const names: string[] = [];
      const end = eventEnd(buf, pos, names);
      texts.push(...names);
      if (end < 0) return complete ? { kind: 'events', malformed: 'stream ends inside an event frame', texts } : { kind: 'events', texts };
      if (first && names[1] !== 'connection-established')
        return { kind: 'events', malformed: `event stream starts with ${JSON.stringify(names[1])}, not connection-established`, texts };
      first = false;
      pos = end;
      continue;
    }
    if (buf[pos] === 0x32 && buf[pos + 1] === 0) {
      // a stream may end with one exception (admin.vm.Stats on a halted qube)
      const ex = checkException(buf.subarray(pos));
      texts.push(...ex.texts);
      return ex.malformed ? { kind: 'events', malformed: `in an event stream: ${ex.malformed}`, texts } : { kind: 'events', texts };
    }
    return { kind: 'events', malformed: `bytes 0x${buf[pos]!.toString(16)} 0x${(buf[pos + 1] ?? 0).toString(16)} where an event frame should start`, texts };
  }
  return { kind: 'events', texts };
}

const NODE_CODE =
  /\bE[A-Z]{2,}(?:_[A-Z]+)*:|\b(?:ENOENT|EISDIR|ENOTDIR|EACCES|EPERM|ENAMETOOLONG|EEXIST|EINVAL|EMFILE|ENFILE|EPIPE|ECONNRESET|ECONNREFUSED|EAGAIN|EBADF|EBUSY|ENOSPC|ENOTEMPTY|ELOOP|EROFS|EXDEV|ENOTSOCK|EADDRINUSE|ETIMEDOUT|ENOTCONN)\b|\bERR_[A-Z_]{3,}\b/;
const STACK = /(?:^|\n)\s*at [^\n]*(?:\(|:\d+:\d+)|node:internal|\.js:\d+:\d+/;

/** What is wrong with text a client received, or null. `paths`: internal directories. */
export function leakIn(texts: readonly string[], paths: readonly string[]): string | null {
  for (const t of texts) {
    let m = NODE_CODE.exec(t);
    if (m) return `Node error code ${JSON.stringify(m[0])} in ${JSON.stringify(t.slice(0, 200))}`;
    m = STACK.exec(t);
    if (m) return `stack frame ${JSON.stringify(m[0].trim())} in ${JSON.stringify(t.slice(0, 200))}`;
    for (const p of paths) if (t.includes(p)) return `internal path ${p} in ${JSON.stringify(t.slice(0, 200))}`;
    if (t.startsWith('internal error:')) return `unhandled error reached the client: ${JSON.stringify(t.slice(0, 200))}`;
  }
  return null;
}

// Parsing of one Admin API request: everything the client sent before it shut
// its write side. Layout (as Qubes' qubesd reads it):
//
//   <method>[+<arg>] SP <source> SP <dest_type> SP <dest> NUL <payload...>
//
// The header is split on the first three spaces only, so a destination may
// itself contain spaces (and is then refused by name validation, not here).
// `keyword adminvm` is dom0 spelled as a keyword; any other dest_type is a
// framing error. Framing errors close the connection without a reply.

export interface Request {
  method: string;
  arg: Buffer;
  source: Buffer;
  dest: Buffer;
  payload: Buffer;
}

export class FramingError extends Error {
  override name = 'FramingError';
}

/** Largest request qubesd accepts; bigger ones are dropped unanswered (as Qubes). */
export const MAX_REQUEST = 65536;

const NUL = 0,
  SP = 0x20,
  PLUS = 0x2b;

export function parseRequest(data: Buffer): Request {
  const nul = data.indexOf(NUL);
  if (nul < 0) throw new FramingError('no header terminator');
  const header = data.subarray(0, nul);
  const s1 = header.indexOf(SP);
  const s2 = s1 < 0 ? -1 : header.indexOf(SP, s1 + 1);
  const s3 = s2 < 0 ? -1 : header.indexOf(SP, s2 + 1);
  if (s3 < 0) throw new FramingError('header has fewer than four fields');
  const methArg = header.subarray(0, s1);
  const source = header.subarray(s1 + 1, s2);
  const destType = header.subarray(s2 + 1, s3).toString('latin1');
  let dest = header.subarray(s3 + 1);
  if (destType === 'keyword' && dest.toString('latin1') === 'adminvm') dest = Buffer.from('dom0');
  else if (destType !== 'name') throw new FramingError(`unsupported destination type ${JSON.stringify(destType)}`);
  const plus = methArg.indexOf(PLUS);
  const method = (plus < 0 ? methArg : methArg.subarray(0, plus)).toString('latin1');
  const arg = plus < 0 ? Buffer.alloc(0) : methArg.subarray(plus + 1);
  return { method, arg, source, dest, payload: data.subarray(nul + 1) };
}

/** Encode a request the way qubesadmin and qrexec handlers do. */
export function encodeRequest(method: string, arg: string, source: string, dest: string, payload: Buffer | string = ''): Buffer {
  const head = Buffer.from(`${method}+${arg} ${source} name ${dest}\0`);
  return payload.length ? Buffer.concat([head, typeof payload === 'string' ? Buffer.from(payload) : payload]) : head;
}

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

const NUL = 0;

/**
 * The request with its header fields as text, one character per byte
 * (latin1), as qubesd reads them: decoding the header once and cutting the
 * string costs a fraction of five subarrays and their decoding.
 */
export interface RequestText {
  method: string;
  arg: string;
  source: string;
  dest: string;
  payload: Buffer;
}

export function parseRequestText(data: Buffer): RequestText {
  const nul = data.indexOf(NUL);
  if (nul < 0) throw new FramingError('no header terminator');
  const header = data.toString('latin1', 0, nul);
  const s1 = header.indexOf(' ');
  const s2 = s1 < 0 ? -1 : header.indexOf(' ', s1 + 1);
  const s3 = s2 < 0 ? -1 : header.indexOf(' ', s2 + 1);
  if (s3 < 0) throw new FramingError('header has fewer than four fields');
  const destType = header.slice(s2 + 1, s3);
  let dest = header.slice(s3 + 1);
  if (destType === 'keyword' && dest === 'adminvm') dest = 'dom0';
  else if (destType !== 'name') throw new FramingError(`unsupported destination type ${JSON.stringify(destType)}`);
  const plus = header.indexOf('+');
  const hasArg = plus >= 0 && plus < s1;
  return {
    method: header.slice(0, hasArg ? plus : s1),
    arg: hasArg ? header.slice(plus + 1, s1) : '',
    source: header.slice(s1 + 1, s2),
    dest,
    payload: data.subarray(nul + 1),
  };
}

export function parseRequest(data: Buffer): Request {
  const r = parseRequestText(data);
  return {
    method: r.method,
    arg: Buffer.from(r.arg, 'latin1'),
    source: Buffer.from(r.source, 'latin1'),
    dest: Buffer.from(r.dest, 'latin1'),
    payload: r.payload,
  };
}

/** Encode a request the way qubesadmin and qrexec handlers do. */
export function encodeRequest(method: string, arg: string, source: string, dest: string, payload: Buffer | string = ''): Buffer {
  const head = Buffer.from(`${method}+${arg} ${source} name ${dest}\0`);
  return payload.length ? Buffer.concat([head, typeof payload === 'string' ? Buffer.from(payload) : payload]) : head;
}

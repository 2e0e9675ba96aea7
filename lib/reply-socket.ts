// Connections to qubesd whose replies are read into buffers sized for them.
//
// Node reads a socket 64 KiB at a time into a fresh buffer per read, so a
// reply of 78 KiB (admin.vm.List on 1000 qubes) came in two pieces that were
// then copied into one: with one client waiting on the REST gateway, that
// copy was about a twentieth of the request's time. Here the first read of a
// reply is given room for a reply as large as the last whole one
// (noteReplySize; event streams, which never end, do not count), so it
// usually arrives in one piece and is handed on as it was read, uncopied. A piece
// that fills less than half its buffer is copied out instead (a 30-byte reply
// does not hold on to a 64 KiB buffer) and the buffer serves the next read;
// the read after a short one, which usually only finds the end, goes into a
// buffer all sockets share, and what it gets is copied.
//
// A caller that knows what the reply most likely is (the REST gateway polling
// a collection: qubesd answers the same bytes while nothing listed changed)
// may say so (expectReply). The reply is then read into a scratch buffer all
// sockets share and compared as it comes; while it matches, nothing is kept.
// A reply that turns out exactly as expected was never copied nor given
// memory of its own: with one client on 1000 qubes, a new 80 KiB buffer per
// request was what made V8 collect (an "external memory pressure" scavenge
// pair and a full mark-compact every 300 ms or so, about 30 us of the
// gateway's time per request). A reply that differs is handed on whole as it
// would have been: what matched so far (copied from the expected bytes), the
// piece that differs, and the rest read as usual.
import net from 'node:net';
import { okFrame } from './protocol/reply.js';

const MIN_FIRST_READ = 64 * 1024;
const MAX_READ = 1024 * 1024;
/** One buffer every socket may read into when what it reads is copied out at once. */
const SHARED = Buffer.allocUnsafeSlow(16 * 1024);
const ROUND = 16 * 1024;

/** Room for the first read of the next reply: the last reply's size, rounded up. */
let firstRead = MIN_FIRST_READ;

function firstReadFor(replySize: number): number {
  return Math.min(MAX_READ, Math.max(MIN_FIRST_READ, Math.ceil((replySize + 1) / ROUND) * ROUND));
}

export type ChunkSink = (chunk: Buffer) => void;

const SINKS = new WeakMap<net.Socket, ChunkSink>();

/** A reply expected to be an OK frame with `content`; `matched` bytes of it have come. */
interface Expectation {
  content: Buffer;
  matched: number;
}

const EXPECTATIONS = new WeakMap<net.Socket, Expectation>();
/**
 * Where a socket reads while its reply is compared with what is expected:
 * every such read is compared (or copied out) in its callback, never kept, so
 * sockets share it. Node asks for a socket's next buffer ahead of the read
 * (when the socket is made, then after each read), so a socket that may be
 * given an expectation later reads into it first; a buffer outgrown stays in
 * use by the sockets that were given it, and is still known for what it is.
 */
let scratch = Buffer.allocUnsafeSlow(MIN_FIRST_READ);
const SCRATCHES = new WeakSet<Buffer>([scratch]);

/** The scratch buffer, grown to hold the rest of the expected reply (and a byte more) in one read. */
function scratchFor(e: Expectation | undefined): Buffer {
  const rest = e ? 2 + e.content.length - e.matched : 0;
  if (scratch.length <= rest && scratch.length < MAX_READ) {
    scratch = Buffer.allocUnsafeSlow(firstReadFor(rest));
    SCRATCHES.add(scratch);
  }
  return scratch;
}

/** An OK frame's two header bytes, which come before the expected content. */
const OK_HEAD = okFrame(null);

/** Whether the `n` bytes read into `piece` are the expected reply's next ones. */
function continues(e: Expectation, piece: Buffer, n: number): boolean {
  let at = e.matched;
  if (at + n > 2 + e.content.length) return false;
  let i = 0;
  for (; at < 2 && i < n; at++, i++) if (piece[i] !== OK_HEAD[at]) return false;
  return i === n || piece.compare(e.content, at - 2, at - 2 + n - i, i, n) === 0;
}

/** The first `matched` bytes of the expected reply's frame, as a buffer of their own. */
function matchedBytes(e: Expectation): Buffer {
  return okFrame(e.content.subarray(0, Math.max(0, e.matched - 2))).subarray(0, e.matched);
}

/** Stops comparing: what matched so far is handed on, and reads are read as usual. */
function giveUp(sock: net.Socket, e: Expectation): void {
  EXPECTATIONS.delete(sock);
  if (e.matched > 0) SINKS.get(sock)?.(matchedBytes(e));
}

/**
 * Connects to a UNIX socket; what it receives goes to the sink set with
 * onChunk (not to 'data' events). Pieces handed out are the receiver's.
 * `expectable`: it may be told what its reply is likely to be
 * (expectReply) once made, so its first read goes to the scratch buffer.
 */
export function connectForReply(path: string, expectable = false): net.Socket {
  let buf: Buffer | null = null;
  let size = firstRead;
  let first = expectable;
  // null while net.connect asks for the first buffer
  let sock: net.Socket | null = null;
  sock = net.connect({
    path,
    allowHalfOpen: true,
    onread: {
      buffer: () => {
        const e = sock ? EXPECTATIONS.get(sock) : undefined;
        if (!first && !e) return (buf ??= size === 0 ? SHARED : Buffer.allocUnsafe(size));
        first = false;
        return scratchFor(e);
      },
      callback: (n: number, b: Uint8Array): boolean => {
        const read = b as Buffer;
        const s = sock!;
        if (SCRATCHES.has(read)) {
          const e = EXPECTATIONS.get(s);
          if (e && continues(e, read, n)) {
            e.matched += n;
            return true;
          }
          if (e) giveUp(s, e);
          // not what was expected, or nothing was: copied out, and the rest read as usual
          SINKS.get(s)?.(Buffer.from(read.subarray(0, n)));
          return true;
        }
        // an expectation given too late for this read (the socket was not made expectable): none
        const late = EXPECTATIONS.get(s);
        if (late) giveUp(s, late);
        let piece: Buffer;
        if (read !== SHARED && n * 2 >= read.length) {
          piece = read.subarray(0, n);
          buf = null;
          // after a short read the reply is most likely complete: the read
          // that finds its end goes into the shared buffer, whose pieces are copied
          size = n === read.length ? Math.min(MAX_READ, read.length * 2) : 0;
        } else {
          piece = Buffer.from(read.subarray(0, n));
          // more came than the end: the reply goes on, in buffers of its own
          if (read === SHARED && n === read.length) {
            buf = null;
            size = MIN_FIRST_READ;
          }
        }
        SINKS.get(s)?.(piece);
        return true;
      },
    },
  });
  return sock;
}

/** A whole reply came that was this long: the next one may well be as long. */
export function noteReplySize(bytes: number): void {
  firstRead = firstReadFor(bytes);
}

/**
 * Says, before its request is sent, that the reply on `sock` (made by
 * connectForReply with `expectable`) is most likely an OK frame with this
 * content.
 */
export function expectReply(sock: net.Socket, content: Buffer): void {
  EXPECTATIONS.set(sock, { content, matched: 0 });
}

/**
 * Ends the comparison once the reply has ended (`whole`) or the call failed:
 * true when the whole reply was exactly the expected one, which was then
 * never handed on; otherwise what matched is handed on now, before the end.
 */
export function settleExpectation(sock: net.Socket, whole: boolean): boolean {
  const e = EXPECTATIONS.get(sock);
  if (!e) return false;
  if (whole && e.matched === 2 + e.content.length) {
    EXPECTATIONS.delete(sock);
    return true;
  }
  giveUp(sock, e);
  return false;
}

/** Where a socket made by connectForReply hands its pieces from now on. */
export function onChunk(sock: net.Socket, sink: ChunkSink): void {
  SINKS.set(sock, sink);
}

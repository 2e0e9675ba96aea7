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
import net from 'node:net';

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

/**
 * Connects to a UNIX socket; what it receives goes to the sink set with
 * onChunk (not to 'data' events). Pieces handed out are the receiver's.
 */
export function connectForReply(path: string): net.Socket {
  let buf: Buffer | null = null;
  let size = firstRead;
  const sock: net.Socket = net.connect({
    path,
    allowHalfOpen: true,
    onread: {
      buffer: () => (buf ??= size === 0 ? SHARED : Buffer.allocUnsafe(size)),
      callback: (n: number, b: Uint8Array): boolean => {
        const read = b as Buffer;
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
        SINKS.get(sock)?.(piece);
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

/** Where a socket made by connectForReply hands its pieces from now on. */
export function onChunk(sock: net.Socket, sink: ChunkSink): void {
  SINKS.set(sock, sink);
}

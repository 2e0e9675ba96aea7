// The gateway's side of moving disk data, every call policy-checked through
// the request's AdminCaller:
// - out: admin.vm.volume.Export (qubesd reads its own files and streams them;
//   lib/volume-export.ts), then raw bytes or a dynamic VHD (rest/vhd/);
// - in: admin.vm.volume.Import (or ImportWithSize) is what the policy is
//   asked, exactly as for a qube's qrexec call; the data then takes the
//   path the handler program takes: internal.vm.volume.ImportBegin hands
//   out a file, the storage layer's sparse copy fills it, ImportEnd commits
//   or discards. A failed or short upload changes nothing.
import type { FastifyReply } from 'fastify';
import { dirname, join } from 'node:path';
import { open } from 'node:fs/promises';
import { callRaw, callStream } from '../lib/qubesd-client.js';
import { parseExport, type ParsedExport } from '../lib/volume-export.js';
import { copyStreamInto, writeSparse, type CopyResult } from '../lib/sparse-copy.js';
import type { Readable } from 'node:stream';
import type { RingOptions } from '../lib/ring-reader.js';
import { bodyChunks } from './body-chunks.js';
import type { AdminCaller } from './admin-caller.js';
import type { RestOptions } from './options.js';

/** qubesd's internal socket: beside its Admin API socket, as in Qubes. */
export function internalSocketOf(options: Readonly<RestOptions>): string {
  return (options as { qubesd_internal_socket?: string }).qubesd_internal_socket ?? join(dirname(options.qubesd_socket), 'qubesd.internal.sock');
}

/** A volume's content as qubesd exports it: size, extent map, data. */
export async function exportVolume(caller: AdminCaller, qube: string, volume: string, signal?: AbortSignal, ring?: RingOptions): Promise<ParsedExport> {
  const { socketPath, spec } = await caller.authorize('admin.vm.volume.Export', qube, volume);
  caller.calls++;
  const s = await callStream(socketPath, spec, { ...(signal ? { signal } : {}), ...(ring ? { ring } : {}) });
  try {
    return await parseExport(s.content);
  } catch (e) {
    s.close();
    throw e;
  }
}

/**
 * Sends `body` as the whole response, each chunk out of our hands (given to
 * the kernel) before the next is asked for: the chunks may be views of
 * buffers that are reused (a ring-read export, lib/ring-reader.ts), which a
 * stream piped into the response would keep queued. The response is taken
 * over from fastify (its onSend hooks do not run: the transport's headers
 * are added here). A client that goes away ends the iteration.
 */
export async function sendInTurn(reply: FastifyReply, headers: Record<string, string>, body: AsyncIterable<Buffer>): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, headers);
  let closed = false;
  const gone = new Promise<void>((resolve) => res.once('close', resolve)).then(() => {
    closed = true;
  });
  try {
    for await (const chunk of body) {
      if (closed) break;
      const written = new Promise<void>((resolve, reject) => res.write(chunk, (e) => (e ? reject(e) : resolve())));
      written.catch(() => undefined);
      await Promise.race([written, gone]);
    }
    if (!closed) res.end();
  } catch {
    res.destroy();
  }
}

/** How the data reaches the file qubesd hands out. */
export type ImportWriter = (path: string, size: number) => Promise<CopyResult>;

/**
 * HTTP bodies arrive in 16-64 KiB pieces; the copy is cheaper per MiB in
 * large ones (one zero check and one write per run of data blocks). The
 * pieces are copied into two buffers allocated once and used in turn: a
 * chunk's memory is reused when the chunk after the next is made, which is
 * what copyStreamInto's `overlap` asks of its input (one chunk being written
 * while the next fills). A fresh 1 MiB buffer per chunk cost more than the
 * copy itself: new memory is page-faulted in, and freed at the same rate
 * (profile of a 256 MiB PUT: 19% of the gateway's time in the copy into new
 * buffers).
 */
export async function* rechunk(input: AsyncIterable<Buffer>, size = 1 << 20): AsyncGenerator<Buffer> {
  const bufs = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
  let buf = bufs[0]!;
  let n = 0;
  for await (const b of input) {
    for (let off = 0; off < b.length;) {
      const take = Math.min(size - n, b.length - off);
      b.copy(buf, n, off, off + take);
      n += take;
      off += take;
      if (n === size) {
        yield buf;
        buf = buf === bufs[0] ? bufs[1]! : bufs[0]!;
        n = 0;
      }
    }
  }
  if (n) yield buf.subarray(0, n);
}

/** A raw stream of exactly `size` bytes (the storage layer's copy). */
export const rawWriter =
  (input: AsyncIterable<Buffer>): ImportWriter =>
  (path, size) =>
    copyStreamInto(rechunk(input), path, size, { overlap: true });

/** An HTTP request's body of exactly `size` bytes, read by listeners into
 * large chunks (body-chunks.ts); `onBytes` sees each piece as it arrives. */
export const bodyWriter =
  (body: Readable, onBytes: (n: number) => void): ImportWriter =>
  (path, size) =>
    copyStreamInto(bodyChunks(body, { onBytes }), path, size, { overlap: true });

/** Pieces at offsets (a VHD's blocks): written sparsely, then made durable. */
export function pieceWriter(pieces: AsyncIterable<[number, Buffer]>): ImportWriter {
  return async (path, size) => {
    const fh = await open(path, 'r+');
    let bytes = 0;
    try {
      for await (const [offset, data] of pieces) {
        if (offset + data.length > size) return { ok: false, bytes, error: 'data beyond the volume size' };
        await writeSparse(fh, data, offset);
        bytes += data.length;
      }
      await fh.datasync();
      return { ok: true, bytes };
    } catch (e) {
      return { ok: false, bytes, error: (e as Error).message };
    } finally {
      await fh.close().catch(() => undefined);
    }
  };
}

export class ImportFailed extends Error {}

/** Reading the rest of a refused upload before answering lets the client
 * see the answer instead of a reset; past this size it is not worth it. */
const DRAIN_LIMIT = 64 << 20;

/** A refused upload: the connection is not reused (we did not read its
 * body to the end); a small rest of the body is read and dropped first. */
export async function refuseUpload(req: import('node:http').IncomingMessage, setClose: () => void): Promise<void> {
  if (req.complete) return;
  setClose();
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  const ended = new Promise<void>((resolve) => {
    req.once('end', resolve);
    req.once('close', resolve);
    req.once('error', () => resolve());
  });
  req.resume();
  if (declared <= DRAIN_LIMIT) await Promise.race([ended, new Promise((r) => setTimeout(r, 10_000).unref())]);
}

/**
 * One import through the policy and qubesd: `service` is the qrexec service
 * the policy is asked about (admin.vm.volume.Import keeps the volume's
 * size; ImportWithSize sets `size`). Resolves once qubesd committed the
 * data; a writer failure ends the import as failed (nothing changes) and
 * rejects with ImportFailed carrying the writer's reason.
 */
export async function importVolume(
  caller: AdminCaller,
  internalSocket: string,
  qube: string,
  volume: string,
  write: ImportWriter,
  size: number | null,
): Promise<number> {
  const service = size === null ? 'admin.vm.volume.Import' : 'admin.vm.volume.ImportWithSize';
  const { spec } = await caller.authorize(service, qube, volume);
  const base = { dest: spec.dest, arg: volume, ...(spec.source !== undefined ? { source: spec.source } : {}) };
  caller.calls += 2;
  const begin = (await callRaw(internalSocket, { ...base, method: 'internal.vm.volume.ImportBegin', payload: size === null ? '' : String(size) })).toString(
    'utf8',
  );
  const sp = begin.indexOf(' ');
  const target = Number(begin.slice(0, sp));
  let r: CopyResult;
  try {
    r = await write(begin.slice(sp + 1), target);
  } catch (e) {
    r = { ok: false, bytes: 0, error: (e as Error).message };
  }
  try {
    await callRaw(internalSocket, { ...base, method: 'internal.vm.volume.ImportEnd', payload: r.ok ? 'ok' : `fail\n${r.error}` });
  } catch (e) {
    if (!r.ok) throw new ImportFailed(r.error);
    throw e;
  }
  if (!r.ok) throw new ImportFailed(r.error);
  return r.bytes;
}

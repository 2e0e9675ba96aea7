// Disks in and out: GET and PUT /vdis/{id}.raw and /vdis/{id}.vhd, as Xen
// Orchestra's REST API has them. Export streams what qubesd's
// admin.vm.volume.Export sends (holes are not read: a raw export fills them
// with zeros on the way out, a VHD leaves their blocks out); import streams
// the upload into the volume through the import protocol, and the size
// must match the volume's exactly (as Xen Orchestra requires): anything
// else is a 400 and the volume is unchanged. Each transfer is a task
// (header X-Task) with progress.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { extentPieces, rawBytes } from '../../lib/volume-export.js';
import type { RestContext } from '../context.js';
import { badRequest, RestError } from '../errors.js';
import { parseVdiId, vdiHref } from '../ids.js';
import { answerHead, isHead } from '../head-only.js';
import { ImportFailed, exportVolume, refuseUpload, importVolume, internalSocketOf, pieceWriter, bodyWriter, sendInTurn } from '../disk-io.js';
import { transportHeaders } from '../transport-headers.js';
import { Transfer } from '../transfer-task.js';
import { planVhd, writeVhd } from '../vhd/writer.js';
import { readVhd, VhdFormatError } from '../vhd/reader.js';
import { parseKeyValues } from '../wire.js';

type Format = 'raw' | 'vhd';

/** An export reads qubesd's socket into these buffers in turn (no
 * allocation per read; reads as large as the socket has ready). */
const EXPORT_RING = { count: 4, size: 512 << 10 };
type IdReq = FastifyRequest<{ Params: { id: string } }>;
const params = { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,255}$' } }, required: ['id'] } as const;
const tags = ['vdis'];

/** Ends the task with the reply's outcome once the body is out. */
function settleOnClose(reply: FastifyReply, tr: Transfer, result: () => unknown): void {
  reply.raw.once('close', () => {
    if (reply.raw.writableFinished) tr.succeed(result());
    else tr.fail(new RestError(500, 'transfer incomplete', 'the connection closed before the whole disk was sent'));
  });
}

async function exportDisk(ctx: RestContext, req: IdReq, reply: FastifyReply, format: Format): Promise<FastifyReply> {
  const { qube, volume } = parseVdiId(req.params.id);
  const ac = new AbortController();
  const ex = await exportVolume(req.caller, qube, volume, ac.signal, EXPORT_RING);
  if (format === 'vhd' && ex.size % 512 !== 0) {
    ac.abort();
    throw badRequest(`the volume's size (${ex.size} bytes) is not a whole number of sectors: export it as .raw`);
  }
  const length = format === 'raw' ? ex.size : planVhd(ex.size, ex.extents).length;
  const headers = {
    'content-type': format === 'raw' ? 'application/octet-stream' : 'application/x-vhd',
    'content-length': String(length),
    'content-disposition': `attachment; filename="${qube}-${volume}.${format}"`,
  };
  if (isHead(reply)) {
    ac.abort();
    return answerHead(reply, { ...headers, ...transportHeaders(ctx.options) });
  }
  const tr = await Transfer.start(ctx, req, `vdi.export.${format}`, vdiHref(qube, volume));
  tr.signal.addEventListener('abort', () => ac.abort(), { once: true });
  const body = format === 'raw' ? tr.count(rawBytes(ex), length) : tr.count(writeVhd(ex.size, ex.extents, extentPieces(ex), { reuseBlocks: true }), length);
  settleOnClose(reply, tr, () => ({ bytes: length }));
  await sendInTurn(reply, { ...headers, 'x-task': tr.href, ...transportHeaders(ctx.options) }, body);
  return reply;
}

/** A refused upload: the rest of the body is read and dropped, and the
 * connection is not reused (its request was not read to its end by us). */
async function importDisk(ctx: RestContext, req: IdReq, reply: FastifyReply, format: Format): Promise<FastifyReply> {
  try {
    return await importDiskUnchecked(ctx, req, reply, format);
  } catch (e) {
    await refuseUpload(req.raw, () => void reply.header('connection', 'close'));
    throw e;
  }
}

async function importDiskUnchecked(ctx: RestContext, req: IdReq, reply: FastifyReply, format: Format): Promise<FastifyReply> {
  const { qube, volume } = parseVdiId(req.params.id);
  // the volume's size, as the identity may see it (a refusal is a 403 here)
  const size = Number(parseKeyValues(await req.caller.call('admin.vm.volume.Info', qube, volume)).size);
  const declared = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
  if (format === 'raw' && declared !== null && declared !== size) {
    throw badRequest(`the upload is ${declared} bytes, the volume ${size} bytes: sizes must match exactly`);
  }
  const input = req.raw as AsyncIterable<Buffer>;
  let vhdSize = size;
  let writer;
  let pieces: AsyncIterable<[number, Buffer]> | null = null;
  if (format === 'vhd') {
    try {
      const v = await readVhd(input);
      vhdSize = v.size;
      pieces = v.pieces;
    } catch (e) {
      if (e instanceof VhdFormatError) throw badRequest(e.message);
      throw e;
    }
    if (vhdSize !== size) throw badRequest(`the VHD's disk is ${vhdSize} bytes, the volume ${size} bytes: sizes must match exactly`);
  }
  const tr = await Transfer.start(ctx, req, `vdi.import.${format}`, vdiHref(qube, volume));
  reply.header('x-task', tr.href);
  try {
    if (pieces) writer = pieceWriter(tr.count(pieces, size));
    else writer = bodyWriter(req.raw, tr.counter(size));
    const bytes = await importVolume(req.caller, internalSocketOf(ctx.options), qube, volume, writer, null);
    const result = { href: vdiHref(qube, volume), bytes, task: tr.href };
    tr.succeed(result);
    return reply.code(200).type('application/json').send(JSON.stringify(result));
  } catch (e) {
    const err = e instanceof ImportFailed ? badRequest(`import failed, the volume is unchanged: ${e.message}`) : e;
    tr.fail(err);
    throw err;
  }
}

export async function diskRoutes(parent: FastifyInstance, ctx: RestContext): Promise<void> {
  // a child context: its content-type parsers stay with these routes
  await parent.register(async (app) => {
    // Uploads are streams of any type and any size: read by the route, never
    // buffered by a parser (this parser is local to this plugin's routes).
    app.addContentTypeParser('*', { bodyLimit: Number.MAX_SAFE_INTEGER }, (_req, _payload, done) => done(null));
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { bodyLimit: Number.MAX_SAFE_INTEGER }, (_req, _payload, done) => done(null));
    for (const format of ['raw', 'vhd'] as const) {
      app.get(
        `/vdis/:id.${format}`,
        {
          schema: { tags, summary: `export a volume as ${format === 'raw' ? 'raw bytes' : 'a dynamic VHD'} (admin.vm.volume.Export)`, params },
        },
        (req: IdReq, reply) => exportDisk(ctx, req, reply, format),
      );
      app.put(
        `/vdis/:id.${format}`,
        {
          bodyLimit: Number.MAX_SAFE_INTEGER,
          schema: {
            tags,
            summary: `import ${format === 'raw' ? 'raw bytes' : 'a dynamic VHD'} into a volume of the same size (admin.vm.volume.Import)`,
            params,
          },
        },
        (req: IdReq, reply) => importDisk(ctx, req, reply, format),
      );
    }
  });
}

// Whole qubes in and out as Qubes backups (format 4):
// - GET /vms/{id}.qbkp streams the qube's archive (admin.vm.backup.Stream,
//   qubesd writes it with the backup profiles' writer); the passphrase comes
//   in the X-Backup-Passphrase header, `compress=` takes what a backup
//   profile's `compression` takes.
// - POST /pools/{id}/vms[?sr=<storage pool>] restores an uploaded archive,
//   as Xen Orchestra's VM import: the upload is kept in a private temporary
//   file (the restore authenticates the whole archive before creating
//   anything, so it reads it more than once), then qubesd's Admin-API
//   restore runs with every call and every volume import going through this
//   request's policy-checked caller. 202 and a task by default, the new
//   qubes' hrefs with ?sync.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { callStream } from '../../lib/qubesd-client.js';
import { restoreThroughAdminApi } from '../../qubesd/backup/admin-restore.js';
import { BackupError } from '../../qubesd/backup/reader.js';
import { STREAM_COMPRESSION } from '../../qubesd/backup/stream.js';
import type { RestContext } from '../context.js';
import { badRequest, notFound, RestError } from '../errors.js';
import { argName, idParam, vmDest, vmHref } from '../ids.js';
import { importVolume, internalSocketOf, rawWriter, refuseUpload } from '../disk-io.js';
import { Transfer } from '../transfer-task.js';
import { answerHead, isHead } from '../head-only.js';
import { transportHeaders } from '../transport-headers.js';
import { runAction } from './vms.js';
import { POOL_ID } from './installation.js';
import { parseVmList, pickVm } from '../wire.js';

export const PASSPHRASE_HEADER = 'x-backup-passphrase';
const idParams = { type: 'object', properties: { id: idParam }, required: ['id'] } as const;
/** compress=: true/false or a filter name (as a profile's `compression`). */
const COMPRESS = ['true', 'false', ...STREAM_COMPRESSION.filter((c) => c !== 'True' && c !== 'False')];

function passphraseOf(req: FastifyRequest): string {
  const p = req.headers[PASSPHRASE_HEADER];
  if (typeof p !== 'string' || p === '') throw badRequest(`the backup passphrase goes in the ${PASSPHRASE_HEADER} header`);
  if (/[\0\r\n]/.test(p)) throw badRequest('the backup passphrase must be one line');
  return p;
}

async function exportBackup(
  ctx: RestContext,
  req: FastifyRequest<{ Params: { id: string }; Querystring: { compress?: string } }>,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const dest = vmDest(req.params.id);
  const passphrase = passphraseOf(req);
  const c = req.query.compress ?? 'true';
  const compression = c === 'true' ? 'True' : c === 'false' ? 'False' : c;
  const { socketPath, spec } = await req.caller.authorize('admin.vm.backup.Stream', dest, '', `passphrase=${passphrase}\ncompression=${compression}\n`);
  const headers = { 'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="${req.params.id}.qbkp"` };
  if (isHead(reply)) {
    // a qube that does not exist is a 404 as for GET (asked as GET /vms/{id}
    // asks); the archive is not made
    await req.caller.call('admin.vm.List', dest);
    return answerHead(reply, { ...headers, ...transportHeaders(ctx.options) });
  }
  req.caller.calls++;
  const s = await callStream(socketPath, spec);
  const tr = await Transfer.start(ctx, req, 'vm.export.qbkp', `/rest/v0/vms/${req.params.id}`);
  tr.signal.addEventListener('abort', () => s.close(), { once: true });
  let bytes = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const b of s.content) {
      bytes += b.length;
      yield b;
    }
  }
  reply.raw.once('close', () => {
    if (reply.raw.writableFinished) tr.succeed({ bytes });
    else {
      s.close();
      tr.fail(new RestError(500, 'transfer incomplete', 'the connection closed before the whole archive was sent'));
    }
  });
  return reply
    .headers(headers)
    .header('x-task', tr.href)
    .send(Readable.from(counted(), { objectMode: false }));
}

/** Restore errors as the client should read them: about the upload, not our files. */
function restoreError(e: unknown, file: string): unknown {
  if (e instanceof RestError || (e as Error)?.name === 'QubesdException' || (e as Error)?.name === 'QubesdTransportError') return e;
  const message = String((e as Error)?.message ?? e)
    .split(file)
    .join('the uploaded archive');
  if (e instanceof BackupError && e.code === 'bad-passphrase') return new RestError(400, 'bad passphrase', message);
  return badRequest(message);
}

type ImportReq = FastifyRequest<{ Params: { id: string }; Querystring: { sr?: string; sync?: unknown } }>;

/** A refused upload: the rest of the body is read and dropped, and the
 * connection is not reused (its request was not read to its end). */
async function importBackup(ctx: RestContext, req: ImportReq, reply: FastifyReply): Promise<FastifyReply> {
  try {
    return await importBackupUnchecked(ctx, req, reply);
  } catch (e) {
    await refuseUpload(req.raw, () => void reply.header('connection', 'close'));
    throw e;
  }
}

async function importBackupUnchecked(ctx: RestContext, req: ImportReq, reply: FastifyReply): Promise<FastifyReply> {
  if (req.params.id !== POOL_ID) throw notFound(`no pool ${req.params.id}`);
  const passphrase = passphraseOf(req);
  const pool = req.query.sr === undefined ? undefined : argName('storage pool', req.query.sr);
  const dir = await mkdtemp(join(tmpdir(), 'qubes-rest-import-'));
  const file = join(dir, 'archive');
  try {
    await pipeline(req.raw, createWriteStream(file, { mode: 0o600 }));
  } catch {
    await rm(dir, { recursive: true, force: true });
    throw badRequest('the upload did not complete');
  }
  const caller = req.caller;
  const internal = internalSocketOf(ctx.options);
  return runAction(ctx, req, reply, 'vm.import', `/rest/v0/pools/${POOL_ID}`, async (t) => {
    try {
      const restored = await restoreThroughAdminApi(file, {
        passphrase,
        ...(pool ? { pool } : {}),
        call: (method, dest, arg = '', payload = '') => caller.call(method, dest, arg, payload, { timeoutMs: 0 }),
        importVolume: async (qube, volume, size, stream) => {
          await importVolume(caller, internal, qube, volume, rawWriter(stream as AsyncIterable<Buffer>), size);
        },
        onProgress: (phase, f) => t.progress(phase === 'verify' ? 50 * f : 50 + 50 * f),
      });
      const hrefs: string[] = [];
      for (const q of restored) {
        const v = pickVm(parseVmList(await caller.call('admin.vm.List', q.name)), q.name);
        hrefs.push(v ? vmHref(v.uuid) : `/rest/v0/vms/${q.name}`);
      }
      return hrefs.length === 1 ? hrefs[0] : hrefs;
    } catch (e) {
      throw restoreError(e, file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

export async function backupIoRoutes(parent: FastifyInstance, ctx: RestContext): Promise<void> {
  // a child context: its content-type parsers stay with these routes
  await parent.register(async (app) => {
    // archives are streams of any type and size, read by the route
    app.addContentTypeParser('*', { bodyLimit: Number.MAX_SAFE_INTEGER }, (_req, _payload, done) => done(null));
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { bodyLimit: Number.MAX_SAFE_INTEGER }, (_req, _payload, done) => done(null));
    app.get(
      '/vms/:id.qbkp',
      {
        schema: {
          tags: ['vms'],
          summary: `the qube as a Qubes backup archive (format 4); passphrase in the ${PASSPHRASE_HEADER} header`,
          params: idParams,
          querystring: { type: 'object', additionalProperties: false, properties: { compress: { type: 'string', enum: COMPRESS } } },
        },
      },
      (req: FastifyRequest<{ Params: { id: string }; Querystring: { compress?: string } }>, reply) => exportBackup(ctx, req, reply),
    );
    app.post(
      '/pools/:id/vms',
      {
        bodyLimit: Number.MAX_SAFE_INTEGER,
        schema: {
          tags: ['pools'],
          summary: `restore the qubes of an uploaded Qubes backup archive; passphrase in the ${PASSPHRASE_HEADER} header`,
          params: idParams,
          querystring: { type: 'object', additionalProperties: false, properties: { sr: { type: 'string' }, sync: {} } },
        },
      },
      (req: FastifyRequest<{ Params: { id: string }; Querystring: { sr?: string; sync?: unknown } }>, reply) => importBackup(ctx, req, reply),
    );
  });
}

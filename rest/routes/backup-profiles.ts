// /backup-profiles/{name}: a backup profile as admin.backup.Info describes
// it, and its actions: execute (a task, with progress from qubesd's
// backup-progress events) and cancel. The Admin API has no call that lists
// profiles, and the gateway reads none of qubesd's files, so the collection
// itself lists only the profiles of backups this gateway has run.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { collectionQuerySchema, parseQuery, sendCollection, type CollectionQuery } from '../collection.js';
import { BASE, type RestContext } from '../context.js';
import { argName } from '../ids.js';
import { runAction } from './vms.js';

type IdReq = FastifyRequest<{ Params: { id: string } }>;
const idParams = { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' } }, required: ['id'] } as const;
const tags = ['backup-profiles'];
const href = (name: string): string => `${BASE}/backup-profiles/${name}`;

export async function backupProfileRoutes(app: FastifyInstance, ctx: RestContext): Promise<void> {
  app.get(
    '/backup-profiles',
    { schema: { tags, summary: 'profiles of the backups this identity ran through the gateway', querystring: collectionQuerySchema } },
    async (req, reply) => {
      const names = new Set(
        ctx.tasks
          .list(req.token.identity)
          .filter((t) => t.name === 'backup.execute' && t.object)
          .map((t) => t.object!.split('/').pop()!),
      );
      return sendCollection(
        reply,
        parseQuery(req.query as CollectionQuery),
        [...names].sort().map((n) => ({ id: n, name_label: n, href: href(n) })),
      );
    },
  );
  app.get('/backup-profiles/:id', { schema: { tags, summary: 'what the profile would back up (admin.backup.Info)', params: idParams } }, async (req: IdReq) => {
    const name = argName('backup profile', req.params.id);
    return { id: name, name_label: name, info: await req.caller.call('admin.backup.Info', 'dom0', name), href: href(name) };
  });
  app.get('/backup-profiles/:id/actions', { schema: { tags, params: idParams } }, async (req: IdReq) =>
    ['execute', 'cancel'].map((a) => `${href(argName('backup profile', req.params.id))}/actions/${a}`),
  );
  app.post(
    '/backup-profiles/:id/actions/execute',
    {
      schema: {
        tags,
        summary: 'run the backup (a task with progress)',
        params: idParams,
        querystring: { type: 'object', properties: { sync: {} }, additionalProperties: false },
      },
    },
    async (req: IdReq, reply) => {
      const name = argName('backup profile', req.params.id);
      const caller = req.caller;
      return runAction(ctx, req, reply, 'backup.execute', href(name), async (t) => {
        // progress is best effort: an identity without admin.Events runs the backup without it
        const events = await caller
          .events((e) => {
            if (e.event !== 'backup-progress') return;
            const kw = Object.fromEntries(e.kwargs);
            if (kw.backup_profile === name && kw.progress !== undefined) t.progress(Number(kw.progress));
          })
          .catch(() => null);
        events?.finished.catch(() => undefined);
        try {
          await caller.call('admin.backup.Execute', 'dom0', name, '', { signal: t.signal, timeoutMs: 0 });
        } finally {
          events?.close();
        }
        return null;
      });
    },
  );
  app.post('/backup-profiles/:id/actions/cancel', { schema: { tags, summary: 'cancel the running backup', params: idParams } }, async (req: IdReq, reply) => {
    await req.caller.call('admin.backup.Cancel', 'dom0', argName('backup profile', req.params.id));
    return reply.code(204).send();
  });
}

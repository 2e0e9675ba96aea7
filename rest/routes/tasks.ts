// /tasks: what actions and transfers became. The owner (and dom0) see a
// task; `?wait=result` waits for its end, `?watch` streams its updates as
// NDJSON until it ends; `abort` is its action.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { collectionQuerySchema, parseQuery, sendCollection, type CollectionQuery } from '../collection.js';
import type { RestContext } from '../context.js';
import { conflict, notFound } from '../errors.js';
import { TASKS_BASE, taskView, type TaskRecord } from '../tasks.js';
import { transportHeaders } from '../transport-headers.js';
import { answerHead, isHead } from '../head-only.js';

type IdReq = FastifyRequest<{ Params: { id: string }; Querystring: { wait?: string; watch?: unknown } }>;
const idParams = { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f]{1,64}$' } }, required: ['id'] } as const;
const tags = ['tasks'];

export async function taskRoutes(app: FastifyInstance, ctx: RestContext): Promise<void> {
  const { tasks } = ctx;
  const find = (req: IdReq): TaskRecord => {
    const t = tasks.get(req.params.id, req.token.identity);
    if (!t) throw notFound(`no task ${req.params.id}`);
    return t;
  };

  app.get('/tasks', { schema: { tags, summary: 'the tasks of this identity (all, for dom0)', querystring: collectionQuerySchema } }, async (req, reply) =>
    sendCollection(reply, parseQuery(req.query as CollectionQuery), tasks.list(req.token.identity).map(taskView)),
  );

  app.get(
    '/tasks/:id',
    {
      schema: {
        tags,
        summary: 'one task; ?wait=result waits for its end, ?watch streams updates as NDJSON',
        params: idParams,
        querystring: { type: 'object', properties: { wait: { type: 'string', enum: ['result'] }, watch: {} }, additionalProperties: false },
      },
    },
    async (req: IdReq, reply) => {
      let t = find(req);
      if (req.query.watch !== undefined) {
        const head = { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store', ...transportHeaders(ctx.options) };
        if (isHead(reply)) return answerHead(reply, head);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, head);
        res.write(JSON.stringify(taskView(t)) + '\n');
        if (t.status !== 'pending') {
          res.end();
          return reply;
        }
        const stop = tasks.watch(t.id, (u) => {
          res.write(JSON.stringify(taskView(u)) + '\n');
          if (u.status !== 'pending') {
            stop();
            res.end();
          }
        });
        reply.raw.once('close', stop);
        return reply;
      }
      // a HEAD does not wait: its answer would be the same headers
      if (req.query.wait === 'result' && t.status === 'pending' && !isHead(reply)) {
        const ac = new AbortController();
        reply.raw.once('close', () => ac.abort());
        t = (await tasks.wait(t.id, ac.signal)) ?? t;
      }
      return taskView(t);
    },
  );

  app.delete('/tasks/:id', { schema: { tags, summary: 'forget a completed task', params: idParams } }, async (req: IdReq, reply) => {
    const t = find(req);
    if (!tasks.remove(t.id)) throw conflict('the task is still pending (abort it first)');
    return reply.code(204).send();
  });

  app.get('/tasks/:id/actions', { schema: { tags, params: idParams } }, async (req: IdReq) => {
    find(req);
    return [`${TASKS_BASE}/${req.params.id}/actions/abort`];
  });

  app.post('/tasks/:id/actions/abort', { schema: { tags, summary: 'abort a pending task', params: idParams } }, async (req: IdReq) => {
    const t = find(req);
    if (!tasks.abort(t.id, `aborted by ${req.token.identity}`)) throw conflict(`the task is ${t.status}, not pending`);
    return taskView(tasks.get(t.id, req.token.identity)!);
  });
}

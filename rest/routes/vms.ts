// /vms: every qube (templates are qubes with type "TemplateVM"), its
// properties (PATCH, all or nothing), tags, features, notes, creation, removal
// and actions (202 + a task by default, ?sync to wait).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminCaller } from '../admin-caller.js';
import { collectionQuerySchema, parseQuery, renderCollection, sendCollection, sendRendered, type CollectionQuery } from '../collection.js';
import { BASE, type RestContext } from '../context.js';
import { badRequest, httpReplyFor, RestError } from '../errors.js';
import { argName, idParam, vmDest, vmHref } from '../ids.js';
import { TASKS_BASE, type TaskContext } from '../tasks.js';
import { encodeRequest, MAX_REQUEST } from '../../lib/protocol/request.js';
import { VM_ACTIONS } from '../vm-actions.js';
import { listOnly, loadVm, loadVms, propertiesFor, readFeatures, renderListOnly } from '../vm-objects.js';
import { parseLines, parseVmList, pickVm, toWire, type PropertyValue } from '../wire.js';

type IdReq = FastifyRequest<{ Params: { id: string } }>;
const idParams = { type: 'object', properties: { id: idParam }, required: ['id'] } as const;
const namedParams = (n: string) => ({
  type: 'object',
  properties: { id: idParam, [n]: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,255}$' } },
  required: ['id', n],
});
const tags = ['vms'];

/** JSON values a property may be given as (null: back to its default). */
const propertyValue = { type: ['string', 'number', 'boolean', 'null'] };

function checkType(field: string, current: PropertyValue, v: unknown): void {
  if (v === null) return;
  const ok = current.type === 'bool' ? typeof v === 'boolean' : current.type === 'int' ? typeof v === 'number' && Number.isInteger(v) : typeof v === 'string';
  if (!ok) {
    const want = current.type === 'bool' ? 'a boolean' : current.type === 'int' ? 'an integer' : 'a string';
    throw badRequest(`field ${field} must be ${want} (or null for its default)`, { field });
  }
}

/** One property change and how to undo it. */
interface Applied {
  field: string;
  undo: () => Promise<unknown>;
}

async function setProperty(caller: AdminCaller, dest: string, prop: string, v: unknown): Promise<void> {
  if (v === null) await caller.call('admin.vm.property.Reset', dest, prop);
  else await caller.call('admin.vm.property.Set', dest, prop, toWire(v));
}

/** PATCH: every field applied, or none (what was applied is put back). */
async function patchVm(caller: AdminCaller, dest: string, body: Record<string, unknown>): Promise<void> {
  const props = Object.keys(body)
    .filter((f) => f !== 'tags')
    .map((f) => (f === 'name_label' ? 'name' : f));
  const current = await propertiesFor(caller, dest, props);
  const changes: Array<[string, unknown]> = [];
  let wantedTags: string[] | null = null;
  for (const [field, v] of Object.entries(body)) {
    if (field === 'tags') {
      if (!Array.isArray(v) || !v.every((t) => typeof t === 'string')) throw badRequest('field tags must be an array of strings', { field });
      wantedTags = v.map((t) => argName('tag', t as string));
      continue;
    }
    const prop = field === 'name_label' ? 'name' : field;
    const cur = current.get(prop);
    if (!cur) throw badRequest(`unknown field ${field}`, { field });
    checkType(field, cur, v);
    changes.push([prop, v]);
  }
  const applied: Applied[] = [];
  let field = '';
  try {
    for (const [prop, v] of changes) {
      field = prop;
      await setProperty(caller, dest, prop, v);
      const old = current.get(prop)!;
      applied.push({ field: prop, undo: () => setProperty(caller, dest, prop, old.isDefault ? null : old.value === null ? '' : old.value) });
    }
    if (wantedTags) {
      field = 'tags';
      const have = new Set(parseLines(await caller.call('admin.vm.tag.List', dest)));
      const want = new Set(wantedTags);
      for (const t of want) {
        if (have.has(t)) continue;
        await caller.call('admin.vm.tag.Set', dest, t);
        applied.push({ field: 'tags', undo: () => caller.call('admin.vm.tag.Remove', dest, t) });
      }
      for (const t of have) {
        if (want.has(t)) continue;
        await caller.call('admin.vm.tag.Remove', dest, t);
        applied.push({ field: 'tags', undo: () => caller.call('admin.vm.tag.Set', dest, t) });
      }
    }
  } catch (e) {
    const notRestored: string[] = [];
    for (const a of applied.reverse()) {
      try {
        await a.undo();
      } catch {
        notRestored.push(a.field);
      }
    }
    const { status, body: err } = httpReplyFor(e);
    throw new RestError(status, err.error, `field ${field}: ${err.message}`, {
      ...err,
      message: `field ${field}: ${err.message}`,
      field,
      rolled_back: [...new Set(applied.map((a) => a.field))].filter((f) => !notRestored.includes(f)),
      ...(notRestored.length ? { not_restored: notRestored } : {}),
    });
  }
}

interface CreateBody {
  name_label?: string;
  name?: string;
  type?: string;
  template?: string;
  label: string;
  pool?: string;
  properties?: Record<string, unknown>;
  tags?: string[];
  features?: Record<string, string>;
}

async function createVm(caller: AdminCaller, b: CreateBody): Promise<{ href: string; uuid: string }> {
  const name = b.name_label ?? b.name;
  if (!name) throw badRequest('name_label is required', { field: 'name_label' });
  vmDest(name);
  const klass = b.type ?? 'AppVM';
  const method = b.pool ? `admin.vm.CreateInPool.${klass}` : `admin.vm.Create.${klass}`;
  await caller.call(method, 'dom0', b.template ?? '', `name=${name} label=${b.label}${b.pool ? ` pool=${b.pool}` : ''}`);
  try {
    if (b.properties && Object.keys(b.properties).length) await patchVm(caller, name, b.properties);
    for (const t of b.tags ?? []) await caller.call('admin.vm.tag.Set', name, argName('tag', t));
    for (const [f, v] of Object.entries(b.features ?? {})) await caller.call('admin.vm.feature.Set', name, argName('feature', f), String(v));
  } catch (e) {
    await caller.call('admin.vm.Remove', name).catch(() => undefined);
    throw e;
  }
  const v = pickVm(parseVmList(await caller.call('admin.vm.List', name)), name);
  if (!v) throw new RestError(404, 'not found', `no qube ${name}`);
  return { href: vmHref(v.uuid), uuid: v.uuid };
}

/** Runs an action now (?sync) or as a task (202 + Location). */
export async function runAction(
  ctx: RestContext,
  req: FastifyRequest,
  reply: FastifyReply,
  name: string,
  object: string,
  work: (t: TaskContext) => Promise<unknown>,
): Promise<FastifyReply> {
  const q = req.query as { sync?: unknown };
  if (q.sync !== undefined) {
    const ac = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) ac.abort(new Error('the client went away'));
    });
    const result = await work({ id: '', signal: ac.signal, progress: () => {} });
    return reply
      .code(200)
      .type('application/json')
      .send(JSON.stringify(result ?? null));
  }
  const task = ctx.tasks.run(req.token.identity, name, object, work);
  const href = `${TASKS_BASE}/${task.id}`;
  return reply.code(202).header('Location', href).type('application/json').send(JSON.stringify(href));
}

export async function vmRoutes(app: FastifyInstance, ctx: RestContext): Promise<void> {
  app.get('/vms', { schema: { tags, summary: 'the qubes the identity may list', querystring: collectionQuerySchema } }, async (req, reply) => {
    const q = parseQuery(req.query as CollectionQuery);
    if (listOnly(q.needs)) {
      const query = req.url.slice(req.url.indexOf('?') + 1 || req.url.length);
      return sendRendered(reply, await renderListOnly(req.caller, query, (objects) => renderCollection(q, objects)));
    }
    return sendCollection(reply, q, await loadVms(req.caller, q.needs));
  });

  app.post(
    '/vms',
    {
      schema: {
        tags,
        summary: 'create a qube',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['label'],
          properties: {
            name_label: { type: 'string' },
            name: { type: 'string' },
            type: { type: 'string', enum: ['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM'] },
            template: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.-]{0,30}$' },
            label: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
            pool: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
            properties: { type: 'object', additionalProperties: propertyValue },
            tags: { type: 'array', items: { type: 'string' } },
            features: { type: 'object', additionalProperties: { type: 'string' } },
          },
        },
      },
    },
    async (req, reply) => {
      const r = await createVm(req.caller, req.body as CreateBody);
      return reply.code(201).header('Location', r.href).send(r);
    },
  );

  app.get('/vms/:id', { schema: { tags, summary: 'one qube, every field', params: idParams } }, async (req: IdReq) =>
    loadVm(req.caller, vmDest(req.params.id)),
  );

  app.patch(
    '/vms/:id',
    {
      schema: {
        tags,
        summary: 'change properties (and tags): all or nothing',
        params: idParams,
        body: { type: 'object', minProperties: 1, additionalProperties: propertyValue, properties: { tags: { type: 'array', items: { type: 'string' } } } },
      },
    },
    async (req: IdReq, reply) => {
      await patchVm(req.caller, vmDest(req.params.id), req.body as Record<string, unknown>);
      return reply.code(204).send();
    },
  );

  app.delete('/vms/:id', { schema: { tags, summary: 'remove a qube (409 while it runs or is in use)', params: idParams } }, async (req: IdReq, reply) => {
    await req.caller.call('admin.vm.Remove', vmDest(req.params.id));
    return reply.code(204).send();
  });

  // tags
  app.get('/vms/:id/tags', { schema: { tags, params: idParams } }, async (req: IdReq) =>
    parseLines(await req.caller.call('admin.vm.tag.List', vmDest(req.params.id))),
  );
  app.put(
    '/vms/:id/tags/:tag',
    { schema: { tags, params: namedParams('tag') } },
    async (req: FastifyRequest<{ Params: { id: string; tag: string } }>, reply) => {
      await req.caller.call('admin.vm.tag.Set', vmDest(req.params.id), argName('tag', req.params.tag));
      return reply.code(204).send();
    },
  );
  app.delete(
    '/vms/:id/tags/:tag',
    { schema: { tags, params: namedParams('tag') } },
    async (req: FastifyRequest<{ Params: { id: string; tag: string } }>, reply) => {
      await req.caller.call('admin.vm.tag.Remove', vmDest(req.params.id), argName('tag', req.params.tag));
      return reply.code(204).send();
    },
  );

  // features
  app.get('/vms/:id/features', { schema: { tags, params: idParams } }, async (req: IdReq) => readFeatures(req.caller, vmDest(req.params.id)));
  app.get(
    '/vms/:id/features/:name',
    { schema: { tags, params: namedParams('name') } },
    async (req: FastifyRequest<{ Params: { id: string; name: string } }>, reply) =>
      reply
        .type('application/json')
        .send(JSON.stringify(await req.caller.call('admin.vm.feature.Get', vmDest(req.params.id), argName('feature', req.params.name)))),
  );
  app.put(
    '/vms/:id/features/:name',
    {
      schema: {
        tags,
        summary: 'set a feature: a JSON string, number or boolean, or text/plain',
        params: namedParams('name'),
        body: { type: ['string', 'number', 'boolean'] },
      },
    },
    async (req: FastifyRequest<{ Params: { id: string; name: string } }>, reply) => {
      const b = req.body;
      await req.caller.call(
        'admin.vm.feature.Set',
        vmDest(req.params.id),
        argName('feature', req.params.name),
        typeof b === 'boolean' ? (b ? '1' : '') : String(b),
      );
      return reply.code(204).send();
    },
  );
  app.delete(
    '/vms/:id/features/:name',
    { schema: { tags, params: namedParams('name') } },
    async (req: FastifyRequest<{ Params: { id: string; name: string } }>, reply) => {
      await req.caller.call('admin.vm.feature.Remove', vmDest(req.params.id), argName('feature', req.params.name));
      return reply.code(204).send();
    },
  );

  // notes: free text (text/plain both ways), in their own scope for the text/plain parser
  await app.register(notesRoutes);

  // actions
  app.get('/vms/:id/actions', { schema: { tags, summary: 'the actions a qube offers', params: idParams } }, async (req: IdReq) => {
    vmDest(req.params.id);
    return Object.keys(VM_ACTIONS).map((a) => `${BASE}/vms/${encodeURIComponent(req.params.id)}/actions/${a}`);
  });
  for (const [name, action] of Object.entries(VM_ACTIONS)) {
    app.post(
      `/vms/:id/actions/${name}`,
      {
        schema: {
          tags,
          summary: action.description,
          params: idParams,
          querystring: { type: 'object', properties: { sync: { description: 'wait and answer with the result' } }, additionalProperties: false },
          ...(action.params ? { body: action.params } : {}),
        },
      },
      async (req: IdReq, reply) => {
        const dest = vmDest(req.params.id);
        const params = (req.body ?? {}) as Record<string, unknown>;
        if (!action.params && req.body !== undefined && req.body !== null && (typeof req.body !== 'object' || Object.keys(req.body).length)) {
          throw badRequest(`action ${name} takes no parameters`);
        }
        const caller = req.caller;
        return runAction(ctx, req, reply, `vm.${name}`, vmHref(req.params.id), (t) => action.run(caller, dest, params, t));
      },
    );
  }
}

const NOTES_GET = 'admin.vm.notes.Get';
const NOTES_SET = 'admin.vm.notes.Set';

/**
 * The most bytes of notes one admin.vm.notes.Set request carries: qubesd
 * drops a request over MAX_REQUEST unanswered, so the gateway refuses more
 * itself, with words. Counted with the longest destination (a uuid).
 */
function maxNotesBytes(identity: string): number {
  return MAX_REQUEST - encodeRequest(NOTES_SET, '', identity, `uuid:${'0'.repeat(36)}`).length;
}

/** Bodies of PUT /vms/{id}/notes: UTF-8 text, checked strictly (a bad byte is a 400, never replaced). */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * text/plain bodies of the notes routes: read up to what one request can
 * carry, then UTF-8 checked strictly. A longer body is a 400 as soon as it
 * passes the limit (the rest is read and dropped, never kept), whatever its
 * length, rather than the 413 of the gateway's general body limit.
 */
function readNotes(req: FastifyRequest, payload: NodeJS.ReadableStream, done: (err: Error | null, body?: unknown) => void): void {
  const max = maxNotesBytes(req.token.identity);
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const finish = (err: Error | null, body?: unknown): void => {
    if (settled) return;
    settled = true;
    done(err, body);
  };
  payload.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= max) {
      chunks.push(chunk);
      return;
    }
    chunks.length = 0;
    const declared = Number(req.headers['content-length']);
    finish(badRequest(`notes are at most ${max} bytes (${Number.isFinite(declared) && declared > max ? declared : 'more'} given)`));
  });
  payload.on('error', (e: Error) => finish(e));
  payload.on('end', () => {
    try {
      finish(null, strictUtf8.decode(Buffer.concat(chunks)));
    } catch {
      finish(badRequest('the notes are not valid UTF-8 text'));
    }
  });
}

async function notesRoutes(app: FastifyInstance): Promise<void> {
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('text/plain', readNotes);
  const text = { type: 'string', description: 'the notes, UTF-8 text' };
  app.get(
    '/vms/:id/notes',
    {
      schema: {
        tags,
        summary: `the qube's notes, as text/plain (${NOTES_GET})`,
        params: idParams,
        response: { 200: { description: 'the notes', content: { 'text/plain': { schema: text } } } },
      },
    },
    async (req: IdReq, reply) => reply.type('text/plain; charset=utf-8').send(await req.caller.callRaw(NOTES_GET, vmDest(req.params.id))),
  );
  app.put(
    '/vms/:id/notes',
    {
      schema: {
        tags,
        params: idParams,
        summary: `replace the qube's notes with the text/plain body (${NOTES_SET}); control characters become "_", as in Qubes`,
        body: { content: { 'text/plain': { schema: text } } },
        response: { 204: { description: 'saved', type: 'null' } },
      },
    },
    async (req: FastifyRequest<{ Params: { id: string }; Body: unknown }>, reply) => {
      const dest = vmDest(req.params.id);
      if (req.body !== undefined && typeof req.body !== 'string') throw badRequest('send the notes as text/plain');
      await req.caller.call(NOTES_SET, dest, '', Buffer.from(req.body ?? '', 'utf8'));
      return reply.code(204).send();
    },
  );
}

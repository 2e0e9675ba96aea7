// /pools (one object: this installation, as Xen Orchestra's pool of hosts),
// /hosts (this dom0) and /labels. The pool's fields are the global
// properties (admin.property.GetAll); the host's are dom0's.
import { hostname } from 'node:os';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { collectionQuerySchema, parseQuery, sendCollection, type CollectionQuery } from '../collection.js';
import { BASE } from '../context.js';
import { notFound } from '../errors.js';
import { argName, idParam, vmHref } from '../ids.js';
import { loadVm } from '../vm-objects.js';
import { parseGetAll, parseLines } from '../wire.js';
import type { AdminCaller } from '../admin-caller.js';

type IdReq = FastifyRequest<{ Params: { id: string } }>;
const idParams = { type: 'object', properties: { id: idParam }, required: ['id'] } as const;

/** The one pool's id: there is one installation. */
export const POOL_ID = 'local';
/** dom0's uuid (Qubes gives dom0 the nil uuid). */
export const HOST_ID = '00000000-0000-0000-0000-000000000000';

async function pool(caller: AdminCaller): Promise<Record<string, unknown>> {
  const props = parseGetAll(await caller.call('admin.property.GetAll', 'dom0'));
  const o: Record<string, unknown> = { id: POOL_ID, uuid: POOL_ID, name_label: hostname(), master: `${BASE}/hosts/${HOST_ID}` };
  for (const [k, v] of props) o[k] = v.value;
  o.href = `${BASE}/pools/${POOL_ID}`;
  return o;
}

async function host(caller: AdminCaller): Promise<Record<string, unknown>> {
  const vm = await loadVm(caller, 'dom0');
  return { ...vm, id: HOST_ID, name_label: hostname(), vm: vmHref(vm.uuid), href: `${BASE}/hosts/${HOST_ID}` };
}

async function label(caller: AdminCaller, name: string): Promise<Record<string, unknown>> {
  const [color, index] = await Promise.all([caller.call('admin.label.Get', 'dom0', name), caller.call('admin.label.Index', 'dom0', name)]);
  return { id: name, name_label: name, color, index: Number(index), href: `${BASE}/labels/${name}` };
}

export async function installationRoutes(app: FastifyInstance): Promise<void> {
  app.get('/pools', { schema: { tags: ['pools'], summary: 'this installation', querystring: collectionQuerySchema } }, async (req, reply) => {
    const q = parseQuery(req.query as CollectionQuery);
    return sendCollection(reply, q, q.fields === null && q.predicate === null ? [{ href: `${BASE}/pools/${POOL_ID}` }] : [await pool(req.caller)]);
  });
  app.get('/pools/:id', { schema: { tags: ['pools'], params: idParams } }, async (req: IdReq) => {
    if (req.params.id !== POOL_ID) throw notFound(`no pool ${req.params.id}`);
    return pool(req.caller);
  });

  app.get('/hosts', { schema: { tags: ['hosts'], summary: 'this dom0', querystring: collectionQuerySchema } }, async (req, reply) => {
    const q = parseQuery(req.query as CollectionQuery);
    return sendCollection(reply, q, q.fields === null && q.predicate === null ? [{ href: `${BASE}/hosts/${HOST_ID}` }] : [await host(req.caller)]);
  });
  app.get('/hosts/:id', { schema: { tags: ['hosts'], params: idParams } }, async (req: IdReq) => {
    if (req.params.id !== HOST_ID) throw notFound(`no host ${req.params.id}`);
    return host(req.caller);
  });

  app.get('/labels', { schema: { tags: ['labels'], querystring: collectionQuerySchema } }, async (req, reply) => {
    const q = parseQuery(req.query as CollectionQuery);
    const names = parseLines(await req.caller.call('admin.label.List', 'dom0'));
    const objects =
      q.fields === null && q.predicate === null
        ? names.map((n) => ({ href: `${BASE}/labels/${n}` }))
        : await Promise.all(names.map((n) => label(req.caller, n)));
    return sendCollection(reply, q, objects);
  });
  app.get('/labels/:id', { schema: { tags: ['labels'], params: idParams } }, async (req: IdReq) => label(req.caller, argName('label', req.params.id)));
}

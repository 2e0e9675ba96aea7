// /vdis (every volume of every qube the identity may list; id
// "<qube>:<volume>") and /srs (storage pools; id: the pool's name).
// Disk import and export (.raw, .vhd) are another plugin's.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import pLimit from 'p-limit';
import type { AdminCaller } from '../admin-caller.js';
import { collectionQuerySchema, parseQuery, sendCollection, wants, type CollectionQuery, type Needs } from '../collection.js';
import { BASE } from '../context.js';
import { notFound, RestError } from '../errors.js';
import { argName, idParam, parseVdiId, vdiHref, vdiId, vmDest, vmHref } from '../ids.js';
import { CALLS_IN_FLIGHT } from '../vm-objects.js';
import { parseKeyValues, parseLines, parseVmList, pickVm } from '../wire.js';

type IdReq = FastifyRequest<{ Params: { id: string } }>;
const idParams = { type: 'object', properties: { id: idParam }, required: ['id'] } as const;

export const srHref = (pool: string): string => `${BASE}/srs/${encodeURIComponent(pool)}`;

function vdiObject(qube: string, uuid: string, volume: string, info: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    id: vdiId(qube, volume),
    name_label: vdiId(qube, volume),
    qube,
    volume,
    vm: vmHref(uuid),
    ...(info ? { ...info, virtual_size: info.size, physical_usage: info.usage, sr: typeof info.pool === 'string' ? srHref(info.pool) : null } : {}),
    href: vdiHref(qube, volume),
  };
}

async function loadVdis(caller: AdminCaller, needs: Needs): Promise<Array<Record<string, unknown>>> {
  const vms = parseVmList(await caller.call('admin.vm.List', 'dom0'));
  const limit = pLimit(CALLS_IN_FLIGHT);
  const infoNeeded = needs === '*' || [...needs].some((n) => !['id', 'name_label', 'qube', 'volume', 'vm', 'href'].includes(n));
  const perVm = await Promise.all(
    vms.map(async (v) => {
      const volumes = await limit(async () => {
        try {
          return parseLines(await caller.call('admin.vm.volume.List', v.name));
        } catch (e) {
          if (e instanceof RestError && e.status === 403) return [];
          throw e;
        }
      });
      return Promise.all(
        volumes.map(async (vol) => {
          let info: Record<string, unknown> | undefined;
          if (infoNeeded) {
            info = await limit(async () => {
              try {
                return parseKeyValues(await caller.call('admin.vm.volume.Info', v.name, vol));
              } catch (e) {
                if (e instanceof RestError && e.status === 403) return undefined;
                throw e;
              }
            });
          }
          return vdiObject(v.name, v.uuid, vol, info);
        }),
      );
    }),
  );
  return perVm.flat();
}

async function loadSrs(caller: AdminCaller, needs: Needs): Promise<Array<Record<string, unknown>>> {
  const pools = parseLines(await caller.call('admin.pool.List', 'dom0'));
  const detailed = wants(needs, ...(needs === '*' ? [] : [...needs].filter((n) => n !== 'href' && n !== 'id' && n !== 'name_label')));
  return Promise.all(
    pools.map(async (p) => {
      const info = detailed ? parseKeyValues(await caller.call('admin.pool.Info', 'dom0', p)) : {};
      return { id: p, name_label: p, ...info, ...(detailed ? { size: info.size ?? null, physical_usage: info.usage ?? null } : {}), href: srHref(p) };
    }),
  );
}

export async function storageRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/vdis',
    { schema: { tags: ['vdis'], summary: 'volumes of the qubes the identity may list', querystring: collectionQuerySchema } },
    async (req, reply) => {
      const q = parseQuery(req.query as CollectionQuery);
      return sendCollection(reply, q, await loadVdis(req.caller, q.needs));
    },
  );
  app.get('/vdis/:id', { schema: { tags: ['vdis'], summary: 'one volume', params: idParams } }, async (req: IdReq) => {
    const { qube, volume } = parseVdiId(req.params.id);
    const v = pickVm(parseVmList(await req.caller.call('admin.vm.List', vmDest(qube))), qube);
    if (!v) throw notFound(`no qube ${qube}`);
    const info = parseKeyValues(await req.caller.call('admin.vm.volume.Info', qube, volume));
    return vdiObject(qube, v!.uuid, volume, info);
  });

  app.get('/srs', { schema: { tags: ['srs'], summary: 'storage pools', querystring: collectionQuerySchema } }, async (req, reply) => {
    const q = parseQuery(req.query as CollectionQuery);
    return sendCollection(reply, q, await loadSrs(req.caller, q.needs));
  });
  app.get('/srs/:id', { schema: { tags: ['srs'], summary: 'one storage pool', params: idParams } }, async (req: IdReq) => {
    const p = argName('storage pool', req.params.id);
    const info = parseKeyValues(await req.caller.call('admin.pool.Info', 'dom0', p));
    return { id: p, name_label: p, ...info, size: info.size ?? null, physical_usage: info.usage ?? null, href: srHref(p) };
  });
  app.get('/srs/:id/vdis', { schema: { tags: ['srs'], summary: 'the volumes in this pool (hrefs)', params: idParams } }, async (req: IdReq) => {
    const p = argName('storage pool', req.params.id);
    return (await loadVdis(req.caller, new Set(['pool']))).filter((v) => v.pool === p).map((v) => v.href);
  });
}

// Object ids in URLs and what they name in the Admin API. A qube is named by
// its uuid (the href form) or by its name; a volume (VDI) by
// "<qube>:<volume>"; storage pools and labels by their names. Anything else,
// notably a path character, is a 400 before any call is made.
import { isValidQubeName } from '../lib/qube-names.js';
import { badRequest } from './errors.js';
import { BASE } from './context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Admin API arguments (property, tag, feature, pool, label, volume names): qrexec's characters. */
const ARG = /^[A-Za-z0-9_.-]{1,255}$/;

/** JSON schema of a path id (fastify answers 400 for anything else). */
export const idParam = { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,255}$' } as const;

/** The Admin API destination for a qube id: "uuid:<uuid>" or the name. */
export function vmDest(id: string): string {
  if (UUID.test(id)) return `uuid:${id}`;
  if (isValidQubeName(id) || id === 'dom0') return id;
  throw badRequest(`not a qube uuid or name: ${JSON.stringify(id)}`);
}

export const vmHref = (uuid: string): string => `${BASE}/vms/${uuid}`;

/** A tag, feature, property, pool or label name as an Admin API argument. */
export function argName(what: string, name: string): string {
  if (!ARG.test(name)) throw badRequest(`not a valid ${what} name: ${JSON.stringify(name)}`);
  return name;
}

export interface VdiId {
  qube: string;
  volume: string;
}

/** "<qube>:<volume>" */
export function parseVdiId(id: string): VdiId {
  const colon = id.lastIndexOf(':');
  const qube = id.slice(0, colon),
    volume = id.slice(colon + 1);
  if (colon < 0 || !(isValidQubeName(qube) || qube === 'dom0') || !ARG.test(volume)) {
    throw badRequest(`not a VDI id (<qube>:<volume>): ${JSON.stringify(id)}`);
  }
  return { qube, volume };
}

export const vdiId = (qube: string, volume: string): string => `${qube}:${volume}`;
export const vdiHref = (qube: string, volume: string): string => `${BASE}/vdis/${encodeURIComponent(vdiId(qube, volume))}`;

// Qubes as REST objects, fetched in bulk: one admin.vm.List, then, only for
// the fields asked for, admin.vm.property.GetAll / admin.vm.tag.List /
// admin.vm.feature.List (+Get) for all qubes in parallel (a bounded number
// of calls in flight), never one round trip per qube per field.
//
// Fields: Xen Orchestra's names where the concept is the same (uuid,
// name_label, power_state, type, tags), every Qubes property under its own
// name, `state` (Qubes' own power state), `features` and `href`. What the
// policy does not let the identity read is left out of the object.
import pLimit from 'p-limit';
import { QubesdException } from '../lib/qubesd-client.js';
import type { AdminCaller } from './admin-caller.js';
import { RestError } from './errors.js';
import { vmHref } from './ids.js';
import { wants, type Needs, type Rendered } from './collection.js';
import { parseGetAll, parseLines, parsePropertyValue, parseVmList, pickVm, type ListedVm, type PropertyValue } from './wire.js';

/** Fields that admin.vm.List alone gives. */
const LISTED = new Set(['href', 'uuid', 'name_label', 'power_state', 'state', 'type']);
/** How many Admin API calls one request has in flight at most. */
export const CALLS_IN_FLIGHT = 64;

/** Qubes' power states in Xen Orchestra's four. */
export function xoPowerState(state: string): string {
  switch (state) {
    case 'Running':
    case 'Transient':
    case 'Halting':
      return 'Running';
    case 'Paused':
      return 'Paused';
    case 'Suspended':
      return 'Suspended';
    default:
      return 'Halted';
  }
}

export type VmObject = Record<string, unknown> & { href: string; uuid: string; name_label: string };

function listedFields(v: ListedVm): VmObject {
  return { uuid: v.uuid, name_label: v.name, power_state: xoPowerState(v.state), state: v.state, type: v.klass, href: vmHref(v.uuid) };
}

/** The call's result, or undefined when the policy refuses it. */
async function readable<T>(p: () => Promise<T>): Promise<T | undefined> {
  try {
    return await p();
  } catch (e) {
    if (e instanceof RestError && e.status === 403) return undefined;
    throw e;
  }
}

/**
 * Whether qubesd refused GetAll because one property has no value it can
 * work out (a keyboard layout whose guivm chain loops fails the whole call,
 * as in Qubes): the qube's other properties are still there.
 */
const unworkable = (e: unknown): boolean => e instanceof QubesdException && e.type === 'QubesException';

/**
 * A qube's properties (admin.vm.property.GetAll), or undefined when the
 * policy refuses them or one is unworkable, which must not take the rest of
 * the collection with it.
 */
async function readableProperties(caller: AdminCaller, vm: string): Promise<string | undefined> {
  try {
    return await readable(() => caller.call('admin.vm.property.GetAll', vm));
  } catch (e) {
    if (unworkable(e)) return undefined;
    throw e;
  }
}

/**
 * The properties a PATCH changes, as they are: GetAll, or where one is
 * unworkable each of those asked for read alone, so
 * that the others can still be changed (guivm, which mends such a loop), as
 * qvm-prefs changes them one at a time. A name the qube has not is left out.
 */
export async function propertiesFor(caller: AdminCaller, vm: string, names: readonly string[]): Promise<Map<string, PropertyValue>> {
  try {
    return parseGetAll(await caller.call('admin.vm.property.GetAll', vm));
  } catch (e) {
    if (!unworkable(e)) throw e;
  }
  const out = new Map<string, PropertyValue>();
  for (const name of names) {
    try {
      out.set(name, parsePropertyValue(await caller.call('admin.vm.property.Get', vm, name)));
    } catch (e) {
      if (!(e instanceof QubesdException && e.type === 'QubesNoSuchPropertyError')) throw e;
    }
  }
  return out;
}

export async function readFeatures(caller: AdminCaller, vm: string): Promise<Record<string, string>> {
  const names = parseLines(await caller.call('admin.vm.feature.List', vm));
  const values = await Promise.all(names.map((n) => caller.call('admin.vm.feature.Get', vm, n)));
  return Object.fromEntries(names.map((n, i) => [n, values[i]!]));
}

/** What a request needs of each qube beyond admin.vm.List, worked out once per request. */
interface Plan {
  /** call admin.vm.property.GetAll; take `only` these properties from it (every one when undefined) */
  props: boolean;
  only: ReadonlySet<string> | undefined;
  tags: boolean;
  features: boolean;
}

function planFor(needs: Needs): Plan {
  const only = needs === '*' ? undefined : new Set([...needs].filter((n) => !LISTED.has(n) && n !== 'tags' && n !== 'features'));
  return { props: only === undefined || only.size > 0, only, tags: wants(needs, 'tags'), features: wants(needs, 'features') };
}

async function complete(caller: AdminCaller, v: ListedVm, plan: Plan, limit: ReturnType<typeof pLimit>): Promise<VmObject | null> {
  const o = listedFields(v);
  try {
    const [props, tags, features] = await Promise.all([
      plan.props ? limit(() => readableProperties(caller, v.name)) : undefined,
      plan.tags ? limit(() => readable(() => caller.call('admin.vm.tag.List', v.name))) : undefined,
      plan.features ? limit(() => readable(() => readFeatures(caller, v.name))) : undefined,
    ]);
    if (props !== undefined) for (const [k, p] of parseGetAll(props, plan.only)) if (!(k in o)) o[k] = p.value;
    if (tags !== undefined) o.tags = parseLines(tags);
    if (features !== undefined) o.features = features;
  } catch (e) {
    // removed between the list and the details: it is no longer there
    if (e instanceof QubesdException && e.type === 'QubesVMNotFoundError') return null;
    throw e;
  }
  return o;
}

/** Whether admin.vm.List alone gives every field asked for. */
export function listOnly(needs: Needs): boolean {
  return needs !== '*' && [...needs].every((n) => LISTED.has(n));
}

/**
 * Renders of list-only queries, by identity and query string, each valid for
 * the very admin.vm.List reply it was made from: the answer is a function of
 * those bytes (already filtered for the identity by qubesd) and the query
 * alone, and qubesd answers the same bytes while nothing it lists changed, so
 * a poller of a 1000-qube collection costs one call and one comparison. The
 * reply is compared and the answer kept as bytes: a hit decodes, encodes and
 * allocates nothing of the ~100 KB either way, nor of the ~80 KB reply.
 */
const RENDERS = new Map<string, { list: Buffer; rendered: Rendered }>();
const MAX_RENDERS = 32;

export async function renderListOnly(caller: AdminCaller, query: string, render: (objects: VmObject[]) => Rendered): Promise<Rendered> {
  const key = `${caller.identity}\0${query}`;
  const hit = RENDERS.get(key);
  // the reply this render was made from is most likely the reply again: said
  // so, the client compares it as it comes and, when it is, hands back this
  // very buffer, the reply given no memory of its own (lib/reply-socket.ts)
  const list = await caller.callRaw('admin.vm.List', 'dom0', '', '', hit ? { expect: hit.list } : {});
  if (hit && hit.list.equals(list)) return hit.rendered;
  const r = render(parseVmList(list.toString('utf8')).map(listedFields));
  // as bytes, the type says the charset fastify adds to a JSON text reply
  const rendered = typeof r.body === 'string' ? { contentType: `${r.contentType}; charset=utf-8`, body: Buffer.from(r.body, 'utf8') } : r;
  RENDERS.delete(key);
  if (RENDERS.size >= MAX_RENDERS) RENDERS.delete(RENDERS.keys().next().value!);
  RENDERS.set(key, { list, rendered });
  return rendered;
}

/** Every qube the identity may list, with the fields `needs` asks for. */
export async function loadVms(caller: AdminCaller, needs: Needs): Promise<VmObject[]> {
  const listed = parseVmList(await caller.call('admin.vm.List', 'dom0'));
  // what the list alone gives needs no further call, nor a promise per qube
  if (listOnly(needs)) return listed.map(listedFields);
  const limit = pLimit(CALLS_IN_FLIGHT);
  const plan = planFor(needs);
  const all = await Promise.all(listed.map((v) => complete(caller, v, plan, limit)));
  return all.filter((o): o is VmObject => o !== null);
}

/** One qube (dest as vmDest() gives it), with every field. */
export async function loadVm(caller: AdminCaller, dest: string): Promise<VmObject> {
  const listed = pickVm(parseVmList(await caller.call('admin.vm.List', dest)), dest);
  if (!listed) throw new RestError(404, 'not found', `no qube ${dest}`);
  const o = await complete(caller, listed, planFor('*'), pLimit(CALLS_IN_FLIGHT));
  if (!o) throw new RestError(404, 'not found', `no qube ${dest}`);
  return o;
}

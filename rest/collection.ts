// The query options every collection answers to, as Xen Orchestra's REST API
// defines them: without `fields`, an array of hrefs; `fields=a,b` (or `*`)
// objects with those fields and their href; `filter=` in complex-matcher's
// syntax (a parse error is a 400 saying where); `limit=`; `ndjson` streams
// one JSON object per line. Collections say which fields a filter or a
// field list needs (needsOf), so that they fetch only those, in bulk.
import type { FastifyReply } from 'fastify';
import { And, Not, Or, parse, Property, TruthyProperty, type Node } from 'complex-matcher';
import { badRequest } from './errors.js';

export interface CollectionQuery {
  fields?: string;
  filter?: string;
  limit?: number;
  ndjson?: unknown;
}

/** The JSON schema of those query options (for fastify's validation and the OpenAPI document). */
export const collectionQuerySchema = {
  type: 'object',
  properties: {
    fields: { type: 'string', description: 'comma-separated field names, or * for all; without it, the answer is a list of hrefs' },
    filter: { type: 'string', description: 'complex-matcher filter, e.g. power_state:Running tags:prod' },
    limit: { type: 'integer', minimum: 0, description: 'at most this many objects' },
    ndjson: { description: 'stream application/x-ndjson (one JSON value per line)' },
  },
  additionalProperties: false,
} as const;

/** Which fields a request needs: a set of names, or every field. */
export type Needs = Set<string> | '*';

export interface ParsedQuery {
  fields: string[] | '*' | null;
  predicate: ((o: unknown) => boolean) | null;
  limit: number;
  ndjson: boolean;
  /** what the objects must carry for the fields and the filter */
  needs: Needs;
}

/** Property names a filter reads; '*' when a bare value may match any field. */
function filterNeeds(node: Node, out: Set<string>): boolean {
  if (node instanceof And || node instanceof Or) return node.children.every((c) => filterNeeds(c, out));
  if (node instanceof Not) return filterNeeds(node.child, out);
  if (node instanceof Property || node instanceof TruthyProperty) {
    out.add(node.name);
    return true;
  }
  // a bare value (string, number, pattern) is matched against every field
  return node.constructor.name === 'Null';
}

export function parseQuery(q: CollectionQuery): ParsedQuery {
  let predicate: ((o: unknown) => boolean) | null = null;
  const needs = new Set<string>();
  let all = false;
  if (q.filter !== undefined && q.filter !== '') {
    let node: Node;
    try {
      node = parse(q.filter);
    } catch (e) {
      // complex-matcher says "parse error: expected X at position N"; a bad regex is a SyntaxError
      throw badRequest(`invalid filter: ${(e as Error).message}`, { filter: q.filter });
    }
    predicate = node.createPredicate();
    if (!filterNeeds(node, needs)) all = true;
  }
  let fields: string[] | '*' | null = null;
  if (q.fields !== undefined) {
    const list = q.fields
      .split(',')
      .map((f) => f.trim())
      .filter(Boolean);
    if (list.includes('*')) {
      fields = '*';
      all = true;
    } else {
      fields = list;
      for (const f of list) needs.add(f);
    }
  }
  return {
    fields,
    predicate,
    needs: all ? '*' : needs,
    limit: q.limit ?? Infinity,
    ndjson: q.ndjson !== undefined,
  };
}

export function wants(needs: Needs, ...names: string[]): boolean {
  return needs === '*' || names.some((n) => needs.has(n));
}

export interface Rendered {
  contentType: string;
  body: string | Buffer;
}

/** Filter, limit, project and send. Each object carries its `href`. */
export function sendCollection(reply: FastifyReply, q: ParsedQuery, objects: Array<Record<string, unknown>>): FastifyReply {
  return sendRendered(reply, renderCollection(q, objects));
}

export function sendRendered(reply: FastifyReply, r: Rendered): FastifyReply {
  return reply.type(r.contentType).send(r.body);
}

/** The answer to a query as bytes to send. */
export function renderCollection(q: ParsedQuery, objects: Array<Record<string, unknown>>): Rendered {
  let selected = q.predicate ? objects.filter(q.predicate) : objects;
  if (selected.length > q.limit) selected = selected.slice(0, q.limit);
  const out: unknown[] = q.fields === null ? selected.map((o) => o.href) : q.fields === '*' ? selected : selected.map((o) => project(o, q.fields as string[]));
  if (q.ndjson) return { contentType: 'application/x-ndjson', body: out.map((o) => JSON.stringify(o) + '\n').join('') };
  return { contentType: 'application/json', body: JSON.stringify(out) };
}

function project(o: Record<string, unknown>, fields: string[]): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const f of fields) if (f in o) r[f] = o[f];
  r.href = o.href;
  return r;
}

// What every routes plugin receives (see rest/README.md): the fastify
// instance (already under /rest/v0, authenticated) and a RestContext; and on
// every request, `req.caller`, the policy-checked Admin API caller acting as
// the token's identity, and `req.token`, the token's id and identity.
import type { FastifyInstance } from 'fastify';
import type { AdminCaller } from './admin-caller.js';
import type { RestOptions } from './options.js';
import type { TaskManager } from './tasks.js';

export const BASE = '/rest/v0';

export interface RestContext {
  options: Readonly<RestOptions>;
  tasks: TaskManager;
}

/** A routes plugin: registers routes (paths relative to /rest/v0) on `app`. */
export type RestPlugin = (app: FastifyInstance, ctx: RestContext) => Promise<void>;

export interface TokenInfo {
  id: string;
  identity: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Every Admin API call of this request goes through it (policy first). */
    caller: AdminCaller;
    token: TokenInfo;
  }
}

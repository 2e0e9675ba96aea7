// What the handler program knows about one checked call, handed to the
// service-specific parts (the volume import, the policy admin API). Types
// only: those parts are separate ES modules loaded on demand beside the
// bundled handler, so they share no classes or state with it, only this shape.
import type { Served } from './service-names.js';

export interface Sockets {
  admin: string;
  internal: string;
  policyDir: string | null;
  policyAdminLog: string | null;
  checkout: string | null;
}

export interface CallContext {
  service: string;
  served: Served;
  arg: string;
  source: string;
  /** destination as qubesd's request names it */
  dest: string;
  sockets: Sockets;
}

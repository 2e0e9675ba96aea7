// Who is calling: the token from the `authenticationToken` cookie (as Xen
// Orchestra) or from `Authorization: Bearer`, checked against the token
// store; missing, unknown, revoked or expired is a 401. The request then gets
// its AdminCaller, acting as the token's identity.
import type { FastifyRequest } from 'fastify';
import { AdminCaller, type CallerDeps } from './admin-caller.js';
import { RestError, unauthorized } from './errors.js';
import type { TokenStore } from './tokens.js';

export const COOKIE_NAME = 'authenticationToken';
/**
 * CSRF: every change (any method but GET, HEAD and OPTIONS) authenticated by
 * the cookie must carry this header (value 1), whatever its Origin,
 * Referer or Sec-Fetch-* headers say (they may be missing or stripped by a
 * proxy, so they prove nothing either way). A page of another site can make
 * the browser send the cookie (were it not SameSite) but cannot add a custom
 * header without a CORS preflight, which the gateway never grants. Clients
 * with `Authorization: Bearer` are not concerned: no browser adds that on
 * its own. A script that sends the cookie itself adds the header too.
 */
export const CSRF_HEADER = 'X-Qubes-Console';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function requireCsrfHeader(req: FastifyRequest): void {
  if (req.headers['x-qubes-console'] !== '1') {
    throw new RestError(403, 'forbidden', `a change made with the ${COOKIE_NAME} cookie needs the header ${CSRF_HEADER}: 1`);
  }
}

/** The token a request presents, or null. */
export function presentedToken(req: FastifyRequest): string | null {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : null;
  }
  const cookie = req.headers.cookie;
  if (!cookie) return null;
  for (const part of cookie.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE_NAME) {
      const v = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v);
      } catch {
        return null;
      }
    }
  }
  return null;
}

export function authenticate(req: FastifyRequest, tokens: TokenStore, deps: CallerDeps): void {
  const presented = presentedToken(req);
  if (!presented) throw unauthorized('no token: send the authenticationToken cookie or Authorization: Bearer');
  const record = tokens.verify(presented);
  if (!record) throw unauthorized();
  if (!req.headers.authorization && !SAFE_METHODS.has(req.method)) requireCsrfHeader(req);
  req.token = { id: record.id, identity: record.identity };
  req.caller = new AdminCaller(deps, record.identity);
}

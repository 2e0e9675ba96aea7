// /session: how the web console (rest/console/) turns a token into the
// `authenticationToken` cookie (HttpOnly, SameSite=Strict, so page scripts
// never hold it and other sites never send it), learns who it acts as, and
// signs out. POST and DELETE are outside the authenticated scope (they are
// how one gets in and out); GET is inside it.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { COOKIE_NAME, CSRF_HEADER, requireCsrfHeader } from '../auth.js';
import type { RestContext } from '../context.js';
import { unauthorized } from '../errors.js';
import type { TokenStore } from '../tokens.js';

function cookie(value: string, https: boolean, maxAge?: number): string {
  return `${COOKIE_NAME}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict${https ? '; Secure' : ''}${maxAge !== undefined ? `; Max-Age=${maxAge}` : ''}`;
}

const isHttps = (ctx: RestContext): boolean => Boolean(ctx.options.tls_cert && ctx.options.tls_key);

/** POST /session {token} → Set-Cookie; DELETE /session → the cookie cleared. No token needed. */
export function sessionPublicRoutes(tokens: TokenStore): (app: FastifyInstance, ctx: RestContext) => Promise<void> {
  return async (app, ctx) => {
    app.post(
      '/session',
      {
        schema: {
          tags: ['session'],
          summary: `sign in: the token becomes the ${COOKIE_NAME} cookie (send ${CSRF_HEADER}: 1)`,
          body: { type: 'object', properties: { token: { type: 'string', minLength: 1, maxLength: 512 } }, required: ['token'], additionalProperties: false },
        },
      },
      async (req: FastifyRequest<{ Body: { token: string } }>, reply: FastifyReply) => {
        requireCsrfHeader(req);
        const record = tokens.verify(req.body.token);
        if (!record) throw unauthorized();
        const left = record.expires !== undefined ? Math.max(1, Math.floor((record.expires - Date.now()) / 1000)) : undefined;
        reply.header('Set-Cookie', cookie(req.body.token, isHttps(ctx), left));
        return { identity: record.identity, tokenId: record.id };
      },
    );
    app.delete('/session', { schema: { tags: ['session'], summary: 'sign out: clears the cookie' } }, async (req, reply) => {
      requireCsrfHeader(req);
      reply.header('Set-Cookie', cookie('', isHttps(ctx), 0));
      return reply.code(204).send();
    });
  };
}

/** GET /session: who the presented token acts as. */
export async function sessionRoutes(app: FastifyInstance): Promise<void> {
  app.get('/session', { schema: { tags: ['session'], summary: 'who this token acts as' } }, async (req) => ({
    identity: req.token.identity,
    tokenId: req.token.id,
  }));
}

// Builds the gateway: a fastify application serving /rest/v0 over HTTP or
// HTTPS. Everything under /rest/v0 (but the API documentation) needs a
// token; each routes plugin (rest/routes/) gets the RestContext and, per
// request, the policy-checked caller. Transport rules live here: body
// limits, header and idle time-outs, JSON errors for everything, HSTS on
// HTTPS, one access-log line per request.
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fastifyStatic from '@fastify/static';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { openAccessLog, type AccessLog } from './access-log.js';
import { authenticate } from './auth.js';
import { BASE, type RestContext, type RestPlugin } from './context.js';
import { httpReplyFor, notFound } from './errors.js';
import type { RestOptions } from './options.js';
import { ROUTES } from './routes/index.js';
import { sessionPublicRoutes } from './routes/session.js';
import { askRoutes } from './routes/asks.js';
import { AskAgent } from './ask-agent.js';
import { TaskManager } from './tasks.js';
import { TokenStore } from './tokens.js';
import { SharedReads } from './shared-reads.js';
import { WarmConnection } from '../lib/warm-connection.js';
import { drainBody } from './drain-body.js';
import { transportHeaders } from './transport-headers.js';

/** The console's files (rest/console/ of the checkout; dist/rest/server.js is two levels down). */
const CONSOLE_DIR = fileURLToPath(new URL('../../rest/console/', import.meta.url));
/** No inline script, nothing from elsewhere, never framed. */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface Gateway {
  app: FastifyInstance;
  ctx: RestContext;
  tokens: TokenStore;
  /** Stops listening, ends the task timers and closes the access log. */
  close(): Promise<void>;
}

export interface BuildOptions {
  /** routes plugins to register (default: every plugin of rest/routes/index.ts) */
  plugins?: RestPlugin[];
}

export async function buildGateway(options: RestOptions, build: BuildOptions = {}): Promise<Gateway> {
  const https = options.tls_cert && options.tls_key ? { cert: readFileSync(options.tls_cert), key: readFileSync(options.tls_key) } : null;
  const app = Fastify({
    logger: false,
    bodyLimit: options.body_limit,
    keepAliveTimeout: options.idle_timeout * 1000,
    routerOptions: { ignoreTrailingSlash: true },
    return503OnClosing: true,
    // unknown fields are errors, not silently dropped; query strings still coerce
    ajv: { customOptions: { allowUnionTypes: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    ...(https ? { https } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  app.server.headersTimeout = options.header_timeout * 1000;
  app.server.requestTimeout = 0;

  const tokens = new TokenStore(options.token_file);
  tokens.watchForChanges();
  // the options object itself: SIGHUP changes the task limits in place
  const tasks = new TaskManager(options.task_file, options);
  const ctx: RestContext = { options, tasks };
  const log: AccessLog = openAccessLog(options.access_log);
  const callerDeps = {
    qubesdSocket: options.qubesd_socket,
    policySocket: options.policy_socket,
    callTimeoutMs: options.call_timeout * 1000,
    connections: pLimit(options.max_connections),
    sharedReads: new SharedReads(),
    warm: new WarmConnection(options.qubesd_socket),
  };

  app.decorateRequest('caller', null as never);
  app.decorateRequest('token', null as never);

  app.setErrorHandler(async (err, req, reply) => {
    const { status, body } = httpReplyFor(err);
    if (reply.raw.headersSent) {
      reply.raw.destroy();
      return reply;
    }
    // any refusal while the body is still coming (413, a parser's 400): fastify closes the connection after it
    if (!req.raw.complete) await drainBody(req.raw);
    return reply.code(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const { status, body } = httpReplyFor(notFound(`no route ${req.method} ${req.url.split('?')[0]}`));
    void reply.code(status).send(body);
  });

  app.addHook('onResponse', async (req: FastifyRequest, reply: FastifyReply) => {
    const t = (req as { token?: { id: string; identity: string } | null }).token;
    log.write({
      token: t?.id ?? null,
      identity: t?.identity ?? null,
      method: req.method,
      path: req.url,
      status: reply.statusCode,
      ms: reply.elapsedTime,
      calls: req.caller?.calls ?? 0,
    });
  });
  if (https) {
    // read per response: SIGHUP may change hsts_max_age
    app.addHook('onSend', async (_req, reply) => {
      for (const [k, v] of Object.entries(transportHeaders(options))) reply.header(k, v);
    });
  }

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Qubes REST API',
        description:
          "Qubes OS Admin API over HTTP, in the manner of Xen Orchestra's /rest/v0. Every call is governed by the qrexec policy of the token's identity.",
        version: '0',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          cookie: { type: 'apiKey', in: 'cookie', name: 'authenticationToken' },
        },
      },
      security: [{ bearer: [] }, { cookie: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: `${BASE}/docs` });
  app.get(`${BASE}/docs/openapi.json`, { schema: { hide: true } }, async () => app.swagger());

  // the web console: static files at /, nothing but the public API behind them
  await app.register(fastifyStatic, {
    root: CONSOLE_DIR,
    prefix: '/',
    index: 'index.html',
    wildcard: false,
    serveDotFiles: false,
    setHeaders: (reply) => {
      reply.header('Content-Security-Policy', CONSOLE_CSP);
      reply.header('X-Content-Type-Options', 'nosniff');
      reply.header('Referrer-Policy', 'no-referrer');
      reply.header('Cache-Control', 'no-cache');
    },
  });
  // `ask` policy questions relayed to dom0 console sessions
  const askAgent = options.ask_socket ? new AskAgent(options.ask_socket, options.ask_timeout * 1000) : null;
  await askAgent?.listen();
  await app.register(
    async (pub) => {
      await sessionPublicRoutes(tokens)(pub, ctx);
    },
    { prefix: BASE },
  );

  await app.register(
    async (api) => {
      api.addHook('onRequest', async (req) => {
        authenticate(req, tokens, callerDeps);
      });
      for (const plugin of build.plugins ?? ROUTES) await plugin(api, ctx);
      if (!build.plugins) await askRoutes(askAgent)(api, ctx);
    },
    { prefix: BASE },
  );

  return {
    app,
    ctx,
    tokens,
    close: async () => {
      await app.close();
      callerDeps.warm.close();
      tokens.unwatch();
      await askAgent?.close();
      tasks.close();
      await log.close();
    },
  };
}

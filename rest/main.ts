// bin/qubes-rest: the gateway in the foreground, and its token commands.
//   qubes-rest --prefix DIR [--listen HOST:PORT] [--tls-cert F --tls-key F] [--hsts-max-age N] ...
//   qubes-rest token create --prefix DIR --as IDENTITY [--expires 30d] [--description TEXT]
//   qubes-rest token list --prefix DIR [--json]
//   qubes-rest token revoke ID --prefix DIR
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BASE } from './context.js';
import { DEFAULTS, optionsForPrefix, parseListen, tokenFileFor, type RestOptions } from './options.js';
import { parseDuration, TokenStore } from './tokens.js';

const USAGE = `usage: qubes-rest --prefix DIR [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--hsts-max-age SECONDS]
                  [--pending-task-timeout S] [--completed-task-timeout S] [--max-tasks N] [--events-buffer BYTES]
                  [--access-log FILE|stderr|none]
       qubes-rest token create --prefix DIR --as IDENTITY [--expires DURATION] [--description TEXT]
       qubes-rest token list --prefix DIR [--json]
       qubes-rest token revoke ID --prefix DIR`;

class Usage extends Error {}

const int = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Usage(`--${name} takes a whole number`);
  return Number(v);
};

/** The URL the gateway answers at, as printed once it listens. */
export function listeningUrl(https: boolean, host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `${https ? 'https' : 'http'}://${h}:${port}${BASE}`;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv, strict: true, allowPositionals: false,
    options: {
      prefix: { type: 'string' }, listen: { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
      'hsts-max-age': { type: 'string' }, 'pending-task-timeout': { type: 'string' }, 'completed-task-timeout': { type: 'string' },
      'max-tasks': { type: 'string' }, 'events-buffer': { type: 'string' }, 'access-log': { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) throw new Usage('--tls-cert and --tls-key go together');
  const overrides: Partial<RestOptions> = {};
  if (values.listen) {
    try { parseListen(values.listen); } catch (e) { throw new Usage((e as Error).message); }
    overrides.listen = values.listen;
  }
  if (values['tls-cert']) { overrides.tls_cert = resolve(values['tls-cert']); overrides.tls_key = resolve(values['tls-key']!); }
  const n = (k: 'hsts-max-age' | 'pending-task-timeout' | 'completed-task-timeout' | 'max-tasks' | 'events-buffer') => int(k, values[k]);
  if (n('hsts-max-age') !== undefined) overrides.hsts_max_age = n('hsts-max-age')!;
  if (n('pending-task-timeout') !== undefined) overrides.pending_task_timeout = n('pending-task-timeout')!;
  if (n('completed-task-timeout') !== undefined) overrides.completed_task_timeout = n('completed-task-timeout')!;
  if (n('max-tasks') !== undefined) overrides.max_tasks = n('max-tasks')!;
  if (n('events-buffer') !== undefined) overrides.events_buffer = n('events-buffer')!;
  if (values['access-log']) overrides.access_log = values['access-log'] === 'stderr' || values['access-log'] === 'none' ? values['access-log'] : resolve(values['access-log']);
  const options = optionsForPrefix(resolve(values.prefix ?? '/'), overrides);
  const { host, port } = parseListen(options.listen ?? DEFAULTS.listen);
  // loaded here: the token commands must not pay for fastify's start-up
  const { buildGateway } = await import('./server.js');
  const gw = await buildGateway(options);
  await gw.app.listen({ host, port });
  const addr = gw.app.server.address();
  const realPort = addr && typeof addr === 'object' ? addr.port : port;
  console.log(`qubes-rest: listening on ${listeningUrl(Boolean(options.tls_cert), host, realPort)}`);
  await new Promise<void>((done) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => done());
  });
  await gw.close();
  return 0;
}

function formatTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

async function token(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest, strict: true, allowPositionals: true,
    options: { prefix: { type: 'string' }, as: { type: 'string' }, expires: { type: 'string' }, description: { type: 'string' }, json: { type: 'boolean' } },
  });
  const store = new TokenStore(tokenFileFor(resolve(values.prefix ?? '/')));
  switch (sub) {
    case 'create': {
      if (!values.as) throw new Usage('token create needs --as IDENTITY (dom0 or a qube name)');
      if (positionals.length) throw new Usage(`unexpected ${positionals[0]}`);
      let expiresInMs: number | undefined;
      try { expiresInMs = values.expires ? parseDuration(values.expires) : undefined; } catch (e) { throw new Usage((e as Error).message); }
      let created;
      try {
        created = store.create(values.as, { ...(expiresInMs ? { expiresInMs } : {}), ...(values.description ? { description: values.description } : {}) });
      } catch (e) { throw new Usage((e as Error).message); }
      console.error(`qubes-rest: token ${created.record.id} for ${created.record.identity} created; it is shown once:`);
      console.log(created.token);
      return 0;
    }
    case 'list': {
      const list = store.list();
      if (values.json) { console.log(JSON.stringify(list.map(({ hash: _h, ...t }) => t))); return 0; }
      const now = Date.now();
      for (const t of list) {
        const state = t.revoked ? 'revoked' : t.expires !== undefined && t.expires <= now ? 'expired' : 'valid';
        console.log([t.id, t.identity, state, `created=${formatTime(t.created)}`, `expires=${formatTime(t.expires)}`, t.description ? JSON.stringify(t.description) : ''].join('\t').trimEnd());
      }
      return 0;
    }
    case 'revoke': {
      if (positionals.length !== 1) throw new Usage('token revoke takes one token id');
      if (!store.revoke(positionals[0]!)) { console.error(`qubes-rest: no token ${positionals[0]}`); return 1; }
      console.error(`qubes-rest: token ${positionals[0]} revoked`);
      return 0;
    }
    default:
      throw new Usage(`unknown token command ${JSON.stringify(sub ?? '')} (create, list, revoke)`);
  }
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  try {
    if (argv[0] === 'token') return await token(argv.slice(1));
    return await serve(argv);
  } catch (e) {
    if (e instanceof Usage || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`qubes-rest: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    console.error(`qubes-rest: ${(e as Error).message}`);
    return 1;
  }
}

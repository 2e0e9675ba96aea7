// bin/qubes-rest: the gateway in the foreground, and its token commands.
//   qubes-rest --prefix DIR [--config FILE] [--print-config] [--listen HOST:PORT] [--KEY-NAME VALUE]...
//   (keys: rest/config-schema.ts; SIGHUP re-reads the files and applies the reloadable ones)
//   qubes-rest token create --prefix DIR --as IDENTITY [--expires 30d] [--description TEXT]
//   qubes-rest token list --prefix DIR [--json]
//   qubes-rest token revoke ID --prefix DIR
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BASE } from './context.js';
import { DEFAULTS, parseListen, tokenFileFor, type RestOptions } from './options.js';
import { REST_SCHEMA, restSchemaFor } from './config-schema.js';
import { reloadOnSighup, startConfig } from '../lib/config/command-line.js';
import { announceReady, withdrawReady } from '../lib/config/ready.js';
import type { ConfigValues } from '../lib/config/schema.js';
import { parseDuration, TokenStore } from './tokens.js';

const PROGRAM = 'qubes-rest';
const USAGE = `usage: qubes-rest --prefix DIR [--config FILE] [--print-config] [--KEY-NAME VALUE]...
         (every key of qubes-rest.conf is also a flag; --prefix DIR reads DIR/etc/qubes/qubes-rest.conf)
       qubes-rest token create --prefix DIR --as IDENTITY [--expires DURATION] [--description TEXT]
       qubes-rest token list --prefix DIR [--json]
       qubes-rest token revoke ID --prefix DIR`;

class Usage extends Error {}

/** The URL the gateway answers at, as printed once it listens. */
export function listeningUrl(https: boolean, host: string, port: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `${https ? 'https' : 'http'}://${h}:${port}${BASE}`;
}

/** `--prefix DIR` taken out of argv (it is not a key: it picks the installation). */
function takePrefix(argv: string[]): { prefix: string | null; rest: string[] } {
  const rest: string[] = [];
  let prefix: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--prefix') {
      if (i + 1 >= argv.length) throw new Usage('--prefix needs a directory');
      prefix = argv[++i]!;
    } else if (a.startsWith('--prefix=')) prefix = a.slice('--prefix='.length);
    else rest.push(a);
  }
  return { prefix, rest };
}

/** The gateway's options from the loaded keys ('' is "none" for the optional paths). */
function optionsOf(v: ConfigValues): RestOptions {
  const s = (k: string) => String(v[k]),
    n = (k: string) => Number(v[k]);
  const access = s('access_log');
  return {
    listen: s('listen') || DEFAULTS.listen,
    ...(s('tls_cert') ? { tls_cert: s('tls_cert'), tls_key: s('tls_key') } : {}),
    hsts_max_age: n('hsts_max_age'),
    pending_task_timeout: n('pending_task_timeout'),
    completed_task_timeout: n('completed_task_timeout'),
    max_tasks: n('max_tasks'),
    body_limit: n('body_limit'),
    header_timeout: n('header_timeout'),
    idle_timeout: n('idle_timeout'),
    call_timeout: n('call_timeout'),
    max_connections: n('max_connections'),
    events_buffer: n('events_buffer'),
    ask_timeout: n('ask_timeout'),
    access_log: access === 'stderr' || access === 'none' ? access : resolve(access),
    qubesd_socket: s('qubesd_socket'),
    policy_socket: s('policy_socket'),
    policy_dir: s('policy_dir') || null,
    ask_socket: s('ask_socket') || null,
    token_file: s('token_file'),
    task_file: s('task_file') || null,
  };
}

async function serve(argv: string[]): Promise<number> {
  const { prefix, rest } = takePrefix(argv);
  const dir = resolve(prefix ?? '/');
  // the installation's own file, unless --config names another
  const installed = join(dir, 'etc', 'qubes', 'qubes-rest.conf');
  const args =
    prefix !== null && !rest.some((a) => a === '--config' || a.startsWith('--config=')) && existsSync(installed) ? ['--config', installed, ...rest] : rest;
  let schema = REST_SCHEMA;
  try {
    schema = restSchemaFor(dir);
  } catch (e) {
    if (prefix !== null) throw e;
  }
  const cfg = startConfig(PROGRAM, schema, args, USAGE);
  const v = cfg.current.values;
  if (Boolean(v.tls_cert) !== Boolean(v.tls_key)) throw new Usage('--tls-cert and --tls-key go together');
  const options = optionsOf(v);
  const { host, port } = parseListen(options.listen);
  // loaded here: the token commands must not pay for fastify's start-up
  const { buildGateway } = await import('./server.js');
  const gw = await buildGateway(options);
  await gw.app.listen({ host, port });
  const addr = gw.app.server.address();
  const realPort = addr && typeof addr === 'object' ? addr.port : port;
  // ready before the line: whoever waits for the line may look for the file
  const readyFile = String(v.ready_file);
  announceReady(readyFile, 'qubes-rest');
  console.log(`qubes-rest: listening on ${listeningUrl(Boolean(options.tls_cert), host, realPort)}`);
  // the server and the task manager read these fields per request
  const stopReload = reloadOnSighup(
    PROGRAM,
    cfg,
    (next, keys) => {
      const fresh = optionsOf(next.values) as unknown as Record<string, unknown>;
      for (const k of keys) (options as unknown as Record<string, unknown>)[k] = fresh[k];
    },
    (l) => console.error(l),
  );
  await new Promise<void>((done) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => done());
  });
  stopReload();
  withdrawReady(readyFile);
  await gw.close();
  return 0;
}

function formatTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

async function token(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: { prefix: { type: 'string' }, as: { type: 'string' }, expires: { type: 'string' }, description: { type: 'string' }, json: { type: 'boolean' } },
  });
  const store = new TokenStore(tokenFileFor(resolve(values.prefix ?? '/')));
  switch (sub) {
    case 'create': {
      if (!values.as) throw new Usage('token create needs --as IDENTITY (dom0 or a qube name)');
      if (positionals.length) throw new Usage(`unexpected ${positionals[0]}`);
      let expiresInMs: number | undefined;
      try {
        expiresInMs = values.expires ? parseDuration(values.expires) : undefined;
      } catch (e) {
        throw new Usage((e as Error).message);
      }
      let created;
      try {
        created = store.create(values.as, { ...(expiresInMs ? { expiresInMs } : {}), ...(values.description ? { description: values.description } : {}) });
      } catch (e) {
        throw new Usage((e as Error).message);
      }
      console.error(`qubes-rest: token ${created.record.id} for ${created.record.identity} created; it is shown once:`);
      console.log(created.token);
      return 0;
    }
    case 'list': {
      const list = store.list();
      if (values.json) {
        console.log(JSON.stringify(list.map(({ hash: _h, ...t }) => t)));
        return 0;
      }
      const now = Date.now();
      for (const t of list) {
        const state = t.revoked ? 'revoked' : t.expires !== undefined && t.expires <= now ? 'expired' : 'valid';
        console.log(
          [t.id, t.identity, state, `created=${formatTime(t.created)}`, `expires=${formatTime(t.expires)}`, t.description ? JSON.stringify(t.description) : '']
            .join('\t')
            .trimEnd(),
        );
      }
      return 0;
    }
    case 'revoke': {
      if (positionals.length !== 1) throw new Usage('token revoke takes one token id');
      if (!store.revoke(positionals[0]!)) {
        console.error(`qubes-rest: no token ${positionals[0]}`);
        return 1;
      }
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

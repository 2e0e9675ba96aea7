// bin/qubes-rest as a program: the token commands and their file, the
// listening line, HTTPS with and without HSTS, and tasks across a restart
// and their limits. None of this needs qubesd running: the gateway only
// calls it for what a request maps to.
import t from 'tap';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { install } from '../../rpc-services/install.js';
import { TaskManager } from '../../rest/tasks.js';
import { BIN, spawnPlain } from '../rpc-services/helpers.js';
import { createToken, http, qubesRest } from './helpers.js';

const prefix = mkdtempSync(join(tmpdir(), 'rest-gw-'));
install({ prefix });
t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
const tokenFile = join(prefix, 'etc', 'qubes', 'rest-tokens.json');

interface Served {
  url: string;
  line: string;
  proc: ChildProcess;
  /** its standard output and error so far */
  output(): string;
  /** resolves once its output matches `re` (throws if it exits or 30 s pass first) */
  waitFor(re: RegExp): Promise<void>;
  /** its exit code, once it exited */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts bin/qubes-rest on the installation under `at`; resolves with its URL once it printed its line. */
async function serve(args: string[], at = prefix): Promise<Served> {
  const proc = spawnPlain(process.execPath, [join(BIN, 'qubes-rest'), '--prefix', at, '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const waitFor = async (re: RegExp): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!re.test(out)) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill();
        throw new Error(`no ${re} from qubes-rest: ${out}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  await waitFor(/listening on/);
  const line = out.split('\n').find((l) => l.includes('listening on'))!;
  return {
    url: line.split(' ').pop()!,
    line,
    proc,
    output: () => out,
    waitFor,
    exited,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

t.test('token create, list, revoke', async (t) => {
  const r = qubesRest(['token', 'create', '--prefix', prefix, '--as', 'mgmt', '--expires', '30d', '--description', 'ci']);
  t.equal(r.code, 0);
  t.match(r.stdout, /^[A-Za-z0-9_-]{43}\n$/, 'the token alone on one line');
  const tok = r.stdout.trim();
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'readable by its owner alone');
  const file = readFileSync(tokenFile, 'utf8');
  t.notOk(file.includes(tok), 'the token is not stored');
  type TokenRecord = { id: string; hash: string; identity: string; expires: number; created: number; description: string };
  const rec = (JSON.parse(file) as { tokens: TokenRecord[] }).tokens[0]!;
  t.equal(rec.hash, createHash('sha256').update(tok).digest('hex'), 'only its SHA-256');
  t.equal(rec.identity, 'mgmt');
  t.equal(rec.expires - rec.created, 30 * 86400 * 1000);
  t.equal(rec.description, 'ci');
  t.notOk(r.stderr.includes(tok));

  const list = qubesRest(['token', 'list', '--prefix', prefix]);
  t.equal(list.code, 0);
  t.match(list.stdout, new RegExp(`^${rec.id}\\tmgmt\\tvalid\\tcreated=\\S+Z\\texpires=\\S+Z\\t"ci"$`, 'm'));
  t.notOk(list.stdout.includes(tok));
  t.equal(qubesRest(['token', 'revoke', rec.id, '--prefix', prefix]).code, 0);
  t.match(qubesRest(['token', 'list', '--prefix', prefix]).stdout, new RegExp(`^${rec.id}\\tmgmt\\trevoked`, 'm'));

  t.equal(qubesRest(['token', 'revoke', 'nosuchid', '--prefix', prefix]).code, 1);
  t.equal(qubesRest(['token', 'create', '--prefix', prefix, '--as', 'bad name']).code, 2);
  t.equal(qubesRest(['token', 'create', '--prefix', prefix, '--as', 'dom0', '--expires', 'soon']).code, 2);
  t.equal(qubesRest(['token', 'create', '--prefix', prefix]).code, 2, '--as is required');
  t.equal(qubesRest(['--prefix', prefix, '--listen', 'nowhere']).code, 2);
});

t.test('plain HTTP: the listening line, no HSTS even when asked', async (t) => {
  const g = await serve(['--hsts-max-age', '300']);
  t.teardown(g.stop);
  t.match(g.line, /^qubes-rest: listening on http:\/\/127\.0\.0\.1:\d+\/rest\/v0$/);
  const tok = createToken(prefix, 'dom0');
  const r = await http(`${g.url}/`, 'GET', tok);
  t.equal(r.status, 200);
  t.equal(r.headers.get('strict-transport-security'), null);
});

t.test('HTTPS, with HSTS when hsts_max_age > 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rest-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem'),
    key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const tok = createToken(prefix, 'dom0');
  const get = (url: string) =>
    new Promise<{ status: number; hsts: string | undefined }>((resolve, reject) => {
      https
        .get(url, { ca: readFileSync(cert), headers: { authorization: `Bearer ${tok}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, hsts: res.headers['strict-transport-security'] as string | undefined }));
        })
        .on('error', reject);
    });
  // a response the route writes itself (an event stream): its headers only
  const head = (url: string) =>
    new Promise<{ status: number; hsts: string | undefined }>((resolve, reject) => {
      const req = https.get(url, { ca: readFileSync(cert), headers: { authorization: `Bearer ${tok}` } }, (res) => {
        resolve({ status: res.statusCode!, hsts: res.headers['strict-transport-security'] as string | undefined });
        req.destroy();
      });
      req.on('error', reject);
    });
  for (const [age, want] of [
    ['300', 'max-age=300'],
    ['0', undefined],
  ] as const) {
    const g = await serve(['--tls-cert', cert, '--tls-key', key, '--hsts-max-age', age]);
    t.match(g.line, /^qubes-rest: listening on https:\/\/127\.0\.0\.1:\d+\/rest\/v0$/);
    const r = await get(`${g.url}/`);
    t.equal(r.status, 200);
    t.equal(r.hsts, want, `hsts_max_age=${age}`);
    t.same(await head(`${g.url}/events`), { status: 200, hsts: want }, `hsts_max_age=${age}, event stream`);
    await g.stop();
  }
});

t.test('a task pending when the gateway stopped is interrupted after its restart', async (t) => {
  const taskFile = join(prefix, 'var', 'lib', 'qubes', 'rest', 'tasks.json');
  mkdirSync(join(prefix, 'var', 'lib', 'qubes', 'rest'), { recursive: true });
  // what a gateway killed during a task leaves behind
  writeFileSync(
    taskFile,
    JSON.stringify({
      version: 1,
      tasks: [
        {
          id: 'aaaa',
          name: 'vm.clone',
          identity: 'dom0',
          status: 'pending',
          start: Date.now() - 1000,
          updatedAt: Date.now() - 1000,
          object: '/rest/v0/vms/work',
        },
        {
          id: 'bbbb',
          name: 'vm.start',
          identity: 'mgmt',
          status: 'success',
          start: Date.now() - 900,
          end: Date.now() - 800,
          updatedAt: Date.now() - 800,
          result: null,
        },
      ],
    }),
  );
  const g = await serve([]);
  t.teardown(g.stop);
  const tok = createToken(prefix, 'dom0');
  const r = await http(`${g.url}/tasks/aaaa`, 'GET', tok);
  t.equal(r.status, 200);
  const task = r.json as { status: string; error: { error: string; message: string }; end: number; href: string };
  t.equal(task.status, 'interrupted');
  t.equal(task.error.error, 'interrupted');
  t.match(task.error.message, /gateway stopped while the task was pending/);
  t.type(task.end, 'number');
  t.equal(task.href, '/rest/v0/tasks/aaaa');
  t.equal((await http(`${g.url}/tasks/bbbb`, 'GET', tok)).status, 200, 'completed tasks come back as they were');
  const mgmtTok = createToken(prefix, 'mgmt');
  t.same((await http(`${g.url}/tasks`, 'GET', mgmtTok)).json, ['/rest/v0/tasks/bbbb'], 'an identity sees its own tasks');
  const saved = JSON.parse(readFileSync(taskFile, 'utf8')) as { tasks: Array<{ id: string; status: string }> };
  t.equal(saved.tasks.find((x) => x.id === 'aaaa')!.status, 'interrupted', 'and so it is on disk');
  t.equal(statSync(taskFile).mode & 0o777, 0o600);
});

t.test('task limits: expiry, pending timeout, max_tasks, abort', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rest-tasks-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let now = 1_000_000;
  const m = new TaskManager(join(dir, 'tasks.json'), { pending_task_timeout: 60, completed_task_timeout: 10, max_tasks: 3 }, () => now);
  t.teardown(() => m.close());
  const forever = () => new Promise<never>(() => {});
  const done = m.run('dom0', 'quick', undefined, async () => 42);
  await m.wait(done.id);
  t.equal(m.get(done.id, 'dom0')!.result, 42);
  const p1 = m.run('dom0', 'slow', undefined, forever);
  const p2 = m.run('dom0', 'slow', undefined, (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('stopped')))));
  const p3 = m.run('dom0', 'slow', undefined, forever);
  t.equal(m.get(done.id, 'dom0'), null, 'the oldest completed task made room');
  let refused: unknown;
  try {
    m.run('dom0', 'slow', undefined, forever);
  } catch (e) {
    refused = e;
  }
  t.equal((refused as { status?: number })?.status, 503, 'every kept task pending: refused');

  t.ok(m.abort(p2.id, 'aborted by dom0'));
  const aborted = m.get(p2.id, 'dom0')!;
  t.equal(aborted.status, 'interrupted');
  t.equal(aborted.error!.message, 'aborted by dom0');
  t.type(aborted.abortionRequestedAt, 'number');
  t.notOk(m.abort(p2.id), 'not twice');

  now += 61_000;
  m.sweep();
  t.equal(m.get(p1.id, 'dom0')!.status, 'interrupted', 'pending longer than pending_task_timeout');
  t.match(m.get(p3.id, 'dom0')!.error!.message, /pending_task_timeout/);
  now += 11_000;
  m.sweep();
  t.same(m.list('dom0'), [], 'completed tasks expire after completed_task_timeout');
});

t.test('configuration: --print-config names a drop-in; the ready file; SIGHUP applies hsts_max_age and max_tasks', async (t) => {
  const p = mkdtempSync(join(tmpdir(), 'rest-conf-'));
  t.teardown(() => rmSync(p, { recursive: true, force: true }));
  install({ prefix: p });
  const dropIn = join(p, 'etc', 'qubes', 'qubes-rest.conf.d', '50.conf');
  writeFileSync(dropIn, '# mine\nhsts_max_age = 600\n');
  const pc = qubesRest(['--prefix', p, '--listen', '127.0.0.1:0', '--print-config']);
  t.equal(pc.code, 0);
  t.equal(pc.stderr, '');
  const lines = pc.stdout.split('\n');
  t.ok(lines.includes(`hsts_max_age = 600  # ${dropIn}:2`), 'the drop-in and its line');
  t.ok(lines.includes('listen = 127.0.0.1:0  # command line'));
  t.ok(lines.includes('max_tasks = 200  # default'));
  t.ok(
    lines.some((l) => l.startsWith(`ready_file = ${p}/var/run/qubes/qubes-rest.ready  # ${p}/etc/qubes/qubes-rest.conf:`)),
    'the packaged file sets the ready file',
  );
  t.ok(lines.includes(`token_file = ${p}/etc/qubes/rest-tokens.json  # default`), "the installation's paths are the defaults");

  const g = await serve(['--access-log', 'none'], p);
  t.teardown(() => {
    if (g.proc.exitCode === null) g.proc.kill('SIGKILL');
  });
  const ready = join(p, 'var', 'run', 'qubes', 'qubes-rest.ready');
  t.ok(statSync(ready).isFile(), 'the ready file is written once it listens');
  writeFileSync(dropIn, 'hsts_max_age = 900\nmax_tasks = 5\nbody_limit = 2048\n');
  g.proc.kill('SIGHUP');
  await g.waitFor(/reloaded configuration/);
  t.ok(
    g.output().split('\n').includes('qubes-rest: reloaded configuration; applied: hsts_max_age=900, max_tasks=5; needs a restart: body_limit=2048'),
    g.output(),
  );
  g.proc.kill('SIGTERM');
  t.equal(await g.exited, 0);
  t.throws(() => statSync(ready), 'the ready file is withdrawn at exit');
});

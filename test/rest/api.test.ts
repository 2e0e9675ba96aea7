// The gateway over real HTTP against the real stack (bin/qubes-stack): every
// collection and query option, PATCH all or nothing, tags, features,
// creation, removal, actions and tasks, events, authentication, transport
// errors, the access log and the OpenAPI document, with a dom0 token.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import SwaggerParser from '@apidevtools/swagger-parser';
import { BIN, spawnPlain } from '../rpc-services/helpers.js';
import { createToken, http, qubesRest, startRestStack, type RestStack } from './helpers.js';
import { eventually } from '../helpers/daemon-session.js';

const execFileP = promisify(execFile);

const s: RestStack = await startRestStack();
t.teardown(() => s.stop());
const { url, token } = s;
const get = (path: string, tok: string | null = token) => http(url + path, 'GET', tok);
const req = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => http(url + path, method, token, body, headers);

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=vault label=black');
/** name -> uuid, as qubesd itself lists them */
const uuids = new Map(
  (await s.dom0('admin.vm.List')).content
    .split('\n')
    .filter(Boolean)
    .map((l) => [l.split(' ')[0]!, /uuid=(\S+)/.exec(l)![1]!]),
);
const workHref = `/rest/v0/vms/${uuids.get('work')}`;
const prop = async (vm: string, p: string) => (await s.dom0('admin.vm.property.Get', vm, p)).content;
const tagsOf = async (vm: string) => (await s.dom0('admin.vm.tag.List', vm)).content.split('\n').filter(Boolean).sort();

t.test('authentication', async (t) => {
  const none = await get('/vms', null);
  t.equal(none.status, 401);
  t.equal((none.json as { error: string }).error, 'unauthorized');
  t.equal((await get('/vms', 'not-a-token')).status, 401);
  const cookie = await http(`${url}/vms`, 'GET', null, undefined, { cookie: `other=1; authenticationToken=${token}` });
  t.equal(cookie.status, 200, 'the authenticationToken cookie, as Xen Orchestra');
  t.equal((await get('/vms')).status, 200, 'Authorization: Bearer');

  const revoked = createToken(s.prefix, 'dom0', ['--description', 'to revoke']);
  t.equal((await get('/vms', revoked)).status, 200);
  const list = qubesRest(['token', 'list', '--prefix', s.prefix, '--json']);
  const id = (JSON.parse(list.stdout) as Array<{ id: string; description?: string }>).find((x) => x.description === 'to revoke')!.id;
  t.equal(qubesRest(['token', 'revoke', id, '--prefix', s.prefix]).code, 0);
  t.equal((await get('/vms', revoked)).status, 401, 'revoked');

  const short = createToken(s.prefix, 'dom0', ['--expires', '1s']);
  t.equal((await get('/vms', short)).status, 200, 'not expired yet');
  await new Promise((r) => setTimeout(r, 1100));
  t.equal((await get('/vms', short)).status, 401, 'expired, though accepted before');
});

t.test('the token file changed in place or removed is seen at the next request', async (t) => {
  const file = join(s.prefix, 'etc', 'qubes', 'rest-tokens.json');
  const original = readFileSync(file, 'utf8');
  const parsed = JSON.parse(original) as { tokens: Array<{ hash: string }> };
  t.equal((await get('/labels')).status, 200, 'the token works (and has been seen)');
  // an editor's in-place write (same inode, no rename): every hash changed
  writeFileSync(file, JSON.stringify({ ...parsed, tokens: parsed.tokens.map((r) => ({ ...r, hash: 'ab'.repeat(32) })) }));
  t.equal((await get('/labels')).status, 401, 'its record no longer matches');
  writeFileSync(file, original);
  t.equal((await get('/labels')).status, 200, 'the file put back');
  renameSync(file, `${file}.away`);
  t.equal((await get('/labels')).status, 401, 'no file: nobody');
  renameSync(`${file}.away`, file);
  t.equal((await get('/labels')).status, 200, 'the file back in place');
});

t.test('the root lists the collections', async (t) => {
  const r = await get('/');
  t.equal(r.status, 200);
  t.same(r.json, [
    '/rest/v0/vms',
    '/rest/v0/vdis',
    '/rest/v0/srs',
    '/rest/v0/pools',
    '/rest/v0/hosts',
    '/rest/v0/labels',
    '/rest/v0/tasks',
    '/rest/v0/backup-profiles',
    '/rest/v0/events',
  ]);
});

t.test('vms collection: hrefs, fields, filter, limit, ndjson', async (t) => {
  const hrefs = (await get('/vms')).json as string[];
  t.same([...hrefs].sort(), [...uuids.values()].map((u) => `/rest/v0/vms/${u}`).sort());

  const r = await get('/vms?fields=name_label,power_state,type');
  t.equal(r.headers.get('content-type')?.split(';')[0], 'application/json');
  const byName = Object.fromEntries((r.json as Array<{ name_label: string }>).map((o) => [o.name_label, o]));
  t.same(byName.dom0, { name_label: 'dom0', power_state: 'Running', type: 'AdminVM', href: '/rest/v0/vms/00000000-0000-0000-0000-000000000000' });
  t.same(byName.tpl, { name_label: 'tpl', power_state: 'Halted', type: 'TemplateVM', href: `/rest/v0/vms/${uuids.get('tpl')}` });
  t.same(byName.work, { name_label: 'work', power_state: 'Halted', type: 'AppVM', href: workHref });

  const filtered = await get('/vms?fields=name_label&filter=type:TemplateVM');
  t.same(filtered.json, [{ name_label: 'tpl', href: `/rest/v0/vms/${uuids.get('tpl')}` }]);
  const byProp = await get(`/vms?fields=name_label,label&filter=${encodeURIComponent('label:black !type:AdminVM')}`);
  t.same((byProp.json as Array<{ name_label: string }>).map((o) => o.name_label).sort(), ['tpl', 'vault'], 'filter on a Qubes property');
  // the filter's property is not among the fields: it is still read for the filter, and not returned
  const byHidden = await get(`/vms?fields=name_label,tags&filter=${encodeURIComponent('label:black !type:AdminVM')}`);
  t.same(
    (byHidden.json as Array<Record<string, unknown>>).map((o) => [o.name_label, Object.keys(o).sort()]).sort(),
    [
      ['tpl', ['href', 'name_label', 'tags']],
      ['vault', ['href', 'name_label', 'tags']],
    ],
    'filter on a property the fields do not name',
  );

  const bad = await get(`/vms?filter=${encodeURIComponent('type:(AppVM')}`);
  t.equal(bad.status, 400);
  t.match((bad.json as { message: string }).message, /at position \d+/, 'says where the filter is wrong');

  t.equal(((await get('/vms?limit=2')).json as unknown[]).length, 2);
  t.equal((await get('/vms?limit=x')).status, 400);

  const nd = await get('/vms?fields=name_label,power_state&ndjson');
  t.equal(nd.headers.get('content-type')?.split(';')[0], 'application/x-ndjson');
  const lines = nd.text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { name_label: string });
  t.same(lines.map((l) => l.name_label).sort(), ['dom0', 'tpl', 'vault', 'work']);

  const all = await get('/vms?fields=*&filter=name_label:work');
  const w = (all.json as Array<Record<string, unknown>>)[0]!;
  t.equal(w.label, 'blue');
  t.equal(w.template, 'tpl');
  t.equal(w.memory, 400);
  t.equal(w.include_in_backups, true);
  t.same(w.features, {});
  t.ok((w.tags as string[]).includes('created-by-dom0'));
});

t.test('one qube, by uuid or name', async (t) => {
  const byUuid = await get(workHref.slice('/rest/v0'.length));
  const byName = await get('/vms/work');
  t.equal(byUuid.status, 200);
  t.same(byUuid.json, byName.json);
  const o = byUuid.json as Record<string, unknown>;
  t.equal(o.uuid, uuids.get('work'));
  t.equal(o.name, 'work');
  t.equal(o.type, 'AppVM');
  t.equal(o.href, workHref);
  const missing = await get('/vms/nosuchqube');
  t.equal(missing.status, 404);
  t.equal((missing.json as { error: string }).error, 'QubesVMNotFoundError');
});

t.test('PATCH: all or nothing', async (t) => {
  t.equal((await req('PATCH', '/vms/work', { memory: 600, label: 'green' })).status, 204);
  t.equal(await prop('work', 'memory'), 'default=False type=int 600');
  t.equal(await prop('work', 'label'), 'default=False type=label green');

  const refused = await req('PATCH', '/vms/work', { memory: 700, netvm: 'nosuchqube' });
  t.equal(refused.status, 400);
  const body = refused.json as { field: string; rolled_back: string[]; error: string };
  t.equal(body.field, 'netvm');
  t.equal(body.error, 'QubesPropertyValueError');
  t.same(body.rolled_back, ['memory']);
  t.equal(await prop('work', 'memory'), 'default=False type=int 600', 'memory put back');

  for (const bad of [{ bogus: 1 }, { memory: 'lots' }, { include_in_backups: 'yes' }, { memory: { a: 1 } }]) {
    const r = await req('PATCH', '/vms/work', bad);
    t.equal(r.status, 400, JSON.stringify(bad));
    t.type((r.json as { message: string }).message, 'string');
  }
  t.equal(await prop('work', 'memory'), 'default=False type=int 600', 'refused bodies changed nothing');

  t.equal((await req('PATCH', '/vms/work', { memory: null })).status, 204, 'null resets to the default');
  t.equal(await prop('work', 'memory'), 'default=True type=int 400');
});

t.test('tags and features', async (t) => {
  t.equal((await req('PUT', '/vms/work/tags/My_tag')).status, 204);
  t.ok((await tagsOf('work')).includes('My_tag'));
  t.ok(((await get('/vms/work/tags')).json as string[]).includes('My_tag'));
  t.equal((await req('DELETE', '/vms/work/tags/My_tag')).status, 204);
  t.notOk((await tagsOf('work')).includes('My_tag'));
  t.equal((await req('DELETE', '/vms/work/tags/My_tag')).status, 404, 'no such tag');
  t.equal((await req('PUT', '/vms/work/tags/My%20tag')).status, 400, 'Qubes tags have no spaces');

  t.equal((await req('PUT', '/vms/work/features/service.foo', JSON.stringify('bar'))).status, 204);
  t.equal((await s.dom0('admin.vm.feature.Get', 'work', 'service.foo')).content, 'bar');
  t.equal((await req('PUT', '/vms/work/features/gui', 'on', { 'content-type': 'text/plain' })).status, 204);
  t.same((await get('/vms/work/features')).json, { 'service.foo': 'bar', gui: 'on' });
  t.same((await get('/vms/work/features/service.foo')).json, 'bar');
  t.equal((await req('DELETE', '/vms/work/features/gui')).status, 204);
  t.equal((await get('/vms/work/features/gui')).status, 404);

  t.equal((await req('PATCH', '/vms/work', { tags: ['a', 'b'] })).status, 204, 'PATCH tags sets them all');
  t.same(await tagsOf('work'), ['a', 'b']);
});

t.test('actions and tasks', async (t) => {
  const actions = (await get('/vms/work/actions')).json as string[];
  t.ok(actions.includes('/rest/v0/vms/work/actions/start'));
  t.ok(actions.includes('/rest/v0/vms/work/actions/clone'));

  const started = await req('POST', '/vms/work/actions/start');
  t.equal(started.status, 202);
  const location = started.headers.get('location')!;
  t.match(location, /^\/rest\/v0\/tasks\/[0-9a-f]+$/);
  t.equal(started.json, location);
  const task = (await get(`${location.slice('/rest/v0'.length)}?wait=result`)).json as Record<string, unknown>;
  t.equal(task.status, 'success');
  t.equal(task.name, 'vm.start');
  t.equal(task.result, null);
  t.equal(task.identity, 'dom0');
  t.type(task.start, 'number');
  t.type(task.end, 'number');
  t.equal((await s.dom0('admin.vm.CurrentState', 'work')).content.split(' ').pop(), 'power_state=Running');

  const again = await req('POST', '/vms/work/actions/start?sync');
  t.equal(again.status, 200, 'starting a running qube does nothing, as in Qubes');
  t.equal(again.text, 'null');

  const del = await req('DELETE', '/vms/work');
  t.equal(del.status, 409, 'no removal while it runs');
  const inUse = await req('DELETE', '/vms/tpl');
  t.equal(inUse.status, 409, 'nor while it is in use (a template of qubes)');
  t.equal((inUse.json as { error: string }).error, 'QubesVMInUseError');

  for (const a of ['pause', 'unpause', 'clean_reboot', 'hard_shutdown']) {
    const r = await req('POST', `/vms/work/actions/${a}?sync`);
    t.equal(r.status, 200, a);
    t.equal(r.text, 'null');
  }
  t.equal((await get('/vms/work')).json && ((await get('/vms/work')).json as { power_state: string }).power_state, 'Halted');

  const failing = await req('POST', '/vms/work/actions/unpause');
  const failed = (await get(`${failing.headers.get('location')!.slice('/rest/v0'.length)}?wait=result`)).json as { status: string; error: { error: string } };
  t.equal(failed.status, 'failure');
  t.equal(failed.error.error, 'QubesVMNotPausedError');

  t.equal((await req('POST', '/vms/work/actions/start', { x: 1 })).status, 400, 'start takes no parameters');
  t.equal((await req('POST', '/vms/work/actions/nosuch')).status, 404);

  const list = (await get('/tasks?fields=name,status')).json as Array<{ name: string; status: string }>;
  t.ok(list.some((x) => x.name === 'vm.start' && x.status === 'success'));
  const id = location.split('/').pop()!;
  const watched = await get(`/tasks/${id}?watch`);
  t.equal(watched.headers.get('content-type'), 'application/x-ndjson');
  t.equal((JSON.parse(watched.text.split('\n')[0]!) as { status: string }).status, 'success');
  t.equal((await req('POST', `/tasks/${id}/actions/abort`)).status, 409, 'a finished task is not aborted');
  t.equal((await req('DELETE', `/tasks/${id}`)).status, 204);
  t.equal((await get(`/tasks/${id}`)).status, 404);
});

t.test('clone, create_disposable, create and remove', async (t) => {
  await s.dom0('admin.vm.tag.Set', 'vault', 'secret');
  await s.dom0('admin.vm.feature.Set', 'vault', 'service.x', '1');
  const cloned = await req('POST', '/vms/vault/actions/clone?sync', { name: 'vault2' });
  t.equal(cloned.status, 200, cloned.text);
  const ref = cloned.json as { href: string; name_label: string };
  t.equal(ref.name_label, 'vault2');
  const c = (await get(ref.href.slice('/rest/v0'.length))).json as Record<string, unknown>;
  t.equal(c.label, 'black');
  t.equal(c.template, 'tpl');
  t.ok((c.tags as string[]).includes('secret'));
  t.same(c.features, { 'service.x': '1' });
  t.equal((await req('POST', '/vms/vault/actions/clone?sync', { name: 'bad name' })).status, 400);
  t.equal((await req('POST', '/vms/vault/actions/clone?sync', { name: 'vault2' })).status, 409, 'name taken');

  await s.dom0('admin.vm.property.Set', 'vault2', 'template_for_dispvms', 'True');
  const disp = await req('POST', '/vms/vault2/actions/create_disposable?sync');
  t.equal(disp.status, 200, disp.text);
  const d = (await get((disp.json as { href: string }).href.slice('/rest/v0'.length))).json as Record<string, unknown>;
  t.equal(d.type, 'DispVM');
  t.equal(d.template, 'vault2');

  const created = await req('POST', '/vms', {
    name_label: 'fresh',
    template: 'tpl',
    label: 'red',
    properties: { memory: 500 },
    tags: ['t1'],
    features: { f: 'v' },
  });
  t.equal(created.status, 201, created.text);
  t.equal(created.headers.get('location'), (created.json as { href: string }).href);
  t.equal(await prop('fresh', 'memory'), 'default=False type=int 500');
  t.ok((await tagsOf('fresh')).includes('t1'));
  const half = await req('POST', '/vms', { name_label: 'half', template: 'tpl', label: 'red', properties: { memory: 'x' } });
  t.equal(half.status, 400);
  t.equal((await s.dom0('admin.vm.List')).content.includes('half '), false, 'a refused creation leaves no qube');
  t.equal((await req('POST', '/vms', { name_label: 'x', label: 'red', color: 'blue' })).status, 400, 'unknown field');
  t.equal((await req('DELETE', '/vms/fresh')).status, 204);
  t.equal((await get('/vms/fresh')).status, 404);
});

t.test('vdis, srs, pools, hosts, labels, backup profiles', async (t) => {
  const vdis = (await get('/vdis')).json as string[];
  t.ok(vdis.includes('/rest/v0/vdis/work%3Aprivate'));
  const v = (await get('/vdis/work:private')).json as Record<string, unknown>;
  t.equal(v.id, 'work:private');
  t.equal(v.volume, 'private');
  t.equal(v.sr, '/rest/v0/srs/varlibqubes');
  t.equal(v.vm, workHref);
  t.equal(v.size, 2147483648);
  t.equal(v.save_on_stop, true);
  const sized = (await get('/vdis?fields=size&filter=qube:work volume:private')).json;
  t.same(sized, [{ size: 2147483648, href: '/rest/v0/vdis/work%3Aprivate' }]);
  t.equal((await get('/vdis/work')).status, 400, 'not a VDI id');

  t.same((await get('/srs')).json, ['/rest/v0/srs/varlibqubes', '/rest/v0/srs/linux-kernel']);
  const sr = (await get('/srs/varlibqubes')).json as Record<string, unknown>;
  t.equal(sr.driver, 'file');
  t.type(sr.size, 'number');
  t.ok(((await get('/srs/varlibqubes/vdis')).json as string[]).includes('/rest/v0/vdis/work%3Aprivate'));

  t.same((await get('/pools')).json, ['/rest/v0/pools/local']);
  const pool = (await get('/pools/local')).json as Record<string, unknown>;
  t.equal(pool.default_pool, 'varlibqubes');
  t.equal(pool.master, '/rest/v0/hosts/00000000-0000-0000-0000-000000000000');
  t.same((await get('/hosts?fields=name_label,power_state')).json, [
    { name_label: hostname(), power_state: 'Running', href: '/rest/v0/hosts/00000000-0000-0000-0000-000000000000' },
  ]);

  t.equal(((await get('/labels')).json as string[]).length, 8);
  t.same((await get('/labels/red')).json, { id: 'red', name_label: 'red', color: '0xcc0000', index: 1, href: '/rest/v0/labels/red' });
  t.same((await get('/labels?fields=color&filter=name_label:blue')).json, [{ color: '0x3465a4', href: '/rest/v0/labels/blue' }]);

  const nope = await get('/backup-profiles/nope');
  t.equal(nope.status, 404);
  t.equal((nope.json as { error: string }).error, 'QubesBackupProfileNotFoundError');
});

t.test('events: admin.Events as Server-Sent Events', async (t) => {
  const ac = new AbortController();
  const res = await fetch(`${url}/events`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  let seen = '';
  const until = async (needle: string) => {
    const deadline = Date.now() + 10_000;
    while (!seen.includes(needle)) {
      if (Date.now() > deadline) throw new Error(`no ${needle} in ${seen}`);
      const { value } = await reader.read();
      seen += Buffer.from(value!).toString('utf8');
    }
  };
  await until('connection-established');
  await s.dom0('admin.vm.feature.Set', 'vault', 'seen', 'yes');
  await until('domain-feature-set:seen');
  const line = seen.split('\n').find((l) => l.startsWith('data: ') && l.includes('domain-feature-set:seen'))!;
  t.same(JSON.parse(line.slice(6)), { subject: 'vault', event: 'domain-feature-set:seen', kwargs: { feature: 'seen', value: 'yes' } });
  ac.abort();
});

t.test('HEAD on the routes that stream: the headers at once, and nothing made', async (t) => {
  const auth = { authorization: `Bearer ${token}` };
  // each must answer well before the time-out (an unended stream's HEAD never did)
  const head = (path: string, extra: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'HEAD', headers: { ...auth, ...extra }, signal: AbortSignal.timeout(5000) });
  const taskCount = async () => ((await get('/tasks')).json as string[]).length;
  const before = await taskCount();

  const ev = await head('/events');
  t.equal(ev.status, 200);
  t.equal(ev.headers.get('content-type'), 'text/event-stream');
  t.equal((await head('/asks')).status, 200);
  // GET /asks with no question pending: the 200 is out at once all the same
  const ac = new AbortController();
  const asks = await fetch(`${url}/asks`, { headers: auth, signal: AbortSignal.any([ac.signal, AbortSignal.timeout(5000)]) });
  t.equal(asks.status, 200);
  t.equal(asks.headers.get('content-type'), 'text/event-stream');
  ac.abort();

  const raw = await head('/vdis/work%3Aprivate.raw');
  t.equal(raw.status, 200);
  t.equal(raw.headers.get('content-length'), String(2 * 1024 ** 3), "the volume's size");
  t.equal(raw.headers.get('x-task'), null, 'no transfer, no task');
  const bk = await head('/vms/work.qbkp', { 'x-backup-passphrase': 'p' });
  t.equal(bk.status, 200);
  t.equal(bk.headers.get('content-type'), 'application/octet-stream');
  t.equal(bk.headers.get('x-task'), null);
  t.equal((await head('/vms/nosuch.qbkp', { 'x-backup-passphrase': 'p' })).status, 404, 'as GET: no such qube');
  t.equal((await head('/vms/work.qbkp')).status, 400, 'as GET: no passphrase');
  t.equal(await taskCount(), before, 'no task was made');

  // a task kept pending: an export whose body is not read
  const slow = new AbortController();
  const exp = await fetch(`${url}/vdis/work%3Aprivate.raw`, { headers: auth, signal: slow.signal });
  const taskPath = exp.headers.get('x-task')!.slice('/rest/v0'.length);
  t.equal(((await get(taskPath)).json as { status: string }).status, 'pending');
  t.equal((await head(`${taskPath}?watch`)).status, 200, 'a watch of a pending task: at once');
  t.equal((await head(`${taskPath}?wait=result`)).status, 200, 'a HEAD does not wait for the result');
  slow.abort();
});

t.test('events: a client that does not read is dropped when its buffer overflows', async (t) => {
  // a second gateway on the same installation, with a small buffer
  const proc = spawnPlain(
    process.execPath,
    [join(BIN, 'qubes-rest'), '--prefix', s.prefix, '--listen', '127.0.0.1:0', '--events-buffer', '4096', '--access-log', 'none'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => {
    proc.kill('SIGTERM');
  });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  while (!/listening on (\S+)/.test(out)) {
    if (proc.exitCode !== null) throw new Error('qubes-rest exited');
    await new Promise((r) => setTimeout(r, 25));
  }
  const small = new URL(/listening on (\S+)/.exec(out)![1]!);
  const sock = net.connect(Number(small.port), small.hostname);
  await new Promise((r) => sock.once('connect', r));
  sock.write(`GET /rest/v0/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  let head = '';
  await new Promise<void>((r) => {
    const on = (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('connection-established')) {
        sock.off('data', on);
        r();
      }
    };
    sock.on('data', on);
  });
  t.match(head, /^HTTP\/1\.1 200/);
  sock.pause();
  let closed = false;
  sock.once('close', () => {
    closed = true;
  });
  sock.on('error', () => {});
  const big = 'x'.repeat(60_000);
  // far more than the kernel's socket buffers hold, so the gateway's own queue grows
  for (let i = 0; i < 250 && !sock.destroyed; i++) await s.dom0('admin.vm.feature.Set', 'tpl', `flood${i % 4}`, big);
  sock.resume();
  sock.on('data', () => {});
  const deadline = Date.now() + 15_000;
  while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(closed, 'the gateway closed the stream');
  t.equal((await http(`${small.origin}/rest/v0/labels`, 'GET', token)).status, 200, 'and still serves');
  for (let i = 0; i < 4; i++) await s.dom0('admin.vm.feature.Remove', 'tpl', `flood${i}`).catch(() => undefined);
});

t.test('transport: every error is a 4xx JSON and changes nothing', async (t) => {
  const before = await prop('work', 'memory');
  const badJson = await req('PATCH', '/vms/work', '{"memory": 5');
  t.equal(badJson.status, 400);
  t.equal((badJson.json as { error: string }).error, 'bad request');
  const huge = await req('PATCH', '/vms/work', JSON.stringify({ memory: 500, pad: 'x'.repeat(2 << 20) }));
  t.equal(huge.status, 413);
  t.type((huge.json as { message: string }).message, 'string');
  // the answer comes after the rest of the body was read: a client still
  // sending is never cut off with EPIPE before it can read the 413
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await req('PATCH', '/vms/work', JSON.stringify({ pad: 'y'.repeat(3 << 20) }))).status);
  t.same(statuses, [413, 413, 413, 413, 413, 413, 413, 413], 'every oversized request gets its 413');
  const media = await req('PATCH', '/vms/work', 'memory=5', { 'content-type': 'application/x-www-form-urlencoded' });
  t.equal(media.status, 415);
  for (const path of ['/vms/..%2F..%2Fetc', '/vms/a%2Fb/tags/x', '/vms/work/tags/..%2Fx', '/vms/%00']) {
    const r = await req('PUT', path.includes('/tags/') ? path : `${path}/tags/x`);
    t.equal(r.status, 400, path);
    t.type((r.json as { message: string }).message, 'string');
  }
  const proto = await req('PATCH', '/vms/work', '{"__proto__": {"memory": 1}}');
  t.equal(proto.status, 400);
  const unknown = await get('/nothing');
  t.equal(unknown.status, 404);
  t.equal((unknown.json as { error: string }).error, 'not found');
  t.equal(await prop('work', 'memory'), before);
  for (const r of [badJson, huge, media, proto]) t.notMatch(r.text, /\/tmp\/|ENOENT|at .*\.js/);
});

t.test('access log: one line per request, with the token id, never the token', async (t) => {
  await get('/labels?limit=999');
  // lines are written in batches, at most 10 ms after their request
  const file = join(s.prefix, 'var', 'log', 'qubes', 'qubes-rest.log');
  await eventually(() => readFileSync(file, 'utf8').includes('/rest/v0/labels?limit=999'), 'the request in the access log');
  const log = readFileSync(file, 'utf8');
  t.notOk(log.includes(token), 'the token never appears');
  const lines = log
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const ids = JSON.parse(qubesRest(['token', 'list', '--prefix', s.prefix, '--json']).stdout) as Array<{ id: string; description?: string }>;
  const firstId = ids.find((x) => x.description === 'created by qubes-stack on first start')!.id;
  const l = lines.reverse().find((x) => x.path === '/rest/v0/labels?limit=999')!;
  t.equal(l.token, firstId);
  t.equal(l.identity, 'dom0');
  t.equal(l.method, 'GET');
  t.equal(l.status, 200);
  t.type(l.ms, 'number');
  t.ok(
    lines.some((x) => x.status === 401 && x.token === null),
    'refused requests are logged too',
  );
});

t.test('OpenAPI document and Swagger UI', async (t) => {
  const doc = await http(`${url}/docs/openapi.json`, 'GET', null);
  t.equal(doc.status, 200);
  const api = doc.json as { openapi: string; paths: Record<string, unknown> };
  t.match(api.openapi, /^3\./);
  t.ok(api.paths['/rest/v0/vms'], 'generated from the route schemas');
  t.ok(api.paths['/rest/v0/vms/{id}/actions/start']);
  await t.resolves(SwaggerParser.validate(JSON.parse(doc.text)), 'validates as OpenAPI 3');
  const ui = await http(`${url}/docs/`, 'GET', null);
  t.equal(ui.status, 200);
  t.match(ui.text, /swagger/i);
});

// changes made with the cookie carry the console's CSRF header (rest/auth.ts)
t.test("Xen Orchestra's curl examples, host and ids changed", async (t) => {
  const curl = async (...args: string[]) => (await execFileP('curl', ['-sS', '--fail-with-body', ...args])).stdout;
  const vm = `${url}/vms/${uuids.get('vault')}`;
  t.same(JSON.parse(await curl('-b', `authenticationToken=${token}`, `${url}/`)), (await get('/')).json);
  const listed = JSON.parse(await curl('-b', `authenticationToken=${token}`, `${url}/vms?fields=name_label,power_state`)) as Array<{ name_label: string }>;
  t.ok(listed.some((o) => o.name_label === 'vault'));
  const nd = await curl('-b', `authenticationToken=${token}`, `${url}/vms?fields=name_label,power_state&ndjson`);
  t.equal(nd.trim().split('\n').length, listed.length);
  // properties update: Qubes names cannot change, so the example sets what a qube has
  await curl(
    '-X',
    'PATCH',
    '-b',
    `authenticationToken=${token}`,
    '-H',
    'X-Qubes-Console: 1',
    '-H',
    'Content-Type: application/json',
    '-H',
    'Accept: application/json',
    '-d',
    '{ "label": "purple", "memory": 450 }',
    vm,
  );
  t.equal(await prop('vault', 'label'), 'default=False type=label purple');
  await curl('-X', 'PUT', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', `${vm}/tags/My_tag`);
  t.ok((await tagsOf('vault')).includes('My_tag'));
  await curl('-X', 'DELETE', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', `${vm}/tags/My_tag`);
  t.notOk((await tagsOf('vault')).includes('My_tag'));
  const actions = JSON.parse(await curl('-b', `authenticationToken=${token}`, `${vm}/actions`)) as string[];
  t.ok(actions.some((a) => a.endsWith('/actions/clean_reboot')));
  await curl('-X', 'POST', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', `${vm}/actions/start?sync`);
  const task = JSON.parse(await curl('-X', 'POST', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', `${vm}/actions/clean_reboot`)) as string;
  t.match(task, /^\/rest\/v0\/tasks\//);
  t.equal(
    (JSON.parse(await curl('-b', `authenticationToken=${token}`, `${url}${task.slice('/rest/v0'.length)}?wait=result`)) as { status: string }).status,
    'success',
  );
  t.equal(await curl('-X', 'POST', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', `${vm}/actions/hard_shutdown?sync`), 'null');
  await curl('-X', 'DELETE', '-b', `authenticationToken=${token}`, '-H', 'X-Qubes-Console: 1', vm);
  t.notOk((await s.dom0('admin.vm.List')).content.includes('vault '));
});

// Whole qubes over real HTTP against the real stack: GET /vms/{id}.qbkp
// streams a format-4 archive (passphrase header, compress=), POST
// /pools/{id}/vms restores it through the Admin API as the token's
// identity (?sync: the new qube's href; otherwise a task); a wrong
// passphrase or a refused call restores nothing.
import t from 'tap';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { call } from '../helpers/qubesd.js';
import { listBackup } from '../../qubesd/backup/restore.js';
import { createToken, http, startRestStack } from './helpers.js';

const s = await startRestStack({}, 'socket');
t.teardown(() => s.stop());
await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=mgmt label=red');
await s.dom0('admin.vm.tag.Set', 'work', 'important');
const MiB = 1 << 20;
const data = Buffer.alloc(4 * MiB);
data.fill('w', 100, 200_000);
data.fill('e', 4 * MiB - 10);
const put = await fetch(`${s.url}/vdis/work:private.raw`, { method: 'PUT', headers: { authorization: `Bearer ${s.token}` }, body: await sized() });
async function sized(): Promise<Buffer> {
  // the private volume gets 4 MiB first (ImportWithSize's protocol, as dom0)
  for (const [m, p] of [
    ['internal.vm.volume.ImportBegin', String(4 * MiB)],
    ['internal.vm.volume.ImportEnd', 'ok'],
  ]) {
    const r = await call(s.config.qubesd.internalSocket, m!, 'work', 'private', p!);
    if (!r.ok) throw new Error(`${m}: ${r.type} ${r.message}`);
  }
  return data;
}
if (put.status !== 200) throw new Error(`PUT: ${put.status} ${await put.text()}`);

const PASS = { 'x-backup-passphrase': 'correct horse' };
const archive = join(s.prefix, 'work.qbkp');

async function download(path: string, headers: Record<string, string>): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${s.token}`, ...headers } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}
async function upload(query: string, body: Buffer, headers: Record<string, string>, token = s.token): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${s.url}/pools/local/vms${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}
const names = async () =>
  (await s.dom0('admin.vm.List')).content
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0])
    .sort();

t.test('export a qube as an archive', async (t) => {
  const r = await download('/vms/work.qbkp?compress=false', PASS);
  t.equal(r.status, 200);
  t.match(r.headers.get('x-task'), /^\/rest\/v0\/tasks\/[0-9a-f]+$/);
  writeFileSync(archive, r.body);
  const listing = await listBackup(archive, { passphrase: 'correct horse' });
  t.same(
    listing.qubes.map((q) => q.name),
    ['work'],
  );
  t.equal(listing.header.compressed, false);
  const gz = await download('/vms/work.qbkp?compress=gzip', PASS);
  t.equal(gz.status, 200);
  writeFileSync(join(s.prefix, 'gz.qbkp'), gz.body);
  t.equal((await listBackup(join(s.prefix, 'gz.qbkp'), { passphrase: 'correct horse' })).header.compressed, true);

  const noPass = await download('/vms/work.qbkp', {});
  t.same([noPass.status, JSON.parse(noPass.body.toString()).message], [400, 'the backup passphrase goes in the x-backup-passphrase header']);
  const badComp = await download('/vms/work.qbkp?compress=lz4', PASS);
  t.equal(badComp.status, 400);
  const dom0 = await download('/vms/dom0.qbkp', PASS);
  t.same([dom0.status, JSON.parse(dom0.body.toString()).message], [400, 'expected destination to not be AdminVM']);
});

t.test('restore an uploaded archive', async (t) => {
  const body = readFileSync(archive);
  const before = await names();
  const wrong = await upload('?sync', body, { 'x-backup-passphrase': 'wrong' });
  t.equal(wrong.status, 400);
  t.equal(wrong.json.error, 'bad passphrase');
  t.same(await names(), before, 'a wrong passphrase restores nothing');

  const mgmt = createToken(s.prefix, 'mgmt');
  const refused = await upload('?sync', body, PASS, mgmt);
  t.same([refused.status, refused.json.call], [403, { service: 'admin.vm.List+', target: 'dom0' }]);
  t.same(await names(), before, 'a refused identity restores nothing');

  const sync = await upload('?sync', body, PASS);
  t.equal(sync.status, 200);
  t.match(sync.json, /^\/rest\/v0\/vms\/[0-9a-f-]{36}$/);
  const obj = await http(`${s.url.replace('/rest/v0', '')}${sync.json}`, 'GET', s.token);
  t.match(obj.json, { name_label: 'work-1' });
  t.ok((obj.json as { tags: string[] }).tags.includes('important'), 'its tag came back');
  const disk = await download('/vdis/work-1:private.raw', {});
  t.ok(disk.body.equals(data), 'the volume came back byte for byte');

  // by default a task; into another storage pool with sr=
  const poolDir = join(s.prefix, 'pool2');
  await s.dom0('admin.pool.Add', 'dom0', 'file', `name=pool2\ndir_path=${poolDir}\nrevisions_to_keep=1`);
  const task = await upload('?sr=pool2', body, PASS);
  t.equal(task.status, 202);
  const done = await http(`${s.url.replace('/rest/v0', '')}${task.headers.get('location')}?wait=result`, 'GET', s.token);
  t.match(done.json, { status: 'success', result: /^\/rest\/v0\/vms\// });
  t.match((await s.dom0('admin.vm.volume.Info', 'work-2', 'private')).content, /^pool=pool2\n/);
  const noPool = await fetch(`${s.url}/pools/elsewhere/vms?sync`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, ...PASS }, body });
  t.equal(noPool.status, 404);
});

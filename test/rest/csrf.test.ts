// CSRF over real HTTP against the real stack: every change authenticated by
// the cookie needs `X-Qubes-Console: 1`, whatever Origin, Referer or
// Sec-Fetch-* say or omit; refused, it is a 403 in the gateway's error form
// and nothing changes. Reads with the cookie, and changes with
// Authorization: Bearer, need no header.
import t from 'tap';
import { http, startRestStack, type RestStack } from './helpers.js';

const s: RestStack = await startRestStack();
t.teardown(() => s.stop());
const { url, token } = s;
const origin = url.replace(/\/rest\/v0$/, '');

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
await s.dom0('admin.vm.tag.Set', 'work', 'keep');
/** the tags this test sets or removes (qubesd adds others of its own) */
const MINE = ['keep', 'added', 'bearer'];
const state = async () => /power_state=(\w+)/.exec((await s.dom0('admin.vm.CurrentState', 'work')).content)![1];
const tags = async () =>
  (await s.dom0('admin.vm.tag.List', 'work')).content
    .split('\n')
    .filter((x) => MINE.includes(x))
    .sort();
const memory = async () => (await s.dom0('admin.vm.property.Get', 'work', 'memory')).content;
const qubes = async () =>
  (await s.dom0('admin.vm.List')).content
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[0])
    .sort();

const cookie = { cookie: `authenticationToken=${token}` };
/** What a browser, a script and a stripping proxy send around a request. */
const shapes: Record<string, Record<string, string>> = {
  'no Origin, Referer or Sec-Fetch (a script, or a proxy that strips them)': {},
  'same-origin browser headers': { origin, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors', referer: `${origin}/` },
  'Sec-Fetch-Site none (typed by the user)': { 'sec-fetch-site': 'none' },
};
const REFUSED = { error: 'forbidden', message: 'a change made with the authenticationToken cookie needs the header X-Qubes-Console: 1' };

t.test('cookie changes without the header: 403, nothing changed', async (t) => {
  for (const [shape, extra] of Object.entries(shapes)) {
    const h = { ...cookie, ...extra };
    const start = await http(`${url}/vms/work/actions/start?sync`, 'POST', null, undefined, h);
    t.equal(start.status, 403, `POST, ${shape}`);
    t.same(start.json, REFUSED);
    const put = await http(`${url}/vms/work/tags/added`, 'PUT', null, undefined, h);
    t.equal(put.status, 403, `PUT, ${shape}`);
    t.same(put.json, REFUSED);
    const del = await http(`${url}/vms/work/tags/keep`, 'DELETE', null, undefined, h);
    t.equal(del.status, 403, `DELETE, ${shape}`);
    t.same(del.json, REFUSED);
    const patch = await http(`${url}/vms/work`, 'PATCH', null, { memory: 321 }, h);
    t.equal(patch.status, 403, `PATCH, ${shape}`);
    const create = await http(`${url}/vms`, 'POST', null, { name_label: 'made', template: 'tpl', label: 'red' }, h);
    t.equal(create.status, 403, `POST /vms, ${shape}`);
  }
  const wrong = await http(`${url}/vms/work/tags/added`, 'PUT', null, undefined, { ...cookie, 'x-qubes-console': 'true' });
  t.equal(wrong.status, 403, 'the header must say 1');
  t.equal(await state(), 'Halted', 'not started');
  t.same(await tags(), ['keep'], 'no tag added or removed');
  t.equal(await memory(), 'default=True type=int 400', 'memory unchanged');
  t.same(await qubes(), ['dom0', 'tpl', 'work'], 'no qube created');
});

t.test('cookie reads need no header', async (t) => {
  const r = await http(`${url}/vms/work/tags`, 'GET', null, undefined, cookie);
  t.equal(r.status, 200);
  t.ok((r.json as string[]).includes('keep'));
});

t.test('cookie changes with the header work', async (t) => {
  const h = { ...cookie, 'x-qubes-console': '1' };
  t.equal((await http(`${url}/vms/work/tags/added`, 'PUT', null, undefined, h)).status, 204);
  t.equal((await http(`${url}/vms/work/tags/keep`, 'DELETE', null, undefined, h)).status, 204);
  t.same(await tags(), ['added']);
  t.equal((await http(`${url}/vms/work`, 'PATCH', null, { memory: 321 }, h)).status, 204);
  t.equal(await memory(), 'default=False type=int 321');
  t.equal((await http(`${url}/vms/work/actions/start?sync`, 'POST', null, undefined, h)).status, 200);
  t.equal(await state(), 'Running');
  t.equal((await http(`${url}/vms/work/actions/hard_shutdown?sync`, 'POST', null, undefined, h)).status, 200);
  t.equal(await state(), 'Halted');
});

t.test('Authorization: Bearer changes need no header', async (t) => {
  t.equal((await http(`${url}/vms/work/tags/bearer`, 'PUT', token)).status, 204);
  t.equal((await http(`${url}/vms/work/tags/bearer`, 'DELETE', token, undefined, { origin: 'https://elsewhere.example' })).status, 204);
  t.same(await tags(), ['added']);
});

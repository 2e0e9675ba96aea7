// A token acting as a qube can do over HTTP exactly what the qrexec policy
// lets that qube do through qrexec: the same policy, driven both ways
// (bin/qrexec-client-vm through the dispatcher, and the gateway), on a matrix
// of identities x targets x operations. Refused means 126 from qrexec and 403
// from the gateway; allowed calls must have the same effect.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { qrexecClient, type ClientResult } from '../rpc-services/helpers.js';
import { createToken, http, startRestStack } from './helpers.js';

const grant = (service: string, who: string, target: string) => `${service.padEnd(28)} * ${who.padEnd(8)} ${target.padEnd(24)} allow target=dom0`;
const MANAGED = '@tag:managed-by-mgmt';
const policy = [
  '# mgmt manages the qubes tagged managed-by-mgmt; one tag name only',
  grant('admin.vm.List', 'mgmt', '@adminvm'),
  grant('admin.Events', 'mgmt', '@adminvm'),
  ...['admin.vm.List', 'admin.vm.tag.List', 'admin.vm.property.GetAll', 'admin.vm.Start', 'admin.Events'].map((s) => grant(s, 'mgmt', MANAGED)),
  `${'admin.vm.tag.Set'.padEnd(28)} +ok-mgmt mgmt ${MANAGED} allow target=dom0`,
  '# auditor reads every qube (not dom0) and changes nothing',
  grant('admin.vm.List', 'auditor', '@adminvm'),
  '# an explicit deny before a broader allow',
  `${'admin.vm.tag.List'.padEnd(28)} * ${'auditor'.padEnd(8)} ${'vault'.padEnd(24)} deny`,
  ...['admin.vm.List', 'admin.vm.tag.List', 'admin.vm.property.GetAll'].map((s) => grant(s, 'auditor', '@anyvm')),
  '',
].join('\n');

// the dispatcher hands admin.* calls to qubesd.sock directly (Qubes R4.1+'s
// socket entries): the same policy decision, without a handler process per call
const s = await startRestStack({ '30-matrix.policy': policy }, 'socket');
t.teardown(() => s.stop());

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
for (const [name, label] of [
  ['mgmt', 'red'],
  ['auditor', 'orange'],
  ['nobody', 'gray'],
  ['work', 'blue'],
  ['personal', 'yellow'],
  ['vault', 'black'],
]) {
  await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${name} label=${label}`);
}
await s.dom0('admin.vm.tag.Set', 'work', 'managed-by-mgmt');
await s.dom0('admin.vm.tag.Set', 'personal', 'managed-by-mgmt');

const identities = ['mgmt', 'auditor', 'nobody'];
const targets = ['work', 'vault', 'dom0'];
const tokens = Object.fromEntries(identities.map((i) => [i, createToken(s.prefix, i)]));
const sockets = Object.fromEntries(identities.map((i) => [i, join(s.config.qrexec.socketDir, `qrexec.${i}`)]));
for (const sock of Object.values(sockets)) for (let i = 0; i < 400 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));

const viaQrexec = (id: string, target: string, service: string) => qrexecClient(sockets[id]!, [target, service]);
const refusedQ = (r: ClientResult) => r.code === 126;
const okContent = (r: ClientResult) => (r.code === 0 && r.stdout[0] === 0x30 ? r.stdout.subarray(2).toString('utf8') : null);
const viaHttp = (id: string, method: string, path: string) => http(`${s.url}${path}`, method, tokens[id]!);
const tagsOf = async (vm: string) => (await s.dom0('admin.vm.tag.List', vm)).content.split('\n').filter(Boolean).sort();
const running = async (vm: string) => (await s.dom0('admin.vm.CurrentState', vm)).content.endsWith('power_state=Running');
const limit = pLimit(4);

t.test('listing: the same qubes', async (t) => {
  await Promise.all(
    identities.map((id) =>
      limit(async () => {
        const q = await viaQrexec(id, 'dom0', 'admin.vm.List');
        const h = await viaHttp(id, 'GET', '/vms?fields=name_label');
        if (refusedQ(q)) {
          t.equal(h.status, 403, `${id}: refused both ways`);
          t.same((h.json as { call: unknown }).call, { service: 'admin.vm.List+', target: 'dom0' }, `${id}: the 403 names the call`);
          return;
        }
        const names = okContent(q)!
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split(' ')[0])
          .sort();
        t.equal(h.status, 200, `${id}: allowed both ways`);
        t.same((h.json as Array<{ name_label: string }>).map((o) => o.name_label).sort(), names, `${id}: the same qubes`);
      }),
    ),
  );
  // the expected answers, written out, so that both ways cannot be wrong together
  t.same(((await viaHttp('mgmt', 'GET', '/vms?fields=name_label')).json as Array<{ name_label: string }>).map((o) => o.name_label).sort(), [
    'dom0',
    'personal',
    'work',
  ]);
  t.equal((await viaHttp('nobody', 'GET', '/vms')).status, 403);
});

t.test('reads: vm.List on a target, tags, properties', async (t) => {
  const cases = identities.flatMap((id) => targets.map((target) => ({ id, target })));
  await Promise.all(
    cases.map(({ id, target }) =>
      limit(async () => {
        const label = `${id} -> ${target}`;
        const [qList, hGet] = await Promise.all([viaQrexec(id, target, 'admin.vm.List'), viaHttp(id, 'GET', `/vms/${target}`)]);
        t.equal(hGet.status === 403, refusedQ(qList), `${label}: GET /vms/{id} refused iff admin.vm.List is (${hGet.status}, ${qList.code})`);

        const [qTags, hTags] = await Promise.all([viaQrexec(id, target, 'admin.vm.tag.List'), viaHttp(id, 'GET', `/vms/${target}/tags`)]);
        t.equal(hTags.status === 403, refusedQ(qTags), `${label}: tags refused alike`);
        if (!refusedQ(qTags)) t.same(((hTags.json as string[]) ?? []).sort(), okContent(qTags)!.split('\n').filter(Boolean).sort(), `${label}: same tags`);

        // in a collection, what the policy hides is left out of the object
        const qProps = await viaQrexec(id, target, 'admin.vm.property.GetAll');
        if (hGet.status === 200) {
          const o = hGet.json as Record<string, unknown>;
          t.equal('label' in o, !refusedQ(qProps), `${label}: properties shown iff GetAll is allowed`);
        }
      }),
    ),
  );
  // spelled out
  t.equal((await viaHttp('auditor', 'GET', '/vms/vault/tags')).status, 403, 'the explicit deny');
  t.equal((await viaHttp('auditor', 'GET', '/vms/work/tags')).status, 200);
  t.equal((await viaHttp('mgmt', 'GET', '/vms/vault')).status, 403);
  const uuidOf = async (vm: string) => /uuid=(\S+)/.exec((await s.dom0('admin.vm.List', vm)).content)![1]!;
  t.equal((await viaHttp('mgmt', 'GET', `/vms/${await uuidOf('work')}`)).status, 200, 'by uuid, the policy sees the same qube');
  t.equal((await viaHttp('mgmt', 'GET', `/vms/${await uuidOf('vault')}`)).status, 403);
  t.equal((await viaHttp('auditor', 'GET', '/vms/dom0')).status, 200, 'auditor may list dom0 (@adminvm) ...');
  t.equal((await viaHttp('auditor', 'GET', '/vms/dom0/tags')).status, 403, '... but not read its tags (@anyvm is not dom0)');
});

t.test('writes: tag.Set with an argument-specific rule, start', async (t) => {
  for (const target of targets.filter((x) => x !== 'dom0')) {
    await Promise.all(
      identities.map((id) =>
        limit(async () => {
          for (const tag of [`ok-${id}`, `no-${id}`]) {
            const label = `${id} -> ${target} tag ${tag}`;
            const q = await viaQrexec(id, target, `admin.vm.tag.Set+${tag}`);
            const qHas = (await tagsOf(target)).includes(tag);
            if (qHas) await s.dom0('admin.vm.tag.Remove', target, tag);
            const h = await viaHttp(id, 'PUT', `/vms/${target}/tags/${tag}`);
            const hHas = (await tagsOf(target)).includes(tag);
            if (hHas) await s.dom0('admin.vm.tag.Remove', target, tag);
            t.equal(h.status === 403, refusedQ(q), `${label}: refused alike (${h.status}, ${q.code})`);
            t.equal(hHas, qHas, `${label}: same effect`);
            if (h.status === 403) t.same((h.json as { call: unknown }).call, { service: `admin.vm.tag.Set+${tag}`, target }, `${label}: names the call`);
          }
        }),
      ),
    );
  }
  t.same(await tagsOf('vault'), ['audiovm-dom0', 'created-by-dom0', 'guivm-dom0'], 'vault untouched');

  for (const target of targets.filter((x) => x !== 'dom0')) {
    for (const id of identities) {
      const label = `${id} -> ${target} start`;
      const q = await viaQrexec(id, target, 'admin.vm.Start');
      const qRan = await running(target);
      if (qRan) await s.dom0('admin.vm.Kill', target);
      const h = await viaHttp(id, 'POST', `/vms/${target}/actions/start?sync`);
      const hRan = await running(target);
      if (hRan) await s.dom0('admin.vm.Kill', target);
      t.equal(h.status === 403, refusedQ(q), `${label}: refused alike (${h.status}, ${q.code})`);
      t.equal(hRan, qRan, `${label}: same effect`);
    }
  }
  t.equal((await viaHttp('mgmt', 'POST', '/vms/work/actions/start?sync')).status, 200, 'spelled out: mgmt starts work');
  await s.dom0('admin.vm.Kill', 'work');
  t.equal((await viaHttp('mgmt', 'POST', '/vms/vault/actions/start?sync')).status, 403, 'but not vault');
});

t.test('an action refused by the policy fails its task with the 403 body', async (t) => {
  const r = await viaHttp('auditor', 'POST', '/vms/work/actions/start');
  t.equal(r.status, 202);
  const task = (await viaHttp('auditor', 'GET', `${r.headers.get('location')!.slice('/rest/v0'.length)}?wait=result`)).json as {
    status: string;
    error: { error: string; call: unknown };
  };
  t.equal(task.status, 'failure');
  t.equal(task.error.error, 'forbidden');
  t.same(task.error.call, { service: 'admin.vm.Start+', target: 'work' });
  t.equal((await viaHttp('mgmt', 'GET', `${r.headers.get('location')!.slice('/rest/v0'.length)}`)).status, 404, 'another identity does not see the task');
});

t.test('events are filtered for the identity as qubesd filters them', async (t) => {
  const ac = new AbortController();
  const res = await fetch(`${s.url}/events`, { headers: { authorization: `Bearer ${tokens.mgmt}` }, signal: ac.signal });
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  let seen = '';
  const until = async (needle: string) => {
    while (!seen.includes(needle)) seen += Buffer.from((await reader.read()).value!).toString('utf8');
  };
  await until('connection-established');
  await s.dom0('admin.vm.feature.Set', 'vault', 'hidden', '1');
  await s.dom0('admin.vm.feature.Set', 'work', 'shown', '1');
  await until('domain-feature-set:shown');
  t.notOk(seen.includes('"vault"'), 'nothing about vault');
  ac.abort();
  t.equal((await viaHttp('nobody', 'GET', '/events')).status, 403, 'no admin.Events grant: 403 before any stream');
});

// qubesd answers dom0's repeated reads from memory (qubesd/api/reply-cache.ts).
// Through the real socket: a repeat gets the very same bytes, and every kind
// of change shows in the next answer: a property, a feature, a tag, a
// system-wide default another qube's value follows, a power state, a file
// the model reads. Answers from memory leave the same audit line.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { call, cleanup, rawCall, settledAuditCalls, startDaemon } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';

t.test('a repeated read gets the same bytes; each change shows in the next one', async (t) => {
  const d = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const get = async (dest: string, prop: string) => {
    const r = await call(d.socket, 'admin.vm.property.Get', dest, prop);
    t.ok(r.ok, `${dest} ${prop}: ${r.message ?? ''}`);
    return r.content;
  };
  const request = encodeRequest('admin.vm.property.Get', 'netvm', 'dom0', 'personal');
  const first = await rawCall(d.socket, request);
  t.equal(first.toString('latin1'), '0\0default=True type=vm sys-firewall');
  for (let i = 0; i < 3; i++) t.same(await rawCall(d.socket, request), first, `repeat ${i + 1}`);

  // the qube's own property
  t.ok((await call(d.socket, 'admin.vm.property.Set', 'personal', 'netvm', 'sys-net')).ok);
  t.equal(await get('personal', 'netvm'), 'default=False type=vm sys-net');
  t.ok((await call(d.socket, 'admin.vm.property.Reset', 'personal', 'netvm')).ok);
  t.equal(await get('personal', 'netvm'), 'default=True type=vm sys-firewall');

  // a default that follows a system-wide property
  t.equal(await get('personal', 'netvm'), 'default=True type=vm sys-firewall', 'read again before the change');
  t.ok((await call(d.socket, 'admin.property.Set', 'dom0', 'default_netvm', 'sys-net')).ok);
  t.equal(await get('personal', 'netvm'), 'default=True type=vm sys-net', 'the default followed default_netvm');
  t.equal((await call(d.socket, 'admin.property.Get', 'dom0', 'default_netvm')).content, 'default=False type=vm sys-net');

  // features and tags
  const feature = () => call(d.socket, 'admin.vm.feature.Get', 'work', 'cache-test');
  t.equal((await feature()).type, 'QubesFeatureNotFoundError');
  t.ok((await call(d.socket, 'admin.vm.feature.Set', 'work', 'cache-test', 'one')).ok);
  t.equal((await feature()).content, 'one');
  t.equal((await feature()).content, 'one');
  t.ok((await call(d.socket, 'admin.vm.feature.Set', 'work', 'cache-test', 'two')).ok);
  t.equal((await feature()).content, 'two');
  t.ok((await call(d.socket, 'admin.vm.feature.Remove', 'work', 'cache-test')).ok);
  t.equal((await feature()).type, 'QubesFeatureNotFoundError');
  const tag = () => call(d.socket, 'admin.vm.tag.Get', 'work', 'cache-tag');
  t.equal((await tag()).content, '0');
  t.ok((await call(d.socket, 'admin.vm.tag.Set', 'work', 'cache-tag')).ok);
  t.equal((await tag()).content, '1');
  t.match((await call(d.socket, 'admin.vm.tag.List', 'work')).content, /^cache-tag$/m);
  t.ok((await call(d.socket, 'admin.vm.tag.Remove', 'work', 'cache-tag')).ok);
  t.equal((await tag()).content, '0');
  t.notMatch((await call(d.socket, 'admin.vm.tag.List', 'work')).content, /^cache-tag$/m);

  // a qube removed: the repeat is refused as for any unknown qube
  t.equal(await get('untrusted', 'label'), 'default=False type=label red');
  t.ok((await call(d.socket, 'admin.vm.Remove', 'untrusted')).ok);
  t.equal((await call(d.socket, 'admin.vm.property.Get', 'untrusted', 'label')).type, 'QubesVMNotFoundError');
});

t.test('a power state and what comes with it show in the next read', async (t) => {
  const d = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const get = async (prop: string) => (await call(d.socket, 'admin.vm.property.Get', 'a', prop)).content;
  t.ok((await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).ok);
  t.ok((await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=a label=red')).ok);
  t.equal(await get('xid'), 'default=True type=int -1');
  t.equal(await get('xid'), 'default=True type=int -1');
  t.equal(await get('start_time'), 'default=True type=str ');
  const started = await call(d.socket, 'admin.vm.Start', 'a');
  t.ok(started.ok, started.message ?? '');
  t.match(await get('xid'), /^default=True type=int [0-9]+$/, 'a running qube has an xid');
  t.match(await get('start_time'), /^default=True type=str [0-9.]+$/, 'and a start time');
  t.ok((await call(d.socket, 'admin.vm.Kill', 'a')).ok);
  t.equal(await get('xid'), 'default=True type=int -1', 'and none once halted');
});

t.test('internal.GetSystemInfo, asked by the policy daemon for every request, follows tags and power states', async (t) => {
  const d = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const request = encodeRequest('internal.GetSystemInfo', '', 'dom0', 'dom0');
  const info = async () => {
    const raw = await rawCall(d.internalSocket, request);
    t.equal(raw.subarray(0, 2).toString('latin1'), '0\0');
    return JSON.parse(raw.subarray(2).toString('utf8')) as { domains: Record<string, { tags: string[]; power_state: string; label: string }> };
  };
  t.ok((await call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).ok);
  t.ok((await call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=a label=red')).ok);
  t.match((await info()).domains.a, { power_state: 'Halted', label: 'red' });
  const first = await rawCall(d.internalSocket, request);
  t.same(await rawCall(d.internalSocket, request), first, 'a repeat is the same bytes');
  t.ok((await call(d.socket, 'admin.vm.tag.Set', 'a', 'policy-tag')).ok);
  t.ok((await info()).domains.a!.tags.includes('policy-tag'), 'a new tag shows');
  t.ok((await call(d.socket, 'admin.vm.property.Set', 'a', 'label', 'blue')).ok);
  t.equal((await info()).domains.a!.label, 'blue', 'a new label shows');
  const started = await call(d.socket, 'admin.vm.Start', 'a');
  t.ok(started.ok, started.message ?? '');
  t.equal((await info()).domains.a!.power_state, 'Running', 'a power state shows');
  t.ok((await call(d.socket, 'admin.vm.Kill', 'a')).ok);
  t.equal((await info()).domains.a!.power_state, 'Halted');
  t.ok((await call(d.socket, 'admin.vm.Remove', 'a')).ok);
  t.equal((await info()).domains.a, undefined, 'a removed qube is gone');
});

t.test('a default read from a kernel file follows the file', async (t) => {
  const d = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const kernel = (await call(d.socket, 'admin.vm.property.Get', 'standalone', 'kernel')).content.split(' ').pop()!;
  t.equal(kernel, '6.6.33-1.fc37', 'the fixture kernel');
  const kernelopts = async () => (await call(d.socket, 'admin.vm.property.Get', 'standalone', 'kernelopts')).content;
  t.equal(await kernelopts(), 'default=True type=str swiotlb=2048', 'no file: the built-in default');
  t.equal(await kernelopts(), 'default=True type=str swiotlb=2048');
  writeFileSync(join(d.base, 'vm-kernels', kernel, 'default-kernelopts-nopci.txt'), 'from-the-file=1\n');
  // the model re-reads such a file once it is a second old (model/kernel-files.ts)
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(await kernelopts(), 'default=True type=str from-the-file=1');
});

t.test('the internal socket does not answer an admin method from the admin socket’s memory', async (t) => {
  const d = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const request = encodeRequest('admin.vm.property.Get', 'label', 'dom0', 'work');
  t.equal((await rawCall(d.socket, request)).toString('latin1'), '0\0default=False type=label blue');
  t.equal((await rawCall(d.socket, request)).toString('latin1'), '0\0default=False type=label blue');
  const internal = await call(d.internalSocket, 'admin.vm.property.Get', 'work', 'label');
  t.equal(internal.ok, false);
  t.equal(internal.type, 'ProtocolError');
});

t.test('reads racing writes end on the last value written', async (t) => {
  const d = await startDaemon({ args: ['--log', 'none'] });
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  const reads: Array<Promise<unknown>> = [];
  for (let i = 1; i <= 40; i++) {
    const set = call(d.socket, 'admin.vm.feature.Set', 'work', 'race', `v${i}`);
    for (let j = 0; j < 3; j++) reads.push(call(d.socket, 'admin.vm.feature.Get', 'work', 'race'));
    t.ok((await set).ok);
    t.equal((await call(d.socket, 'admin.vm.feature.Get', 'work', 'race')).content, `v${i}`, `after set ${i}`);
  }
  await Promise.all(reads);
});

t.test('an answer from memory leaves the same audit line as a full call', async (t) => {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  for (let i = 0; i < 3; i++) t.ok((await call(d.socket, 'admin.vm.property.Get', 'vault', 'netvm')).ok);
  const lines = (await settledAuditCalls(d)).filter((l) => l.method === 'admin.vm.property.Get');
  t.equal(lines.length, 3);
  for (const l of lines) {
    t.same(Object.keys(l), ['t', 'ev', 'source', 'method', 'arg', 'dest', 'payloadBytes', 'socket', 'outcome', 'ms']);
    t.match(l, { ev: 'call', source: 'dom0', method: 'admin.vm.property.Get', arg: 'netvm', dest: 'vault', payloadBytes: 0, socket: 'admin', outcome: 'ok' });
    t.type(l.ms, 'number');
  }
});

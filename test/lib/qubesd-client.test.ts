// The shared qubesd client against a real bin/qubesd: OK and EXCEPTION
// replies, the caller's identity, event streaming, time-outs and a missing daemon.
import t from 'tap';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, callRaw, streamEvents, QubesdClient, QubesdException, QubesdTransportError, type QubesdEvent } from '../../lib/qubesd-client.js';
import { startDaemon, cleanup } from '../helpers/qubesd.js';

const d = await startDaemon();
t.teardown(async () => {
  await d.stop();
  cleanup(d);
});

t.test('OK reply content', async (t) => {
  t.equal(await call(d.socket, { method: 'admin.vm.property.Get', dest: 'personal', arg: 'label' }), 'default=False type=label yellow');
  const raw = await callRaw(d.socket, { method: 'admin.vm.property.Get', dest: 'personal', arg: 'label' });
  t.ok(Buffer.isBuffer(raw));
});

t.test('EXCEPTION reply becomes QubesdException with type and message', async (t) => {
  const e = await call(d.socket, { method: 'admin.vm.property.Get', dest: 'personal', arg: 'no_such_prop' }).catch((x) => x);
  t.type(e, QubesdException);
  t.equal(e.type, 'QubesNoSuchPropertyError');
  t.equal(e.message, "Invalid property 'no_such_prop' of personal");
  t.equal(e.call, 'admin.vm.property.Get+no_such_prop personal');
});

t.test('a client bound to a caller', async (t) => {
  const c = new QubesdClient(d.socket);
  t.match(
    await c.call('admin.vm.List', 'dom0'),
    /^dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\ndebian-12 class=TemplateVM state=Halted /,
  );
});

t.test('events stream until closed', async (t) => {
  const seen: QubesdEvent[] = [];
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => {
    resolveFirst = r;
  });
  const s = streamEvents(d.socket, { dest: 'dom0' }, (e) => {
    seen.push(e);
    if (e.event.startsWith('domain-feature-set')) resolveFirst();
  });
  // wait for connection-established before changing anything
  while (!seen.some((e) => e.event === 'connection-established')) await new Promise((r) => setTimeout(r, 10));
  await call(d.socket, { method: 'admin.vm.feature.Set', dest: 'personal', arg: 'client-test', payload: 'v1' });
  await first;
  s.close();
  await s.finished;
  const ev = seen.find((e) => e.event === 'domain-feature-set:client-test')!;
  t.equal(ev.subject, 'personal');
  t.same(ev.kwargs, [
    ['feature', 'client-test'],
    ['value', 'v1'],
  ]);
});

t.test('no daemon: transport error without a Node stack in the message', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const e = await call(join(dir, 'none.sock'), { method: 'admin.vm.List', dest: 'dom0' }).catch((x) => x);
  t.type(e, QubesdTransportError);
  t.match(e.message, /cannot talk to qubesd at .*none\.sock \(ENOENT\)/);
});

t.test('time-out closes the call', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'client-'));
  const path = join(dir, 'silent.sock');
  const srv = net.createServer(() => {
    /* never answers */
  });
  await new Promise<void>((r) => srv.listen(path, r));
  t.teardown(() => {
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const e = await call(path, { method: 'admin.vm.List', dest: 'dom0' }, { timeoutMs: 100 }).catch((x) => x);
  t.type(e, QubesdTransportError);
  t.equal(e.message, 'no answer from qubesd within 100 ms');
});

// Shared reads (rest/shared-reads.ts): a request joins only a call that has
// not started yet, so its answer was read after it arrived; only reads without
// a payload are shared.
import t from 'tap';
import { isSharedRead, SharedReads } from '../../rest/shared-reads.js';

/** A call whose answer the test gives when it wants. */
function deferredCall(log: string[], name: string): { call: () => Promise<Buffer>; answer: () => void; fail: () => void } {
  let resolve!: (b: Buffer) => void;
  let reject!: (e: Error) => void;
  const p = new Promise<Buffer>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    call: () => {
      log.push(`start ${name}`);
      return p;
    },
    answer: () => resolve(Buffer.from(name)),
    fail: () => reject(new Error(`${name} failed`)),
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('a request arriving during a call waits for the next one, shared with later arrivals', async (t) => {
  const s = new SharedReads();
  const log: string[] = [];
  const a = deferredCall(log, 'A'),
    b = deferredCall(log, 'B'),
    c = deferredCall(log, 'C');
  const r1 = s.run('k', a.call);
  const r2 = s.run('k', b.call); // A is in flight: r2 must not get A's answer
  const r3 = s.run('k', c.call); // joins r2's queued call
  await tick();
  t.same(log, ['start A'], 'only one call in flight');
  a.answer();
  t.equal((await r1).toString(), 'A');
  await tick();
  t.same(log, ['start A', 'start B'], 'the queued call starts once A ended');
  b.answer();
  t.equal((await r2).toString(), 'B');
  t.equal((await r3).toString(), 'B', 'the later arrival shares it');
  const d = deferredCall(log, 'D');
  const r4 = s.run('k', d.call);
  await tick();
  t.same(log, ['start A', 'start B', 'start D'], 'nothing in flight: a new call at once');
  d.answer();
  t.equal((await r4).toString(), 'D');
});

t.test('keys are separate; a failed call fails its own requests only', async (t) => {
  const s = new SharedReads();
  const log: string[] = [];
  const a = deferredCall(log, 'A'),
    b = deferredCall(log, 'B'),
    c = deferredCall(log, 'C');
  const r1 = s.run('dom0\0admin.vm.List', a.call);
  const r2 = s.run('work\0admin.vm.List', b.call);
  const r3 = s.run('dom0\0admin.vm.List', c.call);
  await tick();
  t.same(log, ['start A', 'start B']);
  a.fail();
  await t.rejects(r1, { message: 'A failed' });
  await tick();
  t.same(log, ['start A', 'start B', 'start C'], 'the queued call is made even though A failed');
  b.answer();
  c.answer();
  t.equal((await r2).toString(), 'B');
  t.equal((await r3).toString(), 'C');
});

t.test('only reads without a payload are shared', async (t) => {
  t.equal(isSharedRead('admin.vm.List', ''), true);
  t.equal(isSharedRead('admin.vm.property.GetAll', ''), true);
  t.equal(isSharedRead('admin.vm.property.Set', ''), false, 'a write');
  t.equal(isSharedRead('admin.vm.Start', ''), false, 'an action');
  t.equal(isSharedRead('admin.vm.List', 'x'), false, 'a payload');
  t.equal(isSharedRead('admin.vm.volume.Export', ''), false, 'streamed');
  t.equal(isSharedRead('admin.Events', ''), false, 'a stream of events');
  t.equal(isSharedRead('admin.vm.Stats', ''), false, 'a stream of events');
  t.equal(isSharedRead('no.such.Method', ''), false);
});

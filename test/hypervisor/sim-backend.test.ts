import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SimBackend } from '../../qubesd/hypervisor/sim.js';
import { behaviourSuite } from './behaviour.js';
import { EventLog, tinySpec } from './helpers.js';

t.test('behaviour suite on the simulator', async (t) => {
  behaviourSuite(t, {
    make: async () => {
      const b = new SimBackend({ shutdownDelayMs: 20 });
      await b.connect();
      return b;
    },
    pmSuspend: true,
  });
});

t.test('shutdown passes through Halting-era events in libvirt order', async (t) => {
  const b = new SimBackend({ shutdownDelayMs: 30 });
  await b.connect();
  const spec = tinySpec('sim-order');
  const log = new EventLog(b);
  await b.start(spec);
  await b.shutdown(spec.name);
  t.equal(await b.state(spec.name), 'Running', 'the guest takes its time');
  await log.waitFor((e) => e.event === 'stopped');
  t.same(log.kinds(), ['defined/added', 'started/booted', 'shutdown/finished', 'stopped/shutdown']);
  await b.close();
});

t.test('with a state file, running domains outlive the daemon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sim-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'sim.json');
  const first = new SimBackend({ stateFile });
  await first.connect();
  await first.start(tinySpec('keeps-running'));
  await first.define(tinySpec('stays-halted'));
  await first.start(tinySpec('gets-paused'));
  await first.pause('gets-paused');
  await first.close();

  const second = new SimBackend({ stateFile });
  const resync = new Promise<unknown>((resolve) => second.once('resync', resolve));
  await second.connect();
  const seen = (await resync) as Array<{ name: string; state: string }>;
  t.same(Object.fromEntries(seen.map((d) => [d.name, d.state])), { 'keeps-running': 'Running', 'stays-halted': 'Halted', 'gets-paused': 'Paused' });
  await second.destroy('keeps-running');
  t.equal(await second.state('keeps-running'), 'Halted');
  await second.close();
});

t.test('an injected start failure leaves the domain defined and halted', async (t) => {
  const b = new SimBackend({ failStart: (s) => (s.name === 'broken' ? 'qemu exploded' : null) });
  await b.connect();
  const err = await b.start(tinySpec('broken')).then(
    () => null,
    (e: Error & { type?: string }) => e,
  );
  t.equal(err?.type, 'QubesVMError');
  t.equal(err?.message, 'qemu exploded');
  t.equal(await b.state('broken'), 'Halted');
  t.ok((await b.list()).some((d) => d.name === 'broken'));
  await b.close();
});

// Answers that differed from the real Qubes daemon (qubes/api/admin.py,
// qubes/vm/adminvm.py, qubes/vm/dispvm.py, qubes/exc.py), checked through
// bin/qubesd's socket with Qubes' literal wording.
import t, { type Test } from 'tap';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { call, cleanup, startDaemon, type Daemon } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';

async function daemon(t: Test): Promise<Daemon> {
  const d = await startDaemon();
  t.teardown(async () => {
    await d.stop();
    cleanup(d);
  });
  return d;
}

const errorOf = async (p: ReturnType<typeof call>) => {
  const r = await p;
  return r.ok ? `ok: ${r.content}` : `${r.type}: ${r.message}`;
};

t.test('lifecycle calls on dom0 answer as AdminVM does', async (t) => {
  const d = await daemon(t);
  t.equal(await errorOf(call(d.socket, 'admin.vm.Start', 'dom0')), 'QubesVMNotHaltedError: Cannot start Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Kill', 'dom0')), 'QubesVMError: Cannot kill Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Suspend', 'dom0')), 'QubesVMError: Cannot suspend Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Shutdown', 'dom0')), 'QubesVMError: Cannot shutdown Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Shutdown', 'dom0', 'force')), 'QubesVMError: Cannot shutdown Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Pause', 'dom0')), 'QubesVMError: Cannot pause Dom0 fake domain!');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Shutdown', 'dom0', 'now')), 'ProtocolError: Argument must match: force, wait', 'arguments are checked first');
});

t.test('admin.vm.Console', async (t) => {
  const d = await daemon(t);
  t.equal(await errorOf(call(d.socket, 'admin.vm.Console', 'work')), "QubesVMNotRunningError: Domain not running (either powered off or paused): 'work'");
  t.equal(await errorOf(call(d.socket, 'admin.vm.Console', 'dom0')), 'ok: ', 'dom0 has no console pty');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Console', 'work', '', 'x')), 'ProtocolError: unexpected payload');
  // (the fixture's qubes have no volume files: a qube of a fresh store can start)
  const f = await startDaemon({ from: 'fresh' });
  t.teardown(async () => {
    await f.stop();
    cleanup(f);
  });
  t.equal(await errorOf(call(f.socket, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=c1 label=red')), 'ok: ');
  t.equal(await errorOf(call(f.socket, 'admin.vm.property.Set', 'c1', 'kernel', '')), 'ok: ');
  t.equal(await errorOf(call(f.socket, 'admin.vm.Start', 'c1')), 'ok: ');
  t.equal(await errorOf(call(f.socket, 'admin.vm.Console', 'c1')), 'ok: ', 'a simulated guest has no pty either');
});

t.test('admin.vm.Stats of a halted qube: connection-established, then the exception', async (t) => {
  const d = await daemon(t);
  const raw = await new Promise<Buffer>((res) => {
    const parts: Buffer[] = [];
    const c = net.connect(d.socket, () => c.end(encodeRequest('admin.vm.Stats', '', 'dom0', 'work')));
    c.on('data', (b) => parts.push(b));
    c.on('close', () => res(Buffer.concat(parts)));
  });
  t.equal(
    raw.toString('latin1'),
    '1\0\0connection-established\0\0' + "2\0QubesVMNotRunningError\0\0Domain not running (either powered off or paused): 'work'\0",
  );
});

t.test('notes.Set replaces what libqubes-pure does not call safe for display', async (t) => {
  const d = await daemon(t);
  // kept: Latin, accents, Hiragana, currency, tab and newline; replaced:
  // zero-width space (Cf), emoji (So), combining accent (Mn), no-break
  // space (Zs), Hebrew (right to left), line separator (Zl), DEL and ESC
  const text = 'a\u200bb é\u3042€\t\n\u{1F600}e\u0301\u00a0\u05d0\u2028\x7f\x1b.';
  t.equal(await errorOf(call(d.socket, 'admin.vm.notes.Set', 'work', '', Buffer.from(text, 'utf8'))), 'ok: ');
  t.equal(await errorOf(call(d.socket, 'admin.vm.notes.Get', 'work')), 'ok: a_b é\u3042€\t\n_e______.');
});

t.test("disposables and volume clone tokens, in Qubes' words", async (t) => {
  const d = await daemon(t);
  t.equal(
    await errorOf(call(d.socket, 'admin.vm.CreateDisposable', 'work')),
    'QubesException: Refusing to create disposable out of app qube which has template_for_dispvms=False',
  );
  t.equal(
    await errorOf(call(d.socket, 'admin.vm.volume.CloneTo', 'work', 'private', 'no-such-token')),
    "QubesVolumeCopyTokenNotFoundError: 'Token to clone volume of qube was not found'",
  );
});

t.test('kernel volumes: a fresh store names the linux-kernel pool; in a file pool a new qube is not created', async (t) => {
  const d = await daemon(t);
  // load_initial_values sets it, so Get reports it as set
  t.equal(await errorOf(call(d.socket, 'admin.property.Get', 'dom0', 'default_pool_kernel')), 'ok: default=False type=str linux-kernel');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')), 'ok: ');
  t.match(await errorOf(call(d.socket, 'admin.vm.volume.Info', 'tpl', 'kernel')), /^ok: pool=linux-kernel\n/);
  t.equal(await errorOf(call(d.socket, 'admin.property.Reset', 'dom0', 'default_pool_kernel')), 'ok: ');
  t.equal(await errorOf(call(d.socket, 'admin.property.Get', 'dom0', 'default_pool_kernel')), 'ok: default=True type=str varlibqubes');
  // Qubes' FileVolume.create asserts a size above 0 (and drops the connection); the qube and its directory go
  t.equal(
    await errorOf(call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=a1 label=red')),
    'StoragePoolException: Volume size must be > 0 (volume appvms/a1/kernel)',
  );
  t.equal(await errorOf(call(d.socket, 'admin.vm.List', 'a1')), "QubesVMNotFoundError: No such domain: 'a1'");
  t.notOk(existsSync(join(d.base, 'appvms', 'a1')), 'no directory left');
  t.equal(await errorOf(call(d.socket, 'admin.property.Set', 'dom0', 'default_pool_kernel', 'linux-kernel')), 'ok: ');
  t.equal(await errorOf(call(d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=a1 label=red')), 'ok: ');
});

t.test("what a storage driver does not support is Qubes' QubesNotImplementedError, not Python's NotImplementedError", async (t) => {
  // Qubes raises the builtin (and drops the call); its client re-raises a
  // builtin's name as the builtin, which qvm-volume and qvm-pool do not catch
  const d = await daemon(t);
  t.equal(
    await errorOf(call(d.socket, 'admin.vm.volume.Set.revisions_to_keep', 'work', 'private', '3')),
    'QubesNotImplementedError: FileVolume supports maximum 1 volume revision to keep',
  );
  t.equal(
    await errorOf(call(d.socket, 'admin.pool.Set.revisions_to_keep', 'dom0', 'varlibqubes', '2')),
    'QubesNotImplementedError: FilePool supports maximum 1 volume revision to keep',
  );
  t.equal(
    await errorOf(call(d.socket, 'admin.vm.volume.Info', 'work', 'private')).then((s) => /\nrevisions_to_keep=(\d+)/.exec(s)?.[1]),
    '1',
    'nothing changed',
  );
});

// The handler program as qrexec runs it: a real process started through its
// service entry, against a real qubesd on the conformance fixture.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, rawCall, call, settledAuditCalls } from '../helpers/qubesd.js';
import { encodeRequest, MAX_REQUEST } from '../../lib/protocol/request.js';
import { configPath, loadConfig } from '../../lib/stack-config.js';
import { install, handlerPath } from '../../rpc-services/install.js';
import { exceptionOf, spawnPlain, startQubesd } from './helpers.js';

const d = await startQubesd();
const prefix = mkdtempSync(join(tmpdir(), 'rpc-handler-'));
install({ prefix });
const cfg = loadConfig(configPath(prefix));
cfg.qubesd.socket = d.socket;
cfg.qubesd.internalSocket = join(prefix, 'fake-internal.sock'); // a stand-in qubesd for the import test
writeFileSync(configPath(prefix), JSON.stringify(cfg));
t.teardown(async () => {
  await d.stop();
  rmSync(prefix, { recursive: true, force: true });
});

/** The installed entry; for names the installer does not place, a link made the same way. */
function entry(name: string): string {
  const p = join(cfg.qrexec.serviceDir, name);
  if (!existsSync(p)) symlinkSync(handlerPath(prefix), p);
  return p;
}

interface Run {
  code: number | null;
  out: Buffer;
  err: string;
}
function run(service: string, env: Record<string, string>, input: Buffer | string = '', args: string[] = []): Promise<Run> {
  return new Promise((resolve) => {
    const base: NodeJS.ProcessEnv = { PATH: process.env.PATH };
    const p = spawnPlain(entry(service), args, { env: { ...base, ...env } });
    const out: Buffer[] = [];
    let err = '';
    p.stdout!.on('data', (b) => out.push(b));
    p.stderr!.on('data', (b) => {
      err += b;
    });
    p.stdin!.on('error', () => {});
    p.stdin!.end(input);
    p.once('close', (code) => resolve({ code, out: Buffer.concat(out), err }));
  });
}

t.test("forwards a call and copies qubesd's reply byte for byte", async (t) => {
  const direct = await rawCall(d.socket, encodeRequest('admin.vm.List', '', 'dom0', 'dom0'));
  const r = await run('admin.vm.List', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET_TYPE: 'name', QREXEC_REQUESTED_TARGET: 'dom0' });
  t.equal(r.code, 0);
  t.same(r.out, direct);
  t.equal(r.out[0], 0x30);
});

t.test("the checkout's bin/qubes-rpc-handler is the same program", async (t) => {
  const p = spawnPlain(process.execPath, [join(ROOT, 'bin', 'qubes-rpc-handler')], {
    env: {
      PATH: process.env.PATH,
      QUBES_STACK_CONFIG: configPath(prefix),
      QREXEC_SERVICE_FULL_NAME: 'admin.vm.List+',
      QREXEC_REMOTE_DOMAIN: 'dom0',
      QREXEC_REQUESTED_TARGET: 'dom0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  p.stdout!.on('data', (b) => out.push(b));
  t.equal(await new Promise((r) => p.once('close', r)), 0);
  t.same(Buffer.concat(out), await rawCall(d.socket, encodeRequest('admin.vm.List', '', 'dom0', 'dom0')));
});

t.test('argument from the command line, from QREXEC_SERVICE_ARGUMENT, and keyword targets', async (t) => {
  const expected = await call(d.socket, 'admin.vm.property.Get', 'work', 'label');
  t.ok(expected.ok);
  const byArgv = await run('admin.vm.property.Get', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'work' }, '', ['label']);
  t.same(byArgv.out, expected.raw);
  const byEnv = await run('admin.vm.property.Get', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'work', QREXEC_SERVICE_ARGUMENT: 'label' });
  t.same(byEnv.out, expected.raw);
  const labels = await call(d.socket, 'admin.label.List');
  const keyword = await run('admin.label.List', {
    QREXEC_REMOTE_DOMAIN: 'dom0',
    QREXEC_REQUESTED_TARGET_TYPE: 'keyword',
    QREXEC_REQUESTED_TARGET_KEYWORD: 'adminvm',
  });
  t.same(keyword.out, labels.raw);
});

t.test('a payload reaches qubesd and the change is made', async (t) => {
  const r = await run('admin.vm.feature.Set', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'work' }, 'on', ['handler-test']);
  t.equal(r.code, 0);
  t.same(r.out, Buffer.from([0x30, 0]));
  const now = await call(d.socket, 'admin.vm.feature.Get', 'work', 'handler-test');
  t.equal(now.content, 'on');
});

t.test("qubesd's exceptions pass through unchanged with exit code 0", async (t) => {
  const direct = await call(d.socket, 'admin.vm.property.Get', 'nonexistent-qube', 'label');
  const r = await run('admin.vm.property.Get', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'nonexistent-qube' }, '', ['label']);
  t.equal(r.code, 0);
  t.same(r.out, direct.raw);
  t.equal(exceptionOf(r.out)?.type, 'QubesVMNotFoundError');
});

t.test('invalid calls are refused without reaching qubesd', async (t) => {
  const ok = { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'work' };
  const cases: Array<[string, string, Record<string, string>, string | Buffer, string[]]> = [
    ['bad argument characters', 'admin.vm.property.Get', ok, '', ['la bel']],
    ['argument with a slash', 'admin.vm.property.Get', ok, '', ['../etc']],
    ['caller missing', 'admin.vm.List', { QREXEC_REQUESTED_TARGET: 'dom0' }, '', []],
    ['caller not a qube name', 'admin.vm.List', { QREXEC_REMOTE_DOMAIN: '-x', QREXEC_REQUESTED_TARGET: 'dom0' }, '', []],
    ['target missing', 'admin.vm.List', { QREXEC_REMOTE_DOMAIN: 'dom0' }, '', []],
    ['target with a space', 'admin.vm.List', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'a b' }, '', []],
    [
      'unknown keyword',
      'admin.vm.List',
      { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET_TYPE: 'keyword', QREXEC_REQUESTED_TARGET_KEYWORD: 'default' },
      '',
      [],
    ],
    ['unknown target type', 'admin.vm.List', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET_TYPE: 'uuid', QREXEC_REQUESTED_TARGET: 'dom0' }, '', []],
    ['payload where none is taken', 'admin.vm.List', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' }, 'x', []],
    ['payload over the request limit', 'admin.vm.feature.Set', ok, Buffer.alloc(MAX_REQUEST, 0x61), ['big']],
    ['service not served (internal)', 'internal.GetSystemInfo', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' }, '', []],
    ['service unknown', 'admin.vm.Frobnicate', { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' }, '', []],
  ];
  const before = (await settledAuditCalls(d)).length;
  for (const [what, service, env, input, args] of cases) {
    const r = await run(service, env, input, args);
    t.not(r.code, 0, `${what}: non-zero exit`);
    const ex = exceptionOf(r.out);
    t.ok(ex, `${what}: EXCEPTION frame`);
    t.ok(ex?.message, `${what}: says why (${ex?.message})`);
  }
  t.equal((await settledAuditCalls(d)).length, before + 1, "qubesd saw none of them (only the first count's own call)");
});

t.test("policy.* calls reach the policy admin program with the installation's policy", async (t) => {
  mkdirSync(cfg.policy.dir, { recursive: true });
  writeFileSync(join(cfg.policy.dir, '30-handler-test.policy'), 'admin.vm.List * mgmt @adminvm allow target=dom0\n');
  const env = { QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' };
  const list = await run('policy.List', env);
  t.equal(list.code, 0);
  t.match(list.out.toString(), /^30-handler-test$/m);
  const get = await run('policy.Get', env, '', ['30-handler-test']);
  t.match(get.out.toString(), /admin\.vm\.List \* mgmt @adminvm allow target=dom0/);
  const bad = await run('policy.Get', env, '', ['../../etc/passwd']);
  t.not(bad.code, 0);
  t.equal(exceptionOf(bad.out)?.type, 'ProtocolError', "refused by the handler's own checks");
});

t.test('admin.Events streams until the caller goes away', async (t) => {
  const p = spawnPlain(entry('admin.Events'), [], { env: { PATH: process.env.PATH, QREXEC_REMOTE_DOMAIN: 'dom0', QREXEC_REQUESTED_TARGET: 'dom0' } });
  p.stdin!.end();
  const first = await new Promise<Buffer>((r) => p.stdout!.once('data', r));
  t.equal(first[0], 0x31, 'event frames arrive');
  const exited = new Promise<number | null>((r) => p.once('close', r));
  p.stdout!.destroy();
  // the next event finds nobody reading: the handler stops and qubesd's stream ends
  await call(d.socket, 'admin.vm.feature.Set', 'work', 'events-test', 'x');
  await call(d.socket, 'admin.vm.feature.Remove', 'work', 'events-test');
  const code = await exited;
  t.ok(code !== null || p.signalCode !== null, 'handler exited');
});

t.test('volume import streams standard input into the path qubesd gives', async (t) => {
  const target = join(prefix, 'volume.img');
  const seen: string[] = [];
  if (existsSync(cfg.qubesd.internalSocket)) unlinkSync(cfg.qubesd.internalSocket);
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      const req = Buffer.concat(chunks).toString('latin1');
      seen.push(req);
      if (req.startsWith('internal.vm.volume.ImportBegin')) {
        const payload = req.slice(req.indexOf('\0') + 1);
        const size = payload ? Number(payload) : 8;
        writeFileSync(target, Buffer.alloc(0));
        s.end(Buffer.concat([Buffer.from([0x30, 0]), Buffer.from(`${size} ${target}`)]));
      } else {
        const ok = req.endsWith('\0ok');
        s.end(ok ? Buffer.from([0x30, 0]) : Buffer.concat([Buffer.from([0x32, 0]), Buffer.from('QubesException\0\0Data import failed\0')]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(cfg.qubesd.internalSocket, r));
  t.teardown(() => server.close());
  const env = { QREXEC_REMOTE_DOMAIN: 'mgmt', QREXEC_REQUESTED_TARGET: 'work' };

  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const r = await run('admin.vm.volume.ImportWithSize', env, Buffer.concat([Buffer.from(`${data.length}\n`), data]), ['private']);
  t.equal(r.code, 0);
  t.same(r.out, Buffer.from([0x30, 0]));
  t.same(readFileSync(target), data, 'exact bytes landed in the file');
  t.match(seen[0], /^internal\.vm\.volume\.ImportBegin\+private mgmt name work\x00300000$/);
  t.match(seen[1], /^internal\.vm\.volume\.ImportEnd\+private mgmt name work\0ok$/);

  seen.length = 0;
  const short = await run('admin.vm.volume.Import', env, Buffer.alloc(5), ['private']);
  t.equal(short.code, 0);
  t.equal(exceptionOf(short.out)?.type, 'QubesException');
  t.match(seen[1], /fail\nnot enough data \(copied 5 bytes, expected 8 bytes\)$/);

  seen.length = 0;
  const long = await run('admin.vm.volume.Import', env, Buffer.alloc(9), ['private']);
  t.match(seen[1], /fail\ntoo much data \(expected 8 bytes\)$/);
  t.equal(exceptionOf(long.out)?.type, 'QubesException');

  seen.length = 0;
  const badSize = await run('admin.vm.volume.ImportWithSize', env, 'x'.repeat(40), ['private']);
  t.not(badSize.code, 0);
  t.equal(exceptionOf(badSize.out)?.type, 'ProtocolError');
  t.equal(seen.length, 0, 'bad size line never reaches qubesd');
});

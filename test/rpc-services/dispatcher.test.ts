// The local qrexec dispatcher with real sockets, real service programs and
// the real client program; the policy daemon is a stand-in here (the
// end-to-end test uses the real one).
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { QrexecDispatcher, socketPathFor } from '../../rpc-services/qrexec/dispatcher.js';
import { qrexecClient, spawnPlain, startFakePolicyDaemon, BIN } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'rpc-dispatch-'));
const services = join(dir, 'services'),
  sockets = join(dir, 'sockets'),
  policySock = join(dir, 'policy.sock');
mkdirSync(services);
const script = (name: string, body: string) => {
  writeFileSync(join(services, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(services, name), 0o755);
};
script(
  'test.Echo',
  'echo "$QREXEC_REMOTE_DOMAIN|$QREXEC_SERVICE_FULL_NAME|$QREXEC_SERVICE_ARGUMENT|$QREXEC_REQUESTED_TARGET_TYPE|$QREXEC_REQUESTED_TARGET|$QREXEC_REQUESTED_TARGET_KEYWORD|$1"; cat',
);
script('test.Exit', 'exit 7');
script('test.Specific', 'echo generic');
script('test.Specific+one', 'echo specific');
script('test.Sleep', `echo $$ > "${dir}/sleep.pid"; echo started; exec sleep 30`);
script('test.Ask', 'echo asked-and-ran');
script('test.Denied', 'echo must-not-run > "' + dir + '/denied-ran"');

// a socket service: answers with what it received
const sockSeen: Buffer[] = [];
const sockServer = net.createServer({ allowHalfOpen: true }, (s) => {
  const c: Buffer[] = [];
  s.on('data', (d) => c.push(d));
  s.on('end', () => {
    const all = Buffer.concat(c);
    sockSeen.push(all);
    s.end(Buffer.concat([Buffer.from('got:'), all]));
  });
});
await new Promise<void>((r) => sockServer.listen(join(services, 'test.Sock'), r));

const policy = await startFakePolicyDaemon(policySock, (q) => {
  if (q.service_and_arg.startsWith('test.Denied')) return 'deny';
  if (q.service_and_arg.startsWith('test.Ask')) return 'ask';
  if (q.service_and_arg.startsWith('test.Elsewhere'))
    return { raw: 'user=DEFAULT\nresult=allow\ntarget=work\ntarget_uuid=uuid:00000000-0000-0000-0000-000000000001\nautostart=True\nrequested_target=work' };
  if (q.service_and_arg.startsWith('test.Garbage')) return { raw: 'result=maybe' };
  return 'allow';
});
const logs: string[] = [];
const make = () => new QrexecDispatcher({ socketDir: sockets, serviceDirs: [services], policySocket: policySock, log: (m) => logs.push(m) });
const d = make();
await d.setQubes(['alpha', 'beta']);
const alpha = socketPathFor(sockets, 'alpha'),
  beta = socketPathFor(sockets, 'beta');

t.teardown(async () => {
  await d.close();
  await policy.close();
  sockServer.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test("an allowed call runs the service with qrexec's environment and the caller's data", async (t) => {
  const r = await qrexecClient(alpha, ['dom0', 'test.Echo+arg1'], 'payload bytes');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString(), 'alpha|test.Echo+arg1|arg1|name|dom0||arg1\npayload bytes');
  const kw = await qrexecClient(beta, ['@adminvm', 'test.Echo']);
  t.equal(kw.stdout.toString(), 'beta|test.Echo+||keyword||adminvm|\n', 'no argument: trailing +, keyword target');
  const dollar = await qrexecClient(beta, ['$adminvm', 'test.Echo']);
  t.equal(dollar.stdout.toString(), kw.stdout.toString(), '$adminvm is @adminvm');
});

t.test('the caller is the socket it came through', async (t) => {
  policy.queries.length = 0;
  await qrexecClient(alpha, ['dom0', 'test.Echo']);
  await qrexecClient(beta, ['dom0', 'test.Echo']);
  t.same(
    policy.queries.map((q) => q.source),
    ['alpha', 'beta'],
  );
  t.same(
    policy.queries.map((q) => q.service_and_arg),
    ['test.Echo+', 'test.Echo+'],
  );
});

t.test("a refused call gets qrexec-client-vm's refusal", async (t) => {
  const r = await qrexecClient(alpha, ['dom0', 'test.Denied'], 'x');
  t.equal(r.code, 126);
  t.equal(r.stderr, 'Request refused\n');
  t.equal(r.stdout.length, 0);
  t.notOk(existsSync(join(dir, 'denied-ran')), 'the service never ran');
});

t.test('exit codes pass through; a missing service is 127', async (t) => {
  t.equal((await qrexecClient(alpha, ['dom0', 'test.Exit'])).code, 7);
  t.equal((await qrexecClient(alpha, ['dom0', 'test.Missing'])).code, 127);
});

t.test('malformed requests are refused before the policy is asked', async (t) => {
  policy.queries.length = 0;
  for (const svc of ['test.Echo+a/b', 'test.Echo+a b', '+test.Echo', 'test.Echo+ä', 'x'.repeat(300)]) {
    const r = await qrexecClient(alpha, ['dom0', svc]);
    t.equal(r.code, 126, `${JSON.stringify(svc.slice(0, 20))} refused`);
  }
  const badTarget = await qrexecClient(alpha, ['dom0/../x', 'test.Echo']);
  t.equal(badTarget.code, 126);
  t.equal(policy.queries.length, 0);
});

t.test('policy answers the dispatcher cannot use are refusals or problems', async (t) => {
  const garbage = await qrexecClient(alpha, ['dom0', 'test.Garbage']);
  t.equal(garbage.code, 126, 'a malformed policy answer is a refusal');
  const elsewhere = await qrexecClient(alpha, ['work', 'test.Elsewhere']);
  t.equal(elsewhere.code, 125, 'a target other than dom0 cannot be served here');
  t.match(elsewhere.stderr, /dom0 only/);
});

t.test('the service descriptor is sent first to socket services', async (t) => {
  const r = await qrexecClient(beta, ['dom0', 'test.Sock+x'], 'data');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString('latin1'), 'got:test.Sock+x beta name dom0\0data');
});

t.test('an entry for the exact argument wins over the generic one', async (t) => {
  t.equal((await qrexecClient(alpha, ['dom0', 'test.Specific+one'])).stdout.toString(), 'specific\n');
  t.equal((await qrexecClient(alpha, ['dom0', 'test.Specific+two'])).stdout.toString(), 'generic\n');
});

t.test('large inputs stream through with flow control', async (t) => {
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const r = await qrexecClient(alpha, ['dom0', 'test.Echo'], big);
  const body = r.stdout.subarray(r.stdout.indexOf(0x0a) + 1);
  t.equal(createHash('sha256').update(body).digest('hex'), createHash('sha256').update(big).digest('hex'));
});

t.test('a caller that goes away takes its service with it', async (t) => {
  const p = spawnPlain(process.execPath, [join(BIN, 'qrexec-client-vm'), 'dom0', 'test.Sleep'], { env: { ...process.env, QREXEC_SOCKET: alpha } });
  await new Promise((r) => p.stdout!.once('data', r));
  const pid = Number(readFileSync(join(dir, 'sleep.pid'), 'utf8'));
  p.kill('SIGKILL');
  let alive = true;
  for (let i = 0; i < 100 && alive; i++) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
  }
  t.notOk(alive, 'the service process was stopped');
  const after = await qrexecClient(alpha, ['dom0', 'test.Echo']);
  t.equal(after.code, 0, 'the dispatcher keeps serving');
});

t.test('garbage on the socket is dropped without harm', async (t) => {
  await new Promise<void>((resolve) => {
    const s = net.connect(alpha, () => s.write(Buffer.from([0x52, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])));
    s.on('close', () => resolve());
    s.on('error', () => {});
  });
  t.equal((await qrexecClient(alpha, ['dom0', 'test.Echo'])).code, 0);
});

t.test("an ask is the policy daemon's to decide: one plain query, its answer is final", async (t) => {
  policy.queries.length = 0;
  const denied = await qrexecClient(alpha, ['dom0', 'test.Ask']);
  t.equal(denied.code, 126, 'the daemon (without an agent here) said no');
  t.same(policy.queries, [{ source: 'alpha', intended_target: 'dom0', service_and_arg: 'test.Ask+' }], 'asked once, never with assume_yes_for_ask');
});

t.test('sockets follow the list of qubes', async (t) => {
  await d.setQubes(['gamma']);
  t.notOk(existsSync(alpha));
  t.ok(existsSync(socketPathFor(sockets, 'gamma')));
  t.same(d.qubes, ['gamma']);
});

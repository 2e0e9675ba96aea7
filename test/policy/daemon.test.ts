// The policy daemon over real UNIX sockets: the request/response protocol,
// malformed requests, `ask` through the pluggable agent, system information
// fetched from a qubesd-like internal socket, policy.EvalSimple, and reloads.
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { writeFileSync, renameSync } from 'node:fs';
import t from 'tap';
import { PolicyDaemon } from '../../policy/daemon/server.js';
import { commandAskAgent, fixedAskAgent, socketAskAgent, type AskAgent } from '../../policy/daemon/ask-agents.js';
import { fetchSystemInfo } from '../../policy/daemon/system-info-source.js';
import { PolicyWatcher } from '../../policy/watcher.js';
import { systemInfo, tempTree } from './helpers.js';

const system = systemInfo();
const POLICY =
  [
    'test.Allow * @anyvm @anyvm allow',
    'test.Ask * @anyvm @anyvm ask default_target=vault',
    'test.Dvm * @anyvm @dispvm allow',
    'admin.vm.List * work vault ask target=dom0',
  ].join('\n') + '\n';

function exchange(path: string, data: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let out = '';
    s.on('connect', () => s.end(data));
    s.setTimeout(5000, () => s.destroy(new Error('no answer within 5 s')));
    s.on('data', (d) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

async function startDaemon(t: { teardown: (fn: () => Promise<void>) => void }, askAgent?: AskAgent) {
  const tree = tempTree({ 'policy.d/50.policy': POLICY });
  const watcher = new PolicyWatcher({ policyDir: join(tree.dir, 'policy.d'), legacyDir: join(tree.dir, 'legacy'), pollMs: 0, settleMs: 20 });
  const daemon = new PolicyDaemon({
    socketPath: join(tree.dir, 'policy.sock'),
    evalSocketPath: join(tree.dir, 'eval.sock'),
    watcher,
    systemInfo: async () => system,
    askAgent,
    log: () => undefined,
  });
  await daemon.start();
  t.teardown(async () => {
    await daemon.close();
    watcher.close();
    tree.cleanup();
  });
  return { dir: tree.dir, sock: join(tree.dir, 'policy.sock'), watcher };
}

const req = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('') + '\n';

t.test('allow and deny answers', async (t) => {
  const { sock } = await startDaemon(t);
  const uuid = system.domains['vault']!.uuid;
  t.equal(
    await exchange(sock, req({ source: 'work', intended_target: 'vault', service_and_arg: 'test.Allow+x' })),
    `user=DEFAULT\nresult=allow\ntarget=vault\ntarget_uuid=uuid:${uuid}\nautostart=True\nrequested_target=vault`,
  );
  t.equal(
    await exchange(sock, req({ domain_id: '3', source: 'work', intended_target: 'vault', service_and_arg: 'test.Allow', process_ident: '1 work 3' })),
    `user=DEFAULT\nresult=allow\ntarget=vault\ntarget_uuid=uuid:${uuid}\nautostart=True\nrequested_target=vault`,
    'the older protocol fields are accepted',
  );
  t.equal(await exchange(sock, req({ source: 'work', intended_target: 'vault', service_and_arg: 'test.Other' })), 'result=deny');
  t.equal(await exchange(sock, req({ source: 'work', intended_target: 'vault', service_and_arg: 'test.Allow', just_evaluate: 'yes' })), 'result=allow');
  t.match(
    await exchange(sock, req({ source: 'work', intended_target: '@dispvm', service_and_arg: 'test.Dvm' })),
    /^user=DEFAULT\nresult=allow\ntarget=@dispvm:work-dvm\ntarget_uuid=@dispvm:uuid:/,
  );
});

t.test('malformed requests get no answer', async (t) => {
  const { sock } = await startDaemon(t);
  t.equal(await exchange(sock, req({ source: 'work', intended_target: 'vault' })), '', 'missing service_and_arg');
  t.equal(await exchange(sock, req({ source: 'work', intended_target: 'vault', service_and_arg: 'x', bogus: '1' })), '', 'unknown field');
  t.equal(await exchange(sock, 'source=work\nsource=work\nintended_target=vault\nservice_and_arg=x\n\n'), '', 'duplicate field');
  t.equal(await exchange(sock, req({ source: 'work', intended_target: 'vault', service_and_arg: 'x', just_evaluate: 'maybe' })), '', 'bad boolean');
  t.equal(await exchange(sock, 'garbage\n\n'), '');
});

t.test('ask: assume_yes_for_ask, no agent, fixed and command agents', async (t) => {
  const plain = await startDaemon(t);
  const ask = (fields: Record<string, string> = {}) => req({ source: 'work', intended_target: 'personal', service_and_arg: 'test.Ask', ...fields });
  t.match(await exchange(plain.sock, ask({ assume_yes_for_ask: 'yes' })), /^user=DEFAULT\nresult=allow\ntarget=personal\n/);
  t.equal(await exchange(plain.sock, ask({ just_evaluate: 'yes' })), 'result=deny');
  t.equal(await exchange(plain.sock, ask()), 'result=deny', 'nobody to ask: deny');

  const yes = await startDaemon(t, fixedAskAgent('allow'));
  t.match(await exchange(yes.sock, ask()), /\ntarget=vault\n/, 'the agent takes the default target');
  t.equal(
    await exchange(yes.sock, req({ source: 'dom0', intended_target: 'personal', service_and_arg: 'test.Ask' })),
    'result=deny',
    'no GUI qube for dom0: deny',
  );
  const no = await startDaemon(t, fixedAskAgent('deny'));
  t.equal(await exchange(no.sock, ask()), 'result=deny');

  const seen: string[] = [];
  const cmd = await startDaemon(t, async (q) => {
    seen.push(JSON.stringify(q));
    return commandAskAgent(`cat >/dev/null; echo allow:sys-net`)(q);
  });
  t.match(await exchange(cmd.sock, ask()), /\ntarget=sys-net\n/);
  t.match(seen[0], /"targets":\[.*"sys-net".*\],"default_target":"vault","intended_target":"personal","guivm":"dom0"/);
  const bad = await startDaemon(t, commandAskAgent('echo allow:not-a-choice'));
  t.equal(await exchange(bad.sock, ask()), 'result=deny', 'a target that was not offered is refused');
});

t.test("`ask target=dom0`: the agent is offered dom0 and its choice is the answer, as Qubes' handle_user_response gives", async (t) => {
  const list = req({ source: 'work', intended_target: 'vault', service_and_arg: 'admin.vm.List+' });
  const asked: unknown[] = [];
  const yes = await startDaemon(t, async (q) => {
    asked.push(q);
    return fixedAskAgent('allow')(q);
  });
  t.equal(await exchange(yes.sock, list), 'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=vault');
  t.same(asked, [{ source: 'work', service: 'admin.vm.List', argument: '+', targets: ['dom0'], default_target: '', intended_target: 'vault', guivm: 'dom0' }]);
  const no = await startDaemon(t, fixedAskAgent('deny'));
  t.equal(await exchange(no.sock, list), 'result=deny');

  // a policy.Ask socket service, called as qrexec calls one in dom0
  const seen: string[] = [];
  const agentPath = join(yes.dir, 'policy.Ask');
  const answers = ['allow:dom0', 'deny', 'allow:vault', 'maybe'];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => {
      seen.push(got);
      s.end(answers[seen.length - 1]);
    });
  });
  await new Promise<void>((r) => server.listen(agentPath, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const viaSocket = await startDaemon(t, socketAskAgent(agentPath));
  t.equal(await exchange(viaSocket.sock, list), 'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=vault');
  t.equal(seen[0], 'policy.Ask dom0 name dom0\0{"source":"work","service":"admin.vm.List","argument":"+","targets":["dom0"],"default_target":"","icons":{}}');
  t.equal(await exchange(viaSocket.sock, list), 'result=deny', 'deny');
  t.equal(await exchange(viaSocket.sock, list), 'result=deny', 'a target that was not offered');
  t.equal(await exchange(viaSocket.sock, list), 'result=deny', 'an answer that is neither');
});

t.test('policy.EvalSimple socket service', async (t) => {
  const { dir } = await startDaemon(t);
  const ev = (body: string) => exchange(join(dir, 'eval.sock'), `policy.EvalSimple+test.Allow+x sys-gui\0${body}`);
  t.equal(await ev('work\0vault'), 'result=allow\n');
  t.equal(
    await exchange(join(dir, 'eval.sock'), `policy.EvalSimple+test.Ask sys-gui\0work\0personal`),
    'result=allow\n',
    'ask counts as yes for the intended target',
  );
  t.equal(await ev('work\0bad/name'), '', 'invalid names: no answer');
});

t.test('a changed policy is used without restart; a broken one is not', async (t) => {
  const { sock, dir, watcher } = await startDaemon(t);
  const q = req({ source: 'work', intended_target: 'vault', service_and_arg: 'test.New' });
  t.equal(await exchange(sock, q), 'result=deny');
  writeFileSync(join(dir, 'policy.d', '.tmp'), POLICY + 'test.New * @anyvm @anyvm allow\n');
  renameSync(join(dir, 'policy.d', '.tmp'), join(dir, 'policy.d', '50.policy'));
  t.ok(watcher.reload(true));
  t.match(await exchange(sock, q), /^user=DEFAULT\nresult=allow\n/);
  writeFileSync(join(dir, 'policy.d', '60.policy'), 'broken\n');
  t.notOk(watcher.reload(true));
  t.match(watcher.error()?.message, /60\.policy:1: wrong number of fields/);
  t.match(await exchange(sock, q), /result=allow/, 'the last good policy stays in force');
});

t.test('the watcher notices changes on its own', async (t) => {
  const tree = tempTree({ 'policy.d/50.policy': 'a * @anyvm @anyvm deny\n' });
  t.teardown(tree.cleanup);
  const reloaded = new Promise<number>((resolve, reject) => {
    // the watcher's own timers do not keep a process alive: this one does
    const limit = setTimeout(() => reject(new Error('no reload within 10 s')), 10000);
    const w = new PolicyWatcher({
      policyDir: join(tree.dir, 'policy.d'),
      settleMs: 10,
      pollMs: 50,
      onReload: (e) => {
        clearTimeout(limit);
        w.close();
        resolve(e.policy.rules.length);
      },
    });
    setTimeout(() => writeFileSync(join(tree.dir, 'policy.d', '60.policy'), 'b * @anyvm @anyvm deny\n'), 20);
  });
  t.equal(await reloaded, 2);
});

t.test('system information from a qubesd-like internal socket', async (t) => {
  const tree = tempTree({});
  t.teardown(tree.cleanup);
  const path = join(tree.dir, 'qubesd.internal.sock');
  let request = '';
  const server = createServer((s) => {
    s.on('data', (d) => (request += d));
    s.on('end', () => s.end(Buffer.concat([Buffer.from('0\0'), Buffer.from(JSON.stringify(system))])));
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const info = await fetchSystemInfo(path);
  t.equal(request, 'internal.GetSystemInfo+ dom0 name dom0\0');
  t.same(Object.keys(info.domains), Object.keys(system.domains));
});

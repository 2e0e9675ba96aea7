// `ask` rules through the whole real path: qubes-install with a command ask
// agent, qubes-stack (qubesd, the policy daemon, the dispatcher), and a
// management qube calling through bin/qrexec-client-vm. The usual Admin API
// form `... mgmt vault ask target=dom0` must offer the agent the choice dom0
// and, approved, run the service in dom0 for the requested target vault (as
// Qubes' handle_user_response does); refused, the caller gets 126. Also what
// a refusal leaves in the dispatcher's log, and that starting the stack
// leaves no bogus call in qubesd's audit log.
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';
import { loadConfig } from '../../lib/stack-config.js';
import { eventually, qrexecClient, runStack } from './helpers.js';

const prefix = mkdtempSync(join(tmpdir(), 'rpc-ask-'));
const agent = join(prefix, 'agent.sh');
writeFileSync(agent, `#!/bin/sh\ncat > "${prefix}/question.json"\ncat "${prefix}/answer"\n`);
chmodSync(agent, 0o755);
install({ prefix, ask: `command:${agent}` });
const c = loadConfig(join(prefix, 'etc', 'qubes', 'stack.json'));
const policyFile = join(c.policy.dir, '30-ask.policy');
writeFileSync(
  policyFile,
  [
    'admin.vm.List          * mgmt vault ask target=dom0',
    'admin.vm.property.Get  * mgmt vault ask target=dom0',
    'admin.vm.property.Set  * mgmt vault deny',
    '',
  ].join('\n'),
);

const stack = await runStack(prefix);
t.teardown(async () => {
  await stack.stop();
  rmSync(prefix, { recursive: true, force: true });
});

const dom0 = async (method: string, dest: string, arg: string, payload: string) => {
  const r = await call(c.qubesd.socket, method, dest, arg, payload);
  if (!r.ok) throw new Error(`${method}: ${r.type} ${r.message}`);
};
await dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=mgmt label=red');
await dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=vault label=black');
const mgmtSocket = join(c.qrexec.socketDir, 'qrexec.mgmt');
for (let i = 0; i < 400 && !existsSync(mgmtSocket); i++) await new Promise((r) => setTimeout(r, 25));
const audit = () => readFileSync(c.qubesd.log, 'utf8');
const auditCalls = () =>
  audit()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r['ev'] === 'call');

t.test('starting the stack leaves no bogus call in the audit log', async (t) => {
  const calls = auditCalls();
  t.same(
    calls.filter((r) => r['outcome'] === 'dropped' || r['source'] === ''),
    [],
    'no dropped call, no call without a source',
  );
  t.ok(calls.length > 0, 'the calls made so far are there');
});

t.test('an approved `ask target=dom0` runs in dom0 for the requested target', async (t) => {
  writeFileSync(join(prefix, 'answer'), 'allow:dom0\n');
  const r = await qrexecClient(mgmtSocket, ['vault', 'admin.vm.property.Get+label']);
  t.equal(r.stderr, '');
  t.equal(r.code, 0);
  t.equal(r.stdout.toString('latin1'), '0\0default=False type=label black');
  t.same(
    JSON.parse(readFileSync(join(prefix, 'question.json'), 'utf8')),
    {
      source: 'mgmt',
      service: 'admin.vm.property.Get',
      argument: '+label',
      targets: ['dom0'],
      default_target: '',
      intended_target: 'vault',
      guivm: 'dom0',
    },
    "the agent was offered the rule's only choice, dom0, and no default",
  );
  const seen = await eventually(audit, /"method":"admin\.vm\.property\.Get"/);
  t.match(
    seen,
    /"source":"mgmt","method":"admin\.vm\.property\.Get","arg":"label","dest":"vault","payloadBytes":0,"socket":"admin","outcome":"ok"/,
    'qubesd served mgmt for vault',
  );

  const list = await qrexecClient(mgmtSocket, ['vault', 'admin.vm.List']);
  t.equal(list.code, 0, "admin.vm.List, the issue's example, goes through as well");
  t.equal(list.stdout.toString('latin1'), '0\0', 'and qubesd lists nothing: for its listing filter an ask is not an allow, as in Qubes');
});

t.test("a refused `ask` is qrexec's refusal", async (t) => {
  writeFileSync(join(prefix, 'answer'), 'deny\n');
  const r = await qrexecClient(mgmtSocket, ['vault', 'admin.vm.property.Get+label']);
  t.equal(r.code, 126);
  t.equal(r.stderr, 'Request refused\n');
  t.equal(r.stdout.length, 0);
  writeFileSync(join(prefix, 'answer'), 'allow:vault\n');
  t.equal((await qrexecClient(mgmtSocket, ['vault', 'admin.vm.property.Get+label'])).code, 126, 'a target that was not offered is refused');
});

t.test("a refusal names the caller, the call and the deciding rule in the dispatcher's log", async (t) => {
  const r = await qrexecClient(mgmtSocket, ['vault', 'admin.vm.property.Set+label'], 'red');
  t.equal(r.code, 126);
  t.equal(r.stderr, 'Request refused\n', 'the caller is told what qrexec tells it, nothing more');
  const line = await stack.waitFor(/qrexec: mgmt: admin\.vm\.property\.Set\+label -> vault: refused: .*/);
  t.equal(line, `qrexec: mgmt: admin.vm.property.Set+label -> vault: refused: denied by policy ${policyFile}:3`);
  await qrexecClient(mgmtSocket, ['tpl', 'admin.vm.List']);
  t.equal(await stack.waitFor(/qrexec: mgmt: admin\.vm\.List -> tpl: refused: .*/), 'qrexec: mgmt: admin.vm.List -> tpl: refused: no matching rule found');
});

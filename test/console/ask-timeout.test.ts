// The console's ask agent denies a question nobody answers: a stack whose
// gateway has `ask_timeout = 2` (a qubes-rest.conf.d drop-in), a dom0
// console open in Debian's chromium, an `ask` rule, a qube's
// qrexec-client-vm call: the prompt shows, nobody answers, the call is
// refused (exit 126) no sooner than 2 s later, and the prompt goes away.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { http, startRestStack, type RestStack } from '../rest/helpers.js';
import { noBrowser, openConsole } from './browser.js';
import { qrexecClient } from '../rpc-services/helpers.js';

declare const document: any;

const why = noBrowser();
if (why) {
  console.error(`\n*** ${why} ***\n`);
  t.plan(0, why);
  process.exit(0);
}

const ASK_TIMEOUT_MS = 2000;
const s: RestStack = await startRestStack({ '20-ask.policy': 'admin.vm.List * work @adminvm ask default_target=@adminvm\n' }, 'handler', 'ask_timeout = 2\n');
t.teardown(() => s.stop());
const origin = s.url.replace(/\/rest\/v0$/, '');
await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');

t.test('no answer within ask_timeout is a deny, and the prompt goes', async (t) => {
  const sock = join(s.config.qrexec.socketDir, 'qrexec.work');
  for (let i = 0; i < 400 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  const c = await openConsole(`${origin}/#token=${s.token}`);
  t.teardown(() => c.close());
  await c.page.waitForSelector('#qubes tbody tr');
  // the page opens its /asks stream right after sign-in; give it a moment to be connected
  await c.page.waitForTimeout(1000);

  const began = Date.now();
  const call = qrexecClient(sock, ['dom0', 'admin.vm.List']).then((r) => ({ ...r, ms: Date.now() - began }));
  await c.page.waitForSelector('#asks section.ask', { timeout: 20_000 });
  t.match(await c.page.textContent('#asks section.ask p'), 'work asks for admin.vm.List');
  t.match(await c.page.textContent('#asks section.ask'), /Denied on its own in [0-2] s without an answer\./, 'the time left is said');
  const id = await c.page.getAttribute('#asks section.ask', 'data-ask');
  await c.shot('ask-timeout');

  const r = await call;
  t.equal(r.code, 126, 'refused as qrexec refuses');
  t.ok(r.ms >= ASK_TIMEOUT_MS, `refused after ${r.ms} ms, not before ask_timeout`);
  t.ok(r.ms < 30_000, 'and not much later');
  await c.page.waitForFunction(() => !document.querySelector('#asks section.ask'), undefined, { timeout: 10_000 });
  t.pass('the prompt is gone from the console');
  const late = await http(`${s.url}/asks/${id}`, 'POST', s.token, { allow: true });
  t.equal(late.status, 404, 'an answer now finds no question');
  t.same(c.problems, []);
});

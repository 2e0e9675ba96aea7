// The web console in a real browser (Debian's chromium, headless, through
// playwright-core) against the real stack (bin/qubes-stack): sign-in by link
// and by form, the qubes table and its live states, actions, a refused
// property explained at its field, data (features, notes) rendered as text,
// notes edited, backups with progress, a management identity that sees only
// what its policy gives, and the gateway's side of the console's safety
// (CSP, cookie flags, CSRF).
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createToken, http, startRestStack, type RestStack } from '../rest/helpers.js';
import { noBrowser, openConsole, type Console } from './browser.js';
import { qrexecClient } from '../rpc-services/helpers.js';

// the functions run in the page (playwright serializes them): its globals, untyped here
declare const document: any, window: any, getComputedStyle: any;

const why = noBrowser();
if (why) {
  console.error(`\n*** ${why} ***\n`);
  t.plan(0, why);
  process.exit(0);
}

const grant = (service: string, who: string, target: string) => `${service} * ${who} ${target} allow target=dom0`;
const policy = [
  grant('admin.vm.List', 'mgmt', '@adminvm'),
  grant('admin.Events', 'mgmt', '@adminvm'),
  ...['admin.vm.List', 'admin.vm.property.GetAll', 'admin.vm.Start', 'admin.Events'].map((s) => grant(s, 'mgmt', '@tag:managed')),
  '',
].join('\n');

const s: RestStack = await startRestStack({ '30-console.policy': policy });
t.teardown(() => s.stop());
const origin = s.url.replace(/\/rest\/v0$/, '');

await s.dom0('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=vault label=purple');
await s.dom0('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=mgmt label=red');
await s.dom0('admin.vm.tag.Set', 'work', 'managed');
await s.dom0('admin.vm.feature.Set', 'vault', 'evil', '<script>window.pwned=1</script><b>bold</b>');
/** notes that would run script if the page ever made markup of them */
const EVIL_NOTES = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';
await s.dom0('admin.vm.notes.Set', 'vault', '', EVIL_NOTES);

const consoles: Console[] = [];
t.teardown(async () => {
  for (const c of consoles) await c.close();
});
async function open(url: string, size: 'desktop' | 'phone' = 'desktop'): Promise<Console> {
  const c = await openConsole(url, size);
  consoles.push(c);
  return c;
}
const names = async (c: Console) => (await c.page.locator('#qubes tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')))).sort();

t.test('the gateway serves the page with a CSP, and the cookie safely', async (t) => {
  const page = await http(`${origin}/`, 'GET', null);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-security-policy'), /script-src 'self';/);
  t.notMatch(page.text, /<script>/, 'no inline script');
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');

  const noHeader = await http(`${s.url}/session`, 'POST', null, { token: s.token });
  t.equal(noHeader.status, 403, 'sign-in needs the console header');
  const bad = await http(`${s.url}/session`, 'POST', null, { token: 'nope' }, { 'x-qubes-console': '1' });
  t.equal(bad.status, 401);
  const ok = await http(`${s.url}/session`, 'POST', null, { token: s.token }, { 'x-qubes-console': '1' });
  t.equal(ok.status, 200);
  t.same(ok.json, { identity: 'dom0', tokenId: (ok.json as { tokenId: string }).tokenId });
  t.match(ok.headers.get('set-cookie'), /^authenticationToken=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);

  const cookie = { cookie: `authenticationToken=${s.token}`, origin };
  const who = await http(`${s.url}/session`, 'GET', null, undefined, cookie);
  t.equal((who.json as { identity: string }).identity, 'dom0');
  const csrf = await http(`${s.url}/vms/work/tags/x`, 'PUT', null, undefined, cookie);
  t.equal(csrf.status, 403, 'a change with the cookie from a browser, without the header, is refused');
  t.match((csrf.json as { message: string }).message, 'needs the header X-Qubes-Console: 1');
  t.notOk((await s.dom0('admin.vm.tag.List', 'work')).content.includes('x'), 'and nothing changed');
  const withHeader = await http(`${s.url}/vms/work/tags/x`, 'PUT', null, undefined, { ...cookie, 'x-qubes-console': '1' });
  t.equal(withHeader.status, 204);
  await s.dom0('admin.vm.tag.Remove', 'work', 'x');
  const bearer = await http(`${s.url}/vms/work/tags/y`, 'PUT', s.token);
  t.equal(bearer.status, 204, 'Bearer clients do not need the header');
  await s.dom0('admin.vm.tag.Remove', 'work', 'y');
  const out = await http(`${s.url}/session`, 'DELETE', null, undefined, { 'x-qubes-console': '1' });
  t.equal(out.status, 204);
  t.match(out.headers.get('set-cookie'), /^authenticationToken=; .*Max-Age=0/);
});

t.test('sign in by the link: the token leaves the address bar; the qubes listed', async (t) => {
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.waitForSelector('#qubes tbody tr[data-name="work"]');
  t.equal(c.page.url(), `${origin}/`, 'the fragment is gone');
  t.equal(await c.page.textContent('#identity'), 'dom0');
  t.same(await names(c), ['dom0', 'mgmt', 'tpl', 'vault', 'work']);
  t.equal(await c.page.textContent('#qubes tr[data-name="work"] td:nth-child(3)'), 'AppVM');
  t.equal(await c.page.textContent('#qubes tr[data-name="work"] td:nth-child(4)'), 'tpl');
  t.equal(await c.page.locator('#qubes tr[data-name="work"] .swatch').evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(52, 101, 164)', 'blue label');
  const cookies = await c.context.cookies();
  t.same(
    cookies.map((k) => [k.name, k.httpOnly, k.sameSite]),
    [['authenticationToken', true, 'Strict']],
  );
  t.equal(await c.page.evaluate(() => document.cookie), '', 'the page script cannot read it');

  // filter with the API's syntax, sort by a column
  await c.page.fill('#filter', 'type:TemplateVM');
  await c.page.press('#filter', 'Enter');
  await c.page.waitForFunction(() => document.querySelectorAll('#qubes tbody tr').length === 1);
  t.same(await names(c), ['tpl']);
  await c.page.fill('#filter', 'type:(AppVM');
  await c.page.press('#filter', 'Enter');
  await c.page.waitForFunction(() => document.querySelector('#filter-error')!.textContent !== '');
  t.match(await c.page.textContent('#filter-error'), /at position \d+/, 'a bad filter explained');
  await c.page.fill('#filter', '');
  await c.page.press('#filter', 'Enter');
  await c.page.waitForFunction(() => document.querySelectorAll('#qubes tbody tr').length === 5);
  await c.page.click('#qubes th:nth-child(1) button');
  t.same(
    await c.page.locator('#qubes tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name'))),
    ['work', 'vault', 'tpl', 'mgmt', 'dom0'],
    'sorted by name, descending',
  );
  await c.shot('qubes');
  t.same(c.problems, []);

  // at a phone's width: the same page, the table scrolls inside its box, the controls labelled
  const phone = await open(`${origin}/#token=${s.token}`, 'phone');
  await phone.page.waitForSelector('#qubes tbody tr[data-name="work"]');
  t.equal(await phone.page.evaluate(() => document.documentElement.scrollWidth), 390, 'no page-wide horizontal scroll');
  t.equal(await phone.page.getByLabel('Filter').count(), 1);
  await phone.shot('qubes');
  t.same(phone.problems, []);
});

t.test('start a qube: its state changes without a reload', async (t) => {
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.waitForSelector('#qubes tr[data-name="work"]');
  await c.page.evaluate(() => {
    (window as unknown as { marker: number }).marker = 42;
  });
  t.equal(await c.page.textContent('#qubes tr[data-name="work"] .state'), 'Halted');
  await c.page.click('#qubes tr[data-name="work"] button[data-action="start"]');
  await c.page.waitForFunction(() => document.querySelector('#qubes tr[data-name="work"] .state')?.textContent === 'Running');
  t.equal(await c.page.evaluate(() => (window as unknown as { marker: number }).marker), 42, 'the same page, not reloaded');
  await c.page.waitForFunction(() => /done/.test(document.querySelector('#status')!.textContent!));
  t.equal(await c.page.textContent('#status'), 'Start work: done.');

  // a change made elsewhere (dom0's own tools) shows too
  await s.dom0('admin.vm.Pause', 'work');
  await c.page.waitForFunction(() => document.querySelector('#qubes tr[data-name="work"] .state')?.textContent === 'Paused');
  t.pass('paused from elsewhere: seen live');
  await c.page.click('#qubes tr[data-name="work"] button[data-action="unpause"]');
  await c.page.waitForFunction(() => document.querySelector('#qubes tr[data-name="work"] .state')?.textContent === 'Running');
  await c.page.click('#qubes tr[data-name="work"] button[data-action="hard_shutdown"]');
  await c.page.waitForFunction(() => document.querySelector('#qubes tr[data-name="work"] .state')?.textContent === 'Halted');
  t.equal(await c.page.evaluate(() => (window as unknown as { marker: number }).marker), 42);
  t.same(c.problems, []);
});

t.test('edit properties: a refused value is explained at its field; data is text', async (t) => {
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.click('#qubes tr[data-name="vault"] button.link');
  await c.page.waitForSelector('#prop-memory');
  await c.page.fill('#prop-netvm', 'no-such-qube');
  await c.page.click('#detail button[type="submit"]:text("Save properties")');
  await c.page.waitForFunction(() => document.querySelector('#prop-netvm-error')!.textContent !== '');
  t.match(await c.page.textContent('#prop-netvm-error'), /^field netvm: /, 'the refusal sits next to netvm');
  t.equal(await c.page.evaluate(() => document.activeElement?.id), 'prop-netvm', 'and the field has the focus');
  t.equal((await s.dom0('admin.vm.property.Get', 'vault', 'netvm')).content.startsWith('default=True'), true, 'nothing changed');

  await c.page.fill('#prop-netvm', '');
  await c.page.fill('#prop-memory', '512');
  await c.page.click('#detail button[type="submit"]:text("Save properties")');
  await c.page.waitForFunction(() => /^Saved/.test(document.querySelector('#status')!.textContent!));
  t.equal(await c.page.textContent('#status'), 'Saved memory of vault.');
  t.equal((await s.dom0('admin.vm.property.Get', 'vault', 'memory')).content, 'default=False type=int 512');

  // the feature holding markup is shown as that text, and nothing ran
  const chip = c.page.locator('#detail li', { hasText: 'evil =' });
  t.equal(await chip.evaluate((li) => li.firstChild!.textContent), 'evil = <script>window.pwned=1</script><b>bold</b>');
  t.equal(await c.page.locator('#detail b').count(), 0, 'no element made from the data');
  t.equal(await c.page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);

  // tags and features
  await c.page.fill('#new-tag', 'bad tag!');
  await c.page.press('#new-tag', 'Enter');
  await c.page.waitForFunction(() => document.querySelector('#tag-error')!.textContent !== '');
  t.not(await c.page.textContent('#tag-error'), '', 'a bad tag name explained');
  await c.page.fill('#new-tag', 'secret');
  await c.page.press('#new-tag', 'Enter');
  await c.page.waitForSelector('#detail li:text("secret")');
  t.ok((await s.dom0('admin.vm.tag.List', 'vault')).content.split('\n').includes('secret'));
  await c.page.waitForSelector('#volumes tbody tr');
  t.same(await c.page.locator('#volumes tbody tr td:first-child').allTextContents(), ['root', 'private', 'volatile', 'kernel'], 'volumes listed');
  await c.shot('qube-detail');
  t.same(c.problems, []);
});

t.test('notes: shown as text, never run; edited and saved', async (t) => {
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.click('#qubes tr[data-name="vault"] button.link');
  // not `?.textContent !== ''`: that holds before the element exists
  await c.page.waitForFunction(() => !!document.querySelector('#notes-text')?.textContent);
  t.equal(await c.page.textContent('#notes-text'), '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">', 'the literal text');
  t.equal(await c.page.locator('#notes-text').evaluate((e) => e.childNodes.length === 1 && e.firstChild.nodeType === 3), true, 'one text node');
  t.equal(await c.page.locator('#detail img, #detail script').count(), 0, 'no element made from the notes');
  // an <img src=x> made from markup would have failed to load by now and run its handler
  await c.page.waitForTimeout(500);
  t.equal(await c.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'window.__pwned stays undefined');
  await c.shot('qube-notes');

  await c.page.click('#notes-edit-button');
  t.equal(await c.page.inputValue('#notes-edit'), EVIL_NOTES, 'the editor holds the same text');
  t.equal(await c.page.evaluate(() => document.activeElement?.id), 'notes-edit', 'and has the focus');
  await c.page.fill('#notes-edit', 'backups on Fridays\n<b>not bold</b>\n');
  await c.page.click('#notes button:text("Save notes")');
  await c.page.waitForFunction(() => document.querySelector('#status')!.textContent === 'Notes saved.');
  t.equal((await s.dom0('admin.vm.notes.Get', 'vault')).content, 'backups on Fridays\n<b>not bold</b>\n', 'saved through the API');
  await c.page.waitForFunction(() => /Fridays/.test(document.querySelector('#notes-text')!.textContent!));
  t.equal(await c.page.textContent('#notes-text'), 'backups on Fridays\n<b>not bold</b>\n');
  t.equal(await c.page.locator('#detail b').count(), 0);
  t.equal(await c.page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
  t.same(c.problems, [], 'no page error, no CSP refusal');
});

t.test('backup: progress reaches 100 %', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'console-backup-'));
  writeFileSync(
    join(s.config.qubesd.backupProfileDir, 'nightly.conf'),
    `include: [vault]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: s3cret\ncompression: True\n`,
  );
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.waitForSelector('#qubes tbody tr');
  await c.page.click('.tabs button[data-view="backups"]');
  await c.page.fill('#profile', 'nightly');
  await c.page.click('#view-backups button:text("Info")');
  await c.page.waitForSelector('#backup-info:not([hidden])');
  t.match(await c.page.textContent('#backup-info'), /vault/, 'Info names what it would back up');
  await c.page.click('#view-backups button:text("Back up now")');
  await c.page.waitForFunction(() => /done/.test(document.querySelector('#status')!.textContent!), undefined, { timeout: 60_000 });
  t.equal(await c.page.textContent('#backup-percent'), '100 %');
  t.equal(await c.page.locator('#backup-progress').evaluate((p) => (p as any).value), 100);
  await c.shot('backups');
  await c.page.click('.tabs button[data-view="tasks"]');
  await c.page.waitForSelector('#tasks tbody tr');
  t.ok((await c.page.locator('#tasks tbody td:first-child').allTextContents()).includes('backup.execute'), 'the backup is a task');
  await c.shot('tasks');
  t.same(c.problems, []);
});

t.test('a management identity sees and may do only what its policy gives', async (t) => {
  const token = createToken(s.prefix, 'mgmt');
  const c = await open(`${origin}/`, 'phone');
  await c.page.waitForSelector('#signin:not([hidden])');
  await c.page.fill('#token', 'wrong');
  await c.page.press('#token', 'Enter');
  await c.page.waitForFunction(() => document.querySelector('#signin-error')!.textContent !== '');
  t.equal(await c.page.textContent('#signin-error'), 'That token is unknown, revoked or expired.');
  await c.page.fill('#token', token);
  await c.page.press('#token', 'Enter');
  await c.page.waitForSelector('#qubes tbody tr[data-name="work"]');
  t.equal(await c.page.textContent('#identity'), 'mgmt');
  t.same(await names(c), ['dom0', 'work'], 'dom0 (admin.vm.List on @adminvm) and the qube tagged managed, no other');
  t.equal(await c.page.locator('#qubes tr[data-name="dom0"] button[data-action]').count(), 0);
  await c.page.click('#qubes tr[data-name="work"] button[data-action="start"]');
  await c.page.waitForFunction(() => document.querySelector('#qubes tr[data-name="work"] .state')?.textContent === 'Running');
  await c.page.click('#qubes tr[data-name="work"] button[data-action="hard_shutdown"]');
  await c.page.waitForFunction(() => /failed/.test(document.querySelector('#status')!.textContent!));
  t.match(await c.page.textContent('#status'), /^Kill work failed: .*admin\.vm\.Kill/, 'a refused call named in words');
  t.equal((await s.dom0('admin.vm.CurrentState', 'work')).content.includes('power_state=Running'), true, 'still running');
  await c.shot('mgmt-qubes');
  await s.dom0('admin.vm.Kill', 'work');
  t.same(c.problems, []);
});

t.test('policy: edit a file, meet a conflict, see a syntax error at its line', async (t) => {
  const file = join(s.config.policy.dir, '40-edit.policy');
  writeFileSync(file, 'test.Echo * work vault deny\n');
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.waitForSelector('#qubes tbody tr');
  await c.page.click('.tabs button[data-view="policy"]');
  await c.page.click('#policy-list button[data-policy="40-edit"]');
  await c.page.waitForSelector('#policy-text');
  t.equal(await c.page.inputValue('#policy-text'), 'test.Echo * work vault deny\n');

  // someone else saves first
  const other = await http(`${s.url}/policies/40-edit`, 'GET', s.token);
  const put = await http(`${s.url}/policies/40-edit`, 'PUT', s.token, {
    text: 'test.Echo * work vault allow\n',
    token: (other.json as { token: string }).token,
  });
  t.equal(put.status, 200);
  await c.page.fill('#policy-text', 'test.Echo * work @anyvm deny\n');
  await c.page.click('#policy-editor button:text("Save")');
  await c.page.waitForSelector('#policy-error .conflict');
  t.match(await c.page.textContent('#policy-error'), /^Conflict: Token mismatch: the file changed since it was read/);
  t.equal(readFileSync(file, 'utf8'), 'test.Echo * work vault allow\n', 'the other edit is kept, not overwritten');
  await c.shot('policy-conflict');

  await c.page.click('#policy-error button');
  await c.page.waitForFunction(() => document.querySelector('#policy-text').value === 'test.Echo * work vault allow\n');
  await c.page.fill('#policy-text', 'test.Echo * work vault allow\ntest.Echo * work vault perhaps\n');
  await c.page.click('#policy-editor button:text("Save")');
  await c.page.waitForSelector('#policy-error .line-error');
  t.match(await c.page.textContent('#policy-error p.error'), /^Line 2: /);
  t.equal(await c.page.textContent('#policy-error .line-error'), 'test.Echo * work vault perhaps');
  t.notMatch(await c.page.textContent('#policy-error'), s.config.policy.dir, 'no path shown');
  t.equal(readFileSync(file, 'utf8'), 'test.Echo * work vault allow\n', 'nothing saved');
  await c.shot('policy-syntax');

  await c.page.fill('#policy-text', 'test.Echo * work vault allow\ntest.Echo * work personal deny\n');
  await c.page.click('#policy-editor button:text("Save")');
  await c.page.waitForFunction(() => document.querySelector('#status').textContent === 'Saved 40-edit.');
  t.equal(readFileSync(file, 'utf8'), 'test.Echo * work vault allow\ntest.Echo * work personal deny\n');
  t.same(c.problems, []);
});

t.test('an ask rule: the dom0 console asks, the person allows, the qrexec call goes through', async (t) => {
  writeFileSync(join(s.config.policy.dir, '20-ask.policy'), 'admin.vm.List * work @adminvm ask default_target=@adminvm\n');
  const sock = join(s.config.qrexec.socketDir, 'qrexec.work');
  for (let i = 0; i < 400 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  const c = await open(`${origin}/#token=${s.token}`);
  await c.page.waitForSelector('#qubes tbody tr');
  const call = qrexecClient(sock, ['dom0', 'admin.vm.List']);
  await c.page.waitForSelector('#asks section.ask', { timeout: 20_000 });
  t.match(await c.page.textContent('#asks section.ask p'), 'work asks for admin.vm.List');
  t.equal(
    await c.page.locator('#asks select').inputValue(),
    await c.page.locator('#asks select option').first().getAttribute('value'),
    'the default target selected',
  );
  await c.shot('ask');
  await c.page.click('#asks button:text("Allow")');
  const r = await call;
  t.equal(r.code, 0, 'the call went through');
  t.equal(r.stdout.subarray(0, 2).toString('latin1'), '0\0', 'with an OK reply');
  await c.page.waitForFunction(() => !document.querySelector('#asks section.ask'));

  const denied = qrexecClient(sock, ['dom0', 'admin.vm.List']);
  await c.page.waitForSelector('#asks section.ask', { timeout: 20_000 });
  await c.page.click('#asks button:text("Deny")');
  t.equal((await denied).code, 126, 'denied: refused as qrexec refuses');

  // a management identity's console gets no questions and may not answer
  const mgmt = createToken(s.prefix, 'mgmt');
  t.equal((await http(`${s.url}/asks`, 'GET', mgmt)).status, 403);
  t.equal((await http(`${s.url}/asks/00`, 'POST', mgmt, { allow: true })).status, 403);
  t.same(c.problems, []);
});

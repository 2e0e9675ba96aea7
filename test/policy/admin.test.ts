// The policy admin API: tokens, validation of the whole resulting policy,
// names, atomic writes, Qubes' replies and exit codes through the qrexec
// service program, and concurrent Replace calls with the same token.
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { computeToken, PolicyAdmin, PolicyAdminException, writeAtomically } from '../../policy/admin.js';
import { runBin, tempTree, type RunResult } from './helpers.js';

function call(dir: string, full: string, payload: string | Buffer = ''): Promise<RunResult> {
  return runBin('qubes-policy-admin', [], {
    env: { QREXEC_SERVICE_FULL_NAME: full, QREXEC_REMOTE_DOMAIN: 'mgmt', QREXEC_POLICY_DIR: dir, QREXEC_POLICY_ADMIN_LOG: join(dir, '..', 'admin.log') },
    input: payload,
  });
}

function setup() {
  const tree = tempTree({ 'policy.d/10-base.policy': 'base * @anyvm @anyvm deny\n', 'policy.d/include/shared': 'inc * @anyvm @anyvm deny\n' });
  return { ...tree, pd: join(tree.dir, 'policy.d') };
}

function thrown(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    if (err instanceof PolicyAdminException) return `${err.name} ${err.message}`;
    throw err;
  }
}

t.test('Get returns the sha256 token and the content; List lists', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const admin = new PolicyAdmin(pd);
  const data = readFileSync(join(pd, '10-base.policy'));
  t.equal(admin.handleRequest('policy.Get', '10-base', Buffer.alloc(0))!.toString(), computeToken(data) + '\n' + data.toString());
  t.match(computeToken(data), /^sha256:[0-9a-f]{64}$/);
  t.equal(admin.handleRequest('policy.List', '', Buffer.alloc(0))!.toString(), '10-base\n');
  t.equal(admin.handleRequest('policy.include.List', '', Buffer.alloc(0))!.toString(), 'shared\n');
  t.equal(
    thrown(() => admin.handleRequest('policy.Get', 'missing', Buffer.alloc(0))),
    `PolicyAdminFileNotFoundException Not found: ${pd}/missing.policy`,
  );
});

t.test('tokens: current, new, any, stale, unrecognised', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const admin = new PolicyAdmin(pd);
  const rep = (name: string, token: string, body: string) => thrown(() => admin.handleRequest('policy.Replace', name, Buffer.from(token + '\n' + body)));
  t.equal(rep('20-new', 'new', 'a * @anyvm @anyvm deny\n'), 'no error');
  t.equal(rep('20-new', 'new', 'b * @anyvm @anyvm deny\n'), "PolicyAdminTokenException File exists but token is 'new'");
  const token = computeToken(readFileSync(join(pd, '20-new.policy')));
  t.equal(rep('20-new', token, 'c * @anyvm @anyvm deny\n'), 'no error');
  t.equal(rep('20-new', token, 'd * @anyvm @anyvm deny\n'), 'PolicyAdminTokenException Token mismatch', 'the old token is stale now');
  t.equal(rep('30-x', token, 'x * @anyvm @anyvm deny\n'), "PolicyAdminTokenException File doesn't exist, but token isn't 'new'");
  t.equal(rep('20-new', 'sha1:abc', 'x\n'), 'PolicyAdminProtocolException Unrecognized token');
  t.equal(rep('20-new', 'any', 'e * @anyvm @anyvm deny\n'), 'no error');
  t.equal(readFileSync(join(pd, '20-new.policy'), 'utf8'), 'e * @anyvm @anyvm deny\n');
  t.equal(
    thrown(() => admin.handleRequest('policy.Replace', '20-new', Buffer.from('no newline'))),
    'PolicyAdminProtocolException Payload needs to include first line with token',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.Remove', '20-new', Buffer.from(token))),
    'PolicyAdminTokenException Token mismatch',
  );
  const cur = computeToken(readFileSync(join(pd, '20-new.policy')));
  t.equal(
    thrown(() => admin.handleRequest('policy.Remove', '20-new', Buffer.from(cur))),
    'no error',
  );
  t.notOk(existsSync(join(pd, '20-new.policy')));
  t.equal(
    thrown(() => admin.handleRequest('policy.Remove', '20-new', Buffer.from('any'))),
    `PolicyAdminFileNotFoundException Not found: ${pd}/20-new.policy`,
  );
});

t.test('the whole resulting policy is validated before anything is written', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const admin = new PolicyAdmin(pd);
  const before = readFileSync(join(pd, '10-base.policy'), 'utf8');
  t.equal(
    thrown(() => admin.handleRequest('policy.Replace', '10-base', Buffer.from('any\nbad line\n'))),
    `PolicyAdminSyntaxException Policy change validation failed: ${pd}/10-base.policy:1: wrong number of fields`,
  );
  t.equal(readFileSync(join(pd, '10-base.policy'), 'utf8'), before, 'unchanged');
  t.equal(
    thrown(() => admin.handleRequest('policy.Replace', '20-inc', Buffer.from('new\n!include include/missing\n'))),
    `PolicyAdminSyntaxException Policy change validation failed: ${pd}/20-inc.policy:1: not a file: ${pd}/include/missing`,
  );
  t.notOk(existsSync(join(pd, '20-inc.policy')));
  t.equal(
    thrown(() => admin.handleRequest('policy.Replace', '20-inc', Buffer.from('new\n!include include/shared\n'))),
    'no error',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.include.Remove', 'shared', Buffer.from('any'))),
    `PolicyAdminSyntaxException Policy change validation failed: ${pd}/20-inc.policy:1: including a file that will be removed: ${pd}/include/shared`,
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.include.Replace', 'shared', Buffer.from('any\nbroken\n'))),
    `PolicyAdminSyntaxException Policy change validation failed: ${pd}/include/shared:1: wrong number of fields`,
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.include.Replace', 'shared', Buffer.from('any\nnew * @anyvm @anyvm deny\n'))),
    'no error',
  );
  t.match(
    thrown(() => admin.handleRequest('policy.Replace', '30-u', Buffer.from('any\nsvc * caf\xe9 @anyvm deny\n', 'latin1'))),
    /PolicyAdminSyntaxException .*30-u\.policy:1: file is not valid UTF-8/,
  );
  writeFileSync(join(pd, '40-broken.policy'), 'broken\n');
  t.match(
    thrown(() => admin.handleRequest('policy.Replace', '50-ok', Buffer.from('any\nok * @anyvm @anyvm deny\n'))),
    /validation failed: .*40-broken\.policy:1/,
    'an already broken policy is reported, not made worse',
  );
});

t.test('names: no escape from the directories, no name the loader refuses', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const admin = new PolicyAdmin(pd);
  t.equal(
    thrown(() => admin.handleRequest('policy.Get', '../etc', Buffer.alloc(0))),
    'PolicyAdminProtocolException Invalid argument: "../etc"\nValid characters are letters, numbers, dot, plus, hyphen and underline',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.Get', 'a.b', Buffer.alloc(0))),
    'PolicyAdminInvalidFileNameException Invalid policy file name: a.b\nNames must contain only alphanumeric characters, underscore and hyphen.',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.Get', '', Buffer.alloc(0))),
    'PolicyAdminInvalidFileNameException Invalid policy file name: \nNames must contain only alphanumeric characters, underscore and hyphen.',
  );
  t.match(
    thrown(() => admin.handleRequest('policy.Replace', 'Upper', Buffer.from('new\nx * @anyvm @anyvm deny\n'))),
    /^PolicyAdminInvalidFileNameException Invalid policy file name: Upper\n/,
  );
  t.notOk(existsSync(join(pd, 'Upper.policy')), 'an upper-case name that would break the policy is refused');
  t.equal(
    thrown(() => admin.handleRequest('policy.List', 'x', Buffer.alloc(0))),
    'PolicyAdminProtocolException Unexpected argument',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.Get', 'x', Buffer.from('p'))),
    'PolicyAdminProtocolException Unexpected payload',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.Nope', '', Buffer.alloc(0))),
    'PolicyAdminProtocolException unrecognized method: policy.Nope',
  );
  t.equal(
    thrown(() => admin.handleRequest('policy.GetFiles', '', Buffer.alloc(0))),
    'PolicyAdminProtocolException Service cannot be empty.',
  );
  t.equal(admin.handleRequest('policy.GetFiles', 'inc', Buffer.alloc(0))!.toString(), '');
});

t.test('atomic writes leave no temporary file behind, even when they fail', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  writeAtomically(join(pd, '60-a.policy'), Buffer.from('a * @anyvm @anyvm deny\n'));
  t.same(readdirSync(pd).sort(), ['10-base.policy', '60-a.policy', 'include']);
  mkdirSync(join(pd, '70-dir.policy'));
  writeFileSync(join(pd, '70-dir.policy', 'x'), '');
  t.throws(() => writeAtomically(join(pd, '70-dir.policy'), Buffer.from('x')), 'renaming over a non-empty directory fails');
  t.same(readdirSync(pd).sort(), ['10-base.policy', '60-a.policy', '70-dir.policy', 'include'], 'and the temporary file is gone');
});

t.test('the qrexec service program: replies, stderr and exit codes as Qubes', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const get = await call(pd, 'policy.Get+10-base');
  t.equal(get.code, 0);
  t.match(get.out, /^sha256:[0-9a-f]{64}\nbase \* @anyvm @anyvm deny\n$/);
  const stale = await call(pd, 'policy.Replace+10-base', 'sha256:0000\nx * @anyvm @anyvm deny\n');
  t.same([stale.code, stale.out, stale.err], [1, '', 'PolicyAdminTokenException Token mismatch']);
  const bad = await call(pd, 'policy.Replace+20-x', 'new\nnope\n');
  t.equal(bad.code, 1);
  t.match(bad.err, /^PolicyAdminSyntaxException Policy change validation failed: .*20-x\.policy:1: wrong number of fields$/);
  const ok = await call(pd, 'policy.Replace+20-x', 'new\nx * @anyvm @anyvm deny\n');
  t.same([ok.code, ok.out, ok.err], [0, '', '']);
  const list = await call(pd, 'policy.List');
  t.equal(list.out, '10-base\n20-x\n');
  const rm = await call(pd, 'policy.Remove+20-x', 'any');
  t.equal(rm.code, 0);
  t.match(readFileSync(join(pd, '..', 'admin.log'), 'utf8'), /policy\.Replace\+10-base \(mgmt\): error: Token mismatch/);
});

t.test('concurrent Replace with the same token: exactly one wins', async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const token = computeToken(readFileSync(join(pd, '10-base.policy')));
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => call(pd, 'policy.Replace+10-base', `${token}\nwriter${i} * @anyvm @anyvm deny\n`)));
  const winners = results.filter((r) => r.code === 0);
  t.equal(winners.length, 1);
  t.ok(results.filter((r) => r.code !== 0).every((r) => r.code === 1 && r.err === 'PolicyAdminTokenException Token mismatch'));
  const i = results.findIndex((r) => r.code === 0);
  t.equal(readFileSync(join(pd, '10-base.policy'), 'utf8'), `writer${i} * @anyvm @anyvm deny\n`);
  t.same(readdirSync(pd).sort(), ['10-base.policy', 'include'], 'no lock or temporary file left');
});

t.test('a policy directory nobody may write to can still be read', { skip: process.getuid?.() === 0 && 'root ignores permissions' }, async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(() => {
    chmodSync(pd, 0o755);
    cleanup();
  });
  chmodSync(pd, 0o555);
  t.equal(new PolicyAdmin(pd).handleRequest('policy.List', '', Buffer.alloc(0))!.toString(), '10-base\n');
});

t.test("names too long for a file: the policy admin's own refusal, and the longest one still works", async (t) => {
  const { pd, cleanup } = setup();
  t.teardown(cleanup);
  const long = 'x'.repeat(249);
  const r = await call(pd, `policy.Replace+${long}`, 'new\nx * @anyvm @anyvm deny\n');
  t.same([r.code, r.out, r.err], [1, '', `PolicyAdminInvalidFileNameException Invalid policy file name: ${long}\nNames must be at most 248 characters long.`]);
  const inc = await call(pd, `policy.include.Replace+${'y'.repeat(256)}`, 'new\nx * @anyvm @anyvm deny\n');
  t.same(
    [inc.code, inc.err],
    [1, `PolicyAdminInvalidFileNameException Invalid policy file name: ${'y'.repeat(256)}\nNames must be at most 255 characters long.`],
  );
  const ok = await call(pd, `policy.Replace+${'x'.repeat(248)}`, 'new\nx * @anyvm @anyvm deny\n');
  t.same([ok.code, ok.err], [0, ''], 'a 248-character name (255 with .policy) is written');
  t.same(readdirSync(pd).sort(), ['10-base.policy', 'include', `${'x'.repeat(248)}.policy`], 'no temporary file left');
});

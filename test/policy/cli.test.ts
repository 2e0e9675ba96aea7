// The command-line tools as users run them: qubes-policy-eval (JSON lines),
// qubes-policy lint / explain / get / replace / remove / list.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { corpusDir, runBin, tempTree, type RunResult } from './helpers.js';

function run(name: string, args: string[], input = ''): Promise<RunResult> {
  return runBin(name, args, { input });
}

const SYSTEM = join(corpusDir, 'system_info.json');
const POLICY = 'test.Svc +a work vault deny\ntest.Svc * @tag:work @anyvm allow target=personal\n* * @anyvm @anyvm deny notify=no\n';

t.test('qubes-policy-eval: one JSON answer per request line, in order', async (t) => {
  const tree = tempTree({ 'policy.d/50-t.policy': POLICY });
  t.teardown(tree.cleanup);
  const pd = join(tree.dir, 'policy.d');
  const input =
    [
      { id: 1, service: 'test.Svc', argument: '+a', source: 'work', target: 'vault' },
      { id: 2, service: 'test.Svc', argument: '', source: 'work', target: 'vault' },
      { id: 3, service: 'other', argument: '', source: 'personal', target: 'vault' },
    ]
      .map((q) => JSON.stringify(q))
      .join('\n') + '\n\nnot json\n';
  const r = await run('qubes-policy-eval', ['--policy-dir', pd, '--system-info', SYSTEM], input);
  t.equal(r.code, 0, r.err);
  const lines = r.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(lines.length, 4);
  t.match(lines[0], { id: 1, result: 'deny', rule: `${pd}/50-t.policy:1`, notify: true });
  t.match(lines[1], { id: 2, result: 'allow', target: 'personal', eval_simple: 'result=allow', response: /^user=DEFAULT\nresult=allow\ntarget=personal\n/ });
  t.match(lines[2], { id: 3, result: 'deny', notify: false });
  t.match(lines[3], { result: 'error', stage: 'request' });
  const same = await run('qubes-policy', ['eval', '--policy-dir', pd, '--system-info', SYSTEM], input);
  t.equal(same.out, r.out, 'qubes-policy eval is the same program');

  const broken = tempTree({ 'policy.d/50.policy': 'nope\n' });
  t.teardown(broken.cleanup);
  const b = await run('qubes-policy-eval', ['--policy-dir', join(broken.dir, 'policy.d'), '--system-info', SYSTEM], input);
  t.match(JSON.parse(b.out.split('\n')[0]!), {
    result: 'error',
    stage: 'load',
    error_type: 'PolicySyntaxError',
    error: /50\.policy:1: wrong number of fields$/,
  });
  const usage = await run('qubes-policy-eval', ['--policy-dir', pd]);
  t.equal(usage.code, 2);
  t.match(usage.err, /--system-info is required/);
});

t.test('lint: diagnostics and exit status', async (t) => {
  const tree = tempTree({
    'good/50.policy': POLICY,
    'bad/10.policy': POLICY,
    'bad/20.policy': 'x * @nope @anyvm deny\n',
    'bad/30.policy': '!include include/none\n',
  });
  t.teardown(tree.cleanup);
  const ok = await run('qubes-policy', ['lint', '--policy-dir', join(tree.dir, 'good')]);
  t.same([ok.code, ok.out], [0, 'OK: 3 rules\n']);
  const bad = await run('qubes-policy', ['lint', '--policy-dir', join(tree.dir, 'bad')]);
  t.equal(bad.code, 1);
  t.match(bad.out, /20\.policy:1: invalid source token: '@nope'\n.*30\.policy:1: not a file: .*include\/none\n2 error\(s\)\n$/);
});

t.test('explain: the deciding rule and why earlier rules did not match', async (t) => {
  const tree = tempTree({ 'policy.d/50-t.policy': POLICY });
  t.teardown(tree.cleanup);
  const pd = join(tree.dir, 'policy.d');
  const r = await run('qubes-policy', [
    'explain',
    '--policy-dir',
    pd,
    '--system-info',
    SYSTEM,
    '--service',
    'test.Svc',
    '--argument',
    '+b',
    '--source',
    'personal',
    '--target',
    'vault',
  ]);
  t.equal(r.code, 0, r.err);
  t.equal(
    r.out,
    [
      'request: test.Svc+b from personal to vault',
      `  ${pd}/50-t.policy:1: test.Svc +a work vault deny`,
      '      skipped: argument differs: rule is for +a, request has +b',
      `  ${pd}/50-t.policy:2: test.Svc * @tag:work @anyvm allow target=personal`,
      '      skipped: source personal does not match @tag:work',
      `  ${pd}/50-t.policy:3: * * @anyvm @anyvm deny notify=no`,
      '      MATCHES',
      `result: deny: denied by policy ${pd}/50-t.policy:3`,
      `decided by: ${pd}/50-t.policy:3`,
      '',
    ].join('\n'),
  );
});

t.test('local admin calls: get, replace with the token, list, remove', async (t) => {
  const tree = tempTree({ 'policy.d/50-t.policy': POLICY });
  t.teardown(tree.cleanup);
  const pd = join(tree.dir, 'policy.d');
  const get = await run('qubes-policy', ['get', '--policy-dir', pd, '50-t']);
  const token = get.out.split('\n')[0]!;
  t.match(token, /^sha256:/);
  const rep = await run('qubes-policy', ['replace', '--policy-dir', pd, '50-t', '--token', token], 'a * @anyvm @anyvm deny\n');
  t.equal(rep.code, 0, rep.err);
  t.equal(readFileSync(join(pd, '50-t.policy'), 'utf8'), 'a * @anyvm @anyvm deny\n');
  const stale = await run('qubes-policy', ['replace', '--policy-dir', pd, '50-t', '--token', token], 'b * @anyvm @anyvm deny\n');
  t.same([stale.code, stale.err], [1, 'PolicyAdminTokenException Token mismatch\n']);
  t.equal((await run('qubes-policy', ['list', '--policy-dir', pd])).out, '50-t\n');
  t.equal((await run('qubes-policy', ['remove', '--policy-dir', pd, '50-t'])).code, 0);
  t.equal((await run('qubes-policy', ['list', '--policy-dir', pd])).out, '');
});

// The policy language: every token in every position, actions and their
// parameters, directives, file selection, and the exact error for each
// mistake (file:line and text as the reference engine words them).
import { symlinkSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { loadPolicy, lintPolicy } from '../../policy/loader.js';
import { AccessDenied, PolicySyntaxError } from '../../policy/errors.js';
import { tempTree } from './helpers.js';

function load(files: Record<string, string | Buffer>, extra: { runtime?: Record<string, string>; legacy?: Record<string, string> } = {}) {
  const all: Record<string, string | Buffer> = {};
  for (const [k, v] of Object.entries(files)) all['policy.d/' + k] = v;
  for (const [k, v] of Object.entries(extra.runtime ?? {})) all['runtime/' + k] = v;
  for (const [k, v] of Object.entries(extra.legacy ?? {})) all['legacy/' + k] = v;
  all['policy.d/.keep'] = '';
  const tree = tempTree(all);
  try {
    const res = loadPolicy({
      policyDir: join(tree.dir, 'policy.d'),
      runtimeDir: extra.runtime ? join(tree.dir, 'runtime') : null,
      legacyDir: join(tree.dir, 'legacy'),
    });
    return { rules: res.rules, warnings: res.warnings, dir: tree.dir };
  } finally {
    tree.cleanup();
  }
}

/** The error a one-file policy gives, with the directory replaced by D. */
function errorOf(text: string | Buffer, name = '50-x.policy', more: Record<string, string | Buffer> = {}): string {
  const tree = tempTree({ ['policy.d/' + name]: text, ...Object.fromEntries(Object.entries(more).map(([k, v]) => ['policy.d/' + k, v])) });
  try {
    loadPolicy({ policyDir: join(tree.dir, 'policy.d'), legacyDir: join(tree.dir, 'legacy') });
    return 'no error';
  } catch (err) {
    if (!(err instanceof AccessDenied)) throw err;
    return err.message.replaceAll(tree.dir + '/policy.d', 'D');
  } finally {
    tree.cleanup();
  }
}

t.test('rules, comments, blank lines and whitespace', async (t) => {
  const { rules } = load({
    '10-a.policy': '# comment\n\n   \t\n  # indented comment\nsvc.A  *\t@anyvm   @anyvm allow\r\nsvc.B +arg work vault deny notify=no  \n',
  });
  t.equal(rules.length, 2);
  t.match(rules[0], { service: 'svc.A', argument: null, action: 'allow', line: 5, notify: false, autostart: true });
  t.match(rules[1], { service: 'svc.B', argument: '+arg', action: 'deny', line: 6, notify: false });
  t.equal(rules[1]!.source.text, 'work');
});

t.test('files are read in name order, only *.policy, no dot files; runtime files win', async (t) => {
  const { rules } = load(
    {
      '20-b.policy': 'b * @anyvm @anyvm deny\n',
      '10-a.policy': 'a * @anyvm @anyvm deny\n',
      '30-c.policy': 'c * @anyvm @anyvm deny\n',
      '.hidden.policy': 'garbage',
      README: 'garbage',
      '40-d.policy.rpmsave': 'garbage',
      '50-e.Policy': 'garbage',
    },
    { runtime: { '20-b.policy': 'rt * @anyvm @anyvm deny\n', '25-r.policy': 'r * @anyvm @anyvm deny\n' } },
  );
  t.same(
    rules.map((r) => r.service),
    ['a', 'rt', 'r', 'c'],
  );
});

t.test('file names the loader refuses', async (t) => {
  t.match(errorOf('svc * @anyvm @anyvm deny\n', '50+x.policy'), /^invalid filename: D\/50\+x\.policy$/);
  t.match(errorOf('svc * @anyvm @anyvm deny\n', '50-X.policy'), /^invalid filename: D\/50-X\.policy$/);
});

t.test('every token where it is allowed', async (t) => {
  const sources = ['*', '@anyvm', '@adminvm', 'work', 'uuid:1234', '@tag:x', '@type:AppVM', '@dispvm:work-dvm', '@dispvm:@tag:x'];
  const targets = [...sources, '@default', '@dispvm'];
  for (const s of sources) t.equal(errorOf(`svc * ${s} @anyvm deny\n`), 'no error', `source ${s}`);
  for (const d of targets) t.equal(errorOf(`svc * @anyvm ${d} ${d === '@default' ? 'ask' : 'deny'}\n`), 'no error', `target ${d}`);
  for (const r of ['@adminvm', '@dispvm', '@dispvm:work-dvm', 'work', 'uuid:1234']) {
    t.equal(errorOf(`svc * @anyvm @anyvm allow target=${r}\n`), 'no error', `target=${r}`);
    t.equal(errorOf(`svc * @anyvm @anyvm ask default_target=${r}\n`), 'no error', `default_target=${r}`);
  }
});

t.test('tokens where they are not allowed, and malformed tokens', async (t) => {
  const cases: Array<[string, string]> = [
    ['svc * @default @anyvm deny', "D/50-x.policy:1: invalid source token: '@default'"],
    ['svc * @dispvm @anyvm deny', "D/50-x.policy:1: invalid source token: '@dispvm'"],
    ['svc * @anyvm @foo deny', "D/50-x.policy:1: invalid target token: '@foo'"],
    ['svc * @anyvm @anyVM deny', "D/50-x.policy:1: invalid target token: '@anyVM'"],
    ['svc * @anyvm @ deny', "D/50-x.policy:1: invalid target token: '@'"],
    ['svc * @tag: @anyvm deny', "D/50-x.policy:1: invalid empty @tag: token: '@tag:'"],
    ['svc * @anyvm @type: deny', "D/50-x.policy:1: invalid empty @type: token: '@type:'"],
    ['svc * @anyvm @dispvm: deny', "D/50-x.policy:1: invalid empty @dispvm: token: '@dispvm:'"],
    ['svc * @anyvm @dispvm:@tag: deny', "D/50-x.policy:1: invalid empty @dispvm:@tag: token: '@dispvm:@tag:'"],
    ['svc * @anyvm @dispvm:@foo deny', "D/50-x.policy:1: invalid target token: '@dispvm:@foo'"],
    ['svc * @anyvm @anyvm allow target=@default', "D/50-x.policy:1: invalid redirect token: '@default'"],
    ['svc * @anyvm @anyvm allow target=@anyvm', "D/50-x.policy:1: invalid redirect token: '@anyvm'"],
    ['svc * @anyvm @anyvm allow target=*', "D/50-x.policy:1: invalid redirect token: '*'"],
    ['svc * @anyvm @anyvm allow target=@dispvm:@tag:x', "D/50-x.policy:1: invalid redirect token: '@dispvm:@tag:x'"],
    ['svc * @anyvm @anyvm allow target=', 'D/50-x.policy:1: invalid empty redirect token'],
    ['svc * @anyvm @anyvm ask default_target=@tag:x', "D/50-x.policy:1: invalid redirect token: '@tag:x'"],
  ];
  for (const [line, msg] of cases) t.equal(errorOf(line + '\n'), msg, line);
});

t.test('service and argument columns', async (t) => {
  const cases: Array<[string, string]> = [
    ['s+x * @anyvm @anyvm deny', "D/50-x.policy:1: service 's+x' contains invalid characters: ('+',)"],
    ['s/x$ * @anyvm @anyvm deny', "D/50-x.policy:1: service 's/x$' contains invalid characters: ('$', '/')"],
    ['svc +a/b @anyvm @anyvm deny', "D/50-x.policy:1: argument '+a/b' contains invalid characters: ('/',)"],
    ['svc arg @anyvm @anyvm deny', "D/50-x.policy:1: argument 'arg' does not start with +"],
    ['* +arg @anyvm @anyvm deny', 'D/50-x.policy:1: only * argument allowed for * service'],
    ['* + @anyvm @anyvm deny', 'D/50-x.policy:1: only * argument allowed for * service'],
    ['\ufeffsvc * @anyvm @anyvm deny', "D/50-x.policy:1: service '\\ufeffsvc' contains invalid characters: ('\\ufeff',)"],
    ['svc\u200b* @anyvm @anyvm deny more', "D/50-x.policy:1: service 'svc\\u200b*' contains invalid characters: ('*', '\\u200b')"],
    ['sé * @anyvm @anyvm deny', "D/50-x.policy:1: service 'sé' contains invalid characters: ('é',)"],
  ];
  for (const [line, msg] of cases) t.equal(errorOf(line + '\n'), msg, line);
  t.equal(errorOf('svc\u00a0*\u2003@anyvm @anyvm deny\n'), 'no error', 'Unicode spaces separate fields');
});

t.test('actions and parameters', async (t) => {
  const { rules } = load({
    '10.policy': [
      'a * @anyvm @anyvm allow target=work user=root notify=yes autostart=no',
      'b * @anyvm @anyvm ask target=@dispvm default_target=vault user= notify=no autostart=yes',
      'c * @anyvm @anyvm deny notify=no',
      'd * @anyvm @default allow target=vault',
      'e * @anyvm @anyvm deny',
      'f * @anyvm @anyvm ask',
    ].join('\n'),
  });
  t.match(rules[0], { action: 'allow', user: 'root', notify: true, autostart: false });
  t.equal(rules[0]!.redirect!.text, 'work');
  t.match(rules[1], { action: 'ask', user: '', notify: false, autostart: true });
  t.equal(rules[1]!.defaultTarget!.text, 'vault');
  t.match(rules[2], { action: 'deny', notify: false });
  t.match(rules[4], { action: 'deny', notify: true });
  t.match(rules[5], { action: 'ask', notify: false, autostart: true, redirect: null, defaultTarget: null });
  const cases: Array<[string, string]> = [
    ['svc * @anyvm @anyvm permit', 'D/50-x.policy:1: invalid action: permit'],
    ['svc * @anyvm @anyvm Allow', 'D/50-x.policy:1: invalid action: Allow'],
    ['svc * @anyvm @anyvm allow foo', "D/50-x.policy:1: invalid action parameter syntax: 'foo'"],
    ['svc * @anyvm @anyvm allow user=a user=b', "D/50-x.policy:1: parameter given twice: 'user'"],
    ['svc * @anyvm @anyvm ask autostart=Yes', "D/50-x.policy:1: 'autostart' is 'Yes', but can be only 'yes' or 'no'"],
    ['svc * @anyvm @anyvm ask notify=', "D/50-x.policy:1: 'notify' is '', but can be only 'yes' or 'no'"],
    ['svc * @anyvm @anyvm deny autostart=no', "D/50-x.policy:1: invalid parameters for action Deny: ['autostart=no']"],
    ['svc * @anyvm @anyvm deny target=work', "D/50-x.policy:1: invalid parameters for action Deny: ['target=work']"],
    ['svc * @anyvm @anyvm allow default_target=work', "D/50-x.policy:1: invalid parameters for action Allow: ['default_target=work']"],
    ['svc * @anyvm @anyvm ask foo=bar x=1', "D/50-x.policy:1: invalid parameters for action Ask: ['foo=bar', 'x=1']"],
    ['svc * @anyvm @default allow', 'D/50-x.policy:1: allow action for @default rule must specify target= option'],
    ['svc * @anyvm @anyvm', 'D/50-x.policy:1: wrong number of fields'],
    ['svc', 'D/50-x.policy:1: wrong number of fields'],
  ];
  for (const [line, msg] of cases) t.equal(errorOf(line + '\n'), msg, line);
});

t.test('the first mistake of a line is the one reported, on the right line', async (t) => {
  t.equal(errorOf('* +a/b @foo @bar permit x\n'), "D/50-x.policy:1: argument '+a/b' contains invalid characters: ('/',)");
  t.equal(errorOf('svc * @foo @bar permit\n'), "D/50-x.policy:1: invalid source token: '@foo'");
  t.equal(errorOf('# c\n\nsvc * @anyvm @anyvm deny\r\nbad\n'), 'D/50-x.policy:4: wrong number of fields');
  t.equal(errorOf('# c\rbad\n'), 'D/50-x.policy:2: wrong number of fields', 'a lone CR ends a line');
  t.equal(
    errorOf('ok * @anyvm @anyvm deny\n', '10-ok.policy', { '20-bad.policy': 'bad\n', '30-bad.policy': 'bad\n' }),
    'D/20-bad.policy:1: wrong number of fields',
  );
});

t.test('directives', async (t) => {
  const { rules } = load({
    '10.policy': [
      'first * @anyvm @anyvm deny',
      '!include include/inc',
      '!include-dir include/dir',
      '!include-service svc.S * include/old',
      '!include-service svc.S +arg include/old',
      'last * @anyvm @anyvm deny',
    ].join('\n'),
    'include/inc': 'inc * @anyvm @anyvm deny\n!include include/inc2\n',
    'include/inc2': 'inc2 * @anyvm @anyvm deny\n',
    'include/dir/20-b.policy': 'dirb * @anyvm @anyvm deny\n',
    'include/dir/10-a.policy': 'dira * @anyvm @anyvm deny\n',
    'include/dir/notes.txt': 'garbage',
    'include/old': '# old format\n$anyvm $anyvm allow,target=work\nwork vault deny\n$include:include/old2\n',
    'include/old2': '@anyvm @adminvm ask\n',
  });
  t.same(
    rules.map((r) => r.service),
    ['first', 'inc', 'inc2', 'dira', 'dirb', 'svc.S', 'svc.S', 'svc.S', 'svc.S', 'svc.S', 'svc.S', 'last'],
  );
  t.same(
    rules.slice(5, 8).map((r) => r.argument),
    [null, null, null],
  );
  t.same(
    rules.slice(8, 11).map((r) => r.argument),
    ['+arg', '+arg', '+arg'],
  );
  t.equal(rules[5]!.redirect!.text, 'work');
  t.match(rules[1]!.file, /include\/inc$/);
  t.equal(rules[1]!.line, 1);

  t.equal(errorOf('!include a b\n'), 'D/50-x.policy:1: invalid number of params');
  t.equal(errorOf('!include-dir\n'), 'D/50-x.policy:1: invalid number of params');
  t.equal(errorOf('!include-service svc *\n'), 'D/50-x.policy:1: invalid number of params');
  t.equal(errorOf('!compat-4.0 x\n'), 'D/50-x.policy:1: invalid number of params');
  t.equal(errorOf('!foo\n'), 'D/50-x.policy:1: invalid directive');
  t.match(errorOf('!include include/missing\n'), /^D\/50-x\.policy:1: not a file: .*\/include\/missing$/);
  t.match(errorOf('!include-dir include/missing\n'), /^D\/50-x\.policy:1: not a directory: .*\/include\/missing$/);
  t.equal(
    errorOf('!include-service svc arg include/x\n', '50-x.policy', { 'include/x': '@anyvm @anyvm deny\n' }),
    "D/50-x.policy:1: argument 'arg' does not start with +",
  );
  t.match(errorOf('!include-service svc * include/x\n', '50-x.policy', { 'include/x': '!compat-4.0\n' }), /include\/x:1: invalid directive$/);
  t.match(
    errorOf('!include include/x\n', '50-x.policy', { 'include/x': 'ok * @anyvm @anyvm deny\nbad line\n' }),
    /include\/x:2: wrong number of fields$/,
    'errors name the included file',
  );
});

t.test('include cycles, symlinks, unreadable and non-UTF-8 files give clean errors', async (t) => {
  t.match(
    errorOf('!include include/a\n', '50-x.policy', { 'include/a': '!include include/b\n', 'include/b': '!include include/a\n' }),
    /include\/b:1: include cycle: /,
  );
  t.match(errorOf('!include include/a\n', '50-x.policy', { 'include/a': '!include include/a\n' }), /include\/a:1: include cycle/);
  t.equal(errorOf(Buffer.from('svc * @anyvm @anyvm deny\nsvc * caf\xe9 @anyvm deny\n', 'latin1')), 'D/50-x.policy:2: file is not valid UTF-8');

  const tree = tempTree({ 'policy.d/include/real': 'linked * @anyvm @anyvm deny\n', 'policy.d/10.policy': '!include include/link\n' });
  t.teardown(tree.cleanup);
  const pd = join(tree.dir, 'policy.d');
  symlinkSync('real', join(pd, 'include/link'));
  symlinkSync('include/nowhere', join(pd, '20-dangling.policy'));
  const res = loadPolicy({ policyDir: pd, legacyDir: join(tree.dir, 'legacy') });
  t.equal(res.rules.length, 1);
  t.match(res.rules[0]!.file, /include\/real$/, 'an included symlink is reported under its real path');
  if (process.getuid?.() !== 0) {
    writeFileSync(join(pd, '30.policy'), 'x * @anyvm @anyvm deny\n');
    chmodSync(join(pd, '30.policy'), 0);
    t.throws(() => loadPolicy({ policyDir: pd }), /failed to load .*30\.policy file: \[Errno 13\] Permission denied/);
  }
  t.throws(() => loadPolicy({ policyDir: join(tree.dir, 'missing') }), /failed to load .*missing file: \[Errno 2\] No such file or directory/);
});

t.test("'..' in an include path applies after the symlink before it, as pathlib's resolve() does", async (t) => {
  // include/ld -> deep/dd: include/ld/.. is include/deep, not include
  const tree = tempTree({
    'policy.d/include/deep/dd/x.policy': 'viadir * @anyvm @anyvm allow target=vault\n',
    'policy.d/include/deep/f': 'svc * @anyvm @anyvm allow target=vault\n',
    'policy.d/include/f': 'svc * @anyvm @anyvm allow target=work\n',
    'policy.d/include/deep/s': '@anyvm @anyvm allow,target=vault\n',
    'policy.d/include/s': '@anyvm @anyvm allow,target=work\n',
  });
  t.teardown(tree.cleanup);
  const pd = join(tree.dir, 'policy.d');
  symlinkSync('deep/dd', join(pd, 'include/ld'));
  const rulesOf = (text: string) => {
    writeFileSync(join(pd, '10-a.policy'), text);
    return loadPolicy({ policyDir: pd, legacyDir: join(tree.dir, 'legacy') }).rules.map((r) => `${r.file.slice(pd.length + 1)}:${r.line}`);
  };
  t.same(rulesOf('!include include/ld/../f\n'), ['include/deep/f:1']);
  t.same(rulesOf('!include-service svc * include/ld/../s\n'), ['include/deep/s:1']);
  t.same(rulesOf('!include-dir include/ld/../dd\n'), ['include/deep/dd/x.policy:1']);
  t.throws(() => rulesOf('!include include/ld/../deep/f\n'), { message: `${pd}/10-a.policy:1: not a file: ${pd}/include/deep/deep/f` });
});

t.test('an invalid byte past the first 8 KiB: the lines read before it are checked first', async (t) => {
  // Python decodes a file 8 KiB at a time as its lines are read
  const filler = '#' + 'x'.repeat(8300) + '\n';
  const bad = Buffer.concat([Buffer.from('svc * @anyvm @anyvm permit\n' + filler), Buffer.from('# caf\xe9\n', 'latin1')]);
  t.equal(errorOf(bad), 'D/50-x.policy:1: invalid action: permit');
  const good = Buffer.concat([Buffer.from('svc * @anyvm @anyvm deny\n' + filler), Buffer.from('# caf\xe9\n', 'latin1')]);
  t.equal(errorOf(good), 'D/50-x.policy:3: file is not valid UTF-8');
  // within the first 8 KiB nothing of the file is read before the error
  t.equal(errorOf(Buffer.from('svc * @anyvm @anyvm permit\n# caf\xe9\n', 'latin1')), 'D/50-x.policy:2: file is not valid UTF-8');
});

t.test('!compat-4.0 reads the legacy per-service files', async (t) => {
  const { rules, warnings } = load(
    { '10.policy': 'pre * @anyvm @anyvm deny\n!compat-4.0\npost * @anyvm @anyvm deny\n' },
    {
      legacy: {
        'legacy.Svc': '@anyvm @anyvm ask\n',
        'legacy.Svc+a': 'work vault allow\n$include:include/inc\n',
        'legacy.Svc+a.rpmnew': 'garbage',
        'legacy.Other': '$anyvm $dispvm allow,user=root\n',
        'bad name': 'garbage',
        '.hidden': 'garbage',
        'include/inc': 'work personal deny\n',
      },
    },
  );
  t.same(
    rules.map((r) => `${r.service} ${r.argument ?? '*'} ${r.source.text} ${r.target.text} ${r.action} ${r.line}`),
    [
      'pre * @anyvm @anyvm deny 1',
      'legacy.Other * @anyvm @dispvm allow 1',
      'legacy.Svc +a work vault allow 1',
      'legacy.Svc +a work personal deny 1',
      'legacy.Svc +a @anyvm @anyvm deny null',
      'legacy.Svc +a @anyvm @adminvm deny null',
      'legacy.Svc * @anyvm @anyvm ask 1',
      'post * @anyvm @anyvm deny 3',
    ],
  );
  t.equal(rules[1]!.user, 'root');
  t.match(warnings[0], /!compat-4\.0 directive in file .*10\.policy line 2 is transitional/);
});

t.test('lint reports every broken file', async (t) => {
  const tree = tempTree({ 'policy.d/10.policy': 'ok * @anyvm @anyvm deny\n', 'policy.d/20.policy': 'bad\n', 'policy.d/30.policy': 'x * @foo @anyvm deny\n' });
  t.teardown(tree.cleanup);
  const report = lintPolicy({ policyDir: join(tree.dir, 'policy.d') });
  t.equal(report.errors.length, 2);
  t.ok(report.errors.every((e) => e instanceof PolicySyntaxError));
  t.match(report.errors.map((e) => e.message).join('\n'), /20\.policy:1: wrong number of fields\n.*30\.policy:1: invalid source token: '@foo'/);
  mkdirSync(join(tree.dir, 'good'));
  writeFileSync(join(tree.dir, 'good', '10.policy'), 'a * @anyvm @anyvm deny\n');
  t.same(lintPolicy({ policyDir: join(tree.dir, 'good') }), { rules: 1, errors: [] });
});

// The configuration format and its precedence, on real files: defaults <
// main file < drop-ins in name order < command line; every error form.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, printConfig } from '../../lib/config/load.js';
import type { DaemonSchema } from '../../lib/config/schema.js';

const SCHEMA: DaemonSchema = {
  daemon: 'demo',
  summary: 'a test daemon',
  keys: {
    timeout: { type: 'integer', minimum: 1, maximum: 3600, default: 30, help: 'seconds' },
    mode: { type: 'string', enum: ['fast', 'safe'], default: 'safe', help: 'mode' },
    dir: { type: 'path', default: '/var/lib/demo', help: 'a dir' },
    dirs: { type: 'list', paths: true, default: ['/etc/a'], help: 'dirs' },
    names: { type: 'list', default: [], help: 'names' },
    verbose: { type: 'boolean', default: false, help: 'talk' },
    ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.5, help: 'a ratio' },
    log: { type: 'string', pattern: '^(stderr|/.*)$', default: 'stderr', help: 'log' },
  },
};

/** The message of what fn throws (a ConfigError), or "no error". */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return `${e instanceof ConfigError ? 'ConfigError' : 'other'}: ${(e as Error).message}`;
  }
  return 'no error';
}

function setup(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'config-load-'));
  mkdirSync(join(dir, 'demo.conf.d'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('defaults < main file < drop-ins in name order < command line', async (t) => {
  const d = setup({
    'demo.conf': '# packaged\n\ntimeout = 10\nmode = fast\nverbose = yes\n',
    'demo.conf.d/20-b.conf': 'timeout = 20\n',
    'demo.conf.d/10-a.conf': 'timeout = 15\nnames = work  personal\n',
    // byte order: "9-late" sorts after "20-b", so it is applied last
    'demo.conf.d/9-late.conf': 'timeout = 9   # the last one wins\n',
    'demo.conf.d/30-ignored.conf.disabled': 'timeout = 99\n',
    'demo.conf.d/README': 'not a drop-in\n',
  });
  const c = loadConfig(SCHEMA, { file: join(d, 'demo.conf'), flags: { ratio: '0.25' } });
  t.equal(c.values.timeout, 9);
  t.equal(c.sources.timeout, `${d}/demo.conf.d/9-late.conf:1`);
  t.equal(c.values.mode, 'fast');
  t.equal(c.sources.mode, `${d}/demo.conf:4`);
  t.equal(c.values.verbose, true);
  t.same(c.values.names, ['work', 'personal']);
  t.equal(c.values.ratio, 0.25);
  t.equal(c.sources.ratio, 'command line');
  t.equal(c.values.dir, '/var/lib/demo');
  t.equal(c.sources.dir, 'default');
  t.same(c.files, [`${d}/demo.conf`, `${d}/demo.conf.d/10-a.conf`, `${d}/demo.conf.d/20-b.conf`, `${d}/demo.conf.d/9-late.conf`]);
  t.same(c.warnings, []);

  const flagged = loadConfig(SCHEMA, { file: join(d, 'demo.conf'), flags: { timeout: '3', dirs: ['/x', '/y'] } });
  t.equal(flagged.values.timeout, 3, 'a flag beats every file');
  t.same(flagged.values.dirs, ['/x', '/y'], 'a repeated flag is a list');
  t.equal(
    printConfig(flagged),
    [
      'timeout = 3  # command line',
      `mode = fast  # ${d}/demo.conf:4`,
      'dir = /var/lib/demo  # default',
      'dirs = /x /y  # command line',
      `names = work personal  # ${d}/demo.conf.d/10-a.conf:2`,
      `verbose = true  # ${d}/demo.conf:5`,
      'ratio = 0.5  # default',
      'log = stderr  # default',
      '',
    ].join('\n'),
  );
});

t.test('no file: defaults and flags only; a missing drop-in directory is fine', async (t) => {
  t.equal(loadConfig(SCHEMA, {}).values.timeout, 30);
  const d = mkdtempSync(join(tmpdir(), 'config-load-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  writeFileSync(join(d, 'demo.conf'), 'timeout = 5\n');
  t.equal(loadConfig(SCHEMA, { file: join(d, 'demo.conf') }).values.timeout, 5);
});

t.test('unknown keys are warnings naming file:line', async (t) => {
  const d = setup({ 'demo.conf': 'timeout = 5\n', 'demo.conf.d/50-x.conf': '\n# hello\ntimeuot = 7\n' });
  const c = loadConfig(SCHEMA, { file: join(d, 'demo.conf') });
  t.same(c.warnings, [`${d}/demo.conf.d/50-x.conf:3: unknown key "timeuot" (ignored)`]);
  t.equal(c.values.timeout, 5);
});

t.test('every error form is file:line: key: problem', async (t) => {
  const cases: Array<[string, string]> = [
    ['just words\n', 'just words: expected "key = value"'],
    ['Timeout = 5\n', 'Timeout: not a key name (lower case letters, digits and _)'],
    [' = 5\n', '(empty): not a key name (lower case letters, digits and _)'],
    ['timeout = soon\n', 'timeout: expected an integer, got "soon"'],
    ['timeout = 1.5\n', 'timeout: expected an integer, got "1.5"'],
    ['timeout = 0\n', 'timeout: must be >= 1, got "0"'],
    ['timeout = 3601\n', 'timeout: must be <= 3600, got "3601"'],
    ['timeout =\n', 'timeout: expected an integer, got ""'],
    ['mode = quick\n', 'mode: must be one of fast, safe, got "quick"'],
    ['dir = relative/dir\n', 'dir: expected an absolute path, got "relative/dir"'],
    ['dirs = /a b\n', 'dirs: expected absolute paths, got "b"'],
    ['verbose = maybe\n', 'verbose: expected true or false, got "maybe"'],
    ['ratio = 2\n', 'ratio: must be <= 1, got "2"'],
    ['ratio = x\n', 'ratio: expected a number, got "x"'],
    ['log = syslog\n', 'log: must match pattern "^(stderr|/.*)$", got "syslog"'],
  ];
  for (const [text, problem] of cases) {
    const d = setup({ 'demo.conf': 'mode = safe\n', 'demo.conf.d/10-bad.conf': `# a comment\n${text}` });
    t.equal(
      errorOf(() => loadConfig(SCHEMA, { file: join(d, 'demo.conf') })),
      `ConfigError: ${d}/demo.conf.d/10-bad.conf:2: ${problem}`,
      text.trim(),
    );
  }
  t.equal(
    errorOf(() => loadConfig(SCHEMA, { file: '/nonexistent/demo.conf' })),
    'ConfigError: /nonexistent/demo.conf: cannot read: no such file',
  );
  t.equal(
    errorOf(() => loadConfig(SCHEMA, { flags: { timeout: 'x' } })),
    'ConfigError: command line: timeout: expected an integer, got "x"',
  );
});

// Each daemon's configuration through its real program: --config FILE with
// drop-ins, --print-config, errors that stop the start, warnings; what
// qubes-install lays out; docs/CONFIGURATION.md current with the declarations.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';

const ENV = { ...process.env, NODE_OPTIONS: '' };
const run = (argv: string[]) => spawnSync(process.execPath, argv, { encoding: 'utf8', env: ENV, timeout: 20000 });
const QUBESD = join(ROOT, 'bin', 'qubesd');
const POLICY = join(ROOT, 'bin', 'qubes-policy');
const DISPATCHER = join(ROOT, 'dist', 'rpc-services', 'qrexec', 'dispatcher-main.js');

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'config-daemons-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('qubesd --config FILE --print-config: every key, its value and its source', async (t) => {
  const d = tmp();
  writeFileSync(join(d, 'qubesd.conf'), `# packaged\nbase_dir = ${d}/base\nrequest_timeout = 10\nlog = none\n`);
  mkdirSync(join(d, 'qubesd.conf.d'));
  writeFileSync(join(d, 'qubesd.conf.d', '50-limits.conf'), 'request_timeout = 45\nmax_connections = 64\n');
  writeFileSync(join(d, 'qubesd.conf.d', '60-level.conf'), 'log_level = info\n');
  const r = run([QUBESD, '--config', join(d, 'qubesd.conf'), '--print-config', '--stream-buffer', '64K']);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  t.equal(
    r.stdout,
    [
      `base_dir = ${d}/base  # ${d}/qubesd.conf:2`,
      `store = ${d}/base/qubes.xml  # default`,
      'socket_dir = /var/run  # default',
      'backend = sim  # default',
      'libvirt_uri =  # default',
      'libvirt_socket =  # default',
      `sim_state_file = ${d}/base/sim-domains.json  # default`,
      'policy_dir = /etc/qubes/policy.d  # default',
      'runtime_policy_dir = /run/qubes/policy.d  # default',
      'backup_profile_dir = /etc/qubes/backup  # default',
      'services_dir = /etc/qubes-rpc  # default',
      'guest_services_dir =  # default',
      `log = none  # ${d}/qubesd.conf:4`,
      `log_level = info  # ${d}/qubesd.conf.d/60-level.conf:1`,
      `request_timeout = 45  # ${d}/qubesd.conf.d/50-limits.conf:1`,
      `max_connections = 64  # ${d}/qubesd.conf.d/50-limits.conf:2`,
      'stream_buffer = 65536  # command line',
      'stream_buffer_total = 67108864  # default',
      'ready_file =  # default',
      '',
    ].join('\n'),
  );
  t.notOk(existsSync(join(d, 'base')), 'printing starts nothing');
});

t.test('qubesd refuses to start on a bad line or value, warns on an unknown key', async (t) => {
  const d = tmp();
  const conf = join(d, 'qubesd.conf');
  mkdirSync(join(d, 'qubesd.conf.d'));
  writeFileSync(conf, `base_dir = ${d}/base\nsocket_dir = ${d}/run\nlog = none\n`);
  writeFileSync(join(d, 'qubesd.conf.d', '10-typo.conf'), 'max_conections = 5\n');
  const warned = run([QUBESD, '--config', conf, '--print-config']);
  t.equal(warned.status, 0);
  t.equal(warned.stderr, `qubesd: warning: ${d}/qubesd.conf.d/10-typo.conf:1: unknown key "max_conections" (ignored)\n`);

  for (const [text, message] of [
    ['request_timeout = 0', 'request_timeout: must be >= 1, got "0"'],
    ['backend = xen', 'backend: must be one of sim, libvirt, got "xen"'],
    ['log = qubesd.log', 'log: must match pattern "^(stderr|none|/.*)$", got "qubesd.log"'],
    ['request timeout 30', 'request timeout 30: expected "key = value"'],
  ]) {
    writeFileSync(join(d, 'qubesd.conf.d', '20-bad.conf'), `\n${text}\n`);
    const r = run([QUBESD, '--config', conf]);
    t.equal(r.status, 2, text);
    t.equal(r.stderr, `qubesd: ${d}/qubesd.conf.d/20-bad.conf:2: ${message}\n`, text);
    t.notOk(existsSync(join(d, 'run', 'qubesd.sock')), 'no socket');
  }
  const flag = run([QUBESD, '--config', conf, '--max-connections', 'many']);
  t.equal(flag.status, 2);
  t.match(flag.stderr, /qubesd: .*20-bad\.conf:2: /, 'the files are read before the flags are converted');
  rmSync(join(d, 'qubesd.conf.d', '20-bad.conf'));
  const flag2 = run([QUBESD, '--config', conf, '--max-connections', 'many']);
  t.equal(flag2.stderr.split('\n').slice(-2)[0], 'qubesd: command line: max_connections: expected an integer, got "many"');
  const missing = run([QUBESD, '--config', join(d, 'nope.conf')]);
  t.equal(missing.status, 2);
  t.equal(missing.stderr, `qubesd: ${d}/nope.conf: cannot read: no such file\n`);
  const unknownFlag = run([QUBESD, '--colour', 'red']);
  t.equal(unknownFlag.status, 2);
  t.match(unknownFlag.stderr, /^qubesd: command line: Unknown option '--colour'/);
});

t.test('the policy daemon and the dispatcher take --config and --print-config too', async (t) => {
  const d = tmp();
  writeFileSync(join(d, 'qubes-policy-daemon.conf'), `socket = ${d}/policy.sock\nsystem_info = ${d}/info.json\nask_answer = deny\n`);
  mkdirSync(join(d, 'qubes-policy-daemon.conf.d'));
  writeFileSync(join(d, 'qubes-policy-daemon.conf.d', 'ask.conf'), 'ask_answer = allow\n');
  const p = run([POLICY, 'daemon', '--config', join(d, 'qubes-policy-daemon.conf'), '--print-config', '--policy-dir', '/srv/policy.d']);
  t.equal(p.status, 0, p.stderr);
  t.equal(
    p.stdout,
    [
      `socket = ${d}/policy.sock  # ${d}/qubes-policy-daemon.conf:1`,
      'eval_socket =  # default',
      'gui_socket =  # default',
      'policy_dir = /srv/policy.d  # command line',
      'runtime_dir =  # default',
      'legacy_dir =  # default',
      'system_info_socket =  # default',
      `system_info = ${d}/info.json  # ${d}/qubes-policy-daemon.conf:2`,
      `ask_answer = allow  # ${d}/qubes-policy-daemon.conf.d/ask.conf:1`,
      'ask_command =  # default',
      'ask_socket =  # default',
      'log = stderr  # default',
      'ready_file =  # default',
      '',
    ].join('\n'),
  );
  const bad = run([POLICY, 'daemon', '--ask-answer', 'maybe']);
  t.equal(bad.status, 2);
  t.equal(bad.stderr, 'qubes-policy daemon: command line: ask_answer: must be one of (empty), allow, deny, got "maybe"\n');

  writeFileSync(
    join(d, 'qrexec-dispatcher.conf'),
    `socket_dir = ${d}/run\nservice_dir = ${d}/rpc /etc/qubes-rpc\npolicy_socket = ${d}/policy.sock\nsocket_owner = work=root:root:0600\n`,
  );
  const q = run([DISPATCHER, '--config', join(d, 'qrexec-dispatcher.conf'), '--print-config', '--qube', 'work', '--qube', 'vault']);
  t.equal(q.status, 0, q.stderr);
  t.equal(
    q.stdout,
    [
      `socket_dir = ${d}/run  # ${d}/qrexec-dispatcher.conf:1`,
      `service_dir = ${d}/rpc /etc/qubes-rpc  # ${d}/qrexec-dispatcher.conf:2`,
      `policy_socket = ${d}/policy.sock  # ${d}/qrexec-dispatcher.conf:3`,
      'qubesd_socket =  # default',
      'qube = work vault  # command line',
      `socket_owner = work=root:root:0600  # ${d}/qrexec-dispatcher.conf:4`,
      'policy_dir =  # default',
      'runtime_policy_dir =  # default',
      'system_info_socket =  # default',
      'log = stderr  # default',
      'ready_file =  # default',
      '',
    ].join('\n'),
  );
  writeFileSync(join(d, 'qrexec-dispatcher.conf'), 'policy_dir = relative/dir\n');
  const qb = run([DISPATCHER, '--config', join(d, 'qrexec-dispatcher.conf')]);
  t.equal(qb.status, 2);
  t.equal(qb.stderr, `qrexec-dispatcher: ${d}/qrexec-dispatcher.conf:1: policy_dir: expected an absolute path, got "relative/dir"\n`);
});

t.test('qubes-install lays out every packaged file with commented defaults and an empty drop-in directory', async (t) => {
  const prefix = tmp();
  install({ prefix });
  const etc = join(prefix, 'etc', 'qubes');
  for (const daemon of ['qubesd', 'qubes-policy-daemon', 'qrexec-dispatcher', 'qubes-rest']) {
    t.ok(existsSync(join(etc, `${daemon}.conf`)), `${daemon}.conf`);
    t.same(readdirSync(join(etc, `${daemon}.conf.d`)), [], `${daemon}.conf.d/ is empty`);
  }
  const text = readFileSync(join(etc, 'qubesd.conf'), 'utf8');
  t.match(text, /^#request_timeout = 30$/m, 'a default, commented');
  t.match(text, /^#sim_state_file = BASE_DIR\/sim-domains\.json$/m, 'a derived default, commented');
  t.ok(text.includes(`\nsocket_dir = ${prefix}/var/run\n`), "the installation's paths, set");
  t.ok(text.includes(`\nready_file = ${prefix}/var/run/qubes/qubesd.ready\n`));
  const rest = readFileSync(join(etc, 'qubes-rest.conf'), 'utf8');
  for (const line of ['#hsts_max_age = 0', '#pending_task_timeout = 86400', '#completed_task_timeout = 3900', '#max_tasks = 200', '#listen = 127.0.0.1:8080']) {
    t.ok(rest.split('\n').includes(line), line);
  }
  // every installed file loads without a warning
  const p = run([QUBESD, '--config', join(etc, 'qubesd.conf'), '--print-config']);
  t.equal(p.stderr, '');
  t.ok(p.stdout.split('\n').includes(`socket_dir = ${prefix}/var/run  # ${etc}/qubesd.conf:13`), 'sources name the packaged file and line');
  // a second install keeps the operator's drop-ins
  writeFileSync(join(etc, 'qubesd.conf.d', 'mine.conf'), 'request_timeout = 5\n');
  install({ prefix });
  t.equal(readFileSync(join(etc, 'qubesd.conf.d', 'mine.conf'), 'utf8'), 'request_timeout = 5\n');
  const unit = readFileSync(join(prefix, 'usr', 'lib', 'systemd', 'system', 'qubesd.service'), 'utf8');
  t.ok(unit.includes(`/bin/qubesd --config ${etc}/qubesd.conf\n`), 'the unit passes the file');
});

t.test('docs/CONFIGURATION.md is current with the key declarations', async (t) => {
  const r = run([join(ROOT, 'dist', 'rpc-services', 'gen-config-docs.js'), '--check']);
  t.equal(r.status, 0, `gen-config-docs --check: ${r.stdout}${r.stderr}`);
  const doc = readFileSync(join(ROOT, 'docs', 'CONFIGURATION.md'), 'utf8');
  for (const line of [
    '| `request_timeout` | integer 1–86400 (seconds) | `30` | reload | How long a client may take to send its whole request before the connection is dropped. Flag: `--request-timeout`. |',
    '| `pending_task_timeout` | integer 1–… (seconds) | `86400` | reload | How long a task may stay pending or running before it is cancelled. Flag: `--pending-task-timeout`. |',
  ])
    t.ok(doc.split('\n').includes(line), line);
  const other = join(tmp(), 'CONF.md');
  writeFileSync(other, doc.replace('`30`', '`31`'));
  const stale = run([join(ROOT, 'dist', 'rpc-services', 'gen-config-docs.js'), other, '--check']);
  t.equal(stale.status, 1, 'a stale copy is detected');
});

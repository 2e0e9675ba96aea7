// SIGHUP: each daemon re-reads its files, applies what may change at run
// time, logs what it applied and what needs a restart, and keeps running on
// its old configuration when the new one does not load.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, call } from '../helpers/qubesd.js';
import { QUBESD_NODE_FLAGS } from '../../lib/node-flags.js';
import { systemInfo } from '../policy/helpers.js';

const ENV = { ...process.env, NODE_OPTIONS: '' };

interface Proc {
  proc: ChildProcess;
  out(): string;
  waitFor(text: string, ms?: number): Promise<void>;
  stop(): Promise<void>;
}

function start(argv: string[]): Proc {
  const proc = spawn(process.execPath, argv, { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const p: Proc = {
    proc,
    out: () => out,
    async waitFor(text, ms = 15000) {
      const deadline = Date.now() + ms;
      while (!out.includes(text)) {
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`never saw ${JSON.stringify(text)}:\n${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  t.teardown(() => p.stop());
  return p;
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'config-reload-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** How long qubesd keeps a connection whose request never ends (ms, or Infinity past `limit`). */
function heldFor(socket: string, limit: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = net.connect(socket);
    c.on('connect', () => c.write('admin.vm.List'));
    c.on('error', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
    const timer = setTimeout(() => {
      c.destroy();
      resolve(Infinity);
    }, limit);
  });
}

t.test('qubesd: timeouts, limits, log level and log file apply at once; the backend waits for a restart', async (t) => {
  const d = tmp();
  const conf = join(d, 'qubesd.conf');
  mkdirSync(join(d, 'qubesd.conf.d'));
  writeFileSync(conf, `base_dir = ${d}/base\nsocket_dir = ${d}/run\npolicy_dir = ${d}/policy.d\nlog = ${d}/one.log\nrequest_timeout = 30\n`);
  const q = start([...QUBESD_NODE_FLAGS, join(ROOT, 'bin', 'qubesd'), '--config', conf]);
  await q.waitFor('qubesd: listening');
  const sock = join(d, 'run', 'qubesd.sock');
  t.equal(await heldFor(sock, 1500), Infinity, 'an unfinished request is kept for request_timeout = 30 s');
  t.ok((await call(sock, 'admin.vm.List')).ok);
  // audit lines are written together, within 10 ms of the call (qubesd/log/audit.ts)
  await new Promise((r) => setTimeout(r, 100));
  t.match(readFileSync(join(d, 'one.log'), 'utf8'), /"ev":"call".*"method":"admin.vm.List"/, 'calls are logged');

  writeFileSync(
    join(d, 'qubesd.conf.d', '50-ops.conf'),
    `request_timeout = 1\nmax_connections = 100\nlog_level = info\nlog = ${d}/two.log\nbackend = libvirt\n`,
  );
  q.proc.kill('SIGHUP');
  const line = `qubesd: reloaded configuration; applied: log=${d}/two.log, log_level=info, request_timeout=1, max_connections=100; needs a restart: backend=libvirt`;
  await q.waitFor(line);
  const held = await heldFor(sock, 5000);
  t.ok(held >= 900 && held < 3000, `dropped after about 1 s (${held} ms)`);
  t.ok((await call(sock, 'admin.vm.List')).ok, 'still the sim backend: the backend needs a restart');
  await new Promise((r) => setTimeout(r, 200));
  const two = readFileSync(join(d, 'two.log'), 'utf8');
  t.match(two, /"ev":"info","msg":"qubesd: reloaded configuration; applied: /, 'the reload is logged in the new log file');
  t.notMatch(two, /"ev":"call"/, 'log_level = info: no per-call lines');

  writeFileSync(join(d, 'qubesd.conf.d', '60-bad.conf'), 'request_timeout = 0\n');
  q.proc.kill('SIGHUP');
  await q.waitFor(`qubesd: reload failed, keeping the running configuration: ${d}/qubesd.conf.d/60-bad.conf:1: request_timeout: must be >= 1, got "0"`);
  t.ok((await call(sock, 'admin.vm.List')).ok, 'a bad file does not stop the daemon');
  const still = await heldFor(sock, 5000);
  t.ok(still < 3000, `and the running value stays (${still} ms)`);
  rmSync(join(d, 'qubesd.conf.d', '60-bad.conf'));
  q.proc.kill('SIGHUP');
  await q.waitFor('qubesd: reloaded configuration; applied: nothing changed; needs a restart: backend=libvirt');
  await q.stop();
  t.equal(q.proc.exitCode, 0);
});

const exchange = (path: string, data: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const s = net.connect(path);
    let out = '';
    s.on('connect', () => s.end(data));
    s.on('data', (b) => (out += b));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });

t.test('policy daemon: the ask agent changes on SIGHUP; the socket needs a restart', async (t) => {
  const d = tmp();
  mkdirSync(join(d, 'policy.d'));
  writeFileSync(join(d, 'policy.d', '50.policy'), 'test.Ask * @anyvm @anyvm ask default_target=vault\n');
  writeFileSync(join(d, 'info.json'), JSON.stringify(systemInfo()));
  const conf = join(d, 'qubes-policy-daemon.conf');
  mkdirSync(`${conf}.d`);
  writeFileSync(conf, `socket = ${d}/policy.sock\npolicy_dir = ${d}/policy.d\nsystem_info = ${d}/info.json\nready_file = ${d}/policy.ready\n`);
  const p = start([join(ROOT, 'bin', 'qubes-policy'), 'daemon', '--config', conf]);
  await p.waitFor('listening');
  t.ok(existsSync(join(d, 'policy.ready')), 'ready file written');
  const ask = 'source=work\nintended_target=vault\nservice_and_arg=test.Ask+\n\n';
  t.equal(await exchange(join(d, 'policy.sock'), ask), 'result=deny', 'no agent: ask is denied');
  writeFileSync(join(`${conf}.d`, 'ask.conf'), `ask_answer = allow\nsocket = ${d}/other.sock\n`);
  p.proc.kill('SIGHUP');
  await p.waitFor(`qubes-policy daemon: reloaded configuration; applied: ask_answer=allow; needs a restart: socket=${d}/other.sock`);
  t.match(await exchange(join(d, 'policy.sock'), ask), /^user=DEFAULT\nresult=allow\ntarget=vault\n/, 'the new agent answers');
  await p.stop();
  t.notOk(existsSync(join(d, 'policy.ready')), 'ready file removed at exit');
});

t.test('dispatcher: the log applies on SIGHUP, the qubes need a restart', async (t) => {
  const d = tmp();
  const conf = join(d, 'qrexec-dispatcher.conf');
  mkdirSync(`${conf}.d`);
  writeFileSync(conf, `socket_dir = ${d}/run\nservice_dir = ${d}/rpc\npolicy_socket = ${d}/policy.sock\nqube = work\nready_file = ${d}/dispatcher.ready\n`);
  const q = start([join(ROOT, 'dist', 'rpc-services', 'qrexec', 'dispatcher-main.js'), '--config', conf]);
  await q.waitFor('serving 1 qube sockets');
  t.ok(existsSync(join(d, 'dispatcher.ready')));
  writeFileSync(join(`${conf}.d`, 'x.conf'), `log = ${d}/qrexec.log\nqube = work vault\n`);
  q.proc.kill('SIGHUP');
  await q.waitFor(`qrexec-dispatcher: reloaded configuration; applied: log=${d}/qrexec.log; needs a restart: qube=work vault`);
  writeFileSync(join(`${conf}.d`, 'y.conf'), 'log = sometimes\n');
  q.proc.kill('SIGHUP');
  await q.waitFor(`qrexec-dispatcher: reload failed, keeping the running configuration: ${d}/qrexec-dispatcher.conf.d/y.conf:1: log: must match pattern`);
  await q.stop();
  t.equal(q.proc.exitCode, 0);
  t.notOk(existsSync(join(d, 'dispatcher.ready')));
});

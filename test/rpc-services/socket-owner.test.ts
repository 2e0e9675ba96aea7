// Per-qube dispatcher sockets with their own owner, group and mode: the real
// dispatcher program (--socket-owner), checked with stat and with a process
// running as another user, which reaches the socket given to it and no other.
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDispatcherArgs } from '../../rpc-services/qrexec/main.js';
import { parseSocketOwner } from '../../rpc-services/qrexec/socket-owner.js';
import { ROOT } from '../helpers/qubesd.js';
import { spawnPlain } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'rpc-owner-'));
chmodSync(dir, 0o755);
const sockets = join(dir, 'sockets'),
  services = join(dir, 'services');
mkdirSync(services);
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('owner specifications', async (t) => {
  t.same(parseSocketOwner('4242:4243:0600'), { uid: 4242, gid: 4243, mode: 0o600 });
  t.same(parseSocketOwner(':4243'), { gid: 4243 });
  t.same(parseSocketOwner('root:root:660'), { uid: 0, gid: 0, mode: 0o660 });
  t.throws(() => parseSocketOwner('4242'), /expected \[USER\]:\[GROUP\]\[:MODE\]/);
  t.throws(() => parseSocketOwner('no-such-user-here:'), /no such user "no-such-user-here"/);
  t.throws(() => parseSocketOwner(':0:999'), /socket mode "999": expected octal/);
  const cfg = join(dir, 'qrexec-dispatcher.conf');
  writeFileSync(
    cfg,
    `socket_dir = ${sockets}\nservice_dir = ${services}\npolicy_socket = /p.sock\nqubesd_socket = /q.sock\nsocket_owner = work=4300:4301:0600\n`,
  );
  const a = parseDispatcherArgs(['--config', cfg, '--socket-owner', 'mgmt=:4302']);
  t.same([...a.socketOwners], [['mgmt', { gid: 4302 }]], 'the command line wins over the file (a list key: flags replace it)');
  const f = parseDispatcherArgs(['--config', cfg]);
  t.same([...f.socketOwners], [['work', { uid: 4300, gid: 4301, mode: 0o600 }]], 'qrexec-dispatcher.conf');
});

t.test('the dispatcher gives each socket its configured owner, group and mode', async (t) => {
  const proc = spawnPlain(
    process.execPath,
    [
      join(ROOT, 'dist', 'rpc-services', 'qrexec', 'dispatcher-main.js'),
      '--socket-dir',
      sockets,
      '--service-dir',
      services,
      '--policy-socket',
      join(dir, 'policy.sock'),
      '--qube',
      'alpha',
      '--qube',
      'beta',
      '--qube',
      'gamma',
      '--socket-owner',
      'alpha=4242:4243:0600',
      '--socket-owner',
      '*=:4244',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  t.teardown(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.once('data', () => resolve());
    proc.once('exit', () => reject(new Error('dispatcher exited')));
  });
  const st = (q: string) => {
    const s = statSync(join(sockets, `qrexec.${q}`));
    return { uid: s.uid, gid: s.gid, mode: (s.mode & 0o777).toString(8) };
  };
  t.same(st('alpha'), { uid: 4242, gid: 4243, mode: '600' });
  t.same(st('beta'), { uid: 0, gid: 4244, mode: '660' }, '* covers the other qubes');

  // a process running as alpha's owner reaches alpha's socket, not beta's
  const tryConnect = (q: string) =>
    new Promise<string>((resolve) => {
      const code = `require('net').connect(${JSON.stringify(join(sockets, `qrexec.${q}`))}).on('connect', function () { console.log('connected'); this.destroy(); }).on('error', (e) => console.log(e.code));`;
      const p = spawn(process.execPath, ['-e', code], { uid: 4242, gid: 4242, env: {}, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => {
        out += d;
      });
      p.once('close', () => resolve(out.trim()));
    });
  t.equal(await tryConnect('alpha'), 'connected');
  t.equal(await tryConnect('beta'), 'EACCES');
  t.ok(existsSync(join(sockets, 'qrexec.gamma')));
});

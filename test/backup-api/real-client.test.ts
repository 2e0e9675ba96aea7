// The real Qubes client against our qubesd, both ways of the issue's
// "done": qvm-backup (its one-off profile, Info, Execute with progress
// events) makes a backup through our admin.backup.*, and qvm-backup-restore
// restores it into another of our daemons through the Admin API (creating
// the qube under a new name on a conflict, importing volumes through our
// handler program), with every byte of the volume identical.
// Needs a qubes-core-admin-client checkout ($QUBES_CORE_ADMIN_CLIENT) and a
// python3 with lxml and yaml; skipped otherwise (CI cannot fetch the client).
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ROOT, SHARED, call, cleanup, startDaemon } from '../helpers/qubesd.js';
import { install } from '../../rpc-services/install.js';
import { configPath } from '../../lib/stack-config.js';

const CLIENT = process.env.QUBES_CORE_ADMIN_CLIENT ?? join(ROOT, '..', 'ref', 'qubes-core-admin-client');
const PYTHON = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import lxml, yaml'], { stdio: 'ignore' }).status === 0);
const skip = !existsSync(join(CLIENT, 'qubesadmin'))
  ? `no qubesadmin checkout at ${CLIENT}`
  : !PYTHON
    ? 'no python3 with lxml and yaml (apt-get install python3-lxml python3-yaml)'
    : false;

t.test('qvm-backup makes a backup through our qubesd; qvm-backup-restore restores it into another', { skip }, async (t) => {
  // The system that is backed up.
  const a = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  for (const [m, dest, arg, payload] of [
    ['admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red'],
    ['admin.vm.property.Set', 'work', 'memory', '1234'],
    ['admin.vm.notes.Set', 'work', '', 'remember this\n'],
  ] as const)
    t.ok((await call(a.socket, m, dest, arg, payload)).ok, m);
  await a.stop();
  const image = join(a.base, 'appvms', 'work', 'private.img');
  const fd = openSync(image, 'r+');
  writeSync(fd, randomBytes(5 << 20), 0, 5 << 20, 300 << 20);
  writeSync(fd, Buffer.from('tail'), 0, 4, 2 ** 31 - 4);
  closeSync(fd);
  const profiles = join(a.dir, 'profiles'),
    out = join(a.dir, 'out');
  mkdirSync(profiles);
  mkdirSync(out);
  const a2 = await startDaemon({ dir: a.dir, args: ['--log', 'none', '--backup-profile-dir', profiles] });
  t.teardown(async () => {
    await a2.stop();
    cleanup(a2);
  });

  const pw = join(a.dir, 'pw');
  writeFileSync(pw, 'correct horse\n');
  const qvm = (socket: string, env: NodeJS.ProcessEnv, ...args: string[]) =>
    spawnSync(PYTHON!, [join(ROOT, 'test', 'backup', 'qvm-tool.py'), ...args], {
      env: { ...process.env, QVM_PY: join(SHARED, 'conformance', 'tools', 'qvm.py'), QUBES_CORE_ADMIN_CLIENT: CLIENT, QUBESD_SOCKET: socket, ...env },
      encoding: 'utf8',
      timeout: 300000,
    });
  const made = qvm(a2.socket, { QVM_BACKUP_PROFILE_DIR: profiles }, 'qvm-backup', '--yes', '--passphrase-file', pw, '--compress', out, 'work');
  t.equal(made.status, 0, `qvm-backup: ${made.stderr}`);
  // as Qubes counts it: what the sparse 2 GiB image and notes.txt take on disk
  t.match(made.stdout, /^ +work \| +VM \| +5\.0 MiB \|$/m, 'the summary from admin.backup.Info');
  t.match(made.stderr, /Making a backup\.\.\. 100\.00%/, 'progress from backup-progress events');
  t.same(readdirSync(profiles), [], 'the one-off profile is gone');
  const archives = readdirSync(out);
  t.equal(archives.length, 1);
  const archive = join(out, archives[0]!);

  // The system it is restored to: an installation (for the handler program
  // that streams volume data) whose qubesd already has a `work`.
  const b = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await b.stop();
    cleanup(b);
  });
  for (const [m, dest, arg, payload] of [
    ['admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=green'],
  ] as const)
    t.ok((await call(b.socket, m, dest, arg, payload)).ok, m);
  const prefix = join(b.dir, 'stack');
  install({ prefix });
  const cfg = JSON.parse(readFileSync(configPath(prefix), 'utf8'));
  cfg.qubesd.socket = b.socket;
  cfg.qubesd.internalSocket = b.internalSocket;
  writeFileSync(configPath(prefix), JSON.stringify(cfg));

  const restored = qvm(
    b.socket,
    { QREXEC_SERVICES_DIR: join(prefix, 'etc', 'qubes-rpc'), HOME: b.dir },
    'qvm-backup-restore',
    '--passphrase-file',
    pw,
    '--rename-conflicting',
    archive,
  );
  t.equal(restored.status, 0, `qvm-backup-restore: ${restored.stderr}`);
  t.notMatch(restored.stderr, /Failed|ERROR/, restored.stderr);
  const list = (await call(b.socket, 'admin.vm.List', 'dom0')).content;
  t.match(list, /^work-1 class=AppVM state=Halted /m, 'restored under a new name: the name was taken');
  t.match((await call(b.socket, 'admin.vm.property.Get', 'work-1', 'memory')).content, /type=int 1234$/);
  t.match((await call(b.socket, 'admin.vm.property.Get', 'work-1', 'label')).content, /type=label red$/);
  t.equal((await call(b.socket, 'admin.vm.notes.Get', 'work-1')).content, 'remember this\n');
  const copy = join(b.base, 'appvms', 'work-1', 'private.img');
  t.doesNotThrow(() => execFileSync('cmp', [image, copy]), 'volume bytes identical');
});

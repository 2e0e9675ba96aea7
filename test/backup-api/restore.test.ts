// Restoring through the Admin API (bin/qubes-backup-restore --qubesd-socket):
// a backup made by one of our daemons restored into another, renaming on
// conflicts; damaged archives and wrong passphrases create nothing.
import t from 'tap';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, call, cleanup, startDaemon } from '../helpers/qubesd.js';
import { archives, profile, readAt, setup } from './helpers.js';
import { FAST, sampleData, sourceOf, tempDir } from '../backup/util.js';
import { dom0PathDestination, runBackup } from '../../qubesd/backup/destination.js';

const run = promisify(execFile);
const RULES = 'action=accept dsthost=qubes-os.org\naction=accept proto=tcp dstports=443-443\naction=drop\n';

async function restoreCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  try {
    const r = await run(process.execPath, [join(ROOT, 'bin', 'qubes-backup-restore'), ...args], { env, maxBuffer: 1 << 24 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

t.test('a backup restores into another qubesd through the Admin API', async (t) => {
  const src = await setup(t);
  for (const [m, dest, arg, payload] of [
    ['admin.vm.property.Set', 'work', 'memory', '1234'],
    ['admin.vm.property.Set', 'work', 'netvm', ''],
    ['admin.vm.feature.Set', 'work', 'service.crond', '1'],
    ['admin.vm.tag.Set', 'other', 'blue', ''],
    ['admin.vm.firewall.Set', 'work', '', RULES],
  ] as const)
    t.ok((await call(src.d.socket, m, dest, arg, payload)).ok, m);
  profile(src, 'two', `include: [work, other]\ndestination_vm: dom0\ndestination_path: ${src.out}\npassphrase_text: pw\n`);
  const made = await call(src.d.socket, 'admin.backup.Execute', 'dom0', 'two');
  t.ok(made.ok, made.message ?? '');
  const archive = archives(src.out)[0]!;
  const pw = join(src.d.dir, 'pw');
  writeFileSync(pw, 'pw\n');

  const dst = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await dst.stop();
    cleanup(dst);
  });
  for (const [m, dest, arg, payload] of [
    ['admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black'],
    ['admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=green'],
  ] as const)
    t.ok((await call(dst.socket, m, dest, arg, payload)).ok, m);
  const before = (await call(dst.socket, 'admin.vm.List', 'dom0')).content;

  // Damage first: nothing may be created.
  const bad = join(src.d.dir, 'tampered');
  const bytes = readFileSync(archive);
  bytes[bytes.length - 2000] ^= 1;
  writeFileSync(bad, bytes);
  const tampered = await restoreCli([bad, '--passphrase-file', pw, '--qubesd-socket', dst.socket]);
  t.equal(tampered.code, 1);
  t.match(tampered.stderr, /qubes-backup-restore: (tampered|truncated|format): /);
  const cut = join(src.d.dir, 'truncated');
  writeFileSync(cut, readFileSync(archive).subarray(0, Math.floor(bytes.length * 0.9)));
  const truncated = await restoreCli([cut, '--passphrase-file', pw, '--qubesd-socket', dst.socket]);
  t.equal(truncated.code, 1);
  t.match(truncated.stderr, /qubes-backup-restore: (truncated|tampered|format): /);
  const wrongPw = join(src.d.dir, 'wrong');
  writeFileSync(wrongPw, 'nope\n');
  const wrong = await restoreCli([archive, '--passphrase-file', wrongPw, '--qubesd-socket', dst.socket]);
  t.match(wrong.stderr, /bad-passphrase/);
  t.equal((await call(dst.socket, 'admin.vm.List', 'dom0')).content, before, 'nothing created by the failed restores');

  const r = await restoreCli([archive, '--passphrase-file', pw, '--qubesd-socket', dst.socket]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /verifying 100%\n[^]*restoring 100%\n/, 'progress shown');
  t.match(r.stdout, /^work -> work-1: private\.img firewall\.xml notes\.txt$/m, 'renamed: the name was taken');
  t.match(r.stdout, /^other: private\.img$/m);
  const list = (await call(dst.socket, 'admin.vm.List', 'dom0')).content;
  t.match(list, /^work-1 class=AppVM state=Halted /m);
  t.match(list, /^other class=AppVM state=Halted /m);
  t.match((await call(dst.socket, 'admin.vm.property.Get', 'work-1', 'memory')).content, /type=int 1234$/);
  t.match((await call(dst.socket, 'admin.vm.property.Get', 'work-1', 'label')).content, /type=label red$/);
  t.match((await call(dst.socket, 'admin.vm.property.Get', 'work-1', 'template')).content, /type=vm tpl$/);
  t.equal((await call(dst.socket, 'admin.vm.property.Get', 'work-1', 'netvm')).content, 'default=False type=vm ', 'netvm None kept');
  t.equal((await call(dst.socket, 'admin.vm.feature.Get', 'work-1', 'service.crond')).content, '1');
  t.notOk((await call(dst.socket, 'admin.vm.feature.Get', 'work-1', 'backup-content')).ok, 'backup-* features are not carried over');
  t.match((await call(dst.socket, 'admin.vm.tag.List', 'work-1')).content, /^important$/m);
  t.match((await call(dst.socket, 'admin.vm.tag.List', 'other')).content, /^blue$/m);
  t.equal((await call(dst.socket, 'admin.vm.notes.Get', 'work-1')).content, 'my notes\n');
  t.equal((await call(dst.socket, 'admin.vm.firewall.Get', 'work-1')).content, RULES, 'firewall restored');
  const from = join(src.d.base, 'appvms', 'work', 'private.img');
  const to = join(dst.base, 'appvms', 'work-1', 'private.img');
  t.equal(statSync(to).size, statSync(from).size);
  t.ok(readAt(to, 64 << 20, src.data.length).equals(src.data), 'data identical');
  t.equal(readAt(to, 2 ** 31 - 3, 3).toString(), 'end');
  t.ok(statSync(to).blocks * 512 < 16 << 20, 'restored image stays sparse');
});

t.test('a restore that fails half-way removes the qubes it created', async (t) => {
  const src = await setup(t);
  profile(src, 'p', `include: [work]\ndestination_vm: dom0\ndestination_path: ${src.out}\npassphrase_text: pw\n`);
  t.ok((await call(src.d.socket, 'admin.backup.Execute', 'dom0', 'p')).ok);
  const archive = archives(src.out)[0]!;
  const pw = join(src.d.dir, 'pw');
  writeFileSync(pw, 'pw\n');
  // A template that does not exist here: refused before anything is created.
  const dst = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await dst.stop();
    cleanup(dst);
  });
  const missing = await restoreCli([archive, '--passphrase-file', pw, '--qubesd-socket', dst.socket]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /nothing restored: work: its template tpl is neither on this system nor in the restore/);
  // The volume cannot be imported (the daemon's image directory is not
  // writable as a file): the created qube is removed again.
  t.ok((await call(dst.socket, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).ok);
  const before = (await call(dst.socket, 'admin.vm.List', 'dom0')).content;
  const lying = join(src.d.dir, 'short-internal.sock');
  const failed = await restoreCli([archive, '--passphrase-file', pw, '--qubesd-socket', dst.socket, '--internal-socket', lying]);
  t.equal(failed.code, 1);
  t.match(failed.stderr, /cannot talk to qubesd/);
  t.equal((await call(dst.socket, 'admin.vm.List', 'dom0')).content, before, 'the half-restored qube was removed');
});

t.test('an archive written by another implementation (labels by id, a standalone qube) restores through the Admin API', async (t) => {
  const dir = tempDir(t);
  const image = Buffer.alloc(3 << 20);
  image.fill(5, 1 << 20, 2 << 20);
  const root = sampleData(100_000);
  const r = await runBackup(
    sourceOf([{ name: 'solo', klass: 'StandaloneVM', subdir: 'vm1/', files: { 'private.img': image, 'root.img': root } }]),
    await dom0PathDestination(dir),
    { passphrase: 'pw', scrypt: FAST },
  );
  const pw = join(dir, 'pw');
  writeFileSync(pw, 'pw\n');
  const dst = await startDaemon({ from: 'fresh', args: ['--log', 'none'] });
  t.teardown(async () => {
    await dst.stop();
    cleanup(dst);
  });
  const out = await restoreCli([r.location, '--passphrase-file', pw, '--qubesd-socket', dst.socket]);
  t.equal(out.code, 0, out.stderr);
  t.match(out.stdout, /^solo: private\.img root\.img$/m);
  t.match((await call(dst.socket, 'admin.vm.property.Get', 'solo', 'label')).content, /type=label red$/, 'label-1 read as red');
  const base = join(dst.base, 'appvms', 'solo');
  t.ok(readFileSync(join(base, 'private.img')).equals(image), 'private.img identical');
  t.ok(readFileSync(join(base, 'root.img')).equals(root), 'root.img identical');
});

// admin.backup.Info/Execute/Cancel driven through qubesd's real socket: a
// real bin/qubesd on a fresh store, profiles on disk, archives read back
// with our restore library.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { call, subscribeEvents } from '../helpers/qubesd.js';
import { encodeRequest } from '../../lib/protocol/request.js';
import { mountTmpfs } from '../storage/mounts.js';
import { FIREWALL, archives, dom0Dest, makeSlow, profile, readAt, script, setup } from './helpers.js';
import { listBackup, restoreToDirectory } from '../../qubesd/backup/restore.js';

t.test('Info, Execute, restore: what was backed up comes back byte for byte', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  profile(env, 'daily', dom0Dest(env, 'passphrase_text: s3cret\ncompression: True\n', '[$tag:important, $type:TemplateVM]') + 'exclude: [tpl]\n');

  const info = await call(s, 'admin.backup.Info', 'dom0', 'daily');
  t.ok(info.ok, info.message ?? '');
  t.match(info.content, /^-+\+-+\+-+\+\n +VM \| +type \| +size \|\n/);
  // as Qubes counts it: what the files take on disk (3 MiB of data and a block
  // at the end of the sparse 2 GiB image, firewall.xml, notes.txt), not their length
  t.match(info.content, /\n +work \| +VM \| +3\.0 MiB \|\n/);
  t.notMatch(info.content, / tpl \|/, 'excluded after include');
  t.match(info.content, /VMs not selected for backup:\n - backupvm\n - dom0\n - other\n - tpl\n - vault\n/);
  t.ok(info.content.endsWith(' - vault\n'), 'nothing after the list, as Qubes');
  profile(env, 'typos', dom0Dest(env, '', '[work, wrok, $tag:nosuch, $type:AppVM]') + 'exclude: [$type:TemplateVM]\n');
  t.match((await call(s, 'admin.backup.Info', 'dom0', 'typos')).content, /\nProfile entries matching no qube: wrok, \$tag:nosuch\n$/, 'typos pointed out');

  const events = await subscribeEvents(s);
  const r = await call(s, 'admin.backup.Execute', 'dom0', 'daily');
  t.ok(r.ok, r.message ?? '');
  t.equal(r.content, '');
  const files = archives(env.out);
  t.equal(files.length, 1, 'one new archive');
  t.match(files[0]!, /\/qubes-\d{4}-\d\d-\d\dT\d{6}$/);

  const progress = events.events.filter((e) => e.event === 'backup-progress');
  events.close();
  t.ok(progress.length >= 1, 'progress reported');
  t.ok(progress.every((e) => e.subject === '' && e.kwargs.backup_profile === 'daily'));
  const values = progress.map((e) => Number(e.kwargs.progress));
  t.same(
    values,
    [...values].sort((a, b) => a - b),
    'progress only grows',
  );
  t.equal(progress.at(-1)!.kwargs.progress, '100.0', 'ends at 100.0 as a Python float');
  t.equal(progress.filter((e) => e.kwargs.progress === '100.0').length, 1, 'once');

  const ts = await call(s, 'admin.vm.property.Get', 'work', 'backup_timestamp');
  t.match(ts.content, /^default=False type=int \d+$/, 'backup_timestamp set on the backed-up qube');
  t.match((await call(s, 'admin.vm.property.Get', 'other', 'backup_timestamp')).content, /^default=True/, 'not on others');

  const listing = await listBackup(files[0]!, { passphrase: 's3cret' });
  t.equal(listing.header.compressed, true);
  t.same(
    listing.qubes.map((q) => [q.name, q.klass, q.path]),
    [['work', 'AppVM', 'vm2/']],
  );
  t.equal(listing.qubes[0]!.size, 2 ** 31 + FIREWALL.length + 'my notes\n'.length, 'backup-size: the bytes stored');
  t.match(listing.qubesXml, /<feature name="backup-content"><\/feature>/, 'other qubes marked as not in the backup');

  const dest = join(env.d.dir, 'restored');
  await restoreToDirectory(files[0]!, dest, { passphrase: 's3cret' });
  const img = join(dest, 'work', 'private.img');
  t.equal(statSync(img).size, 2 ** 31);
  t.ok(readAt(img, 64 << 20, env.data.length).equals(env.data), 'data region identical');
  t.equal(readAt(img, 2 ** 31 - 3, 3).toString(), 'end', 'last bytes identical');
  t.ok(readAt(img, 0, 64 << 20).equals(Buffer.alloc(64 << 20)), 'hole restored as zeros');
  t.equal(readFileSync(join(dest, 'work', 'notes.txt'), 'utf8'), 'my notes\n');
  t.match(readFileSync(join(dest, 'work', 'firewall.xml'), 'utf8'), /<firewall/);
});

t.test('profile names, missing and broken profiles', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  for (const m of ['admin.backup.Info', 'admin.backup.Execute', 'admin.backup.Cancel']) {
    const r = await call(s, m, 'dom0', 'a/b');
    t.equal(r.type, 'ProtocolError', `${m}: slash`);
    t.equal(r.message, 'Backup profile ID must not contain forward slash character');
  }
  const missing = await call(s, 'admin.backup.Execute', 'dom0', 'nope');
  t.equal(missing.type, 'QubesBackupProfileNotFoundError');
  t.equal(missing.message, 'Backup profile does not exist: nope');
  t.notOk((await call(s, 'admin.backup.Info', 'work', 'nope')).ok, 'dom0 only (destination rule)');

  profile(env, 'typo', dom0Dest(env, 'passphrase_text: x\ncompresion: True\n'));
  const typo = await call(s, 'admin.backup.Info', 'dom0', 'typo');
  t.equal(typo.type, 'QubesException');
  // named by the profile, never by its path in dom0
  t.equal(typo.message, 'Invalid backup profile - typo.conf: compresion: unknown key');
  profile(env, 'types', 'include: work\ndestination_vm: dom0\ndestination_path: 5\npassphrase_text: x\n');
  t.match((await call(s, 'admin.backup.Execute', 'dom0', 'types')).message, /include: must be (array|null)|include: wrong type/);
  profile(env, 'yaml', 'include: [work\n');
  t.match((await call(s, 'admin.backup.Info', 'dom0', 'yaml')).message, /yaml\.conf: YAML syntax error/);
  profile(env, 'nodest', 'include: [work]\ndestination_vm: nosuchvm\ndestination_path: /tmp\npassphrase_text: x\n');
  t.equal((await call(s, 'admin.backup.Execute', 'dom0', 'nodest')).message, 'Invalid destination_vm specified in backup profile');
  // Qubes' own words for a key it requires, naming the first it misses
  profile(env, 'nopath', 'include: [work]\npassphrase_text: x\n');
  t.equal((await call(s, 'admin.backup.Info', 'dom0', 'nopath')).message, "Invalid backup profile - missing 'destination_vm'");
  profile(env, 'nopath2', 'include: [work]\ndestination_vm: dom0\n');
  t.equal((await call(s, 'admin.backup.Info', 'dom0', 'nopath2')).message, "Invalid backup profile - missing 'destination_path'");
  profile(env, 'nulldest', 'include: [work]\ndestination_vm: null\ndestination_path: /tmp\n');
  t.equal((await call(s, 'admin.backup.Info', 'dom0', 'nulldest')).message, 'Invalid destination_vm specified in backup profile');
  // as Qubes' domain lookup: a number is a qid (0: dom0), and a name may start with a dot
  profile(env, '.byqid', `include: [work]\ndestination_vm: 0\ndestination_path: ${env.out}\n`);
  const byQid = await call(s, 'admin.backup.Info', 'dom0', '.byqid');
  t.ok(byQid.ok, byQid.message ?? '');
  t.match(byQid.content, /\n +work \| +VM \| +3\.0 MiB \|\n/);
  profile(env, 'nopass', dom0Dest(env, 'passphrase_vm: nosuchvm\n'));
  t.equal((await call(s, 'admin.backup.Execute', 'dom0', 'nopass')).message, 'Invalid backup profile - invalid passphrase_vm');
  const cancel = await call(s, 'admin.backup.Cancel', 'dom0', 'typo');
  t.same([cancel.type, cancel.message], ['QubesException', 'Backup operation not running']);
  t.same(archives(env.out), [], 'nothing written by any of these');
});

t.test('compression off and a custom filter', async (t) => {
  const env = await setup(t);
  for (const [name, compression, filter] of [
    ['plain', 'False', null],
    ['bz', 'bzip2', 'bzip2'],
  ] as const) {
    const out = join(env.out, name);
    mkdirSync(out);
    profile(env, name, `include: [work]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: pw\ncompression: ${compression}\n`);
    const r = await call(env.d.socket, 'admin.backup.Execute', 'dom0', name);
    t.ok(r.ok, r.message ?? '');
    const file = archives(out)[0];
    const listing = await listBackup(file!, { passphrase: 'pw' });
    t.equal(listing.header.compressed, filter !== null, `${name}: compressed flag`);
    if (filter) t.equal(listing.header.compressionFilter, filter);
    const res = await restoreToDirectory(file!, join(out, 'r'), { passphrase: 'pw' });
    t.same(
      res.qubes.map((q) => q.name),
      ['work'],
    );
    t.ok(readAt(join(out, 'r', 'work', 'private.img'), 64 << 20, env.data.length).equals(env.data), `${name}: data identical`);
  }
});

t.test('passphrase from a qube, and an empty answer cancels', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  script(join(env.guests, 'vault', 'qubes.BackupPassphrase+fromvault'), 'echo "  from the vault  "');
  profile(env, 'fromvault', dom0Dest(env, 'passphrase_vm: vault\ncompression: False\n', '[work]'));
  const r = await call(s, 'admin.backup.Execute', 'dom0', 'fromvault');
  t.ok(r.ok, r.message ?? '');
  const file = archives(env.out)[0];
  t.equal((await listBackup(file!, { passphrase: 'from the vault' })).qubes.length, 1, 'surrounding blanks removed');

  script(join(env.dom0rpc, 'qubes.BackupPassphrase'), 'test "$1" = fromdom0 && echo dom0-secret');
  profile(env, 'fromdom0', dom0Dest(env, 'passphrase_vm: dom0\ncompression: False\n', '[work]'));
  const before = archives(env.out).length;
  t.ok((await call(s, 'admin.backup.Execute', 'dom0', 'fromdom0')).ok, 'dom0 service, argument passed');
  const added = archives(env.out).filter((f) => f !== file);
  t.equal(added.length, before, 'one more archive');
  t.equal((await listBackup(added[0]!, { passphrase: 'dom0-secret' })).qubes[0]!.name, 'work');

  script(join(env.guests, 'vault', 'qubes.BackupPassphrase+empty'), 'echo');
  profile(env, 'empty', dom0Dest(env, 'passphrase_vm: vault\n', '[work]'));
  const empty = await call(s, 'admin.backup.Execute', 'dom0', 'empty');
  t.equal(empty.type, 'BackupCancelledError');
  script(join(env.guests, 'vault', 'qubes.BackupPassphrase+fails'), 'exit 3');
  profile(env, 'fails', dom0Dest(env, 'passphrase_vm: vault\n', '[work]'));
  t.match((await call(s, 'admin.backup.Execute', 'dom0', 'fails')).message, /Failed to retrieve passphrase from 'vault' VM/);
  profile(env, 'noagent', dom0Dest(env, 'passphrase_vm: other\n', '[work]'));
  t.match((await call(s, 'admin.backup.Execute', 'dom0', 'noagent')).message, /Failed to retrieve passphrase from 'other' VM: cannot call services in other/);
  t.equal(archives(env.out).length, 2, 'no archive from the failed runs');
});

t.test('destination in a qube through qubes.Backup, and destinations that fail', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  const target = join(env.d.dir, 'in-backupvm');
  script(join(env.guests, 'backupvm', 'qubes.Backup'), 'read -r path; cat > "$path"');
  profile(env, 'tovm', `include: [work]\ndestination_vm: backupvm\ndestination_path: ${target}\npassphrase_text: pw\n`);
  const r = await call(s, 'admin.backup.Execute', 'dom0', 'tovm');
  t.ok(r.ok, r.message ?? '');
  t.equal((await listBackup(target, { passphrase: 'pw' })).qubes[0]!.name, 'work', 'the qube received the whole archive');

  script(join(env.guests, 'backupvm', 'qubes.Backup'), 'read -r path; head -c 100000 > "$path"; exit 1');
  const fail = await call(s, 'admin.backup.Execute', 'dom0', 'tovm');
  t.equal(fail.type, 'QubesException');
  t.match(fail.message, /^Backup failed: Writing backup to VM backupvm failed \(exit status 1\)$/);

  profile(env, 'full', 'include: [work]\ndestination_vm: dom0\ndestination_path: "|cat > /dev/full"\npassphrase_text: pw\n');
  const full = await call(s, 'admin.backup.Execute', 'dom0', 'full');
  t.equal(full.type, 'QubesException', 'a disk that is full fails the backup');
  t.match(full.message, /backup command failed/);

  const mnt = mountTmpfs(env.d.dir, 'small', '1M');
  if (typeof mnt === 'string') t.comment(`real disk-full case skipped: ${mnt}`);
  else {
    t.teardown(mnt.unmount);
    writeFileSync(join(mnt.dir, 'older-backup'), 'keep');
    profile(env, 'tmpfs', `include: [work]\ndestination_vm: dom0\ndestination_path: ${mnt.dir}\npassphrase_text: pw\ncompression: False\n`);
    const r = await call(s, 'admin.backup.Execute', 'dom0', 'tmpfs');
    t.equal(r.type, 'QubesException', `a full disk (${mnt.kind}) fails the backup`);
    t.match(r.message, /ENOSPC|no space left/i);
    t.same(readdirSync(mnt.dir), ['older-backup'], 'no partial archive, no temporary file; other files intact');
    t.equal(readFileSync(join(mnt.dir, 'older-backup'), 'utf8'), 'keep');
  }

  const gone = join(env.d.dir, 'no', 'such', 'dir', 'file');
  profile(env, 'nodir', `include: [work]\ndestination_vm: dom0\ndestination_path: ${gone}\npassphrase_text: pw\n`);
  t.match((await call(s, 'admin.backup.Execute', 'dom0', 'nodir')).message, /does not exist/);
  t.notOk(existsSync(gone));
});

t.test('cancel mid-way leaves no archive; a second run of a running profile is refused', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  makeSlow(env);
  profile(env, 'slow', dom0Dest(env, 'passphrase_text: pw\ncompression: xz\n', '[work]'));
  const events = await subscribeEvents(s);
  const running = call(s, 'admin.backup.Execute', 'dom0', 'slow');
  await events.waitFor((e) => e.event === 'backup-progress', 30000);
  const again = await call(s, 'admin.backup.Execute', 'dom0', 'slow');
  t.equal(again.type, 'BackupAlreadyRunningError');
  const c = await call(s, 'admin.backup.Cancel', 'dom0', 'slow');
  t.ok(c.ok, c.message ?? '');
  const r = await running;
  events.close();
  t.equal(r.type, 'BackupCancelledError');
  t.same(readdirSync(env.out), [], 'no archive and no temporary file left');
  t.match((await call(s, 'admin.vm.property.Get', 'work', 'backup_timestamp')).content, /^default=True/, 'not recorded as backed up');
  t.equal((await call(s, 'admin.backup.Cancel', 'dom0', 'slow')).message, 'Backup operation not running');
});

t.test('Info shows a management qube only the qubes it may see', async (t) => {
  const env = await setup(t);
  writeFileSync(join(env.d.dir, 'policy.d', '30-mgmt.policy'), 'admin.vm.List * mgmt work allow\nadmin.vm.List * mgmt other allow\n');
  const created = await call(env.d.socket, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=mgmt label=black');
  t.ok(created.ok);
  profile(env, 'all', `include: [work, tpl, vault]\ndestination_vm: backupvm\ndestination_path: /x\npassphrase_text: pw\n`);
  const full = await call(env.d.socket, 'admin.backup.Info', 'dom0', 'all');
  t.match(full.content, / tpl \|/);
  let seen = await call(env.d.socket, 'admin.backup.Info', 'dom0', 'all', '', 'mgmt');
  for (let i = 0; i < 20 && !/ work \|/.test(seen.content); i++) {
    await new Promise((r) => setTimeout(r, 100)); // the policy is picked up on change
    seen = await call(env.d.socket, 'admin.backup.Info', 'dom0', 'all', '', 'mgmt');
  }
  t.ok(seen.ok, seen.message ?? '');
  t.match(seen.content, / work \|/);
  t.notMatch(seen.content, /tpl|vault|backupvm|dom0/, 'hidden qubes appear nowhere');
  t.match(seen.content, /VMs not selected for backup:\n - other\n$/, 'no destination line, no profile remarks');
  t.match(seen.content, /Total size: \| +3\.0 MiB \|/, 'total of the visible rows only');
});

t.test('a backup whose caller goes away is cancelled; stopping qubesd mid-backup leaves no archive', async (t) => {
  const env = await setup(t);
  const s = env.d.socket;
  makeSlow(env);
  profile(env, 'slow', dom0Dest(env, 'passphrase_text: pw\ncompression: xz\n', '[work]'));
  const events = await subscribeEvents(s);
  const sock = net.connect(s);
  sock.on('connect', () => sock.end(encodeRequest('admin.backup.Execute', 'slow', 'dom0', 'dom0')));
  sock.on('error', () => undefined);
  await events.waitFor((e) => e.event === 'backup-progress', 30000);
  sock.destroy();
  let state = '';
  for (let i = 0; i < 100 && state !== 'Backup operation not running'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    state = (await call(s, 'admin.backup.Cancel', 'dom0', 'slow')).message ?? 'still running';
  }
  t.equal(state, 'Backup operation not running', 'the run ended when its caller left');
  t.same(readdirSync(env.out), [], 'and left nothing behind');

  events.events.length = 0;
  const running = call(s, 'admin.backup.Execute', 'dom0', 'slow');
  await events.waitFor((e) => e.event === 'backup-progress', 30000);
  events.close();
  // a late event of the first run could pass for this one's: its temporary
  // file in the destination shows this run really started
  for (let i = 0; i < 300 && readdirSync(env.out).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.not(readdirSync(env.out).length, 0, 'the second run is writing');
  t.equal(await env.d.stop(), 0, 'qubesd stops cleanly during a backup');
  const r = await running;
  t.not(r.ok, true, 'the backup is not reported as done');
  t.same(readdirSync(env.out), [], 'no archive and no temporary file');
});

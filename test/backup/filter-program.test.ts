// A backup header names the decompression program a restore runs. The
// header is authenticated, but whoever made the archive chose it: a restore
// runs only a bare program name found on PATH, from Qubes' list or from
// names its user added, never a path taken from the archive.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { readBackup } from '../../qubesd/backup/reader.js';
import { writeBackup } from '../../qubesd/backup/writer.js';
import { ByteSource, paddingFor, tarEntries, tarFileHeader, TAR_END } from '../../qubesd/backup/tar.js';
import { headerPassphrase, HEADER_HMAC_NAME, HEADER_NAME } from '../../qubesd/backup/format.js';
import { encryptBuffer } from '../../qubesd/backup/scrypt-file.js';
import { decompressor, filterArgv } from '../../qubesd/backup/compress.js';
import { ROOT } from '../helpers/qubesd.js';
import { FAST, have, memorySink, sampleData, sourceOf, tempDir, type SampleQube } from './util.js';

const PASS = 'pass phrase';
const QUBES: SampleQube[] = [{ name: 'work', klass: 'AppVM', subdir: 'vm1/', files: { 'private.img': sampleData(20_000) } }];

/** A gzip-compressed archive whose (re-authenticated) header names `filter`. */
async function archiveNaming(filter: string): Promise<Buffer> {
  const sink = memorySink();
  await writeBackup(sourceOf(QUBES), sink, { passphrase: PASS, scrypt: FAST, compression: true });
  const out: Buffer[] = [];
  let headerText: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  for await (const e of tarEntries(ByteSource.from(Readable.from([sink.data()])))) {
    const parts: Buffer[] = [];
    for await (const p of e.body()) parts.push(p);
    let body: Buffer<ArrayBufferLike> = Buffer.concat(parts);
    if (e.name === HEADER_NAME) {
      body = Buffer.from(body.toString('ascii').replace(/^compression-filter=.*$/m, `compression-filter=${filter}`), 'ascii');
      headerText = body;
    } else if (e.name === HEADER_HMAC_NAME) {
      body = await encryptBuffer(headerPassphrase(Buffer.from(PASS)), headerText, FAST);
    }
    out.push(tarFileHeader({ name: e.name, size: body.length }), body, Buffer.alloc(paddingFor(body.length)));
  }
  out.push(TAR_END);
  return Buffer.concat(out);
}

/** A program that leaves a mark when run, then behaves as gzip. */
function markingProgram(dir: string, name: string): { path: string; ran(): boolean } {
  const path = join(dir, name);
  const mark = join(dir, `${name}.ran`);
  writeFileSync(path, `#!/bin/sh\ntouch '${mark}'\nexec gzip "$@"\n`);
  chmodSync(path, 0o755);
  return { path, ran: () => existsSync(mark) };
}

function restoreCli(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const env = { ...process.env, ...o.env };
  delete env.NODE_OPTIONS;
  return spawnSync(process.execPath, [join(ROOT, 'bin', 'qubes-backup-restore'), ...args], {
    input: PASS + '\n',
    encoding: 'utf8',
    ...(o.cwd ? { cwd: o.cwd } : {}),
    env,
  });
}

t.test('the filter functions refuse anything but a bare program name on PATH', async (t) => {
  const dir = tempDir(t);
  const evil = markingProgram(dir, 'evil');
  t.throws(() => filterArgv(evil.path), /invalid compression filter ".*\/evil": a program name is expected, not a path or a command/);
  t.throws(() => filterArgv('./evil'), /invalid compression filter "\.\/evil"/);
  t.throws(() => filterArgv('gzip -c'), /invalid compression filter "gzip -c"/);
  t.throws(() => filterArgv('-d'), /invalid compression filter "-d"/);
  t.throws(() => decompressor(evil.path), /a program name is expected/);
  t.throws(() => filterArgv('no-such-program-xyz'), /compression filter no-such-program-xyz is not a program found on PATH/);
  t.equal(evil.ran(), false, 'the program never ran');
});

t.test('an archive naming a path: refused, the program never runs', { skip: have('gzip') ? false : 'gzip not installed' }, async (t) => {
  const dir = tempDir(t);
  const evil = markingProgram(dir, 'evil');
  const archive = join(dir, 'a.bin');
  writeFileSync(archive, await archiveNaming(evil.path));
  // even when a caller passes that path as an allowed filter
  await t.rejects(
    readBackup(
      Readable.from([await archiveNaming(evil.path)]),
      { passphrase: PASS, allowedFilters: [evil.path] },
      { select: () => ['vm1/'], onFile: async () => undefined },
    ),
    { code: 'unsupported', message: `compression filter ${JSON.stringify(evil.path)} is not allowed` },
  );
  const r = restoreCli([archive, '--list']);
  t.equal(r.status, 1, r.stderr);
  t.equal(r.stderr, `qubes-backup-restore: unsupported: compression filter ${JSON.stringify(evil.path)} is not allowed\n`);
  const opt = restoreCli([archive, '--list', '--compression-filter', evil.path]);
  t.equal(opt.status, 2);
  t.equal(opt.stderr, `qubes-backup-restore: --compression-filter takes a program name found on PATH, not ${JSON.stringify(evil.path)}\n`);
  writeFileSync(join(dir, 'b.bin'), await archiveNaming('./evil'));
  const rel = restoreCli([join(dir, 'b.bin'), '--verify-only', '--compression-filter', './evil'], { cwd: dir });
  t.equal(rel.status, 2);
  const rel2 = restoreCli([join(dir, 'b.bin'), '--verify-only'], { cwd: dir });
  t.equal(rel2.stderr, 'qubes-backup-restore: unsupported: compression filter "./evil" is not allowed\n');
  t.equal(evil.ran(), false, 'the program named by the archive never ran');
});

t.test("a bare name outside the list needs the user's consent, then runs from PATH", { skip: have('gzip') ? false : 'gzip not installed' }, async (t) => {
  const dir = tempDir(t);
  const prog = markingProgram(dir, 'mygz');
  const archive = join(dir, 'c.bin');
  writeFileSync(archive, await archiveNaming('mygz'));
  const env = { PATH: `${dir}:${process.env.PATH}` };
  const refused = restoreCli([archive, '--verify-only'], { env });
  t.equal(refused.stderr, 'qubes-backup-restore: unsupported: compression filter "mygz" is not allowed\n');
  t.equal(prog.ran(), false);
  // a relative PATH entry (the current directory) is never searched
  const rel = restoreCli([archive, '--verify-only', '--compression-filter', 'mygz'], { cwd: dir, env: { PATH: `.:${process.env.PATH}` } });
  t.equal(rel.status, 1);
  t.match(rel.stderr, /compression filter mygz is not a program found on PATH/);
  t.equal(prog.ran(), false);
  const ok = restoreCli([archive, '--verify-only', '--compression-filter', 'mygz'], { env });
  t.equal(ok.stderr, '');
  t.equal(ok.stdout, 'verified 1 files\n');
  t.equal(prog.ran(), true, 'the configured program ran');
});

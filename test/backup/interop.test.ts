// Interoperability with real tools: GNU tar, the scrypt tool and gzip, used
// the way Qubes' documentation and Qubes' own backup code use them, and
// (when QUBES_CORE_ADMIN_CLIENT names a checkout of qubes-core-admin-client)
// the real client's restore code.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, createReadStream, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dom0PathDestination, runBackup } from '../../qubesd/backup/destination.js';
import { readBackup } from '../../qubesd/backup/reader.js';
import { listBackup, restoreToDirectory } from '../../qubesd/backup/restore.js';
import { FAST, have, qubesXmlFor, sampleData, sourceOf, tempDir, type SampleQube } from './util.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PASS = 'interop pass';
/** Runs the bin/ shim as its own program: tap's process tracker adds its
 * loader hooks to NODE_OPTIONS of children, `env -u` removes them again. */
function runShim(args: string[], input?: string) {
  return spawnSync('/usr/bin/env', ['-u', 'NODE_OPTIONS', join(ROOT, 'bin', 'qubes-backup-restore'), ...args], input === undefined ? {} : { input });
}
const noScrypt = have('scrypt') ? false : 'scrypt tool not installed (apt-get install scrypt)';

const QUBES: SampleQube[] = [
  {
    name: 'work',
    klass: 'AppVM',
    subdir: 'vm1/',
    files: { 'private.img': sampleData(2_500_000), 'firewall.xml': Buffer.from('<firewall version="2"><rules/></firewall>\n') },
  },
  { name: 'empty', klass: 'DispVM', subdir: 'vm2/', files: {} },
];

function sh(t: Test, script: string, env: Record<string, string> = {}): string {
  const r = spawnSync('/bin/bash', ['-euo', 'pipefail', '-c', script], { env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  t.equal(r.status, 0, `shell: ${String(r.stderr).trim().slice(0, 500)}`);
  return String(r.stdout);
}

for (const compression of [true, false, 'bzip2'] as const) {
  t.test(
    `our backup (${compression === true ? 'gzip' : compression || 'uncompressed'}) restores by the documented emergency procedure`,
    { skip: noScrypt },
    async (t) => {
      const dir = tempDir(t);
      const { location } = await runBackup(sourceOf(QUBES), await dom0PathDestination(dir), {
        passphrase: PASS,
        compression,
        scrypt: FAST,
        chunkSize: 1 << 20,
      });
      const decompress = compression === true ? 'gzip -d' : compression === 'bzip2' ? 'bzip2 -d' : 'cat';
      sh(
        t,
        `
      mkdir -p "$D/x" && cd "$D/x"
      tar -i -xf "$A" backup-header backup-header.hmac qubes.xml.000.enc
      echo "backup-header!$P" | scrypt dec -P backup-header.hmac backup-header.verified
      cmp backup-header backup-header.verified
      id=$(sed -n 's/^backup-id=//p' backup-header)
      echo "$id!qubes.xml.000!$P" | scrypt dec -P qubes.xml.000.enc | ${decompress} | tar -x
      tar -i -xf "$A" vm1/ vm2/
      for f in private.img firewall.xml; do
        ls vm1/$f.*.enc | sort -V | while read -r enc; do echo "$id!\${enc%.enc}!$P" | scrypt dec -P "$enc"; done | ${decompress} | tar -x
      done`,
        { D: dir, A: location, P: PASS },
      );
      t.ok(readFileSync(join(dir, 'x', 'qubes.xml')).equals(sourceOf(QUBES).qubesXml), 'qubes.xml identical');
      for (const [name, data] of Object.entries(QUBES[0]!.files)) t.ok(readFileSync(join(dir, 'x', 'vm1', name)).equals(data), `vm1/${name} identical`);
    },
  );
}

/** Builds an archive with GNU tar, split and the scrypt tool following the
 * steps of Qubes' backup code: inner tar (sparse, pax) per file, optional
 * compression of the whole inner stream, cut into chunks, each chunk
 * `scrypt enc` with "<backup-id>!<name>!<passphrase>", and the outer layer
 * as one `tar -cO --posix` archive per file, concatenated. */
function buildReferenceArchive(t: Test, dir: string, compressed: boolean, chunk: number): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'vm1'), { recursive: true });
  // A sparse volume: holes, data at odd offsets, a hole at the end.
  const fd = openSync(join(src, 'vm1', 'private.img'), 'w');
  ftruncateSync(fd, 4 * 1024 * 1024);
  writeSync(fd, sampleData(300_000), 0, 300_000, 12345);
  writeSync(fd, Buffer.from('end of data'), 0, 11, 3 * 1024 * 1024);
  closeSync(fd);
  writeFileSync(join(src, 'vm1', 'firewall.xml'), '<firewall version="2"><rules/></firewall>\n');
  writeFileSync(join(src, 'qubes.xml'), qubesXmlFor([{ name: 'work', klass: 'AppVM', path: 'vm1/', size: 4 * 1024 * 1024 }]));
  // dom0's home is stored as a directory tree.
  mkdirSync(join(src, 'dom0-home', 'user', '.config'), { recursive: true });
  writeFileSync(join(src, 'dom0-home', 'user', '.config', 'settings'), 'x=1\n');
  writeFileSync(
    join(dir, 'build.sh'),
    `
    cd "$SRC"; work="$DIR/work"; mkdir -p "$work/vm1" "$work/dom0-home"; out="$DIR/archive"; : > "$out"
    id=20240102T030405-4242
    printf 'version=4\\nencrypted=True\\ncompressed=%s\\ncompression-filter=gzip\\nhmac-algorithm=scrypt\\nbackup-id=%s\\n' "$COMPRESSED" "$id" > "$work/backup-header"
    echo "backup-header!$P" | scrypt enc -P --logN 10 -r 8 -p 1 "$work/backup-header" "$work/backup-header.hmac"
    tar -cO --posix -C "$work" backup-header backup-header.hmac >> "$out"
    store() { # $1: inner tar command producing the stream, $2: stored name
      local compress=cat; [ "$COMPRESSED" = True ] && compress="gzip"
      eval "$1" | $compress | (cd "$work" && split -a 3 -d -b "$CHUNK" - "$2.")
      # Qubes' chunker emits an empty last chunk when the stream ends exactly on a chunk boundary.
      last=$(ls "$work/$2".??? | sort | tail -1)
      if [ "$(stat -c %s "$last")" = "$CHUNK" ]; then n=$((10#\${last##*.} + 1)); : > "$work/$2.$(printf %03d $n)"; fi
      for c in $(cd "$work" && ls "$2".??? | sort); do
        echo "$id!$c!$P" | scrypt enc -P --logN 10 -r 8 -p 1 "$work/$c" "$work/$c.enc"; rm "$work/$c"
        tar -cO --posix -C "$work" "$c.enc" >> "$out"
      done
    }
    store "tar -c qubes.xml" qubes.xml
    store "tar -c --posix --sparse --sparse-version=1.0 vm1/private.img" vm1/private.img
    store "tar -c --sparse vm1/firewall.xml" vm1/firewall.xml
    store "tar -c dom0-home/user" dom0-home/user
  `,
  );
  sh(t, 'bash -euo pipefail "$DIR/build.sh"', { DIR: dir, SRC: src, P: PASS, COMPRESSED: compressed ? 'True' : 'False', CHUNK: String(chunk) });
  return join(dir, 'archive');
}

for (const [compressed, chunk] of [
  [true, 1 << 20],
  [false, 51200],
] as const) {
  t.test(
    `an archive built by real tools the way Qubes does (${compressed ? 'gzip' : 'uncompressed, with an empty last chunk'}) restores with ours`,
    { skip: noScrypt },
    async (t) => {
      const dir = tempDir(t);
      const archive = buildReferenceArchive(t, dir, compressed, chunk);
      const listing = await listBackup(archive, { passphrase: PASS });
      t.same(
        listing.qubes.map((q) => q.name),
        ['work'],
      );
      t.equal(listing.header.backupId, '20240102T030405-4242');
      const out = join(dir, 'out');
      await restoreToDirectory(archive, out, { passphrase: PASS });
      t.ok(readFileSync(join(out, 'work', 'private.img')).equals(readFileSync(join(dir, 'src', 'vm1', 'private.img'))), 'sparse volume identical');
      t.ok(readFileSync(join(out, 'work', 'firewall.xml')).equals(readFileSync(join(dir, 'src', 'vm1', 'firewall.xml'))), 'firewall.xml identical');
      // A stored directory tree (dom0's home) is read and authenticated but not handed out.
      const delivered: string[] = [];
      await readBackup(
        createReadStream(archive),
        { passphrase: PASS },
        {
          select: () => ['vm1/', 'dom0-home/'],
          async onFile(f) {
            delivered.push(f.dir + f.name);
            f.stream.resume();
          },
        },
      );
      t.same(delivered, ['vm1/private.img', 'vm1/firewall.xml']);
      // And through the command line shim.
      writeFileSync(join(dir, 'pass'), PASS + '\n');
      const cli = runShim([archive, '--passphrase-file', join(dir, 'pass'), '--list']);
      t.equal(cli.status, 0, String(cli.stderr));
      t.match(String(cli.stdout), /^work\tAppVM\tvm1\/\t4\.0 MiB$/m);
      const bad = runShim([archive, '--dest-dir', join(dir, 'out2')], 'wrong\n');
      t.equal(bad.status, 1);
      t.match(String(bad.stderr), /bad-passphrase/);
    },
  );
}

const client = process.env.QUBES_CORE_ADMIN_CLIENT;
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const clientSkip = !client
  ? "set QUBES_CORE_ADMIN_CLIENT to a qubes-core-admin-client checkout to run the real client's restore code"
  : noScrypt || (spawnSync(python, ['-c', 'import lxml'], { stdio: 'ignore' }).status !== 0 ? 'python3-lxml not installed (needed by qubesadmin)' : false);

for (const compression of [true, false, 'bzip2'] as const) {
  t.test(`the real Qubes client restores our backup (${compression === true ? 'gzip' : compression || 'uncompressed'})`, { skip: clientSkip }, async (t) => {
    const dir = tempDir(t);
    const { location } = await runBackup(sourceOf(QUBES), await dom0PathDestination(dir), { passphrase: PASS, compression, scrypt: FAST, chunkSize: 1 << 20 });
    const out = join(dir, 'out');
    const files = ['vm1/private.img', 'vm1/firewall.xml', 'vm2/empty'];
    const r = spawnSync(python, [join(ROOT, 'test', 'backup', 'qubes-client-restore.py'), location, PASS, out], {
      env: { ...process.env, FILES: JSON.stringify(files) },
      timeout: 120_000,
    });
    t.equal(r.status, 0, `client restore: ${String(r.stderr).slice(-800)}`);
    t.same(JSON.parse(String(r.stdout)), { version: 4, compressed: compression !== false, qubes: { work: 'vm1/', empty: 'vm2/' } });
    for (const [name, data] of Object.entries(QUBES[0]!.files)) t.ok(readFileSync(join(out, 'vm1', name)).equals(data), `vm1/${name} identical`);
    t.equal(readFileSync(join(out, 'vm2', 'empty')).length, 0);
    // A wrong passphrase is refused by the client as well.
    const bad = spawnSync(python, [join(ROOT, 'test', 'backup', 'qubes-client-restore.py'), location, 'wrong', join(dir, 'bad')], { timeout: 60_000 });
    t.not(bad.status, 0);
    t.match(String(bad.stderr), /hmac verification failed|Is the password correct/);
  });
}

const admin = process.env.QUBES_CORE_ADMIN;
t.test(
  "the inner tar of Qubes' own volume writer (qubes/tarwriter.py) reads back identically",
  {
    skip: admin ? false : "set QUBES_CORE_ADMIN to a qubes-core-admin checkout to run Qubes' tar writer",
  },
  async (t) => {
    const dir = tempDir(t);
    const img = join(dir, 'volume');
    const fd = openSync(img, 'w');
    ftruncateSync(fd, 3 * 1024 * 1024);
    writeSync(fd, sampleData(5000), 0, 5000, 700_001);
    writeSync(fd, Buffer.from('tail'), 0, 4, 3 * 1024 * 1024 - 4);
    closeSync(fd);
    const r = spawnSync(python, [join(admin!, 'qubes', 'tarwriter.py'), '--override-name=vm7/private.img', img, join(dir, 'inner.tar')]);
    t.equal(r.status, 0, String(r.stderr));
    const { ByteSource, tarEntries } = await import('../../qubesd/backup/tar.js');
    const seen: string[] = [];
    for await (const e of tarEntries(ByteSource.from(createReadStream(join(dir, 'inner.tar'))))) {
      const parts: Buffer[] = [];
      for await (const p of e.body()) parts.push(Buffer.from(p));
      seen.push(e.name);
      t.ok(Buffer.concat(parts).equals(readFileSync(img)), 'sparse volume identical');
    }
    t.same(seen, ['vm7/private.img']);
  },
);

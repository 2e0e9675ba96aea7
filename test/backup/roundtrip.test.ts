import t, { type Test } from 'tap';
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { commandDestination, dom0PathDestination, runBackup, serviceDestination, type Destination } from '../../qubesd/backup/destination.js';
import { BackupError, readBackup } from '../../qubesd/backup/reader.js';
import { listBackup, restoreToDirectory, streamBackup, verifyBackup } from '../../qubesd/backup/restore.js';
import { BackupAbortedError, writeBackup, type WriteOptions } from '../../qubesd/backup/writer.js';
import { ByteSource, tarEntries } from '../../qubesd/backup/tar.js';
import { FAST, enospc, have, memorySink, sampleData, sourceOf, tempDir, type SampleQube } from './util.js';

const CHUNK = 64 * 1024;
const base: WriteOptions = { passphrase: 'pass phrase', scrypt: FAST, chunkSize: CHUNK };

const QUBES: SampleQube[] = [
  { name: 'work', klass: 'AppVM', subdir: 'vm1/', files: { 'private.img': sampleData(300_000), 'firewall.xml': Buffer.from('<firewall version="2"/>\n') } },
  { name: 'fedora', klass: 'TemplateVM', subdir: 'vm2/', files: { 'root.img': sampleData(CHUNK * 2 - 1536), 'private.img': Buffer.alloc(0) } },
  { name: 'disp', klass: 'DispVM', subdir: 'vm3/', files: {} },
];

async function archiveEntries(data: Buffer): Promise<Array<{ name: string; size: number }>> {
  const out = [];
  for await (const e of tarEntries(ByteSource.from(Readable.from([data])))) out.push({ name: e.name, size: e.size });
  return out;
}

async function backupToFile(t: Test, opts: Partial<WriteOptions> = {}, qubes = QUBES): Promise<string> {
  const dir = tempDir(t);
  const r = await runBackup(sourceOf(qubes), await dom0PathDestination(dir), { ...base, ...opts });
  return r.location;
}

async function restoreAll(archive: string, passphrase = 'pass phrase') {
  const got = new Map<string, Buffer>();
  const res = await readBackup(
    Readable.from([readFileSync(archive)]),
    { passphrase },
    {
      select: (_xml) => QUBES.map((q) => q.subdir),
      async onFile(f) {
        const parts: Buffer[] = [];
        for await (const p of f.stream) parts.push(p as Buffer);
        got.set(f.dir + f.name, Buffer.concat(parts));
      },
    },
  );
  return { res, got };
}

function expectIdentical(t: Test, got: Map<string, Buffer>, qubes = QUBES): void {
  for (const q of qubes)
    for (const [name, data] of Object.entries(q.files)) {
      t.ok(got.get(q.subdir + name)?.equals(data), `${q.subdir}${name} identical`);
    }
}

for (const [label, compression] of [
  ['uncompressed', false],
  ['gzip', true],
  ['bzip2 command', 'bzip2'],
  ['xz command', 'xz'],
] as const) {
  t.test(`round trip, ${label}`, { skip: typeof compression === 'string' && !have(compression) ? `${compression} not installed` : false }, async (t) => {
    const sink = memorySink();
    const progress: number[] = [];
    const summary = await writeBackup(sourceOf(QUBES), sink, { ...base, compression, onProgress: (p) => progress.push(p.bytesDone / p.bytesTotal) });
    const data = sink.data();
    t.equal(summary.archiveBytes, data.length, 'summary counts every byte');
    t.equal(progress.at(-1), 1, 'progress ends at 100%');
    const names = (await archiveEntries(data)).map((e) => e.name);
    t.same(names.slice(0, 3), ['backup-header', 'backup-header.hmac', 'qubes.xml.000.enc']);
    t.ok(names.includes('vm3/empty.000.enc'), 'a qube without files still has its directory');
    if (!compression) t.ok(names.includes('vm1/private.img.004.enc'), 'large file split into chunks');
    const header = readBackupHeader(data);
    t.match(
      header,
      new RegExp(
        `^version=4\nencrypted=True\ncompressed=${compression ? 'True' : 'False'}\ncompression-filter=${typeof compression === 'string' ? compression : 'gzip'}\nhmac-algorithm=scrypt\nbackup-id=${summary.backupId}\n$`,
      ),
    );
    const got = new Map<string, Buffer>();
    const res = await readBackup(
      Readable.from([data]),
      { passphrase: 'pass phrase' },
      {
        select: () => ['vm1/', 'vm2/', 'vm3/'],
        async onFile(f) {
          const parts: Buffer[] = [];
          for await (const p of f.stream) parts.push(p as Buffer);
          got.set(f.dir + f.name, Buffer.concat(parts));
        },
      },
    );
    t.equal(res.qubesXml, sourceOf(QUBES).qubesXml.toString(), 'qubes.xml identical');
    expectIdentical(t, got);
    t.equal(got.get('vm3/empty')?.length, 0);
  });
}

function readBackupHeader(data: Buffer): string {
  const size = parseInt(data.subarray(124, 136).toString('ascii'), 8);
  return data.subarray(512, 512 + size).toString('ascii');
}

t.test('selective restore skips unselected qubes unread', async (t) => {
  const sink = memorySink();
  await writeBackup(sourceOf(QUBES), sink, base);
  const data = Buffer.from(sink.data());
  // Damage vm2's data: a restore of vm1 alone must not notice.
  const entries = await archiveEntries(data);
  let off = 0;
  for (const e of entries) {
    off += 512;
    if (e.name === 'vm2/root.img.000.enc') break;
    off += e.size + ((512 - (e.size % 512)) % 512);
  }
  data[off + 200]! ^= 0xff;
  const files: string[] = [];
  await readBackup(
    Readable.from([data]),
    { passphrase: 'pass phrase' },
    {
      select: () => ['vm1/'],
      async onFile(f) {
        files.push(f.dir + f.name);
        f.stream.resume();
      },
    },
  );
  t.same(files, ['vm1/private.img', 'vm1/firewall.xml']);
  await t.rejects(readBackup(Readable.from([data]), { passphrase: 'pass phrase' }, { select: () => ['vm2/'] }), { code: 'tampered' });
});

t.test('directory destination: one new archive, list, verify, restore', async (t) => {
  const archive = await backupToFile(t, { compression: true });
  const dir = join(archive, '..');
  t.same(readdirSync(dir), [archive.split('/').pop()], 'exactly one file, no temporary left');
  t.match(archive.split('/').pop(), /^qubes-\d{4}-\d\d-\d\dT\d{6}$/);
  const listing = await listBackup(archive, { passphrase: 'pass phrase' });
  t.same(
    listing.qubes.map((q) => [q.name, q.klass, q.path]),
    [
      ['work', 'AppVM', 'vm1/'],
      ['fedora', 'TemplateVM', 'vm2/'],
      ['disp', 'DispVM', 'vm3/'],
    ],
  );
  const v = await verifyBackup(archive, { passphrase: 'pass phrase' });
  t.equal(v.files.length, 5);
  const out = tempDir(t);
  const fractions: number[] = [];
  const r = await restoreToDirectory(archive, out, { passphrase: 'pass phrase', qubes: ['work', 'disp'], onProgress: (f) => fractions.push(f) });
  t.same(
    r.qubes.map((q) => q.name),
    ['work', 'disp'],
  );
  t.ok(readFileSync(join(out, 'work', 'private.img')).equals(QUBES[0]!.files['private.img']!));
  t.ok(readFileSync(join(out, 'work', 'firewall.xml')).equals(QUBES[0]!.files['firewall.xml']!));
  t.same(readdirSync(out).sort(), ['disp', 'qubes.xml', 'work']);
  t.ok(fractions.at(-1)! > 0.99, 'progress reaches the end');
  await t.rejects(restoreToDirectory(archive, out, { passphrase: 'pass phrase', qubes: ['work'] }), /already exists/, 'never overwrites');
  await t.rejects(restoreToDirectory(archive, out, { passphrase: 'pass phrase', qubes: ['nosuch'] }), /not in this backup/);
  const seen: string[] = [];
  await streamBackup(
    archive,
    { passphrase: 'pass phrase', qubes: ['fedora'] },
    (qubes) => {
      seen.push(...qubes.map((q) => q.name));
    },
    async (q, name, size, stream) => {
      let n = 0;
      for await (const p of stream) n += (p as Buffer).length;
      t.equal(n, size);
      seen.push(`${q.name}/${name}`);
    },
  );
  t.same(seen, ['fedora', 'fedora/root.img', 'fedora/private.img']);
});

t.test('dom0 home in a backup is left out, and refused when asked for', async (t) => {
  const src = sourceOf(QUBES);
  src.qubesXml = Buffer.from(
    src.qubesXml
      .toString()
      .replace(
        '<feature name="backup-content"></feature>',
        '<feature name="backup-content">1</feature><feature name="backup-path">dom0-home/user</feature><feature name="backup-size">0</feature>',
      ),
  );
  const dir = tempDir(t);
  const { location } = await runBackup(src, await dom0PathDestination(dir), base);
  t.same(
    (await listBackup(location, { passphrase: 'pass phrase' })).qubes.map((q) => q.name),
    ['dom0', 'work', 'fedora', 'disp'],
  );
  const r = await restoreToDirectory(location, join(dir, 'out'), { passphrase: 'pass phrase' });
  t.same(
    r.qubes.map((q) => q.name),
    ['work', 'fedora', 'disp'],
  );
  await t.rejects(restoreToDirectory(location, join(dir, 'out2'), { passphrase: 'pass phrase', qubes: ['dom0'] }), { code: 'unsupported' });
});

t.test('damaged archives restore nothing', async (t) => {
  // Uncompressed, so the chunk layout is known: vm1/private.img has 5
  // chunks, vm2/root.img exactly 2.
  const archive = await backupToFile(t, { compression: false });
  const data = readFileSync(archive);
  const entries = await archiveEntries(data);
  const offsets = new Map<string, number>();
  let off = 0;
  for (const e of entries) {
    offsets.set(e.name, off);
    off += 512 + e.size + ((512 - (e.size % 512)) % 512);
  }
  const dir = tempDir(t);
  const variants: Array<[string, Buffer, string]> = [];
  const flip = (name: string, delta: number): Buffer => {
    const b = Buffer.from(data);
    b[offsets.get(name)! + 512 + delta]! ^= 1;
    return b;
  };
  variants.push(['byte flipped in a data chunk', flip('vm1/private.img.002.enc', 5000), 'tampered']);
  variants.push(['byte flipped in the last chunk', flip('vm2/root.img.001.enc', 3000), 'tampered']);
  variants.push(['byte flipped in qubes.xml', flip('qubes.xml.000.enc', 100), 'tampered']);
  variants.push([
    'header changed',
    (() => {
      const b = Buffer.from(data);
      b[512 + readBackupHeader(data).length - 2]! ^= 1;
      return b;
    })(),
    'tampered',
  ]);
  variants.push(['cut in the middle of a chunk', data.subarray(0, offsets.get('vm2/root.img.000.enc')! + 3000), 'truncated']);
  variants.push(['cut between entries', data.subarray(0, offsets.get('vm3/empty.000.enc')!), 'truncated']);
  variants.push(['cut before the end marker', data.subarray(0, data.length - 1024), 'truncated']);
  variants.push([
    'a chunk removed',
    Buffer.concat([data.subarray(0, offsets.get('vm1/private.img.001.enc')!), data.subarray(offsets.get('vm1/private.img.002.enc')!)]),
    'format',
  ]);
  variants.push([
    'last chunk of a file removed',
    Buffer.concat([data.subarray(0, offsets.get('vm2/root.img.001.enc')!), data.subarray(offsets.get('vm2/private.img.000.enc')!)]),
    'truncated',
  ]);
  // Chunks reordered: each name is bound into its key, so order is enforced.
  const hdr = offsets.get('vm1/private.img.001.enc')!;
  const swapped = Buffer.concat([
    data.subarray(0, hdr),
    data.subarray(offsets.get('vm1/private.img.002.enc')!, offsets.get('vm1/private.img.003.enc')!),
    data.subarray(hdr, offsets.get('vm1/private.img.002.enc')!),
    data.subarray(offsets.get('vm1/private.img.003.enc')!),
  ]);
  variants.push(['two chunks swapped', swapped, 'format']);
  for (const [label, bytes, code] of variants) {
    const f = join(dir, 'archive');
    writeFileSync(f, bytes);
    const out = join(dir, 'out');
    const err = await restoreToDirectory(f, out, { passphrase: 'pass phrase' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, BackupError, `${label}: typed error`);
    t.equal((err as BackupError).code, code, `${label}: ${(err as Error).message}`);
    t.same(readdirSync(out), [], `${label}: nothing restored`);
  }
  const out = join(dir, 'wrongpass');
  await t.rejects(restoreToDirectory(archive, out, { passphrase: 'not it' }), { code: 'bad-passphrase' });
  t.same(readdirSync(out), [], 'wrong passphrase: nothing restored');
  await t.rejects(listBackup(archive, { passphrase: 'not it' }), { code: 'bad-passphrase' });
});

t.test('a chunk from another backup is rejected', async (t) => {
  const a = memorySink();
  await writeBackup(sourceOf(QUBES), a, { ...base, backupId: '20240101T000000-1' });
  const b = memorySink();
  await writeBackup(sourceOf(QUBES), b, { ...base, backupId: '20240101T000000-2' });
  // Same layout in both: replace backup b's header with a's.
  const da = a.data();
  const db = b.data();
  const ea = await archiveEntries(da);
  let cut = 0;
  for (const e of ea.slice(0, 2)) cut += 512 + e.size + ((512 - (e.size % 512)) % 512);
  const mixed = Buffer.concat([da.subarray(0, cut), db.subarray(cut)]);
  await t.rejects(readBackup(Readable.from([mixed]), { passphrase: 'pass phrase' }, { select: () => ['vm1/'] }), { code: 'tampered' });
});

t.test('cancel mid-way leaves no archive', async (t) => {
  const dir = tempDir(t);
  const ac = new AbortController();
  const big: SampleQube[] = [{ name: 'big', klass: 'AppVM', subdir: 'vm1/', files: { 'private.img': sampleData(2_000_000) } }];
  let seen = 0;
  const err = await runBackup(sourceOf(big), await dom0PathDestination(dir), {
    ...base,
    onProgress: (p) => {
      seen = p.bytesDone;
      if (p.bytesDone > 0 && p.bytesDone < p.bytesTotal) ac.abort();
    },
    signal: ac.signal,
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, BackupAbortedError);
  t.ok(seen < 2_000_000, 'stopped before the end');
  t.same(readdirSync(dir), [], 'no archive and no temporary file left');
  // Aborting before the start is also clean.
  const ac2 = new AbortController();
  ac2.abort();
  await t.rejects(runBackup(sourceOf(big), await dom0PathDestination(dir), { ...base, signal: ac2.signal }), BackupAbortedError);
  t.same(readdirSync(dir), []);
});

t.test('cancelling a restore restores nothing', async (t) => {
  const archive = await backupToFile(t);
  const out = join(tempDir(t), 'out');
  const ac = new AbortController();
  await t.rejects(
    restoreToDirectory(archive, out, {
      passphrase: 'pass phrase',
      signal: ac.signal,
      onProgress: (f) => {
        if (f > 0.3) ac.abort();
      },
    }),
    { code: 'aborted' },
  );
  t.same(readdirSync(out), []);
});

t.test('a dom0 file destination never replaces an existing file', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'existing'), 'precious');
  await t.rejects(runBackup(sourceOf(QUBES), await dom0PathDestination(join(dir, 'existing')), base), { code: 'EEXIST' });
  t.equal(readFileSync(join(dir, 'existing'), 'utf8'), 'precious');
  t.same(readdirSync(dir), ['existing'], 'temporary file removed');
  await t.rejects(dom0PathDestination(join(dir, 'no', 'such', 'dir', 'file')), /does not exist/);
  const r = await runBackup(sourceOf(QUBES), await dom0PathDestination(join(dir, 'named')), base);
  t.equal(r.location, join(dir, 'named'));
  expectIdentical(t, (await restoreAll(r.location)).got);
  // Two backups into one directory in the same second: both kept.
  const when = new Date(2026, 0, 2, 3, 4, 5);
  const [a, b] = await Promise.all([1, 2].map(async () => runBackup(sourceOf(QUBES), await dom0PathDestination(dir, when), base)));
  t.same([a!.location, b!.location].sort(), [join(dir, 'qubes-2026-01-02T030405'), join(dir, 'qubes-2026-01-02T030405.1')]);
  expectIdentical(t, (await restoreAll(b!.location)).got);
});

t.test('a destination failing mid-stream fails the backup', async (t) => {
  for (const [label, error] of [
    ['generic failure', undefined],
    ['disk full', enospc()],
  ] as const) {
    const sink = memorySink(100_000, error);
    let aborted = false;
    const dest: Destination = {
      stream: sink,
      commit: async () => 'nowhere',
      abort: async () => {
        aborted = true;
      },
    };
    const err = await runBackup(sourceOf(QUBES), dest, base).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof Error, `${label}: rejected`);
    if (error) t.equal((err as NodeJS.ErrnoException).code, 'ENOSPC', 'ENOSPC is reported as such');
    t.ok(aborted, `${label}: destination aborted`);
  }
});

t.test('a dying command destination fails the backup', async (t) => {
  const dir = tempDir(t);
  await t.rejects(runBackup(sourceOf(QUBES), commandDestination('head -c 1000 >/dev/null; exit 0'), base), Error, 'reader stops early');
  await t.rejects(runBackup(sourceOf(QUBES), commandDestination('cat >/dev/null; exit 3'), base), /backup command failed \(3\)/, 'non-zero exit');
  const r = await runBackup(sourceOf(QUBES), commandDestination(`cat > ${join(dir, 'piped')}`), base);
  t.equal(statSync(join(dir, 'piped')).size, r.archiveBytes, 'piped archive complete');
  const { got } = await restoreAll(join(dir, 'piped'));
  expectIdentical(t, got);
});

t.test('qubes.Backup service destination: path line first, then the archive', async (t) => {
  const dir = tempDir(t);
  // Stands in for the service in the destination qube: reads the path,
  // then stores its input there.
  const start = (script: string) => {
    const child = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'] });
    return { stdin: child.stdin, exit: new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1))), kill: () => child.kill() };
  };
  const r = await runBackup(sourceOf(QUBES), serviceDestination(start('read -r path; cat > "$path"'), join(dir, 'remote')), base);
  t.equal(r.location, join(dir, 'remote'));
  const { got } = await restoreAll(join(dir, 'remote'));
  expectIdentical(t, got);
  await t.rejects(
    runBackup(sourceOf(QUBES), serviceDestination(start('read -r path; cat >/dev/null; exit 1'), '/x'), base),
    /destination qube failed \(exit status 1\)/,
  );
});

t.test('a source that lies about its size fails the backup', async (t) => {
  const dir = tempDir(t);
  const src = sourceOf(QUBES);
  src.vms[0]!.files[0]!.size += 1;
  await t.rejects(runBackup(src, await dom0PathDestination(dir), base), /source ended after/);
  const src2 = sourceOf(QUBES);
  src2.vms[0]!.files[0]!.size -= 1;
  await t.rejects(runBackup(src2, await dom0PathDestination(dir), base), /larger than its announced size/);
  const src3 = sourceOf(QUBES);
  src3.vms[0]!.files[0]!.open = () =>
    Readable.from(
      (async function* () {
        yield Buffer.alloc(10);
        throw new Error('read error on volume');
      })(),
    );
  await t.rejects(runBackup(src3, await dom0PathDestination(dir), base), /read error on volume/);
  const src4 = sourceOf(QUBES);
  src4.vms[0]!.subdir = '../x/';
  await t.rejects(runBackup(src4, await dom0PathDestination(dir), base), /invalid backup subdir/);
  t.same(readdirSync(dir), [], 'nothing left behind');
});

t.test('a failing compression filter fails the backup', async (t) => {
  const dir = tempDir(t);
  await t.rejects(runBackup(sourceOf(QUBES), await dom0PathDestination(dir), { ...base, compression: 'false' }), /compression filter false failed/);
  await t.rejects(runBackup(sourceOf(QUBES), await dom0PathDestination(dir), { ...base, compression: 'no-such-program-xyz' }), /compression filter/);
  t.same(readdirSync(dir), []);
});

t.test('a file destination closes its descriptor once, whether it ends in commit or abort', async (t) => {
  // The stream owns the descriptor. Closed a second time by hand, the number
  // may already belong to another file (here: one opened as soon as the
  // stream closed), which the second close took away; in qubesd that was a
  // child's pipe or a socket, and libuv aborted the daemon.
  const { openSync, fstatSync, closeSync } = await import('node:fs');
  const dir = tempDir(t);
  for (const end of ['abort', 'commit'] as const) {
    const dest = await dom0PathDestination(join(dir, `${end}.bin`));
    let other = -1;
    dest.stream.once('close', () => {
      other = openSync(join(dir, `other-${end}`), 'w');
    });
    await new Promise<void>((resolve) => dest.stream.end(Buffer.from('data'), resolve));
    if (end === 'abort') await dest.abort();
    else await dest.commit();
    t.not(other, -1, `${end}: the stream closed its descriptor`);
    t.doesNotThrow(() => fstatSync(other), `${end}: a file opened after that is still open`);
    closeSync(other);
  }
  t.same(readdirSync(dir).sort(), ['commit.bin', 'other-abort', 'other-commit'], 'the committed archive, no partial file');
});

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  PassphraseCancelledError,
  ProfileError,
  ProfileNotFoundError,
  loadProfile,
  parseProfileText,
  resolvePassphrase,
  selectQubes,
  type QubeInfo,
} from '../../qubesd/backup/profile.js';
import { tempDir } from './util.js';

const F = '/etc/qubes/backup/test.conf';
const valid = 'destination_vm: dom0\ndestination_path: /backups\npassphrase_text: secret\n';

t.test('a complete profile', async (t) => {
  const p = parseProfileText(
    `include:\n  - work\n  - $tag:important\n  - $type:TemplateVM\nexclude: [sys-net, '@tag:nobackup']\ndestination_vm: sys-usb\ndestination_path: /media/disk\ncompression: bzip2\npassphrase_vm: vault\n`,
    F,
  );
  t.same(p, {
    include: ['work', '$tag:important', '$type:TemplateVM'],
    exclude: ['sys-net', '@tag:nobackup'],
    destinationVm: 'sys-usb',
    destinationPath: '/media/disk',
    compression: 'bzip2',
    passphraseVm: 'vault',
  });
});

t.test('defaults and YAML 1.1 booleans as in PyYAML', async (t) => {
  const p = parseProfileText(valid, F);
  t.equal(p.include, null, 'no include: the include_in_backups default');
  t.same(p.exclude, []);
  t.equal(p.compression, true, 'compressed unless told otherwise');
  t.equal(parseProfileText(valid + 'include:\n', F).include, null, 'empty include is the default too');
  for (const [text, want] of [
    ['True', true],
    ['False', false],
    ['yes', true],
    ['no', false],
    ['off', false],
    ['"gzip"', 'gzip'],
    ['xz', 'xz'],
    ['zstd', 'zstd'],
  ] as const) {
    t.equal(parseProfileText(valid + `compression: ${text}\n`, F).compression, want, `compression: ${text}`);
  }
});

t.test('every kind of mistake names the file and the key', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['unknown key', valid + 'compresion: True\n', /^\/etc\/qubes\/backup\/test\.conf: compresion: unknown key$/],
    ['missing destination', 'destination_vm: dom0\npassphrase_text: x\n', /test\.conf: destination_path: missing required key/],
    ['wrong type of include', valid + 'include: work\n', /test\.conf: include: wrong type/],
    ['wrong type in include list', valid + 'include: [work, 42]\n', /test\.conf: include\[1\]: must be string/],
    ['bad qube name', valid + 'include: ["bad name!"]\n', /include\[0\]: not a valid qube name/],
    ['exclude not a list', valid + 'exclude: work\n', /test\.conf: exclude: must be array/],
    ['exclude null', valid + 'exclude:\n', /test\.conf: exclude: must be array/],
    ['compression number', valid + 'compression: 5\n', /test\.conf: compression: wrong type/],
    ['compression shell', valid + 'compression: "gzip; rm -rf /"\n', /test\.conf: compression: unsupported compression filter "gzip; rm -rf \/"/],
    [
      'compression unknown to Qubes',
      valid + 'compression: "xz -9"\n',
      /test\.conf: compression: unsupported compression filter "xz -9" \(use True, False or one of gzip, bzip2, xz/,
    ],
    ['empty destination_path', 'destination_vm: dom0\ndestination_path: ""\npassphrase_text: x\n', /destination_path: must NOT have fewer than 1 characters/],
    ['two passphrases', valid + 'passphrase_vm: vault\n', /passphrase_text: give only one of passphrase_text and passphrase_vm/],
    ['passphrase number', 'destination_vm: dom0\ndestination_path: /x\npassphrase_text: 1234\n', /passphrase_text: must be string/],
    // a key Qubes requires is named first and alone, as Qubes does
    [
      'a missing key before other mistakes',
      'destination_vm: dom0\nfoo: 1\nbar: 2\npassphrase_text: x\n',
      /^\/etc\/qubes\/backup\/test\.conf: destination_path: missing required key$/,
    ],
    ['several mistakes at once', valid + 'foo: 1\nbar: 2\n', /test\.conf: foo: unknown key; bar: unknown key$/],
    ['not a mapping', '- a\n- b\n', /test\.conf: must be object/],
    ['empty file', '', /test\.conf: must be object/],
    ['YAML syntax', 'include: [a\n', /test\.conf: YAML syntax error at line \d/],
    ['duplicate key', valid + 'destination_vm: other\n', /test\.conf: YAML syntax error at line 4: Map keys must be unique/],
  ];
  for (const [label, text, re] of cases) {
    const err = (() => {
      try {
        parseProfileText(text, F);
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    t.type(err, ProfileError, `${label}: ProfileError`);
    t.match((err as Error)?.message, re, `${label}: ${(err as Error)?.message}`);
  }
});

t.test('loading from the profile directory', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'daily.conf'), valid);
  writeFileSync(join(dir, 'broken.conf'), 'nope: 1\n');
  t.equal((await loadProfile('daily', dir)).destinationPath, '/backups');
  await t.rejects(loadProfile('missing', dir), ProfileNotFoundError);
  await t.rejects(loadProfile('../etc/passwd', dir), ProfileNotFoundError, 'no path traversal');
  await t.rejects(loadProfile('broken', dir), { message: new RegExp(`^${join(dir, 'broken.conf').replace(/[.]/g, '\\.')}: `) });
});

// in Qubes' order of its qubes (dom0, then by name), as QubesApp.allVms()
// gives them; qids chosen so that name order, qid order and the order of a
// Python set of them all differ (list(set([12, 3, 9])) == [9, 3, 12])
const QUBES: QubeInfo[] = [
  { name: 'dom0', qid: 0, klass: 'AdminVM', tags: [], includeInBackupsDefault: false },
  { name: 'disp1', qid: 12, klass: 'DispVM', tags: ['important'], includeInBackupsDefault: false },
  { name: 'fedora', qid: 1, klass: 'TemplateVM', tags: [], includeInBackupsDefault: true },
  { name: 'sys-net', qid: 4, klass: 'AppVM', tags: [], includeInBackupsDefault: false },
  { name: 'vault', qid: 3, klass: 'AppVM', tags: ['important', 'offline'], includeInBackupsDefault: true },
  { name: 'work', qid: 9, klass: 'AppVM', tags: ['important'], includeInBackupsDefault: true },
];
const names = (s: { selected: QubeInfo[] }): string[] => s.selected.map((q) => q.name);

t.test("selection: include, exclude, tags, types, defaults, in Qubes' order", async (t) => {
  t.same(names(selectQubes({ include: null, exclude: [] }, QUBES)), ['fedora', 'vault', 'work'], 'default: include_in_backups, by name');
  t.same(names(selectQubes({ include: null, exclude: ['work'] }, QUBES)), ['fedora', 'vault'], 'exclude applies to the default too');
  // Qubes' set of the matching qubes, iterated: [9, 3, 12]
  t.same(names(selectQubes({ include: ['$tag:important'], exclude: [] }, QUBES)), ['work', 'vault', 'disp1'], 'tag, regardless of include_in_backups');
  t.same(names(selectQubes({ include: ['@tag:important'], exclude: ['$tag:offline'] }, QUBES)), ['work', 'disp1'], '@ and $ forms, exclude after include');
  // list(set([1, 4, 3, 9])) == [1, 3, 4, 9]
  t.same(
    names(selectQubes({ include: ['$type:AppVM', 'fedora'], exclude: ['$type:DispVM', 'sys-net'] }, QUBES)),
    ['fedora', 'vault', 'work'],
    'types and names',
  );
  t.same(
    names(selectQubes({ include: ['vault', 'dom0', 'work', 'fedora'], exclude: [] }, QUBES)),
    ['dom0', 'fedora', 'vault', 'work'],
    'list(set([0, 1, 3, 9]))',
  );
  t.same(names(selectQubes({ include: [], exclude: [] }, QUBES)), [], 'an empty include list selects nothing');
  const s = selectQubes({ include: ['work', 'wrok', '$tag:nosuch'], exclude: ['$type:Nope'] }, QUBES);
  t.same(names(s), ['work']);
  t.same(s.unmatched, ['wrok', '$tag:nosuch', '$type:Nope'], 'entries matching nothing are reported');
});

t.test('passphrase sources', async (t) => {
  const none = parseProfileText('destination_vm: dom0\ndestination_path: /x\n', F);
  t.equal(none.passphraseText, undefined, 'a profile without passphrase is valid (for Info)');
  await t.rejects(
    resolvePassphrase(none, 'daily', async () => Buffer.from('x')),
    /Invalid backup profile - you need to specify passphrase_text or passphrase_vm/,
  );
  const text = parseProfileText(valid, F);
  t.equal(
    (
      await resolvePassphrase(text, 'test', async () => {
        throw new Error('not called');
      })
    ).toString(),
    'secret',
  );
  const vm = parseProfileText('destination_vm: dom0\ndestination_path: /x\npassphrase_vm: vault\n', F);
  const calls: string[] = [];
  const answer = (a: string) => async (v: string, svc: string) => {
    calls.push(`${v} ${svc}`);
    return Buffer.from(a);
  };
  t.equal((await resolvePassphrase(vm, 'daily', answer('from vault\n'))).toString(), 'from vault', 'trailing newline stripped');
  t.same(calls, ['vault qubes.BackupPassphrase+daily']);
  await t.rejects(resolvePassphrase(vm, 'daily', answer('')), PassphraseCancelledError, 'empty answer cancels');
  await t.rejects(resolvePassphrase(vm, 'daily', answer(' \n')), PassphraseCancelledError, 'blank answer cancels');
  await t.rejects(resolvePassphrase(vm, 'daily', answer('two\nlines')), /must not contain newline/);
  await t.rejects(
    resolvePassphrase(vm, 'daily', async () => {
      throw new Error('service refused');
    }),
    /Failed to retrieve passphrase from 'vault' VM: service refused/,
  );
});

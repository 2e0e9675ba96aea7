// Properties of the backup profile parser: any YAML text, and any parsed
// value, gives a profile that satisfies the schema or a ProfileError naming
// the file; nothing else escapes (yaml's and ajv's own errors included).
import t from 'tap';
import fc from 'fast-check';
import { parseProfile, parseProfileText, ProfileError, type BackupProfile } from '../../qubesd/backup/profile.js';
import { holds } from './fc.js';

const FILE = '/etc/qubes/backup/fuzz.conf';
const QUBE_REF = /^(?:[$@]tag:[A-Za-z0-9_-]+|[$@]type:[A-Za-z0-9_]+|[A-Za-z][A-Za-z0-9_.-]*)$/;

/** null: refused cleanly; otherwise the profile, which must be well-formed. */
function parsed(fn: () => BackupProfile): BackupProfile | null {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ProfileError && e.message.startsWith(`${FILE}: `)) return null;
    throw e;
  }
}
function wellFormed(p: BackupProfile): boolean {
  return (
    // destination_vm: any value (the backup service refuses one that finds no qube)
    'destinationVm' in p &&
    typeof p.destinationPath === 'string' &&
    p.destinationPath.length > 0 &&
    (p.include === null || (Array.isArray(p.include) && p.include.every((r) => QUBE_REF.test(r)))) &&
    Array.isArray(p.exclude) &&
    p.exclude.every((r) => QUBE_REF.test(r)) &&
    (typeof p.compression === 'boolean' || typeof p.compression === 'string') &&
    !(p.passphraseText !== undefined && p.passphraseVm !== undefined)
  );
}

const KEYS = [
  'include',
  'exclude',
  'destination_vm',
  'destination_path',
  'compression',
  'passphrase_text',
  'passphrase_vm',
  'other',
  '__proto__',
  'constructor',
];
const scalar = fc.oneof(
  fc.constantFrom(
    'work',
    '$tag:x',
    '@type:AppVM',
    'dom0',
    '/backups',
    'gzip',
    'xz',
    'True',
    'no',
    '~',
    'null',
    '-x',
    '../x',
    "'quoted'",
    '"q"',
    '{a: 1}',
    '[1, 2]',
    '*alias',
    '&anchor v',
    '!!binary aGk=',
    '!!python/object:os.system x',
  ),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc.integer().map(String),
);
const yamlLine = fc.oneof(
  fc.tuple(fc.constantFrom(...KEYS), scalar).map(([k, v]) => `${k}: ${v}`),
  fc.tuple(fc.constantFrom(...KEYS), fc.array(scalar, { maxLength: 3 })).map(([k, vs]) => `${k}:\n${vs.map((v) => `  - ${v}`).join('\n')}`),
  fc.constantFrom('---', '...', '%YAML 1.1', '  bad indent: x', '- list', '? complex', ': x', '#c', '', '\t'),
  fc.string({ unit: 'binary', maxLength: 30 }),
);
const yamlText = fc
  .tuple(fc.boolean(), fc.array(yamlLine, { maxLength: 6 }))
  .map(([base, l]) => (base ? ['destination_vm: work', 'destination_path: /backups', ...l] : l).join('\n'));

t.test('profile text: a well-formed profile or a ProfileError', async (t) => {
  let loaded = 0;
  await holds(
    t,
    'nothing else escapes (text without aliases)',
    fc.property(
      yamlText.map((x) => x.replace(/\*/g, '')),
      (text) => {
        const p = parsed(() => parseProfileText(text, FILE));
        if (p) loaded++;
        return p === null || wellFormed(p);
      },
    ),
    800,
  );
  t.ok(loaded > 0, `some generated profiles are valid (${loaded})`);
  // An alias without its anchor makes yaml's toJS() throw a ReferenceError,
  // which parseProfileText once let through (admin.backup.Info then answered
  // "internal error: Unresolved alias ...").
  await holds(
    t,
    'nothing else escapes (any text)',
    fc.property(fc.oneof(yamlText, fc.constantFrom('destination_vm: dom0\ndestination_path: *a')), (text) => {
      const p = parsed(() => parseProfileText(text, FILE));
      return p === null || wellFormed(p);
    }),
    500,
  );
  t.ok(wellFormed(parsed(() => parseProfileText('destination_vm: dom0\ndestination_path: /b\ninclude: [work, $tag:x]\n', FILE))!), 'a valid profile parses');
});

t.test('profile data: any JSON-like value', async (t) => {
  const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.constantFrom(...KEYS), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 7 }));
  await holds(
    t,
    'a well-formed profile or a ProfileError',
    fc.property(value, (v) => {
      const p = parsed(() => parseProfile(v, FILE));
      return p === null || wellFormed(p);
    }),
    1500,
  );
});

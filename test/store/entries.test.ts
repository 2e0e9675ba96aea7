// The store's 'domain-entries' records (what a feature, tag or property call
// changed of one domain): replayed in order after a crash, mixed with the
// whole-domain records of older journals, torn at the tail, refused when
// qubes.xml could not hold them, and harmless when replayed over a qubes.xml
// that already holds them (or no longer holds their domain).
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Change, DomainDoc, DomainEntriesChange } from '../../qubesd/store/document.js';
import { encodeRecord, readRecords } from '../../qubesd/store/journal.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { Store } from '../../qubesd/store/store.js';
import { crashCopy, FIXTURE, tempDir } from './helpers/tmp.js';

// domain-6 ('work') of the fixture, as qubes.xml holds it
const WORK_PROPERTIES: Array<[string, string]> = [
  ['label', 'blue'],
  ['maxmem', '4000'],
  ['memory', '800'],
  ['name', 'work'],
  ['qid', '6'],
  ['uuid', '103edb2e-47ad-4629-a9b7-61d9c421ba37'],
  ['vcpus', '4'],
  ['template', 'fedora-41'],
];
const WORK_FEATURES: Array<[string, string]> = [
  ['service.crond', '1'],
  ['menu-items', 'firefox.desktop org.gnome.Nautilus.desktop'],
];
const WORK_TAGS = ['audiovm-dom0', 'proj-x', 'created-by-dom0', 'guivm-dom0', 'audio-allowed'];

const work = (doc: { domains: DomainDoc[] }) => doc.domains.find((d) => d.id === 'domain-6')!;
const entries = (e: Omit<DomainEntriesChange, 'kind' | 'id'>, id = 'domain-6'): Change => ({ kind: 'domain-entries', id, ...e });
const entriesOf = (d: DomainDoc) => ({ properties: d.properties, features: d.features, tags: d.tags });

async function fixtureStore(t: { teardown(fn: () => void): void }): Promise<string> {
  const path = join(tempDir(t), 'qubes.xml');
  copyFileSync(FIXTURE, path);
  return path;
}

t.test('feature, tag and property changes are replayed in their order after a crash', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ setFeatures: [['service.crond', '0']] })]); // in place
  await s.commit([entries({ setFeatures: [['gui', '1']] })]); // appended
  await s.commit([
    entries({
      setFeatures: [
        ['x', 'a'],
        ['gui', '2'],
      ],
    }),
  ]);
  await s.commit([
    entries({
      features: [
        ['gui', '2'],
        ['x', 'a'],
        ['service.crond', ''],
      ],
    }),
  ]); // whole list (a deletion): replaces
  await s.commit([entries({ setFeatures: [['y', 'b']] })]);
  await s.commit([entries({ addTags: ['new-tag', 'audiovm-dom0'] })]); // appended; already there
  await s.commit([entries({ tags: ['audiovm-dom0', 'created-by-dom0', 'new-tag'] })]); // whole list
  await s.commit([entries({ addTags: ['last'] })]);
  await s.commit([
    entries({
      properties: [
        ['label', 'red'],
        ['name', 'work'],
        ['qid', '6'],
        ['uuid', '103edb2e-47ad-4629-a9b7-61d9c421ba37'],
        ['template', 'fedora-41'],
      ],
    }),
  ]);
  const copy = crashCopy(t, path);
  const r = await Store.open(copy);
  const expected = {
    properties: [
      ['label', 'red'],
      ['name', 'work'],
      ['qid', '6'],
      ['uuid', '103edb2e-47ad-4629-a9b7-61d9c421ba37'],
      ['template', 'fedora-41'],
    ],
    features: [
      ['gui', '2'],
      ['x', 'a'],
      ['service.crond', ''],
      ['y', 'b'],
    ],
    tags: ['audiovm-dom0', 'created-by-dom0', 'new-tag', 'last'],
  };
  const w = work(r.doc);
  t.same(entriesOf(w), expected);
  t.equal(w.volumeConfig.length, 4, 'the rest of the domain is kept');
  t.same(w.devices, ['<devices class="pci"/>']);
  t.match(
    readFileSync(copy, 'utf8'),
    '      <features>\n' +
      '        <feature name="gui">2</feature>\n' +
      '        <feature name="x">a</feature>\n' +
      '        <feature name="service.crond"></feature>\n' +
      '        <feature name="y">b</feature>\n' +
      '      </features>\n',
    'open folded them into qubes.xml',
  );
  await r.close();
  await s.close();
  t.same(entriesOf(work(parseQubesXml(readFileSync(path)))), expected, 'close (no snapshot provider) writes the same');
});

t.test('a feature record holds the feature, not the domain', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ setFeatures: [['bench', 'v1']] })]);
  const payloads = readRecords(readFileSync(path + '.journal.1')).payloads.map(String);
  t.same(payloads, ['[{"kind":"domain-entries","id":"domain-6","setFeatures":[["bench","v1"]]}]']);
  await s.close();
});

t.test('a journal of an older qubesd (whole domains) and new records replay together', async (t) => {
  const path = await fixtureStore(t);
  // journal 1 as an older qubesd wrote it: whole-domain records only
  const doc = parseQubesXml(readFileSync(path));
  const old = { ...work(doc), features: [['old', 'yes']] as Array<[string, string]>, tags: ['t1'] };
  writeFileSync(path + '.journal.1', encodeRecord(JSON.stringify([{ kind: 'domain', doc: old }])));
  // journal 2: new records on top of it, then an old-style record, then new ones again, in one file
  const records = [
    [entries({ setFeatures: [['new', '1']], addTags: ['t2'] })],
    [{ kind: 'domain', doc: { ...old, features: [['reset', 'all']] } }],
    [entries({ setFeatures: [['after', '2']] }), { kind: 'domain-removed', id: 'domain-7' }],
  ];
  writeFileSync(path + '.journal.2', Buffer.concat(records.map((r) => encodeRecord(JSON.stringify(r)))));
  const r = await Store.open(path);
  const w = work(r.doc);
  t.same(w.features, [
    ['reset', 'all'],
    ['after', '2'],
  ]);
  t.same(w.tags, ['t1'], 'the whole-domain record replaced the tags too');
  t.notOk(
    r.doc.domains.some((d) => d.id === 'domain-7'),
    'the removal in the same record',
  );
  t.same(work(parseQubesXml(readFileSync(path))).features, w.features, 'qubes.xml holds it');
  await r.close();
});

t.test('a torn last entries record (never acknowledged) is ignored', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ setFeatures: [['acked', 'yes']] })]);
  const copy = crashCopy(t, path);
  const torn = encodeRecord(JSON.stringify([entries({ setFeatures: [['acked', 'torn']], addTags: ['t'] })]));
  for (const cut of [1, 13, torn.length - 1]) {
    const c = crashCopy(t, copy);
    appendFileSync(c + '.journal.1', torn.subarray(0, cut));
    const r = await Store.open(c);
    t.same(entriesOf(work(r.doc)), { properties: WORK_PROPERTIES, features: [...WORK_FEATURES, ['acked', 'yes']], tags: WORK_TAGS }, `cut after ${cut} bytes`);
    await r.close();
  }
  await s.close();
});

t.test('entries of a domain that is not there are skipped, as a removal of one is', async (t) => {
  // what a journal replayed over a newer qubes.xml meets: entries, then the removal, of a qube the snapshot no longer holds
  const path = await fixtureStore(t);
  const records = [
    [entries({ setFeatures: [['a', '1']] }, 'domain-99')],
    [{ kind: 'domain-removed', id: 'domain-99' }],
    [entries({ setFeatures: [['b', '2']] })],
  ];
  writeFileSync(path + '.journal.1', Buffer.concat(records.map((r) => encodeRecord(JSON.stringify(r)))));
  const r = await Store.open(path);
  t.equal(r.doc.domains.length, 12, "the fixture's 12 domains");
  t.notOk(
    r.doc.domains.some((d) => d.id === 'domain-99'),
    'no domain-99',
  );
  t.same(work(r.doc).features, [...WORK_FEATURES, ['b', '2']], 'the records after it are replayed');
  await r.close();
});

t.test('malformed entries records are damage', async (t) => {
  const path = await fixtureStore(t);
  for (const bad of [
    { kind: 'domain-entries', id: 'domain-6', setFeatures: [['a', 1]] },
    { kind: 'domain-entries', id: 'domain-6', features: [['a', null]] },
    { kind: 'domain-entries', id: 'domain-6', addTags: [['t', true]] },
    { kind: 'domain-entries', setFeatures: [] },
  ]) {
    writeFileSync(path + '.journal.1', encodeRecord(JSON.stringify([bad])));
    await t.rejects(Store.open(path), { name: 'StoreError', message: /record 1 does not hold a list of changes/ }, JSON.stringify(bad));
  }
});

t.test('entries qubes.xml could not hold are refused before anything is written', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  const bad: Change[] = [
    entries({ setFeatures: [['x', 'bell\u0007']] }),
    entries({ features: [['x\u0000', '']] }),
    entries({ addTags: ['t\uFFFE'] }),
    entries({ tags: ['\uDC00'] }),
    entries({ properties: [['label', '\uD800']] }),
    { kind: 'domain-entries', id: 'domain-6', addTags: [['t', true]] } as unknown as Change,
    { kind: 'domain-entries', setFeatures: [] } as unknown as Change,
  ];
  for (const c of bad) await t.rejects(s.commit([c]), { name: 'StoreError', message: /refusing to store a change/ }, JSON.stringify(c));
  t.equal(readFileSync(path + '.journal.1').length, 0, 'nothing written');
  await s.commit([entries({ setFeatures: [['x', 'fine <&> "quoted"']] })]);
  await s.close();
  t.match(readFileSync(path, 'utf8'), '<feature name="x">fine &lt;&amp;&gt; "quoted"</feature>');
});

t.test('replaying a journal again over the qubes.xml that holds it changes nothing', async (t) => {
  // a crash after a snapshot was written but before the journals it holds
  // were deleted; and the live journal over a snapshot taken while later
  // changes were already in the model
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ setFeatures: [['a', '1']], addTags: ['x'] })]);
  await s.commit([
    entries({
      features: [
        ['service.crond', '1'],
        ['menu-items', 'firefox.desktop org.gnome.Nautilus.desktop'],
      ],
    }),
  ]); // 'a' deleted
  await s.commit([entries({ setFeatures: [['a', '3']] })]); // and set again: last
  await s.commit([entries({ setFeatures: [['b', '2']] })]);
  await s.commit([entries({ tags: ['audiovm-dom0', 'created-by-dom0', 'guivm-dom0', 'audio-allowed', 'x'], properties: WORK_PROPERTIES.slice(1) })]);
  const journal = readFileSync(path + '.journal.1');
  await s.close();
  const snapshot = readFileSync(path, 'utf8');
  const w = work(parseQubesXml(snapshot));
  t.same(entriesOf(w), {
    properties: WORK_PROPERTIES.slice(1),
    features: [...WORK_FEATURES, ['a', '3'], ['b', '2']],
    tags: ['audiovm-dom0', 'created-by-dom0', 'guivm-dom0', 'audio-allowed', 'x'],
  });
  writeFileSync(path + '.journal.1', journal);
  const r = await Store.open(path);
  await r.close();
  t.equal(readFileSync(path, 'utf8'), snapshot, 'qubes.xml is byte for byte the same');
});

t.test('entries committed while journals are compacted end up in qubes.xml', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path, { compactRecords: 3 });
  for (let i = 0; i < 10; i++) await Promise.all([s.commit([entries({ setFeatures: [['n', String(i)]] })]), s.commit([entries({ addTags: [`t${i}`] })])]);
  const copy = crashCopy(t, path);
  const r = await Store.open(copy);
  const w = work(r.doc);
  t.same(w.features, [...WORK_FEATURES, ['n', '9']]);
  t.same(w.tags, [...WORK_TAGS, 't0', 't1', 't2', 't3', 't4', 't5', 't6', 't7', 't8', 't9']);
  await r.close();
  await s.close();
  t.same(work(parseQubesXml(readFileSync(path))).tags, w.tags);
});

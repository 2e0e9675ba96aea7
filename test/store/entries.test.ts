// The store's 'domain-entries' records (what a feature, tag or property call
// changed of one domain): replayed in order after a crash, mixed with the
// whole-domain records of older journals, torn at the tail, refused when
// qubes.xml could not hold them, and harmless when replayed over a newer
// qubes.xml.
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Change, DomainDoc } from '../../qubesd/store/document.js';
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

const work = (doc: { domains: DomainDoc[] }) => doc.domains.find((d) => d.id === 'domain-6')!;
const entries = (e: Omit<Extract<Change, { kind: 'domain-entries' }>, 'kind' | 'id'>, id = 'domain-6'): Change => ({ kind: 'domain-entries', id, ...e });

async function fixtureStore(t: { teardown(fn: () => void): void }): Promise<string> {
  const path = join(tempDir(t), 'qubes.xml');
  copyFileSync(FIXTURE, path);
  return path;
}

t.test('feature, tag and property changes are replayed in their order after a crash', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ features: [['service.crond', '0']] })]); // in place
  await s.commit([entries({ features: [['gui', '1']] })]); // appended
  await s.commit([entries({ features: [['menu-items', null]] })]); // deleted
  await s.commit([
    entries({
      features: [
        ['x', 'a'],
        ['service.crond', null],
        ['service.crond', ''],
      ],
    }),
  ]); // deleted and set again: last
  await s.commit([
    entries({
      tags: [
        ['proj-x', false],
        ['new-tag', true],
        ['audiovm-dom0', true],
      ],
    }),
  ]);
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
      ['gui', '1'],
      ['x', 'a'],
      ['service.crond', ''],
    ],
    tags: ['audiovm-dom0', 'created-by-dom0', 'guivm-dom0', 'audio-allowed', 'new-tag'],
  };
  const w = work(r.doc);
  t.same({ properties: w.properties, features: w.features, tags: w.tags }, expected);
  t.equal(w.volumeConfig.length, 4, 'the rest of the domain is kept');
  t.same(w.devices, ['<devices class="pci"/>']);
  const xml = readFileSync(copy, 'utf8');
  t.match(
    xml,
    '      <features>\n' +
      '        <feature name="gui">1</feature>\n' +
      '        <feature name="x">a</feature>\n' +
      '        <feature name="service.crond"></feature>\n' +
      '      </features>\n',
    'open folded them into qubes.xml',
  );
  await r.close();
  await s.close();
  const closed = work(parseQubesXml(readFileSync(path)));
  t.same({ properties: closed.properties, features: closed.features, tags: closed.tags }, expected, 'close (no snapshot provider) writes the same');
});

t.test('a feature record holds the feature, not the domain', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([entries({ features: [['bench', 'v1']] })]);
  const payloads = readRecords(readFileSync(path + '.journal.1')).payloads.map(String);
  t.same(payloads, ['[{"kind":"domain-entries","id":"domain-6","features":[["bench","v1"]]}]']);
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
    [entries({ features: [['new', '1']], tags: [['t2', true]] })],
    [{ kind: 'domain', doc: { ...old, features: [['reset', 'all']] } }],
    [entries({ features: [['after', '2']] }), { kind: 'domain-removed', id: 'domain-7' }],
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
  await s.commit([entries({ features: [['acked', 'yes']] })]);
  const copy = crashCopy(t, path);
  const torn = encodeRecord(JSON.stringify([entries({ features: [['acked', 'torn']], tags: [['t', true]] })]));
  for (const cut of [1, 13, torn.length - 1]) {
    const c = crashCopy(t, copy);
    appendFileSync(c + '.journal.1', torn.subarray(0, cut));
    const r = await Store.open(c);
    const w = work(r.doc);
    t.same(
      w.features.filter(([k]) => k === 'acked'),
      [['acked', 'yes']],
      `cut after ${cut} bytes`,
    );
    t.notOk(w.tags.includes('t'));
    await r.close();
  }
  await s.close();
});

t.test('entries of a domain that is not there stop open, touching nothing', async (t) => {
  const path = await fixtureStore(t);
  writeFileSync(path + '.journal.1', encodeRecord(JSON.stringify([entries({ features: [['a', '1']] }, 'domain-99')])));
  const before = readFileSync(path, 'utf8');
  await t.rejects(Store.open(path), {
    name: 'StoreError',
    message: /journal .*qubes\.xml\.journal\.1 of store .* is damaged: record 1 changes entries of domain-99, which is neither in qubes\.xml nor added before/,
  });
  t.equal(readFileSync(path, 'utf8'), before);
  t.ok(readFileSync(path + '.journal.1').length > 0, 'the journal is kept');
});

t.test('malformed entries records are damage', async (t) => {
  const path = await fixtureStore(t);
  writeFileSync(path + '.journal.1', encodeRecord(JSON.stringify([{ kind: 'domain-entries', id: 'domain-6', features: [['a', 1]] }])));
  await t.rejects(Store.open(path), { name: 'StoreError', message: /record 1 does not hold a list of changes/ });
});

t.test('entries qubes.xml could not hold are refused before anything is written', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  const bad: Change[] = [
    entries({ features: [['x', 'bell\u0007']] }),
    entries({ features: [['x\u0000', null]] }),
    entries({ tags: [['t\uFFFE', true]] }),
    entries({ properties: [['label', '\uD800']] }),
    { kind: 'domain-entries', id: 'domain-6', tags: [['t', 'yes']] } as unknown as Change,
    { kind: 'domain-entries', features: [] } as unknown as Change,
  ];
  for (const c of bad) await t.rejects(s.commit([c]), { name: 'StoreError', message: /refusing to store a change/ }, JSON.stringify(c));
  t.equal(readFileSync(path + '.journal.1').length, 0, 'nothing written');
  await s.commit([entries({ features: [['x', 'fine <&> "quoted"']] })]);
  await s.close();
  t.match(readFileSync(path, 'utf8'), '<feature name="x">fine &lt;&amp;&gt; "quoted"</feature>');
});

t.test('replaying a journal again over the qubes.xml that holds it changes nothing', async (t) => {
  // a crash after a snapshot was written but before the journals it holds were deleted
  const path = await fixtureStore(t);
  const s = await Store.open(path);
  await s.commit([
    entries({
      features: [
        ['a', '1'],
        ['b', '2'],
      ],
      tags: [['x', true]],
    }),
  ]);
  await s.commit([
    entries({
      features: [
        ['a', null],
        ['a', '3'],
      ],
      tags: [['proj-x', false]],
      properties: WORK_PROPERTIES.slice(1),
    }),
  ]);
  const journal = readFileSync(path + '.journal.1');
  await s.close();
  const snapshot = readFileSync(path, 'utf8');
  writeFileSync(path + '.journal.1', journal);
  const r = await Store.open(path);
  await r.close();
  t.equal(readFileSync(path, 'utf8'), snapshot);
  const w = work(parseQubesXml(readFileSync(path)));
  t.same(w.features, [
    ['service.crond', '1'],
    ['menu-items', 'firefox.desktop org.gnome.Nautilus.desktop'],
    ['b', '2'],
    ['a', '3'],
  ]);
  t.same(w.tags, ['audiovm-dom0', 'created-by-dom0', 'guivm-dom0', 'audio-allowed', 'x']);
  t.same(w.properties, WORK_PROPERTIES.slice(1));
});

t.test('entries committed while journals are compacted end up in qubes.xml', async (t) => {
  const path = await fixtureStore(t);
  const s = await Store.open(path, { compactRecords: 3 });
  for (let i = 0; i < 10; i++) await Promise.all([s.commit([entries({ features: [['n', String(i)]] })]), s.commit([entries({ tags: [[`t${i}`, true]] })])]);
  const copy = crashCopy(t, path);
  const r = await Store.open(copy);
  const w = work(r.doc);
  t.same(
    w.features.filter(([k]) => k === 'n'),
    [['n', '9']],
  );
  t.same(w.tags.slice(5), ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7', 't8', 't9']);
  await r.close();
  await s.close();
  t.same(work(parseQubesXml(readFileSync(path))).tags, w.tags);
});

import { once } from 'node:events';
import { appendFileSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Change, DomainDoc } from '../../qubesd/store/document.js';
import { encodeRecord, readRecords } from '../../qubesd/store/journal.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { Store, StoreError } from '../../qubesd/store/store.js';
import { syntheticAppVm, syntheticStore } from './helpers/synthetic.js';
import { crashCopy, FIXTURE, startChild, tempDir, waitForLine } from './helpers/tmp.js';

const byId = (domains: DomainDoc[], id: string) => domains.find((d) => d.id === id);
const feature = (d: DomainDoc | undefined, name: string) => d?.features.find(([k]) => k === name)?.[1];
const withFeature = (d: DomainDoc, name: string, value: string): DomainDoc => ({
  ...d,
  features: d.features.filter(([k]) => k !== name).concat([[name, value]]),
});
const files = (dir: string) => readdirSync(dir).sort();

async function fixtureStore(t: { teardown(fn: () => void): void }): Promise<{ dir: string; path: string }> {
  const dir = tempDir(t);
  const path = join(dir, 'qubes.xml');
  copyFileSync(FIXTURE, path);
  return { dir, path };
}

t.test('loads a store written by the real qubesd and leaves it as it was', async (t) => {
  const { dir, path } = await fixtureStore(t);
  const s = await Store.open(path);
  t.equal(s.doc.domains.length, 12);
  t.same(files(dir), ['qubes.xml', 'qubes.xml.journal.1', 'qubes.xml.lock']);
  await s.close();
  t.same(files(dir), ['qubes.xml', 'qubes.xml.lock'], 'close removes the empty journal');
  t.equal(readFileSync(path, 'utf8'), readFileSync(FIXTURE, 'utf8'), 'an unchanged store is not rewritten');
});

t.test('creates a missing store from fresh(), and refuses a missing one without it', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'qubes.xml');
  await t.rejects(Store.open(path), { name: 'StoreError', message: /store .*qubes\.xml does not exist/ });
  const s = await Store.open(path, { fresh: () => syntheticStore(2) });
  t.same(
    parseQubesXml(readFileSync(path)).domains.map((d) => d.id),
    ['domain-0', 'domain-1'],
    'written at once',
  );
  await s.close();
});

t.test('commits are durable: a crash copy replays them', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  const vm = s.doc.domains[3]!;
  const added = syntheticAppVm(42, 'added');
  await s.commit([{ kind: 'domain', doc: withFeature(vm, 'x', '1') }]);
  await s.commit([
    { kind: 'domain', doc: added },
    { kind: 'domain-removed', id: 'domain-7' },
  ]);
  await s.commit([{ kind: 'globals', labels: s.doc.labels, pools: [], properties: [['default_netvm', '']], extra: [] }]);
  const copy = crashCopy(t, path);
  t.equal(readFileSync(path, 'utf8'), readFileSync(FIXTURE, 'utf8'), 'qubes.xml itself is untouched until compaction');
  const r = await Store.open(copy);
  t.equal(feature(byId(r.doc.domains, vm.id), 'x'), '1');
  t.same(byId(r.doc.domains, 'domain-42'), added);
  t.notOk(byId(r.doc.domains, 'domain-7'), 'removal replayed');
  t.same([r.doc.pools, r.doc.properties], [[], [['default_netvm', '']]]);
  t.same(parseQubesXml(readFileSync(copy)), r.doc, 'open folded the journal into qubes.xml');
  t.same(files(join(copy, '..')), ['qubes.xml', 'qubes.xml.journal.2', 'qubes.xml.lock'], 'old journal gone, a new one started');
  await r.close();
  await s.close();
  t.same(parseQubesXml(readFileSync(path)), r.doc, 'close writes the same state');
});

t.test('concurrent commits share one journal write', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  const vm = s.doc.domains[4]!;
  await Promise.all(Array.from({ length: 50 }, (_, i) => s.commit([{ kind: 'domain', doc: withFeature(vm, 'n', String(i)) }])));
  const records = readRecords(readFileSync(path + '.journal.1')).payloads;
  t.ok(records.length < 50, `${records.length} records for 50 commits`);
  t.equal(records.flatMap((p) => JSON.parse(String(p)) as Change[]).length, 50, 'every change is in the journal');
  const copy = crashCopy(t, path);
  const r = await Store.open(copy);
  t.equal(feature(byId(r.doc.domains, vm.id), 'n'), '49', 'the last commit wins, in commit order');
  await r.close();
  await s.close();
});

t.test('a torn last record (never acknowledged) is ignored', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  const vm = s.doc.domains[5]!;
  await s.commit([{ kind: 'domain', doc: withFeature(vm, 'acked', 'yes') }]);
  const copy = crashCopy(t, path);
  const torn = encodeRecord(Buffer.from(JSON.stringify([{ kind: 'domain', doc: withFeature(vm, 'acked', 'torn') }])));
  appendFileSync(copy + '.journal.1', torn.subarray(0, torn.length - 7));
  const r = await Store.open(copy);
  t.equal(feature(byId(r.doc.domains, vm.id), 'acked'), 'yes');
  await r.close();
  await s.close();
});

t.test('a journal damaged in the middle stops open, and nothing is touched', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  for (let i = 0; i < 3; i++) await s.commit([{ kind: 'domain', doc: withFeature(s.doc.domains[2]!, 'i', String(i)) }]);
  const copy = crashCopy(t, path);
  await s.close();
  const journal = copy + '.journal.1';
  const bytes = readFileSync(journal);
  bytes[20] ^= 0x20; // inside the first record's payload
  writeFileSync(journal, bytes);
  const before = files(join(copy, '..')).map((f) => [f, readFileSync(join(copy, '..', f)).toString('base64')]);
  for (let attempt = 0; attempt < 2; attempt++) {
    await t.rejects(Store.open(copy), {
      name: 'StoreError',
      message: /journal .*qubes\.xml\.journal\.1 of store .* is damaged: record 1 at byte 0 is damaged/,
    });
  }
  const after = files(join(copy, '..')).map((f) => [f, readFileSync(join(copy, '..', f)).toString('base64')]);
  t.same(
    after.filter(([f]) => !f!.endsWith('.lock')),
    before.filter(([f]) => !f!.endsWith('.lock')),
    'files unchanged; the lock was released (same error twice)',
  );
});

t.test('a corrupt or unreadable qubes.xml stops open with the reason, and is never overwritten', async (t) => {
  const cases: Array<[string, (p: string) => void, RegExp]> = [
    [
      'truncated',
      (p) => writeFileSync(p, readFileSync(FIXTURE, 'utf8').slice(0, 5000)),
      /is not a loadable Qubes store: malformed XML at line \d+, column \d+: unexpected end of input/,
    ],
    ['not a Qubes document', (p) => writeFileSync(p, '<html/>\n'), /is not a loadable Qubes store: root element is <html>/],
    ['binary junk', (p) => writeFileSync(p, Buffer.from([0x3c, 0x71, 0xfe, 0xff])), /invalid UTF-8/],
    ['empty', (p) => writeFileSync(p, ''), /no root element/],
    ['a directory', (p) => mkdirSync(p), /cannot read store .*qubes\.xml: EISDIR/],
  ];
  for (const [name, make, msg] of cases) {
    const dir = tempDir(t);
    const path = join(dir, 'qubes.xml');
    make(path);
    const before = name === 'a directory' ? '' : readFileSync(path).toString('base64');
    await t.rejects(Store.open(path, { fresh: () => syntheticStore(2) }), { name: 'StoreError', message: msg }, name);
    try {
      await Store.open(path);
    } catch (e) {
      t.ok((e as StoreError).message.includes(path), `${name}: the message names the file`);
    }
    if (name !== 'a directory') t.equal(readFileSync(path).toString('base64'), before, `${name}: left as it was`);
    t.same(files(dir), ['qubes.xml', 'qubes.xml.lock'], `${name}: no journal, no temporary file`);
  }
});

t.test('journals without qubes.xml are refused', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'qubes.xml.journal.3'), '');
  await t.rejects(Store.open(join(dir, 'qubes.xml'), { fresh: () => syntheticStore(2) }), /missing but journal files exist/);
});

t.test('a change that qubes.xml could not hold is refused before anything is written', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  const vm = s.doc.domains[2]!;
  const bad: Change[] = [
    { kind: 'domain', doc: withFeature(vm, 'x', 'bell\u0007') },
    { kind: 'domain', doc: { ...vm, devices: ['<devices class="pci">'] } },
    { kind: 'nonsense' } as unknown as Change,
  ];
  for (const c of bad) await t.rejects(s.commit([c]), { name: 'StoreError', message: /refusing to store a change/ });
  t.equal(readFileSync(path + '.journal.1').length, 0);
  await s.commit([{ kind: 'domain', doc: withFeature(vm, 'x', 'fine') }]);
  await s.close();
  t.equal(feature(byId(parseQubesXml(readFileSync(path)).domains, vm.id), 'x'), 'fine');
  await t.rejects(s.commit([{ kind: 'domain', doc: vm }]), /is closed/);
});

t.test('compaction folds the journal into qubes.xml while commits continue', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'qubes.xml');
  const s = await Store.open(path, { fresh: () => syntheticStore(30), compactRecords: 4 });
  const vm = s.doc.domains[5]!;
  for (let i = 0; i < 25; i++) {
    // pairs of concurrent commits, so that some land while a snapshot is written
    await Promise.all([s.commit([{ kind: 'domain', doc: withFeature(vm, 'n', String(i)) }]), s.commit([{ kind: 'domain', doc: syntheticAppVm(1000 + i) }])]);
  }
  const onDisk = parseQubesXml(readFileSync(path));
  t.ok(Number(feature(byId(onDisk.domains, vm.id), 'n')) >= 10, 'qubes.xml already holds compacted commits');
  t.ok(files(dir).filter((f) => f.includes('.journal.')).length <= 3, 'old journals are removed');
  const copy = crashCopy(t, path);
  const r = await Store.open(copy);
  t.equal(feature(byId(r.doc.domains, vm.id), 'n'), '24', 'qubes.xml + journals hold everything');
  t.equal(r.doc.domains.length, 55);
  await r.close();
  await s.close();
  const final = parseQubesXml(readFileSync(path));
  t.same(final, r.doc);
  t.same(files(dir), ['qubes.xml', 'qubes.xml.lock']);
  const names = final.domains.map((d) => d.properties.find(([k]) => k === 'name')?.[1] ?? '(dom0)');
  t.same(names.slice(0, 4), ['(dom0)', 'fedora-41', 'vm-10', 'vm-1000'], "written in Qubes' order: dom0, then by name");
  t.same(names.slice(1), [...names.slice(1)].sort());
});

t.test('snapshots come from the provider once one is set', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  const model = structuredClone(s.doc);
  model.domains[3] = withFeature(model.domains[3]!, 'from', 'model');
  s.setSnapshot(() => model);
  await s.commit([{ kind: 'domain', doc: model.domains[3]! }]);
  await s.close();
  t.equal(feature(byId(parseQubesXml(readFileSync(path)).domains, model.domains[3]!.id), 'from'), 'model');
});

t.test('one daemon per store: a second open fails while the first runs', async (t) => {
  const { path } = await fixtureStore(t);
  const s = await Store.open(path);
  await t.rejects(Store.open(path), { name: 'StoreError', message: new RegExp(`in use by another qubesd \\(pid ${process.pid}\\)`) });
  const { child, lines } = startChild(['try', path]);
  t.match(await waitForLine(lines, /^(opened|error)/), /^error: .*in use by another qubesd \(pid \d+\)/, 'also from another process');
  await once(child, 'exit');
  await s.close();
  const again = await Store.open(path);
  await again.close();
});

t.test('the lock dies with its holder, even by SIGKILL', async (t) => {
  const { path } = await fixtureStore(t);
  const { child, lines } = startChild(['hold', path]);
  await waitForLine(lines, /^locked$/);
  await t.rejects(Store.open(path), { message: new RegExp(`in use by another qubesd \\(pid ${child.pid}\\)`) });
  child.kill('SIGKILL');
  await once(child, 'exit');
  const s = await Store.open(path);
  t.equal(s.doc.domains.length, 12);
  await s.close();
});

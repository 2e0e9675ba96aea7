// A process that uses a store, for tests that need a second process (the
// lock) or one to kill (crash safety). Usage:
//   node store-child.js hold STORE          open, print "locked", wait to be killed
//   node store-child.js try STORE           open; print "opened" or "error: <message>"; exit
//   node store-child.js burst STORE N       commit forever with N concurrent committers (every commit
//                                           also triggers a compaction if STORE_COMPACT_RECORDS is set),
//                                           printing "ack <k> <domain id>" after each acknowledged commit
import { Store } from '../../../qubesd/store/store.js';
import { syntheticAppVm } from './synthetic.js';

const [mode, path, arg] = process.argv.slice(2);
const say = (line: string) => process.stdout.write(line + '\n');

if (mode === 'hold') {
  await Store.open(path!);
  say('locked');
  setInterval(() => {}, 1 << 30);
} else if (mode === 'try') {
  try {
    const s = await Store.open(path!);
    say('opened');
    await s.close();
  } catch (e) {
    say(`error: ${(e as Error).message}`);
  }
} else if (mode === 'burst') {
  const compactRecords = process.env.STORE_COMPACT_RECORDS ? Number(process.env.STORE_COMPACT_RECORDS) : undefined;
  const store = await Store.open(path!, { compactRecords });
  const base = store.doc.domains.filter((d) => d.klass === 'AppVM');
  let k = 0;
  // Commit k either updates an existing AppVM (feature "burst" = k) or adds a
  // new one (id domain-<100000+k>), so the parent can check both kinds.
  const committer = async () => {
    for (;;) {
      const n = k++;
      const doc = n % 5 === 0 ? syntheticAppVm(100000 + n, `burst-${n}`) : structuredClone(base[n % base.length]!);
      doc.features = doc.features.filter(([f]) => f !== 'burst').concat([['burst', String(n)]]);
      await store.commit([{ kind: 'domain', doc }]);
      say(`ack ${n} ${doc.id}`);
    }
  };
  say('ready');
  await Promise.all(Array.from({ length: Number(arg ?? 1) }, committer));
} else {
  process.stderr.write('usage: store-child.js hold|try|burst STORE [N]\n');
  process.exit(2);
}

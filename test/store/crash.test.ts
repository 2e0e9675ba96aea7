// Crash safety with real processes: a child commits a burst and prints every
// acknowledged commit; we SIGKILL it mid-burst and check that every
// acknowledged change survived and that qubes.xml is a complete file.
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { DomainDoc } from '../../qubesd/store/document.js';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';
import { Store } from '../../qubesd/store/store.js';
import { syntheticStore } from './helpers/synthetic.js';
import { startChild, tempDir } from './helpers/tmp.js';

interface Ack {
  n: number;
  id: string;
}

/** Runs a burst in a child, SIGKILLs it after `killAfter` acks, returns every ack it printed. */
async function burstThenKill(path: string, killAfter: number, env: Record<string, string>): Promise<Ack[]> {
  const { child, lines } = startChild(['burst', path, '4'], env);
  const acks: Ack[] = [];
  let killed = false;
  const exited = once(child, 'exit');
  for await (const line of lines) {
    const m = /^ack (\d+) (\S+)$/.exec(line);
    if (!m) continue;
    acks.push({ n: Number(m[1]), id: m[2]! });
    if (acks.length === killAfter && !killed) {
      killed = true;
      child.kill('SIGKILL');
    }
  }
  const [code, signal] = await exited;
  if (signal !== 'SIGKILL') throw new Error(`the child ended by itself (code ${code}) after ${acks.length} acks`);
  return acks;
}

const burstValue = (d: DomainDoc | undefined) => Number(d?.features.find(([k]) => k === 'burst')?.[1] ?? -1);

/** Acknowledged commits not visible (new domains must exist, updated ones hold that value or a later one). */
function lostAcks(domains: DomainDoc[], acks: Ack[]): number {
  const byId = new Map(domains.map((d) => [d.id, d]));
  const latest = new Map<string, number>();
  for (const a of acks) latest.set(a.id, Math.max(latest.get(a.id) ?? -1, a.n));
  let missing = 0;
  for (const [id, n] of latest) if (burstValue(byId.get(id)) < n) missing++;
  return missing;
}

t.test('SIGKILL in the middle of a burst of writes loses no acknowledged write', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'qubes.xml');
  await (await Store.open(path, { fresh: () => syntheticStore(20) })).close();
  const all: Ack[] = [];
  for (const killAfter of [150, 301, 77]) {
    const acks = await burstThenKill(path, killAfter, { STORE_COMPACT_RECORDS: '40' });
    all.push(...acks);
    t.ok(acks.length >= killAfter, `killed after ${acks.length} acks`);
    t.doesNotThrow(() => parseQubesXml(readFileSync(path)), 'qubes.xml on disk is loadable as it is');
    const s = await Store.open(path);
    t.equal(lostAcks(s.doc.domains, acks), 0, `all ${acks.length} acknowledged commits survived`);
    await s.close();
  }
  const final = parseQubesXml(readFileSync(path));
  t.ok(final.domains.length > 20, 'new domains accumulated across rounds');
});

t.test('SIGKILL while qubes.xml is being replaced leaves the old or the new file, complete', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'qubes.xml');
  const N = 400;
  await (await Store.open(path, { fresh: () => syntheticStore(N) })).close();
  // A snapshot of the whole store after every record: the child spends most
  // of its time writing and renaming qubes.xml when it is killed.
  for (const killAfter of [3, 11, 29, 60]) {
    const acks = await burstThenKill(path, killAfter, { STORE_COMPACT_RECORDS: '1' });
    t.comment(`left behind: ${readdirSync(dir).join(' ')}`);
    const onDisk = parseQubesXml(readFileSync(path));
    t.ok(onDisk.domains.length >= N, `after ${acks.length} acks qubes.xml is complete (${onDisk.domains.length} domains)`);
    const s = await Store.open(path);
    t.equal(lostAcks(s.doc.domains, acks), 0, `all ${acks.length} acknowledged commits survived`);
    await s.close();
  }
});

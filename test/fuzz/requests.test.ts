// The soak's request generator runs as root against a daemon that creates
// directories where admin.pool.Add says: whatever it mutates, a dir_path it
// sends must stay inside the soak's own pool directory.
import t from 'tap';
import { generate, poolPathsSafe, type World } from '../../scripts/fuzz/requests.js';
import { Rng } from '../../scripts/fuzz/random.js';

const root = '/tmp/qubes-fuzz-pools-Ab12Cd';
const world: World = {
  stable: ['fz-tpl', 'fz-work', 'fz-mgmt'],
  scratch: ['fz-c0'],
  properties: ['label', 'netvm'],
  labels: ['red'],
  pools: ['varlibqubes'],
  profiles: ['fz'],
  poolRoot: root,
};

t.test('poolPathsSafe', async (t) => {
  t.ok(poolPathsSafe(Buffer.from(`x\0name=p\ndir_path=${root}/a\n`), root), "the soak's own directory");
  t.ok(poolPathsSafe(Buffer.from('admin.vm.List+ dom0 name dom0\0'), root), 'no dir_path at all');
  for (const bad of [
    `${root}/a\x85/../x`,
    `${root}`,
    '/tmp',
    '/',
    `${root}/../x`,
    `${root}/a/../../etc`,
    `${root}/ab`,
    `${root}/a\0/x`,
    'a',
    `${root.slice(0, -3)}/a`,
  ]) {
    t.notOk(poolPathsSafe(Buffer.from(`x\0name=p\ndir_path=${bad}\n`, 'latin1'), root), JSON.stringify(bad));
  }
});

t.test("5 000 generated requests: every dir_path is the soak's own", async (t) => {
  const rng = new Rng(12345);
  let pools = 0,
    unsafe = 0;
  for (let i = 0; i < 5_000; i++) {
    const g = generate(rng, world);
    if (g.bytes.includes('dir_path=')) pools++;
    if (!poolPathsSafe(g.bytes, root)) unsafe++;
  }
  t.equal(unsafe, 0);
  t.ok(pools > 5, `pool.Add requests were generated (${pools})`);
});

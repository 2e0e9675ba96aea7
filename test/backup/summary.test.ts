import t from 'tap';
import { backupSummary, sizeToHuman } from '../../qubesd/backup/summary.js';

t.test('sizes as Qubes prints them', async (t) => {
  t.equal(sizeToHuman(0), '0');
  t.equal(sizeToHuman(1023), '1023');
  t.equal(sizeToHuman(1024), '1.0 KiB');
  t.equal(sizeToHuman(1536), '1.5 KiB');
  t.equal(sizeToHuman(5 * 1024 ** 2), '5.0 MiB');
  t.equal(sizeToHuman(3.25 * 1024 ** 3), '3.3 GiB');
});

t.test('summary table', async (t) => {
  const text = backupSummary(
    [
      { name: 'work', klass: 'AppVM', size: 2 * 1024 ** 3 },
      { name: 'fedora', klass: 'TemplateVM', size: 1024, updateable: true },
      { name: 'standalone', klass: 'StandaloneVM', size: 10, updateable: true, running: true },
    ],
    ['sys-net', 'dom0'],
  );
  const lines = text.split('\n');
  const width = lines[0]!.length;
  t.ok(
    lines
      .slice(0, 9)
      .filter((l) => !l.includes('<--'))
      .every((l) => l.length === width),
    'table columns line up',
  );
  t.match(lines[1], /^\s+VM \|\s+type \|\s+size \|$/);
  t.match(lines[3], /^\s+work \|\s+VM \|\s+2\.0 GiB \|$/);
  t.match(lines[4], /^\s+fedora \|\s+Template VM \|\s+1\.0 KiB \|$/);
  t.match(lines[5], /^\s+standalone \|\s+VM \+ Sys \|\s+10 \| <-- The VM is running/);
  t.match(lines[7], /^\s+Total size: \|\s+2\.0 GiB \|$/);
  t.match(text, /VMs not selected for backup:\n - dom0\n - sys-net\n$/);
  // as Qubes: nothing after the list (an earlier version added a Destination line)
  t.equal(
    backupSummary([], ['dom0']),
    '------------------+--------------+--------------+\n' +
      '               VM |         type |         size |\n' +
      '------------------+--------------+--------------+\n' +
      '------------------+--------------+--------------+\n' +
      '      Total size: |                           0 |\n' +
      '------------------+--------------+--------------+\n' +
      'VMs not selected for backup:\n - dom0\n',
  );
});

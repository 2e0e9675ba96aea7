// docs/API.md is generated from the method table; a method added to the
// table without regenerating the docs (npm run docs) fails here.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/qubesd.js';
import { METHODS } from '../../lib/api-methods.js';

t.test('docs/API.md is current with the method table', async (t) => {
  const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'rpc-services', 'gen-docs-main.js'), '--check'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  t.equal(r.status, 0, `gen-docs --check: ${r.stdout}${r.stderr}`);
  const doc = readFileSync(join(ROOT, 'docs', 'API.md'), 'utf8');
  const missing = METHODS.filter((m) => m.socket !== 'internal' && !doc.includes(m.name)).map((m) => m.name);
  t.same(missing, [], 'every public method is documented');
});

t.test('internal methods are granted by no policy include', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs', 'API.md'), 'utf8');
  const rows = doc.split('\n').filter((l) => l.startsWith('| `internal.'));
  t.ok(rows.length >= 3, 'internal methods are listed');
  t.same(rows.filter((l) => !l.includes(' | — | ')), [], 'no include file in their rows');
  t.ok(doc.includes('| `internal.vm.volume.ImportBegin` | any qube | required | optional | — | read, write | qubesd.internal.sock only |'));
});

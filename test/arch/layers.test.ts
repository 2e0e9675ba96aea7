// Imports point down (docs/ARCHITECTURE.md, "Layers"): every relative import
// of the sources is read with a regex and checked against the layer table
// below. A module that imports one above it (the model reaching into api/,
// rpc-services into qubesd, ...) fails here with the offending line.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const PACKAGES = ['lib', 'qubesd', 'rpc-services', 'policy', 'rest'];

/** qubesd's layers, bottom first; a module may import its own layer or lower ones. */
const QUBESD_LAYERS: ReadonlyArray<readonly string[]> = [
  ['errors.ts', 'config-schema.ts'],
  ['events', 'store', 'log'],
  ['model'],
  ['storage', 'hypervisor', 'firewall', 'qrexec'],
  ['lifecycle', 'backup'],
  ['api'],
  ['server.ts', 'connection-limits.ts'],
  ['main.ts'],
  ['cli.ts'],
];

/**
 * Which packages (or, ending in '/' or '.ts', which parts of one) each
 * package may import besides itself. rpc-services holds the programs on top
 * (installer, qubes-stack) that lay out and start every daemon.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: [],
  policy: ['lib'],
  qubesd: ['lib', 'policy'],
  // the backup archive format and the Admin-API restore client run in the gateway too
  rest: ['lib', 'policy', 'qubesd/backup/'],
  // the daemons' key declarations, the gateway's token file
  'rpc-services': ['lib', 'policy', 'rest', 'qubesd/config-schema.ts'],
};

function mayImport(fp: string, to: string): boolean {
  return MAY_IMPORT[fp]!.some((p) => (p.endsWith('/') || p.endsWith('.ts') ? to.startsWith(p) : to.split('/')[0] === p));
}

function qubesdLayer(path: string): number {
  const part = path.split('/')[1]!;
  const i = QUBESD_LAYERS.findIndex((names) => names.includes(part));
  if (i < 0) throw new Error(`${path}: not in any qubesd layer (add its folder to QUBESD_LAYERS)`);
  return i;
}

/** Why `from` may not import `to` (paths relative to the checkout), or null. */
export function violation(from: string, to: string): string | null {
  const [fp, tp] = [from.split('/')[0]!, to.split('/')[0]!];
  if (!PACKAGES.includes(tp)) return null;
  if (fp !== tp) return mayImport(fp, to) ? null : `${fp} may not import ${tp}`;
  if (fp !== 'qubesd') return null;
  return qubesdLayer(to) > qubesdLayer(from) ? `${from} is below ${to}` : null;
}

const IMPORT_RE = /^\s*(?:import|export)\b[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm;

function sources(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(join(ROOT, dir), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

t.test('the layer rule itself refuses an upward import', async (t) => {
  t.equal(violation('qubesd/model/app.ts', 'qubesd/api/dispatch.ts'), 'qubesd/model/app.ts is below qubesd/api/dispatch.ts');
  t.equal(violation('rpc-services/import.ts', 'qubesd/storage/import.ts'), 'rpc-services may not import qubesd');
  t.equal(violation('lib/api-methods.ts', 'policy/evaluator.ts'), 'lib may not import policy');
  t.equal(violation('qubesd/api/dispatch.ts', 'qubesd/model/app.ts'), null);
  t.equal(violation('qubesd/api/policy-filter.ts', 'policy/policy-engine.ts'), null);
});

t.test('every import of the sources points down', async (t) => {
  const files = PACKAGES.flatMap(sources);
  t.ok(files.length > 100, `read ${files.length} source files`);
  const bad: string[] = [];
  for (const file of files) {
    for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(IMPORT_RE)) {
      const target = normalize(join(dirname(file), m[1] ?? m[2]!)).replace(/\.js$/, '.ts');
      const why = violation(file, relative('.', target));
      if (why) bad.push(`${file} imports ${m[1] ?? m[2]}: ${why}`);
    }
  }
  t.same(bad, [], 'no import points up');
});

// Runs every compiled bench/*.bench.js in its own process, one after another
// (the machine has 2 cores: concurrent benches would disturb each other), and
// passes through their output: one JSON object per line, e.g.
//   {"bench":"policy","name":"eval-inprocess","rules":1000,"value":123456,"unit":"req/s"}
// Usage: npm run bench [-- name-filter ...]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .sort()
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
let failed = 0;
for (const f of files) {
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, f)], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench ${f} exited with ${r.status}`);
  }
}
process.exit(failed ? 1 : 0);

// Writes docs/CONFIGURATION.md from the daemons' key declarations:
// `node dist/rpc-services/gen-config-docs.js` (or with a path to write
// elsewhere, or --check to verify that the committed file is current).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configMarkdown } from '../lib/config/docs.js';
import { DAEMON_SCHEMAS } from './daemon-configs.js';
import { CHECKOUT } from './install.js';

const args = process.argv.slice(2);
const target = args.find((a) => !a.startsWith('--')) ?? join(CHECKOUT, 'docs', 'CONFIGURATION.md');
const text = configMarkdown([...DAEMON_SCHEMAS]);
if (args.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    /* missing: out of date */
  }
  if (current !== text) {
    console.error(`${target} is out of date: run node dist/rpc-services/gen-config-docs.js`);
    process.exit(1);
  }
} else {
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}

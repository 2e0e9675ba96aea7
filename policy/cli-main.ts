// Entry point of bin/qubes-policy.
import { main, run } from './cli.js';

await run(main, process.argv.slice(2));

// Entry point of bin/qubes-policy-eval (= `qubes-policy eval …`).
import { main, run } from './cli.js';

await run(main, ['eval', ...process.argv.slice(2)]);

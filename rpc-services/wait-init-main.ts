// Entry point of bin/qubes-wait-init-complete.
import { main } from './wait-init.js';
process.exitCode = await main();

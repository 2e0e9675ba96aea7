// Entry point of bin/qubes-rest.
import { main } from './main.js';
process.exitCode = await main();

// Entry point of bin/qubes-stack.
import { main } from './stack.js';
await main();

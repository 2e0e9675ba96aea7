// Process entry of the dispatcher daemon (main.ts stays importable by tests).
import { main } from './main.js';
await main();

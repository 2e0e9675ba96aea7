// Entry point of bin/qubesd (kept apart from main.ts so tests can import the
// daemon without starting one).
import { main } from './main.js';
await main();

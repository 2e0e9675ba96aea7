// Entry point of `npm run docs`: writes (or with --check verifies) docs/API.md.
import { main } from './gen-docs.js';
process.exitCode = main(process.argv.slice(2));

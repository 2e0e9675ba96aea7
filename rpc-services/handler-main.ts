// Entry point of the handler program (bin/qubes-rpc-handler and every
// /etc/qubes-rpc entry that links to it).
import { main } from './handler.js';
process.exitCode = await main();

// Entry point of bin/qrexec-client-vm.
import { main } from './client.js';
await main();

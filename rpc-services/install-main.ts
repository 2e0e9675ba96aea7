// Entry point of bin/qubes-install.
import { main } from './install.js';
main();

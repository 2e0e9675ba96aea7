// A qubesd for these tests while the lead has not yet listed the firewall
// and device families in qubesd/api/handlers/index.ts: the registry's
// handlers plus those two families, over the real socket code, on a store.
// Once they are registered, daemon.ts runs the real bin/qubesd code instead.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { QubesApp } from '../../qubesd/model/app.js';
import { Store } from '../../qubesd/store/store.js';
import { Dispatcher } from '../../qubesd/api/dispatch.js';
import { HANDLERS } from '../../qubesd/api/handlers/index.js';
import { handlers as firewall } from '../../qubesd/api/handlers/firewall.js';
import { handlers as devices } from '../../qubesd/api/handlers/devices.js';
import { AuditLog } from '../../qubesd/log/audit.js';
import { closeServer, listen } from '../../qubesd/server.js';

const { values } = parseArgs({ options: { store: { type: 'string' }, 'base-dir': { type: 'string' }, 'socket-dir': { type: 'string' } } });
const baseDir = values['base-dir']!;
const store = await Store.open(values.store!, { fresh: () => QubesApp.freshDoc({ baseDir }) });
const app = QubesApp.fromDoc(store.doc, { baseDir });
store.setSnapshot(() => app.toDoc());
const audit = new AuditLog('none');
const path = join(values['socket-dir']!, 'qubesd.sock');
const server = await listen(path, new Dispatcher({ app, store, audit, socket: 'admin', handlers: { ...HANDLERS, ...firewall, ...devices } }));
process.once('SIGTERM', () => {
  void closeServer(server, path).then(() => store.close()).then(() => process.exit(0));
});

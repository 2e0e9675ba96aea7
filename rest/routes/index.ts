// Every routes plugin of the gateway, in registration order. A new family of
// routes is a RestPlugin (see rest/README.md) added to this list.
import type { RestPlugin } from '../context.js';
import { backupIoRoutes } from './backup-io.js';
import { backupProfileRoutes } from './backup-profiles.js';
import { diskRoutes } from './disks.js';
import { eventRoutes } from './events.js';
import { installationRoutes } from './installation.js';
import { policyRoutes } from './policy.js';
import { rootRoutes } from './root.js';
import { sessionRoutes } from './session.js';
import { storageRoutes } from './storage.js';
import { taskRoutes } from './tasks.js';
import { vmRoutes } from './vms.js';

export const ROUTES: RestPlugin[] = [
  rootRoutes,
  vmRoutes,
  storageRoutes,
  installationRoutes,
  taskRoutes,
  backupProfileRoutes,
  eventRoutes,
  diskRoutes,
  backupIoRoutes,
  sessionRoutes,
  policyRoutes,
];

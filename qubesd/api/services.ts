// The daemon's services a handler may use, made once where qubesd is wired
// (main.ts) and handed to every handler on its call (Call.services): what a
// handler can reach is what it receives, not what it looks up elsewhere.
import type { BackupService } from '../backup/service.js';
import type { Firewalls } from '../firewall/firewall.js';
import type { Lifecycle } from '../lifecycle/controller.js';
import type { StorageManager } from '../storage/manager.js';

export interface Services {
  /** pools and volumes (admin.pool.*, admin.vm.volume.*, a new qube's volumes) */
  readonly storage: StorageManager;
  /** starting, stopping and watching qubes (admin.vm.Start..., internal.*) */
  readonly lifecycle: Lifecycle;
  /** admin.backup.* */
  readonly backups: BackupService;
  /** each qube's firewall rules (admin.vm.firewall.*) */
  readonly firewalls: Firewalls;
}

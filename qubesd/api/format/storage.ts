// The Admin API's text for pools and volumes (admin.pool.Info,
// admin.pool.UsageDetails, admin.vm.volume.Info): "key=value" lines in
// Qubes' order. The storage layer answers with its objects; how a reply
// spells them is the API's business.
import type { StorageManager } from '../../storage/manager.js';
import type { StorageVm } from '../../storage/model-view.js';

/** the order of admin.vm.volume.Info's lines before is_outdated (qubes/api/admin.py vm_volume_info) */
const VOLUME_PROPS_ORDER = ['pool', 'vid', 'size', 'usage', 'rw', 'source', 'path', 'save_on_stop', 'snap_on_start', 'revisions_to_keep', 'ephemeral'] as const;

const py = (b: boolean): string => (b ? 'True' : 'False');

const byKey = ([a]: readonly [string, unknown], [b]: readonly [string, unknown]): number => (a < b ? -1 : a > b ? 1 : 0);

/** admin.pool.Info body: sorted config, then size, usage, included_in. */
export async function poolInfoText(storage: StorageManager, name: string): Promise<string> {
  const pool = storage.mustPool(name);
  let out = [...pool.config()]
    .sort(byKey)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');
  const size = await pool.size();
  if (size !== null) out += `size=${size}\n`;
  const usage = await pool.usage();
  if (usage !== null) out += `usage=${usage}\n`;
  const inc = pool.includedIn(storage.allPools());
  if (inc) out += `included_in=${inc.name}\n`;
  return out;
}

/** admin.pool.UsageDetails body, sorted by key. */
export async function poolUsageText(storage: StorageManager, name: string): Promise<string> {
  const d = await storage.mustPool(name).usageDetails();
  return d
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}\n`)
    .join('');
}

/** admin.vm.volume.Info body. */
export async function volumeInfoText(storage: StorageManager, vm: StorageVm, name: string): Promise<string> {
  const v = storage.volume(vm, name);
  const values: Record<(typeof VOLUME_PROPS_ORDER)[number], string> = {
    pool: v.pool.name,
    vid: v.vid,
    size: String(await v.size()),
    usage: String(await v.usage()),
    rw: py(v.rw),
    source: v.source ? v.source.vid : (v.snapOnStart && v.conf.source) || '',
    path: v.path() ?? '',
    save_on_stop: py(v.saveOnStop),
    snap_on_start: py(v.snapOnStart),
    revisions_to_keep: String(v.revisionsToKeep),
    ephemeral: py(v.ephemeral),
  };
  return VOLUME_PROPS_ORDER.map((k) => `${k}=${values[k]}\n`).join('') + `is_outdated=${py(await v.isOutdated())}\n`;
}

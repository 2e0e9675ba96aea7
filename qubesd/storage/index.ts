// The storage layer of qubesd: pools (file, file-reflink, linux-kernel) and
// qube volumes on real files. Start-up: new StorageManager(app, { baseDir }).
export { StorageManager, type StorageOptions, type BlockDevice, type CopyRecord } from './manager.js';
export { importFromStream } from './import.js';
export type { StorageApp, StorageVm, ModelAccess, Placement } from './model-view.js';
export { DRIVERS, type Pool } from './pools.js';
export type { Volume, Revision } from './volumes.js';
export type { CopyMethod } from './fileops.js';

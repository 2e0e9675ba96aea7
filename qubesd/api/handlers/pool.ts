// admin.pool.*: storage pools (qubes/api/admin.py pool_* handlers).
import type { Call, Handlers } from '../call.js';
import { ProtocolError, QubesException, QubesPoolInUseError } from '../../errors.js';
import type { StorageManager } from '../../storage/manager.js';
import { poolInfoText, poolUsageText } from '../format/storage.js';
import { DRIVERS, driverInfo } from '../../storage/pools.js';
import { POOL_NAME_CHARS, allIn, ascii, enforce, enforceArg, parseBoolPayload, splitLines, validateNumber } from '../../storage/api-args.js';

const storage = (call: Call): StorageManager => call.services.storage;

/** The pool named by the argument; unknown names are refused as Qubes does. */
function poolArg(call: Call): string {
  enforceArg(call.arg, storage(call).poolNames(), 'pools');
  return call.arg;
}

export const handlers: Handlers = {
  'admin.pool.List': (call) =>
    storage(call)
      .poolNames()
      .map((n) => `${n}\n`)
      .join(''),

  'admin.pool.ListDrivers': () => DRIVERS.map((d) => `${d.name} ${d.params.map(([p]) => p).join(' ')}\n`).join(''),

  'admin.pool.Info': (call) => poolInfoText(storage(call), poolArg(call)),

  'admin.pool.UsageDetails': (call) => poolUsageText(storage(call), poolArg(call)),

  'admin.pool.volume.List': async (call) => (await storage(call).poolVolumeIds(poolArg(call))).map((v) => `${v}\n`).join(''),

  'admin.pool.Add': async (call) => {
    const m = storage(call);
    enforceArg(
      call.arg,
      DRIVERS.map((d) => d.name),
      'available drivers',
    );
    const lines = splitLines(ascii(call.payload, 'Pool parameters contains non-ASCII characters'));
    enforce(
      lines.every((l) => l.includes('=')),
      'Options must be separated by equal sign',
    );
    const pairs = lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
    enforce(new Set(pairs.map(([k]) => k)).size === pairs.length, 'Options must be unique');
    const config = new Map(pairs);
    enforce(config.has('name'), 'Pool configuration must contain key: name');
    const name = config.get('name')!;
    config.delete('name');
    enforce(allIn(name, POOL_NAME_CHARS), 'Pool name must be in safe set: ' + POOL_NAME_CHARS);
    const driver = driverInfo(call.arg)!;
    const known = new Set(driver.params.map(([p]) => p));
    if ([...config.keys()].some((k) => !known.has(k))) throw ProtocolError('Unexpected driver options found');
    const missing = driver.params.filter(([p, required]) => required && !config.has(p)).map(([p]) => p);
    if (missing.length) throw QubesException('missing required driver options: ' + missing.join(' '));
    if (m.poolNames().includes(name)) throw QubesPoolInUseError(name);
    if (name === '') throw QubesException('No pool name for pool');
    await m.addPool(call.arg, name, config);
  },

  'admin.pool.Remove': async (call) => {
    await storage(call).removePool(poolArg(call));
  },

  'admin.pool.Set.revisions_to_keep': (call) => {
    const name = poolArg(call);
    const value = validateNumber(call.payload, 'revisions to keep', true);
    enforce(value >= -1, "Value can't be lower than -1");
    storage(call).setPoolRevisionsToKeep(name, value);
  },

  'admin.pool.Set.ephemeral_volatile': (call) => {
    const name = poolArg(call);
    storage(call).setPoolEphemeralVolatile(name, parseBoolPayload(call.payload));
  },
};

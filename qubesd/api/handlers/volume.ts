// admin.vm.volume.* (and our admin.vm.volume.Export) and internal.vm.volume.ImportBegin/ImportEnd
// (qubes/api/admin.py vm_volume_*, qubes/api/internal.py).
import { StreamedContent, type Call, type Handlers } from '../call.js';
import { exportContent } from '../../storage/export.js';
import { ProtocolError } from '../../errors.js';
import type { StorageManager } from '../../storage/manager.js';
import { volumeInfoText } from '../format/storage.js';
import type { StorageVm } from '../../storage/model-view.js';
import { QubesVolumeRevisionNotFoundError } from '../../storage/errors.js';
import { REVISION_CHARS, allIn, ascii, enforce, enforceArg, parseBoolPayload, stripBytes, validateNumber } from '../../storage/api-args.js';

const storage = (call: Call): StorageManager => call.services.storage;

function dest(call: Call): StorageVm {
  const vm: StorageVm = call.dest;
  return vm;
}

/** The volume named by the argument (PermissionDenied "Argument not in '<vm> volumes'" otherwise). */
function volumeArg(call: Call): string {
  const vm = dest(call);
  enforceArg(call.arg, storage(call).volumeNames(vm), `${vm.name} volumes`);
  return call.arg;
}

/** The internal calls say it differently: ProtocolError, no quotes. */
function internalVolumeArg(call: Call): string {
  const vm = dest(call);
  if (!storage(call).volumeNames(vm).includes(call.arg)) throw ProtocolError(`Argument not in ${vm.name} volumes`);
  return call.arg;
}

export const handlers: Handlers = {
  'admin.vm.volume.List': (call) =>
    storage(call)
      .volumeNames(dest(call))
      .map((n) => `${n}\n`)
      .join(''),

  'admin.vm.volume.Info': (call) => volumeInfoText(storage(call), dest(call), volumeArg(call)),

  'admin.vm.volume.ListSnapshots': async (call) => (await storage(call).listSnapshots(dest(call), volumeArg(call))).map((r) => `${r}\n`).join(''),

  'admin.vm.volume.Revert': async (call) => {
    const name = volumeArg(call);
    const revision = ascii(call.payload, 'Revision name contains non-ASCII characters').trim();
    enforce(allIn(revision, REVISION_CHARS), 'Revision name must be in safe set: ' + REVISION_CHARS);
    const m = storage(call);
    if (!(await m.revisionExists(dest(call), name, revision))) throw QubesVolumeRevisionNotFoundError();
    await m.revert(dest(call), name, revision);
  },

  'admin.vm.volume.CloneFrom': (call) => storage(call).cloneFrom(dest(call), volumeArg(call)),

  'admin.vm.volume.CloneTo': async (call) => {
    const name = volumeArg(call);
    const token = ascii(call.payload, 'Token contains non-ASCII characters').trim();
    await storage(call).cloneTo(dest(call), name, token);
  },

  'admin.vm.volume.Resize': async (call) => {
    const name = volumeArg(call);
    const size = validateNumber(stripBytes(call.payload), 'volume size');
    await storage(call).resize(dest(call), name, size);
  },

  'admin.vm.volume.Clear': async (call) => {
    await storage(call).clear(dest(call), volumeArg(call));
  },

  'admin.vm.volume.Set.revisions_to_keep': async (call) => {
    const name = volumeArg(call);
    const value = validateNumber(call.payload, 'revisions to keep', true);
    await storage(call).setRevisionsToKeep(dest(call), name, value);
  },

  'admin.vm.volume.Set.rw': (call) => {
    const name = volumeArg(call);
    storage(call).setRw(dest(call), name, parseBoolPayload(call.payload));
  },

  'admin.vm.volume.Set.ephemeral': (call) => {
    const name = volumeArg(call);
    storage(call).setEphemeral(dest(call), name, parseBoolPayload(call.payload));
  },

  'admin.vm.volume.Export': async (call) => {
    const name = volumeArg(call);
    const { fh, size } = await storage(call).openExport(dest(call), name);
    return new StreamedContent(exportContent(fh, size, call.signal));
  },

  'internal.vm.volume.ImportBegin': async (call) => {
    const name = internalVolumeArg(call);
    // a function: Qubes checks the size only after the qube is known to be halted
    const size = () => (call.payload.length ? validateNumber(call.payload, 'size of new data') : null);
    const r = await storage(call).importBegin(dest(call), name, size);
    return `${r.size} ${r.path}`;
  },

  'internal.vm.volume.ImportEnd': async (call) => {
    const name = internalVolumeArg(call);
    const ok = call.payload.equals(Buffer.from('ok'));
    let error = '';
    if (!ok) {
      // the import must end whatever the message holds: never refuse it over a byte
      const text = call.payload.toString('latin1').replace(/[^\x00-\x7f]/g, '?');
      const nl = text.indexOf('\n');
      if (nl >= 0) error = text.slice(nl + 1);
    }
    await storage(call).importEnd(dest(call), name, ok, error);
  },
};

// admin.backup.Info/Execute/Cancel (and our admin.vm.backup.Stream): backups driven by the profiles in dom0's
// backup profile directory. The work is in qubesd/backup/service.ts.
import { StreamedContent, type Call, type Handlers } from '../call.js';
import { ProtocolError } from '../../errors.js';
import { parseStreamPayload } from '../../backup/stream.js';

/** The profile name becomes a file name: never a path (Qubes' own check). */
function profileName(call: Call): string {
  if (call.arg.includes('/')) throw ProtocolError('Backup profile ID must not contain forward slash character');
  return call.arg;
}

export const handlers: Handlers = {
  'admin.backup.Info': (call) => call.services.backups.info(profileName(call), (vm) => call.filter.vm(vm), call.source.isAdmin),
  'admin.backup.Execute': async (call) => {
    await call.services.backups.execute(profileName(call), call.signal);
  },
  'admin.backup.Cancel': (call) => {
    call.services.backups.cancel(profileName(call));
  },
  // our extension: the destination qube's archive is the reply (backup/stream.ts)
  'admin.vm.backup.Stream': async (call) => new StreamedContent(await call.services.backups.stream(call.dest, parseStreamPayload(call.payload), call.signal)),
};

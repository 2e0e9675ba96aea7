// The libvirt backend and client against libvirtd's test driver
// (test:///default), which keeps domain state without running anything.
import t from 'tap';
import { LibvirtBackend } from '../../qubesd/hypervisor/libvirt-backend.js';
import { behaviourSuite } from './behaviour.js';
import { libvirtSocket, skipLoudly } from './helpers.js';

const sock = await libvirtSocket();
if (!sock) {
  t.test('libvirt backend on the test driver', { skip: skipLoudly('libvirt backend on the test driver') }, async () => {});
} else {
  t.test('behaviour suite on libvirt (test driver)', async (t) => {
    behaviourSuite(t, {
      make: async () => {
        const b = new LibvirtBackend({ uri: 'test:///default', socket: sock });
        await b.connect();
        return b;
      },
      pmSuspend: false,
    });
  });
}

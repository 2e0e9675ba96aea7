// admin.Events: a stream of the model's events until the client goes away.
// With destination dom0 it carries the events of the system and of every
// qube; with a qube as destination only that qube's events.
import type { Handlers } from '../call.js';

/** Internal events Qubes never sends to clients. */
function internalEvent(event: string): boolean {
  return (
    event.startsWith('admin-permission:') ||
    event.startsWith('device-get:') ||
    event.startsWith('device-list:') ||
    event.startsWith('device-list-attached:') ||
    event === 'domain-is-fully-usable'
  );
}

export const handlers: Handlers = {
  'admin.Events': (call) =>
    new Promise<null>((resolve) => {
      const { app } = call;
      const all = call.dest.name === 'dom0';
      const dest = call.dest;
      const unsubscribe = app.events.subscribe((subject, event, kwargs) => {
        if (all) {
          // qube events reach the stream only while the qube is in the system
          if (subject !== '' && (internalEvent(event) || !app.getVm(subject))) return;
        } else {
          // only this qube's events (its name may be taken by a new qube after removal)
          const current = app.getVm(subject);
          if (subject !== dest.name || (current && current !== dest) || internalEvent(event)) return;
        }
        if (!call.filter.event(subject, event, kwargs)) return;
        call.sendEvent(subject, event, kwargs);
      });
      call.sendEvent('', 'connection-established');
      const done = (): void => {
        unsubscribe();
        resolve(null);
      };
      if (call.signal.aborted) done();
      else call.signal.addEventListener('abort', done, { once: true });
    }),
};

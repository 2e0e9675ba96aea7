// dom0's own calls on qubesd.internal.sock: internal.GetSystemInfo (the qubes
// as the qrexec policy engine sees them, as JSON in Python's json.dumps
// layout) and internal.SuspendPre/SuspendPost (the host's suspend hook:
// running qubes are suspended or paused before the host sleeps and resumed
// after it wakes, as Qubes' qubes/api/internal.py does).
import type { QubesApp } from '../../model/app.js';
import type { Lifecycle } from '../../lifecycle/controller.js';
import { QubesException } from '../../errors.js';
import type { Handlers } from '../call.js';

/** Python json.dumps with default settings (", " and ": " separators, ASCII only). */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') {
    return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  }
  if (Array.isArray(v)) return '[' + v.map(pyJson).join(', ') + ']';
  return (
    '{' +
    Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`)
      .join(', ') +
    '}'
  );
}

/** Qubes paused or suspended before SuspendPre, left so by SuspendPost. Qubes
 * keeps the list in a file under /run; here it lives as long as qubesd. */
const pausedBeforeSuspend = new WeakMap<QubesApp, Set<string>>();

const qubesOf = (app: QubesApp) => app.allVms().filter((vm) => vm.isQubesVM);

// Qubes also runs qubes.SuspendPreAll / qubes.SuspendPostAll in every qube
// with qrexec; this dom0 reaches no guest agents, so that step is left out.
async function suspendPre(app: QubesApp, lc: Lifecycle): Promise<void> {
  const paused = new Set(
    qubesOf(app)
      .filter((vm) => vm.power === 'Paused' || vm.power === 'Suspended')
      .map((vm) => vm.name),
  );
  pausedBeforeSuspend.set(app, paused);
  const results = await Promise.allSettled(
    qubesOf(app)
      .filter((vm) => !paused.has(vm.name) && vm.isRunning())
      .map((vm) => lc.suspend(vm)),
  );
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [`\n${(r.reason as Error).message}`] : [])).join('');
  if (failed) throw QubesException(`Failed to suspend some qubes: ${failed}`);
}

async function suspendPost(app: QubesApp, lc: Lifecycle): Promise<void> {
  const paused = pausedBeforeSuspend.get(app) ?? new Set<string>();
  pausedBeforeSuspend.delete(app);
  // Qubes waits for every resume and does not report failures here
  await Promise.allSettled(
    qubesOf(app)
      .filter((vm) => !paused.has(vm.name) && (vm.power === 'Paused' || vm.power === 'Suspended'))
      .map((vm) => lc.resume(vm)),
  );
}

export const handlers: Handlers = {
  'internal.GetSystemInfo': (call) => pyJson(call.app.systemInfo()),
  'internal.SuspendPre': (call) => suspendPre(call.app, call.services.lifecycle),
  'internal.SuspendPost': (call) => suspendPost(call.app, call.services.lifecycle),
};

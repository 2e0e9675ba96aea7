// dom0's own calls on qubesd.internal.sock: internal.GetSystemInfo (the qubes
// as the qrexec policy engine sees them, as JSON in Python's json.dumps
// layout) and internal.SuspendPre/SuspendPost (the host's suspend hook:
// running qubes are suspended or paused before the host sleeps and resumed
// after it wakes, as Qubes' qubes/api/internal.py does).
import type { QubesApp } from '../../model/app.js';
import type { Lifecycle } from '../../lifecycle/controller.js';
import { QubesException } from '../../errors.js';
import type { Handlers } from '../call.js';

/** Strings json.dumps writes between quotes as they are: printable ASCII but " and \. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const NOT_ASCII = /[\u007f-\uffff]/g;

function pyString(s: string): string {
  if (PLAIN.test(s)) return '"' + s + '"';
  return JSON.stringify(s).replace(NOT_ASCII, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/**
 * Python json.dumps with default settings (", " and ": " separators, ASCII
 * only). Written out without intermediate arrays: on 1000 qubes the system
 * info has some 25 000 strings, and the map/join form took about 10 ms.
 */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return pyString(v);
  let out: string;
  if (Array.isArray(v)) {
    out = '[';
    for (let i = 0; i < v.length; i++) out += (i ? ', ' : '') + pyJson(v[i]);
    return out + ']';
  }
  out = '{';
  let first = true;
  for (const k of Object.keys(v as object)) {
    out += (first ? '' : ', ') + pyString(k) + ': ' + pyJson((v as Record<string, unknown>)[k]);
    first = false;
  }
  return out + '}';
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

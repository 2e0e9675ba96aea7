// Shared by the firewall and device tests: start a qubesd on a copy of the
// conformance fixture (or again on its directory, a restart), call it, watch
// its events, wait for it, and see that nothing on disk changed.
import { join } from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { call, startFixtureDaemon, subscribeEvents, type Daemon } from './qubesd.js';

/** Start on a fresh copy of the fixture, or again on `dir` (a restart, running qubes kept). */
export function startDaemon(dir?: string): Promise<Daemon> {
  return startFixtureDaemon(dir, { keepSimState: true });
}

/** ok(...) resolves with the content of a successful call, or rejects. */
export function caller(d: () => Daemon) {
  const ok = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
    const r = await call(d().socket, method, dest, arg, payload, source);
    if (!r.ok) throw new Error(`${method}+${arg} ${dest}: ${r.type}: ${r.message}`);
    return r.content;
  };
  const err = async (method: string, dest = 'dom0', arg = '', payload: string | Buffer = '', source = 'dom0') => {
    const r = await call(d().socket, method, dest, arg, payload, source);
    if (r.ok) throw new Error(`${method}+${arg} ${dest} unexpectedly succeeded`);
    return `${r.type}: ${r.message}`;
  };
  return { ok, err };
}

export type Event = [subject: string, event: string, kwargs: Array<[string, string]>];

/** An admin.Events stream on dom0: the events seen so far, until close(). */
export async function watchEvents(socket: string): Promise<{ readonly events: Event[]; close(): void }> {
  const sub = await subscribeEvents(socket);
  return {
    get events() {
      return sub.events.map((e): Event => [e.subject, e.event, e.pairs]);
    },
    close: sub.close,
  };
}

/** Poll until `check` holds (the daemon works asynchronously); fails after a generous limit. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every file under `dir` (but sockets) with its content: to see that nothing changed. */
export function snapshotFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(p, readFileSync(p, 'latin1'));
    }
  };
  walk(dir);
  return out;
}

// Shared by the hypervisor tests: finding the CI libvirtd, waiting for events,
// unique domain names (test files run in parallel against one libvirtd).

import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Test } from 'tap';
import type { LifecycleEvent } from '../../qubesd/hypervisor/backend.js';
import type { DomainSpec } from '../../qubesd/hypervisor/domain-xml.js';

export const DEFAULT_TEST_DIR = '/tmp/qubes-libvirt';

/** libvirtd's socket as .ci/libvirt.sh set it up, or null when none answers. */
export async function libvirtSocket(): Promise<string | null> {
  const path = process.env.QUBES_TEST_LIBVIRT_SOCK ?? `${DEFAULT_TEST_DIR}/libvirt-sock`;
  if (!existsSync(path)) return null;
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(path);
    });
    s.once('error', () => resolve(null));
  });
}

export function skipLoudly(what: string): string {
  const msg =
    `libvirtd is not reachable (QUBES_TEST_LIBVIRT_SOCK=${process.env.QUBES_TEST_LIBVIRT_SOCK ?? '(unset)'}; ` +
    `default ${DEFAULT_TEST_DIR}/libvirt-sock): ${what} NOT TESTED. Run .ci/libvirt.sh first.`;
  process.stderr.write(`\n${'!'.repeat(78)}\n!!! ${msg}\n${'!'.repeat(78)}\n`);
  return msg;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function tinySpec(name: string, over: Partial<DomainSpec> = {}): DomainSpec {
  return { name, uuid: randomUUID(), memoryMb: 64, maxmemMb: 0, vcpus: 1, virtMode: 'hvm', kernel: null, ...over };
}

/** Records lifecycle events of a backend (or of one domain) and waits for them. */
export class EventLog {
  readonly events: LifecycleEvent[] = [];
  private waiters: Array<{ pred: (e: LifecycleEvent) => boolean; resolve: (e: LifecycleEvent) => void }> = [];
  private readonly listener = (e: LifecycleEvent) => {
    if (this.name && e.name !== this.name) return;
    this.events.push(e);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(e)) {
        w.resolve(e);
        return false;
      }
      return true;
    });
  };

  constructor(
    private readonly source: EventEmitter,
    private readonly name?: string,
  ) {
    source.on('lifecycle', this.listener);
  }

  /** Resolves with the first event (already seen or future) matching. */
  waitFor(pred: (e: LifecycleEvent) => boolean, timeoutMs = 20_000, what = 'event'): Promise<LifecycleEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.events)}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  kinds(): string[] {
    return this.events.map((e) => `${e.event}/${e.detail}`);
  }
  clear(): void {
    this.events.length = 0;
  }
  stop(): void {
    this.source.off('lifecycle', this.listener);
  }
}

/** Asserts that `p` fails with a QubesError of `type`, or with an instance of the class `type`. */
export async function rejectsWith(t: Test, p: Promise<unknown>, type: string | (new (...a: never[]) => Error), msg?: string): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  if (typeof type === 'string') t.equal((e as { type?: string } | null)?.type, type, msg ?? `fails with ${type}`);
  else t.ok(e instanceof type, msg ?? `fails with ${type.name} (got ${String(e)})`);
}

// What a management qube may see, decided by the qrexec policy in process, as
// Qubes' admin extension does: admin.vm.List (to dom0) lists the qubes for
// which "admin.vm.List +<arg> <caller> <qube>" is allowed, and admin.Events
// passes an event about a qube (or @adminvm for system events) when
// "admin.Events +<event with ':' as '_'> <caller> <qube>" is allowed. `ask`
// counts as not allowed. A policy that cannot be loaded allows nothing.
import type { CallFilter } from './call.js';
import type { FilterFactory } from './dispatch.js';
import type { QubesApp, Vm } from '../model/app.js';
import { PolicyWatcher } from '../../policy/watcher.js';
import type { PolicyEngine } from '../../policy/policy-engine.js';
import type { SystemInfo } from '../../policy/system-info.js';

const DENY_ALL: CallFilter = Object.freeze({ vm: () => false, event: () => false });

export interface PolicyFilterOptions {
  policyDir: string;
  runtimeDir?: string | null;
  onError?: (message: string) => void;
}

export class PolicyFilter {
  private watcher: PolicyWatcher | null = null;
  private lastAttempt = 0;
  private info: SystemInfo | null = null;

  constructor(
    private readonly app: QubesApp,
    private readonly o: PolicyFilterOptions,
  ) {
    // Any event may change what the policy sees (tags, classes, power states,
    // qubes added or removed): rebuild the system information lazily.
    app.events.subscribe((_s, event) => {
      if (!event.includes('-pre-')) this.info = null;
    });
  }

  /** The current policy, or null while none can be loaded (retried at most every second). */
  private engine(): PolicyEngine | null {
    if (this.watcher) return this.watcher.current();
    const now = Date.now();
    if (now - this.lastAttempt < 1000) return null;
    this.lastAttempt = now;
    try {
      this.watcher = new PolicyWatcher({
        policyDir: this.o.policyDir,
        runtimeDir: this.o.runtimeDir ?? null,
        onError: (e) => this.o.onError?.(`policy reload failed, keeping the last good policy: ${e.message}`),
      });
      return this.watcher.current();
    } catch (e) {
      this.o.onError?.(`cannot load policy from ${this.o.policyDir}: ${(e as Error).message}`);
      return null;
    }
  }

  private systemInfo(): SystemInfo {
    return (this.info ??= this.app.systemInfo() as SystemInfo);
  }

  readonly factory: FilterFactory = (source: Vm, method: string, arg: string): CallFilter => {
    const engine = this.engine();
    if (!engine) return DENY_ALL;
    const caller = source.name;
    // admin.backup.Info names qubes and their sizes: it shows what the
    // caller could list with admin.vm.List, nothing more.
    if (method === 'admin.vm.List' || method === 'admin.backup.Info') {
      const allowed = engine.vmListFilter(caller, method === 'admin.vm.List' ? arg : '', this.systemInfo());
      return { vm: (vm) => allowed(vm.name), event: () => false };
    }
    if (method === 'admin.Events' || method === 'admin.vm.Stats') {
      // An event stream lives long: judge each event by the policy and the
      // system as they are when it happens.
      return {
        vm: () => false,
        event: (subject, event, kwargs) => {
          const current = this.engine();
          if (!current) return false;
          // System events about a qube (domain-add ...) are judged by that qube.
          const about = subject || kwargs.find(([k]) => k === 'vm')?.[1] || null;
          return current.eventsFilter(caller, this.systemInfo())(event, about);
        },
      };
    }
    return DENY_ALL;
  };

  close(): void {
    this.watcher?.close?.();
  }
}
